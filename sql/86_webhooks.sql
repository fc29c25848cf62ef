-- Webhooks: ingest_webhook stores each delivery once (deduplicated by the
-- transmission id header, else by a hash of the event), keeps only Toss's
-- headers and never a billing key, marks BILLING_DELETED keys deleted (found
-- by their keyed hash) and ignores what it does not handle.  Payment events
-- are applied from the Payment fetched from Toss (_fetch_payment, tested end
-- to end with the emulator); here _apply_payment_state gets Payments built
-- as Toss returns them.
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

-- _apply_payment_state: Toss's Payment settles the ledger row it names
SELECT pg_temp.customer('wh-one');
SELECT pg_temp.charged('wh-one', 'order-wh-done', 3000, '2025-06-01 10:00+09') AS done_id \gset
-- an unknown subscription attempt Toss approved becomes done and pays its period
SELECT count(*) FROM toss_billing.create_subscription('wh-one', :plan);
SELECT * FROM pg_temp.run('unknown');
SELECT order_id AS unknown_order FROM toss_billing.payments
 WHERE state = 'unknown' AND customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'wh-one') \gset
SELECT regexp_replace(toss_billing._apply_payment_state(pg_temp.payment_json(:'unknown_order', '웹훅 요금제', 4900, '2025-06-01 10:00+09')),
                      'sub[0-9]+-(p[0-9]+-a[0-9]+)-[a-z0-9]{8}', '\1') AS outcome;
SELECT state, toss_status, failure_class, total_amount FROM toss_billing.payments WHERE order_id = :'unknown_order';
SELECT * FROM pg_temp.subs('wh-one');
SELECT * FROM pg_temp.new_events();
-- not in the ledger
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-elsewhere', '다른 결제', 1000, '2025-06-01 10:00+09'));
-- the ledger says failed, Toss says approved: a discrepancy for a person
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, failure_class, failure_code)
SELECT 'order-wh-failed', gen_random_uuid()::text, customer_id, billing_key_id, merchant, 'failed', '단건 결제', 2000,
       current_user, 'card_declined', 'REJECT_CARD_PAYMENT'
  FROM toss_billing.payments WHERE id = :done_id;
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-failed', '단건 결제', 2000, '2025-06-01 10:00+09'));
SELECT state FROM toss_billing.payments WHERE order_id = 'order-wh-failed';
-- the ledger says done, Toss says aborted
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-done', '단건 결제', 3000, '2025-06-01 10:00+09',
                                                              'REJECT_CARD_PAYMENT', '거절'));
-- another payment key for the same order
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-done', '단건 결제', 3000, '2025-06-01 10:00+09')
                                         || '{"paymentKey": "tbill_not_ours"}');
SELECT kind, order_id, payment_key, ledger_state, toss_status, ledger_amount, toss_amount, detail->>'source' AS source
  FROM toss_billing.open_discrepancies WHERE order_id LIKE 'order-wh-%' ORDER BY id;
-- in flight: its caller records it
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by)
SELECT 'order-wh-flight', gen_random_uuid()::text, customer_id, billing_key_id, merchant, 'in_flight', '단건 결제', 2000,
       current_user
  FROM toss_billing.payments WHERE id = :done_id;
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-flight', '단건 결제', 2000, '2025-06-01 10:00+09'));
SELECT state FROM toss_billing.payments WHERE order_id = 'order-wh-flight';
-- an older Payment (a larger balance) does not undo a newer one
SELECT toss_billing._apply_payment_state(pg_temp.with_cancel(response, 1000, '부분 환불', 'txrd_wh_1', '2025-06-01 10:30+09'))
  FROM toss_billing.payments WHERE id = :done_id;
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-wh-done', '단건 결제', 3000, '2025-06-01 10:00+09'));
SELECT toss_status, balance_amount, response->>'status' AS response_status FROM toss_billing.payments WHERE id = :done_id;
-- bad calls
SELECT toss_billing._apply_payment_state(NULL);
SELECT toss_billing._apply_payment_state('[]');
SELECT toss_billing._apply_payment_state('{"status": "DONE"}');

UPDATE toss_billing.payments SET state = 'failed', failure_class = 'transient' WHERE order_id = 'order-wh-flight';
SELECT pg_temp.cleanup('wh-');
