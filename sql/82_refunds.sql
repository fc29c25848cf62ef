-- Refunds: _cancel_intent checks a cancel and records it in flight before
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- anything is sent (refusing over-refunds, counting cancels in flight or
-- unknown against the balance, one cancel after the other); _cancel_outcome
-- records what Toss answered, keeps the payment's balance, and treats a
-- balance of 0 as fully refunded whether Toss says CANCELED or
-- PARTIAL_CANCELED.  A cancel whose outcome is unknown is replayed by the
-- runner with its own Idempotency-Key (_claim_unknown_cancels); an answer
-- that does not match the payment settles nothing.  Toss's answers are
-- built as the emulator gives them.
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

-- what earlier tests left in flight is swept first, so that what follows
-- sees only this test's cancels
SELECT toss_billing._mark_stale() >= 0 AS swept;

SELECT toss_billing.freeze_clock('2025-04-01 10:00+09');
SELECT pg_temp.customer('rf-one');
-- the key's merchant mId is known: every answer must carry it
UPDATE toss_billing.billing_keys bk SET mid = 'tvivarepublica'
  FROM toss_billing.customers c WHERE c.id = bk.customer_id AND c.customer_key = 'rf-one' AND bk.status = 'active';
SELECT pg_temp.charged('rf-one', 'order-rf-plain', 10000, '2025-04-01 10:00+09') AS plain \gset
SELECT payment_key AS plain_key, response AS pay FROM toss_billing.payments WHERE id = :plain \gset

-- refused before anything is recorded
SELECT count(*) AS cancels_before FROM toss_billing.cancels \gset
SELECT pg_temp.error_of($$SELECT toss_billing._cancel_intent('order-nowhere', '환불', NULL, 'rf_clerk')$$);
SELECT pg_temp.error_of($$SELECT toss_billing._cancel_intent(NULL, '환불', NULL, 'rf_clerk')$$);
SELECT pg_temp.error_of($$SELECT toss_billing._cancel_intent('order-rf-plain', NULL, NULL, 'rf_clerk')$$);
SELECT pg_temp.error_of($$SELECT toss_billing._cancel_intent('order-rf-plain', '', NULL, 'rf_clerk')$$);
SELECT pg_temp.error_of($$SELECT toss_billing._cancel_intent('order-rf-plain', repeat('사', 201), NULL, 'rf_clerk')$$);
SELECT pg_temp.error_of($$SELECT toss_billing._cancel_intent('order-rf-plain', '환불', 0, 'rf_clerk')$$);
SELECT pg_temp.error_of($$SELECT toss_billing._cancel_intent('order-rf-plain', '환불', -100, 'rf_clerk')$$);
SELECT toss_billing._cancel_intent('order-rf-plain', '환불', 10001, 'rf_clerk');
-- only a done payment can be canceled: not a declined toss_charge (its
-- order failed), nor one whose outcome is unknown
SELECT pg_temp.outcome(pg_temp.charging('rf-one', 'order-rf-declined', 1000), 'failed', 403, 'card_declined',
                       'REJECT_CARD_PAYMENT', '한도초과 혹은 잔액부족으로 결제에 실패했습니다.');
SELECT pg_temp.charging('rf-one', 'order-rf-unknown', 1000) AS unknown_attempt \gset
SELECT pg_temp.outcome(:unknown_attempt, 'unknown', 0, 'outcome_unknown', NULL, 'timeout after 65000 ms');
SELECT order_id, state FROM toss_billing.payments WHERE order_id IN ('order-rf-declined', 'order-rf-unknown') ORDER BY 1;
SELECT toss_billing._cancel_intent('order-rf-declined', '환불', NULL, 'rf_clerk');
SELECT toss_billing._cancel_intent('order-rf-unknown', '환불', NULL, 'rf_clerk');
SELECT count(*) = :cancels_before AS nothing_recorded FROM toss_billing.cancels;

