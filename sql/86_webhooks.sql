-- Webhooks: ingest_webhook stores each delivery once (deduplicated by the
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- transmission id header, else by a hash of the event), keeps only Toss's
-- headers and never a billing key, marks BILLING_DELETED keys deleted (found
-- by their keyed hash) and ignores what it does not handle.  Payment events
-- are applied from the Payment fetched from Toss (_fetch_payment, tested end
-- to end with the emulator); here _apply_payment_state gets Payments built
-- as Toss returns them, for orders (and their attempts) recorded the way
-- toss_charge and the runner record them.
\set SHOW_CONTEXT never
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
\getenv tbtest TB_TEST
\set ECHO none
\set helpers :tbtest '/../../sql/include/subscription_helpers.psql'
\i :helpers
\set helpers :tbtest '/../../sql/include/toss_json_helpers.psql'
\i :helpers
\set ECHO all

-- A toss_charge order as toss_charge records it (_charge_intent, then
-- _record_outcomes of its attempt, as the C half calls them): done with
-- Toss's Payment, declined (failed, an ABORTED Payment), unknown (a
-- timeout), or left in flight; reuse_refused: Toss answered
-- DUPLICATED_ORDER_ID and holds only an ABORTED payment under the order
-- id.  Returns the order's id.
CREATE FUNCTION pg_temp.charge_order(customer_key text, order_id text, amount bigint, outcome text,
                                     reuse_refused boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    i record;
    v_at timestamptz := '2025-06-01 10:00+09';
BEGIN
    SELECT * INTO STRICT i
      FROM toss_billing._charge_intent($1, $3, '단건 결제', $2, NULL, NULL, 0, current_user, '65 seconds');
    IF i.action <> 'post' THEN
        RAISE EXCEPTION 'charge_order: % for %', i.action, $2;
    END IF;
    IF $4 <> 'in_flight' THEN
        PERFORM toss_billing._record_outcomes(
            ARRAY[i.attempt_id], ARRAY[$4],
            ARRAY[CASE $4 WHEN 'done' THEN 200 WHEN 'failed' THEN CASE WHEN $5 THEN 400 ELSE 403 END ELSE 0 END],
            ARRAY[CASE $4 WHEN 'failed' THEN CASE WHEN $5 THEN 'transient' ELSE 'card_declined' END
                          WHEN 'unknown' THEN 'outcome_unknown' END],
            ARRAY[CASE WHEN $5 THEN 'DUPLICATED_ORDER_ID' END],
            ARRAY[CASE WHEN $5 THEN 'toss refuses to take this order id again and holds no approved payment under it'
                       WHEN $4 = 'unknown' THEN 'timeout after 65000 ms: Operation timed out' END],
            ARRAY[NULL::bytea],
            ARRAY[CASE $4 WHEN 'done' THEN pg_temp.payment_json(i.toss_order_id, '단건 결제', $3, v_at)
                          WHEN 'failed' THEN pg_temp.payment_json(i.toss_order_id, '단건 결제', $3, v_at,
                                                                  'REJECT_CARD_PAYMENT', '한도초과 혹은 잔액부족으로 결제에 실패했습니다.') END],
            ARRAY[NULL::text], ARRAY[$5]);
    END IF;
    RETURN i.payment_id;
END;
$$;

SELECT toss_billing.freeze_clock('2025-06-01 10:00+09');
-- the stand-in keys of earlier tests get some hash, so that no webhook here
-- needs the backfill of keys issued before 0.3.0 (they hold no real key)
UPDATE toss_billing.billing_keys SET key_hash = sha256(convert_to('regress stand-in ' || id, 'UTF8'))
 WHERE key_hash IS NULL AND status IN ('active', 'replaced');

-- a delivery is stored once: by its transmission id ...
SELECT id AS first_id, dedupe_key, event_type, headers, processed_at IS NOT NULL AS processed, outcome
  FROM toss_billing.ingest_webhook(
      '{"eventType": "CUSTOMER_STATUS_CHANGED", "createdAt": "2025-06-01T10:00:00.000000", "data": {"customerKey": "wh-one", "status": "ACTIVE"}}',
      '{"TossPayments-Webhook-Transmission-Id": "wh-tid-0001", "tosspayments-webhook-transmission-time": "2025-06-01T10:00:00+09:00",
        "tosspayments-webhook-transmission-retried-count": "0", "Content-Type": "application/json", "Authorization": "Basic c2VjcmV0Og=="}') \gset
SELECT :'dedupe_key' AS dedupe_key, :'event_type' AS event_type, :'headers' AS headers, :'processed' AS processed, :'outcome' AS outcome;
-- ... so Toss's retry returns the stored row and does nothing else
SELECT id = :first_id AS same_row, outcome, headers->>'tosspayments-webhook-transmission-retried-count' AS retried
  FROM toss_billing.ingest_webhook(
      '{"eventType": "CUSTOMER_STATUS_CHANGED", "createdAt": "2025-06-01T10:00:00.000000", "data": {"customerKey": "wh-one", "status": "ACTIVE"}}',
      '{"tosspayments-webhook-transmission-id": "wh-tid-0001", "tosspayments-webhook-transmission-retried-count": "1"}');
SELECT count(*) AS stored FROM toss_billing.webhook_events WHERE dedupe_key = 'wh-tid-0001';
-- without the header, by eventType, payment key (or order id, or billing
-- key), status and createdAt
SELECT id AS hashed_id, length(dedupe_key) AS key_length, outcome
  FROM toss_billing.ingest_webhook('{"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2025-06-01T10:01:00.000000", "data": {"orderId": "order-wh-nowhere", "status": "DONE"}}') \gset
SELECT :key_length AS key_length, :'outcome' AS outcome;
SELECT id = :hashed_id AS same_row
  FROM toss_billing.ingest_webhook('{"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2025-06-01T10:01:00.000000", "data": {"orderId": "order-wh-nowhere", "status": "DONE"}}', '{}');
SELECT id <> :hashed_id AS new_row, outcome
  FROM toss_billing.ingest_webhook('{"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2025-06-01T10:02:00.000000", "data": {"orderId": "order-wh-nowhere", "status": "CANCELED"}}');
-- a flat deposit callback (no eventType) is stored and ignored
SELECT event_type, outcome FROM toss_billing.ingest_webhook(
    '{"createdAt": "2025-06-01T10:03:00+09:00", "secret": "ps_x", "status": "DONE", "transactionKey": "tx1", "orderId": "order-wh-va"}');

-- BILLING_DELETED: the key is found by its keyed hash and marked deleted;
-- the customer's subscriptions go past_due with the reason
SELECT id AS plan FROM toss_billing.create_plan('웹훅 요금제', 4900) \gset
SELECT pg_temp.customer('wh-del');
SELECT count(*) FROM toss_billing.create_subscription('wh-del', :plan);
SELECT * FROM pg_temp.run('done');
UPDATE toss_billing.billing_keys bk SET key_hash = toss_billing._billing_key_hash('bk_wh_del_0001_tosskey')
  FROM toss_billing.customers c WHERE c.id = bk.customer_id AND c.customer_key = 'wh-del' AND bk.status = 'active'
RETURNING bk.id AS deleted_key \gset
SELECT count(*) >= 0 AS events_seen FROM pg_temp.new_events();
SELECT id AS deleted_event, event_type, outcome = format('applied: billing key %s deleted (카드사 요청으로 삭제)', :deleted_key) AS applied,
       payload, headers
  FROM toss_billing.ingest_webhook(
      '{"eventType": "BILLING_DELETED", "createdAt": "2025-06-01T10:05:00.000000", "data": {"billingKey": "bk_wh_del_0001_tosskey", "reason": "카드사 요청으로 삭제"}}',
      '{"tosspayments-webhook-transmission-id": "wh-tid-0002"}') \gset
SELECT :'event_type' AS event_type, :'applied' AS applied, :'payload' AS stored_payload;
SELECT status, deleted_reason FROM toss_billing.billing_keys WHERE id = :deleted_key;
SELECT * FROM pg_temp.subs('wh-del');
SELECT * FROM pg_temp.new_events();
-- the billing key is nowhere in the stored events
SELECT count(*) AS stored_in_clear FROM toss_billing.webhook_events
 WHERE payload::text LIKE '%bk_wh_del_0001%' OR dedupe_key LIKE '%bk_wh_del_0001%';
-- a retry, and the same deletion reported again, change nothing
SELECT id = :deleted_event AS same_row FROM toss_billing.ingest_webhook(
    '{"eventType": "BILLING_DELETED", "createdAt": "2025-06-01T10:05:00.000000", "data": {"billingKey": "bk_wh_del_0001_tosskey", "reason": "카드사 요청으로 삭제"}}',
    '{"tosspayments-webhook-transmission-id": "wh-tid-0002", "tosspayments-webhook-transmission-retried-count": "1"}');
SELECT outcome = format('ignored: billing key %s was already deleted', :deleted_key) AS already_deleted
  FROM toss_billing.ingest_webhook(
      '{"eventType": "BILLING_DELETED", "createdAt": "2025-06-01T11:00:00.000000", "data": {"billingKey": "bk_wh_del_0001_tosskey", "reason": "카드사 요청으로 삭제"}}');
SELECT count(*) AS new_events FROM pg_temp.new_events();
-- a key toss_billing does not have, or none at all
SELECT outcome FROM toss_billing.ingest_webhook(
    '{"eventType": "BILLING_DELETED", "createdAt": "2025-06-01T10:06:00.000000", "data": {"billingKey": "bk_someone_else", "reason": "x"}}');
SELECT outcome FROM toss_billing.ingest_webhook(
    '{"eventType": "BILLING_DELETED", "createdAt": "2025-06-01T10:07:00.000000", "data": {"reason": "x"}}');

-- a payment event that names no payment is not fetched
SELECT outcome FROM toss_billing.ingest_webhook(
    '{"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2025-06-01T10:08:00.000000", "data": {"status": "DONE"}}');

-- bad input
SELECT toss_billing.ingest_webhook(NULL);
SELECT toss_billing.ingest_webhook('[]');
SELECT toss_billing.ingest_webhook('"PAYMENT_STATUS_CHANGED"');
SELECT toss_billing.ingest_webhook('{}', '[]');

-- _apply_payment_state: Toss's Payment, verified against the order it names
-- (orderId, totalAmount, currency, type, mId: _verify_payment), settles that
-- order.  An answer that does not match settles nothing: it opens an
-- unverified_answer discrepancy.
SELECT pg_temp.customer('wh-one');
-- the stand-in key gets the mId of the Payments built here, so that the mId
-- is checked as well (a key issued by Toss has its merchant's mId)
UPDATE toss_billing.billing_keys bk SET mid = 'tvivarepublica'
  FROM toss_billing.customers c WHERE c.id = bk.customer_id AND c.customer_key = 'wh-one' AND bk.status = 'active';
SELECT pg_temp.charge_order('wh-one', 'order-wh-done', 3000, 'done') AS done_id \gset
SELECT order_id, obligation, state, generation, toss_status, payment_key IS NOT NULL AS has_payment_key
  FROM toss_billing.payments WHERE id = :done_id;

-- an unknown subscription attempt Toss approved becomes done and pays its
-- period -- but only with a Payment that matches its order
SELECT count(*) FROM toss_billing.create_subscription('wh-one', :plan);
SELECT * FROM pg_temp.run('unknown');
SELECT order_id AS unknown_order FROM toss_billing.payments
 WHERE state = 'unknown' AND customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'wh-one') \gset
-- a Payment of another amount: nothing is marked paid, the order stays unknown
SELECT regexp_replace(toss_billing._apply_payment_state(pg_temp.payment_json(:'unknown_order', '웹훅 요금제', 5900, '2025-06-01 10:00+09')),
                      'sub[0-9]+-(p[0-9]+-a[0-9]+)-[a-z0-9]{8}', '\1', 'g') AS outcome;
SELECT p.state, p.toss_status, p.payment_key IS NULL AS no_payment_key, a.state AS attempt_state
  FROM toss_billing.payments p JOIN toss_billing.attempts a ON a.payment_id = p.id WHERE p.order_id = :'unknown_order';
SELECT * FROM pg_temp.subs('wh-one');
-- the Payment of the order: done, and the period is paid
SELECT regexp_replace(toss_billing._apply_payment_state(pg_temp.payment_json(:'unknown_order', '웹훅 요금제', 4900, '2025-06-01 10:00+09')),
                      'sub[0-9]+-(p[0-9]+-a[0-9]+)-[a-z0-9]{8}', '\1') AS outcome;
SELECT state, toss_status, failure_class, total_amount, hold_reason FROM toss_billing.payments WHERE order_id = :'unknown_order';
SELECT a.attempt_number, a.state, a.failure_class
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id WHERE p.order_id = :'unknown_order';
SELECT * FROM pg_temp.subs('wh-one');
SELECT * FROM pg_temp.new_events();
-- not in the ledger
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-elsewhere', '다른 결제', 1000, '2025-06-01 10:00+09'));

-- the ledger says failed (a decline), Toss says approved: 0.5.0 takes Toss's
-- verified Payment as proof of payment (0.4.0 only opened a state_mismatch
-- discrepancy): the order and the attempt that made the charge are done,
-- with an alert carrying the customer
SELECT pg_temp.charge_order('wh-one', 'order-wh-failed', 2000, 'failed') AS failed_id \gset
SELECT state, failure_class, failure_code FROM toss_billing.payments WHERE id = :failed_id;
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-failed', '단건 결제', 2000, '2025-06-01 10:00+09'));
SELECT state, toss_status, total_amount, payment_key = 'tbill' || substr(md5('order-wh-failed'), 1, 20) AS payment_key,
       failure_class, failure_code
  FROM toss_billing.payments WHERE id = :failed_id;
SELECT attempt_number, state, failure_class, failure_code FROM toss_billing.attempts WHERE payment_id = :failed_id;
SELECT toss_order_id, state, paid, attempts, failure_code, advice FROM toss_billing.order_status('order-wh-failed');
SELECT e.type, e.subscription_id, c.customer_key, e.reason, e.detail->>'ledger_state' AS ledger_state,
       e.detail->>'failure_code' AS failure_code
  FROM toss_billing.events e JOIN toss_billing.customers c ON c.id = e.customer_id
 WHERE e.payment_id = :failed_id ORDER BY e.id;

-- a declined subscription period (owed: pending, the subscription on the
-- dunning schedule) that Toss approved after all: the period is paid and the
-- subscription is active again
SELECT pg_temp.customer('wh-two');
SELECT count(*) FROM toss_billing.create_subscription('wh-two', :plan);
SELECT * FROM pg_temp.run('declined');
SELECT order_id AS declined_order FROM toss_billing.payments
 WHERE customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'wh-two') \gset