-- a partial cancel, by order id: recorded in flight with a fresh
-- Idempotency-Key and a deadline (twice the call timeout); the worker sends
-- cancelAmount 3000 to the payment key, and Toss's answer must be this
-- payment's: its order id, its total amount and the merchant's mId
SELECT c.cancel_id AS c1, c.payment_key = :'plain_key' AS payment_key,
       c.idempotency_key ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS uuid_key,
       c.merchant, c.cancel_amount, c.order_id AS answer_order_id, c.total_amount AS answer_total_amount,
       c.mid AS answer_mid
  FROM toss_billing._cancel_intent('order-rf-plain', '부분 환불', 3000, 'rf_clerk') c \gset
SELECT :'payment_key' AS payment_key, :'uuid_key' AS uuid_key, :'merchant' AS merchant, :'cancel_amount' AS cancel_amount,
       :'answer_order_id' AS answer_order_id, :'answer_total_amount' AS answer_total_amount, :'answer_mid' AS answer_mid;
SELECT state, requested_amount, reason, requested_by, idempotency_key IS NOT NULL AS has_key,
       caller_pid = pg_backend_pid() AS caller_recorded, transaction_key, canceled_amount,
       deadline = created_at + interval '130 seconds' AS deadline, customer_id = (SELECT customer_id FROM toss_billing.payments
                                                                                  WHERE id = :plain) AS customer
  FROM toss_billing.cancels WHERE id = :c1;

-- while it is in flight it holds its 3,000 KRW: 7,000 are left
SELECT toss_billing._cancel_intent(:'plain_key', '전액 환불', 7001, 'rf_clerk');

-- concurrent cancels are counted one after the other: a second session
-- records a 6,000 KRW cancel and has not committed yet; ours waits for the
-- payment row (lock_timeout shows it waits), then is refused
CREATE EXTENSION dblink;
SELECT dblink_connect('other_clerk', format('host=%s port=%s dbname=%s',
                                            split_part(current_setting('unix_socket_directories'), ',', 1),
                                            current_setting('port'), current_database()));
SELECT dblink_exec('other_clerk', 'BEGIN');
SELECT * FROM dblink('other_clerk', $$SELECT cancel_amount FROM toss_billing._cancel_intent('order-rf-plain', '동시 환불', 6000, 'rf_other')$$)
    AS t(cancel_amount bigint);
SET lock_timeout = '200ms';
SELECT toss_billing._cancel_intent('order-rf-plain', '동시 환불', 6000, 'rf_clerk');
RESET lock_timeout;
SELECT dblink_exec('other_clerk', 'COMMIT');
SELECT dblink_disconnect('other_clerk');
DROP EXTENSION dblink;
SELECT toss_billing._cancel_intent('order-rf-plain', '동시 환불', 6000, 'rf_clerk');
SELECT id AS c2 FROM toss_billing.cancels WHERE requested_by = 'rf_other' \gset
SELECT requested_by, state, requested_amount FROM toss_billing.cancels WHERE payment_id = :plain ORDER BY id;

-- an answer that does not match the payment (another orderId, another
-- totalAmount, another mId) settles nothing: the worker records the cancel
-- unknown, it keeps holding its 3,000, and the payment row is not touched
SELECT pg_temp.with_cancel(:'pay', 3000, '부분 환불', 'txrd_rf_c1', '2025-04-01 10:05+09') AS pay \gset
SELECT toss_billing._verify_payment(:'pay'::jsonb || '{"orderId": "order-rf-other"}', 'order-rf-plain', 10000,
                                    'tvivarepublica') AS order_id,
       toss_billing._verify_payment(:'pay'::jsonb || '{"totalAmount": 13000}', 'order-rf-plain', 10000,
                                    'tvivarepublica') AS total_amount,
       toss_billing._verify_payment(:'pay'::jsonb || '{"mId": "another_mid"}', 'order-rf-plain', 10000,
                                    'tvivarepublica') AS mid,
       toss_billing._verify_payment(:'pay', 'order-rf-plain', 10000, 'tvivarepublica') AS matching;
BEGIN;
SELECT toss_billing._cancel_outcome(:c1, 'unknown', 200, 'outcome_unknown', NULL,
                                    'toss''s answer does not match the payment: unverified: mId another_mid is not the merchant''s',
                                    NULL, convert_to((:'pay'::jsonb || '{"mId": "another_mid"}')::text, 'UTF8'));