SELECT state, failure_class FROM toss_billing.payments WHERE order_id = :'declined_order';
SELECT * FROM pg_temp.subs('wh-two');
SELECT regexp_replace(toss_billing._apply_payment_state(pg_temp.payment_json(:'declined_order', '웹훅 요금제', 4900, '2025-06-01 10:00+09')),
                      'sub[0-9]+-(p[0-9]+-a[0-9]+)-[a-z0-9]{8}', '\1') AS outcome;
SELECT state, toss_status FROM toss_billing.payments WHERE order_id = :'declined_order';
SELECT * FROM pg_temp.subs('wh-two');
SELECT * FROM pg_temp.new_events();

-- two approved payments for one obligation: Toss refused order-wh-twice
-- again (DUPLICATED_ORDER_ID, only an ABORTED payment under it), so the
-- charge was made under the next generation's order id; a DONE for the old
-- order id is a second charge: a duplicate_charge discrepancy, and the old
-- order stays failed
SELECT pg_temp.charge_order('wh-one', 'order-wh-twice', 2500, 'failed', reuse_refused => true) AS twice_id \gset
SELECT pg_temp.charge_order('wh-one', 'order-wh-twice', 2500, 'done') AS twice_2_id \gset
SELECT id = :twice_id AS first, order_id, obligation, generation, state, failure_code
  FROM toss_billing.payments WHERE obligation = 'charge:order-wh-twice' ORDER BY id;
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-twice', '단건 결제', 2500, '2025-06-01 10:00+09'));
SELECT order_id, state, generation FROM toss_billing.payments WHERE obligation = 'charge:order-wh-twice' ORDER BY id;
-- the caller's order id is paid once, under the order id that replaced it
SELECT toss_order_id, obligation, state, paid, attempts, advice FROM toss_billing.order_status('order-wh-twice');
SELECT kind, order_id, ledger_state, toss_status, ledger_amount, toss_amount,
       (detail->>'other_payment_id')::bigint = :twice_2_id AS other_is_the_paid_order, detail->>'obligation' AS obligation
  FROM toss_billing.open_discrepancies WHERE kind = 'duplicate_charge' AND order_id LIKE 'order-wh-%';

-- the ledger says done, Toss says aborted
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-done', '단건 결제', 3000, '2025-06-01 10:00+09',
                                                              'REJECT_CARD_PAYMENT', '거절'));
-- another payment key for the same order
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-done', '단건 결제', 3000, '2025-06-01 10:00+09')
                                         || '{"paymentKey": "tbill_not_ours"}');
-- the order's payment key, but another orderId; another mId; another currency
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-done', '단건 결제', 3000, '2025-06-01 10:00+09')
                                         || '{"orderId": "order-wh-other"}');
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-failed', '단건 결제', 2000, '2025-06-01 10:00+09')
                                         || '{"mId": "tosspayments2"}');
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-twice-r2-' || substr(md5('charge:order-wh-twice'), 1, 6),
                                                              '단건 결제', 2500, '2025-06-01 10:00+09')
                                         || '{"currency": "USD"}');
SELECT order_id, state, toss_status, total_amount, response->>'mId' AS mid, response->>'currency' AS currency
  FROM toss_billing.payments WHERE id IN (:done_id, :failed_id, :twice_2_id) ORDER BY id;
SELECT kind, regexp_replace(order_id, '^sub[0-9]+-(p[0-9]+-a[0-9]+)-[a-z0-9]{8}$', 'sub#-\1') AS order_id,
       CASE WHEN payment_key = 'tbill' || substr(md5(order_id), 1, 20) THEN '(its own)' ELSE payment_key END AS payment_key,
       ledger_state, toss_status, ledger_amount, toss_amount, detail->>'source' AS source,
       detail->>'why' AS why
  FROM toss_billing.open_discrepancies
 WHERE order_id LIKE 'order-wh-%' OR order_id = :'unknown_order' ORDER BY id;