SELECT state, failure_class, transaction_key, canceled_amount, response,
       convert_from(raw_response, 'UTF8')::jsonb->>'mId' AS raw_mid
  FROM toss_billing.cancels WHERE id = :c1;
SELECT toss_status, balance_amount, response->'cancels' AS cancels FROM toss_billing.payments WHERE id = :plain;
SELECT toss_billing._cancel_intent('order-rf-plain', '나머지', 1001, 'rf_clerk');
ROLLBACK;
-- ... nor arriving as Toss's Payment (a webhook's fetch, reconcile): a
-- conflict, no cancel is taken from it
SELECT toss_billing._apply_payment_state(:'pay'::jsonb || '{"mId": "another_mid"}') AS applied;
SELECT state, transaction_key FROM toss_billing.cancels WHERE id = :c1;

-- Toss answers the first: the cancel takes its entry of the Payment's
-- cancels[], the payment row takes the Payment; the answer's bytes are kept
SELECT toss_billing._cancel_outcome(:c1, 'done', 200, NULL, NULL, NULL, :'pay', convert_to(:'pay', 'UTF8'));
SELECT state, transaction_key, canceled_amount, canceled_at, http_status, response->>'status' AS response_status,
       convert_from(raw_response, 'UTF8')::jsonb = response AS raw_response
  FROM toss_billing.cancels WHERE id = :c1;
SELECT state, toss_status, total_amount, balance_amount, supplied_amount, vat, response->>'lastTransactionKey' AS last_tx
  FROM toss_billing.payments WHERE id = :plain;
-- recording it again changes nothing
SELECT updated_at AS c1_updated FROM toss_billing.cancels WHERE id = :c1 \gset
SELECT toss_billing._cancel_outcome(:c1, 'failed', 403, 'card_declined', 'NOT_CANCELABLE_AMOUNT', '취소 할 수 없는 금액 입니다.', NULL);
SELECT state, updated_at = :'c1_updated' AS unchanged FROM toss_billing.cancels WHERE id = :c1;

-- the other's outcome is unknown (a timeout): it keeps holding its 6,000
SELECT toss_billing._cancel_outcome(:c2, 'unknown', 0, 'outcome_unknown', NULL, 'timeout after 65000 ms', NULL);
SELECT state, failure_class, failure_message FROM toss_billing.cancels WHERE id = :c2;
SELECT toss_billing._cancel_intent('order-rf-plain', '나머지', 1001, 'rf_clerk');
-- the runner replays it (new in 0.5.0; 0.4.0 waited for a webhook or
-- reconcile): claimed with its own Idempotency-Key and request and what the
-- answer must match, then backed off (1, 2, 4, ... minutes)
BEGIN;
SELECT c.cancel_id = :c2 AS c2, c.payment_key = :'plain_key' AS payment_key,
       c.idempotency_key = (SELECT idempotency_key FROM toss_billing.cancels WHERE id = :c2) AS own_idempotency_key,
       c.merchant, c.cancel_amount, c.reason, c.order_id, c.total_amount, c.mid
  FROM toss_billing._claim_unknown_cancels(100) c WHERE c.cancel_id = :c2;
SELECT resolve_attempts, next_resolve_at - now() AS backoff FROM toss_billing.cancels WHERE id = :c2;
COMMIT;
SELECT count(*) AS claimed_again FROM toss_billing._claim_unknown_cancels(100) c WHERE c.cancel_id = :c2;
-- a full cancel now would be sent as a cancel of the 1,000 left
BEGIN;
SELECT cancel_amount FROM toss_billing._cancel_intent('order-rf-plain', '나머지', NULL, 'rf_clerk');
SELECT requested_amount FROM toss_billing.cancels WHERE payment_id = :plain ORDER BY id DESC LIMIT 1;
ROLLBACK;

-- Toss's Payment (a webhook, or reconcile) shows the unknown cancel happened:
-- it takes its entry and stops holding anything
SELECT pg_temp.with_cancel(:'pay', 6000, '동시 환불', 'txrd_rf_c2', '2025-04-01 10:06+09') AS pay \gset
SELECT toss_billing._apply_payment_state(:'pay');
SELECT state, transaction_key, canceled_amount, failure_class FROM toss_billing.cancels WHERE id = :c2;