-- in flight: its caller records it
SELECT pg_temp.charge_order('wh-one', 'order-wh-flight', 2000, 'in_flight') AS flight_id \gset
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-flight', '단건 결제', 2000, '2025-06-01 10:00+09'));
SELECT p.state, a.state AS attempt_state
  FROM toss_billing.payments p JOIN toss_billing.attempts a ON a.payment_id = p.id WHERE p.id = :flight_id;
-- an older Payment (a larger balance) does not undo a newer one
SELECT toss_billing._apply_payment_state(pg_temp.with_cancel(response, 1000, '부분 환불', 'txrd_wh_1', '2025-06-01 10:30+09'))
  FROM toss_billing.payments WHERE id = :done_id;
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-done', '단건 결제', 3000, '2025-06-01 10:00+09'));
SELECT toss_status, balance_amount, response->>'status' AS response_status FROM toss_billing.payments WHERE id = :done_id;
-- the cancel made outside toss_billing carries the payment's customer
SELECT c.transaction_key, c.canceled_amount, c.idempotency_key IS NULL AS outside_toss_billing,
       cu.customer_key
  FROM toss_billing.cancels c JOIN toss_billing.customers cu ON cu.id = c.customer_id
 WHERE c.payment_id = :done_id;
-- bad calls
SELECT toss_billing._apply_payment_state(NULL);
SELECT toss_billing._apply_payment_state('[]');
SELECT toss_billing._apply_payment_state('{"status": "DONE"}');

-- every event of this file carries its customer
SELECT count(*) AS events, count(*) FILTER (WHERE e.customer_id = COALESCE(s.customer_id, p.customer_id)) AS with_customer
  FROM toss_billing.events e
  LEFT JOIN toss_billing.subscriptions s ON s.id = e.subscription_id
  LEFT JOIN toss_billing.payments p ON p.id = e.payment_id
  JOIN toss_billing.customers c ON c.id = COALESCE(s.customer_id, p.customer_id)
 WHERE c.customer_key LIKE 'wh-%';

-- nothing is left in flight or unknown, nor open, for later tests: the
-- in-flight attempt gets its outcome, the discrepancies are settled
SELECT toss_billing._record_outcomes(ARRAY[id], '{failed}', '{400}', '{transient}', '{PROVIDER_ERROR}',
                                     '{"일시적인 오류가 발생했습니다."}', '{NULL}', '{NULL}', '{NULL}', '{false}')
  FROM toss_billing.attempts WHERE payment_id = :flight_id;
SELECT count(*) AS open_orders FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key LIKE 'wh-%' AND p.state <> ALL (ARRAY['done', 'failed', 'pending']);
SELECT count(*) AS settled FROM toss_billing.open_discrepancies d,
       LATERAL toss_billing.resolve_discrepancy(d.id, '86_webhooks') r
 WHERE d.order_id LIKE 'order-wh-%' OR d.order_id = :'unknown_order';
SELECT pg_temp.cleanup('wh-');