-- the rest, 1,000 KRW, as a full cancel: Toss leaves a partially canceled
-- payment PARTIAL_CANCELED with a balance of 0, which counts as fully refunded
SELECT c.cancel_id AS c3, c.cancel_amount IS NULL AS full_cancel
  FROM toss_billing._cancel_intent(:'plain_key', '나머지 환불', NULL, 'rf_clerk') c \gset
SELECT :'full_cancel' AS full_cancel;
SELECT pg_temp.with_cancel(:'pay', NULL, '나머지 환불', 'txrd_rf_c3', '2025-04-01 10:07+09') AS pay \gset
SELECT toss_billing._cancel_outcome(:c3, 'done', 200, NULL, NULL, NULL, :'pay');
SELECT id = :c3 AS c3, state, requested_amount, canceled_amount, transaction_key FROM toss_billing.cancels
 WHERE payment_id = :plain ORDER BY id;
SELECT state, toss_status, balance_amount FROM toss_billing.payments WHERE id = :plain;
SELECT toss_billing._cancel_intent('order-rf-plain', '한 번 더', NULL, 'rf_clerk');
SELECT toss_billing._cancel_intent('order-rf-plain', '한 번 더', 100, 'rf_clerk');

-- a subscription payment: refunds are recorded as events
SELECT id AS plan FROM toss_billing.create_plan('환불 요금제', 9900) \gset
SELECT pg_temp.customer('rf-sub');
SELECT count(*) FROM toss_billing.create_subscription('rf-sub', :plan);
SELECT * FROM pg_temp.run('done');
SELECT id AS sub_payment, payment_key AS sub_key, response AS sub_pay
  FROM toss_billing.payments WHERE customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'rf-sub') \gset
SELECT c.cancel_id AS s1 FROM toss_billing._cancel_intent(:'sub_key', '일부 환불', 4900, 'rf_clerk') c \gset
SELECT pg_temp.with_cancel(:'sub_pay', 4900, '일부 환불', 'txrd_rf_s1', '2025-04-01 10:10+09') AS sub_pay \gset
SELECT toss_billing._cancel_outcome(:s1, 'done', 200, NULL, NULL, NULL, :'sub_pay');
-- a failed cancel holds nothing and changes nothing
SELECT c.cancel_id AS s2 FROM toss_billing._cancel_intent(:'sub_key', '나머지 환불', NULL, 'rf_clerk') c \gset
SELECT toss_billing._cancel_outcome(:s2, 'failed', 400, 'transient', 'PROVIDER_ERROR', NULL,
                                    '{"code": "PROVIDER_ERROR", "message": "일시적인 오류가 발생했습니다."}');
SELECT state, failure_class, failure_code, failure_message, http_status FROM toss_billing.cancels WHERE id = :s2;
SELECT c.cancel_id AS s3 FROM toss_billing._cancel_intent(:'sub_key', '나머지 환불', NULL, 'rf_clerk') c \gset
SELECT pg_temp.with_cancel(:'sub_pay', NULL, '나머지 환불', 'txrd_rf_s3', '2025-04-01 10:11+09') AS sub_pay \gset
SELECT toss_billing._cancel_outcome(:s3, 'done', 200, NULL, NULL, NULL, :'sub_pay');
SELECT state, toss_status, balance_amount FROM toss_billing.payments WHERE id = :sub_payment;
SELECT * FROM pg_temp.new_events() WHERE customer_key = 'rf-sub';
SELECT e.detail->>'amount' AS amount, e.detail->>'balance_amount' AS balance, e.detail->>'fully_refunded' AS fully_refunded,
       e.detail->>'toss_status' AS toss_status, e.payment_id = :sub_payment AS payment
  FROM toss_billing.events e
 WHERE e.type = 'payment_refunded'
   AND e.customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'rf-sub')
 ORDER BY e.id;

-- a single full cancel: CANCELED
SELECT pg_temp.charged('rf-one', 'order-rf-whole', 5000, '2025-04-01 11:00+09') AS whole \gset
SELECT response AS whole_pay FROM toss_billing.payments WHERE id = :whole \gset
SELECT c.cancel_id AS w1, c.cancel_amount FROM toss_billing._cancel_intent('order-rf-whole', '전액 환불', NULL, 'rf_clerk') c \gset
SELECT toss_billing._cancel_outcome(:w1, 'done', 200, NULL, NULL, NULL,
                                    pg_temp.with_cancel(:'whole_pay', NULL, '전액 환불', 'txrd_rf_w1', '2025-04-01 11:05+09'));
SELECT p.toss_status, p.balance_amount, c.state, c.canceled_amount
  FROM toss_billing.payments p JOIN toss_billing.cancels c ON c.payment_id = p.id WHERE p.id = :whole;

-- a cancel made outside toss_cancel (e.g. in Toss's console) is recorded
-- from the Payment, without an idempotency key or a requester
SELECT pg_temp.charged('rf-one', 'order-rf-console', 8000, '2025-04-01 12:00+09') AS console \gset
SELECT toss_billing._apply_payment_state(
    pg_temp.with_cancel(response, 2000, '고객 요청 (콘솔)', 'txrd_rf_console', '2025-04-01 12:30+09'))
  FROM toss_billing.payments WHERE id = :console;
SELECT state, idempotency_key, requested_by, requested_amount, reason, canceled_amount, transaction_key
  FROM toss_billing.cancels WHERE payment_id = :console;
SELECT toss_status, balance_amount FROM toss_billing.payments WHERE id = :console;
-- the same Payment again records nothing more
SELECT toss_billing._apply_payment_state(response) FROM toss_billing.payments WHERE id = :console;
SELECT count(*) AS cancels FROM toss_billing.cancels WHERE payment_id = :console;

-- a cancel left in flight by a crash becomes unknown and keeps its amount
SELECT c.cancel_id AS stuck FROM toss_billing._cancel_intent('order-rf-console', '중단된 환불', 1000, 'rf_clerk') c \gset
UPDATE toss_billing.cancels SET created_at = pg_postmaster_start_time() - interval '1 minute' WHERE id = :stuck;
SELECT c.cancel_id AS expired FROM toss_billing._cancel_intent('order-rf-console', '시간 초과 환불', 500, 'rf_clerk') c \gset
UPDATE toss_billing.cancels SET deadline = now() - interval '1 second' WHERE id = :expired;
SELECT toss_billing._mark_stale() AS marked;
SELECT id = :stuck AS stuck, state, failure_class, failure_message FROM toss_billing.cancels
 WHERE id IN (:stuck, :expired) ORDER BY id;
SELECT toss_billing._cancel_outcome(:expired, 'failed', 400, 'invalid_request', 'INVALID_REQUEST', '잘못된 요청입니다.',
                                    NULL);
SELECT toss_billing._cancel_intent('order-rf-console', '나머지', 5001, 'rf_clerk');

-- bad outcome calls
SELECT toss_billing._cancel_outcome(:stuck, 'canceled', 200, NULL, NULL, NULL, NULL);
SELECT toss_billing._cancel_outcome(:stuck, NULL, 200, NULL, NULL, NULL, NULL);
SELECT toss_billing._cancel_outcome(-1, 'done', 200, NULL, NULL, NULL, NULL);
-- only a cancel made through toss_cancel may be anything but done
\set VERBOSITY terse
INSERT INTO toss_billing.cancels (payment_id, reason, state) VALUES (:console, '외부', 'in_flight');
\set VERBOSITY default

SELECT toss_billing._cancel_outcome(:stuck, 'failed', 403, 'card_declined', 'NOT_CANCELABLE_AMOUNT', NULL, NULL);
SELECT pg_temp.outcome(:unknown_attempt, 'failed', 400, 'transient', 'PROVIDER_ERROR', NULL);
-- the unverified answer opened a discrepancy for a person to resolve
SELECT kind, order_id, ledger_state, detail->>'why' AS why FROM toss_billing.open_discrepancies
 WHERE order_id LIKE 'order-rf-%' ORDER BY id;
SELECT count(toss_billing.resolve_discrepancy(id, 'test')) AS resolved FROM toss_billing.open_discrepancies
 WHERE order_id LIKE 'order-rf-%';
SELECT pg_temp.cleanup('rf-');
