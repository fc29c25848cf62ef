-- Refunds: _cancel_intent checks a cancel and records it in flight before
-- anything is sent (refusing over-refunds, counting cancels in flight or
-- unknown against the balance, one cancel after the other); _cancel_outcome
-- records what Toss answered, keeps the payment's balance, and treats a
-- balance of 0 as fully refunded whether Toss says CANCELED or
-- PARTIAL_CANCELED.  Toss's answers are built as the emulator gives them.
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

SELECT toss_billing.freeze_clock('2025-04-01 10:00+09');
SELECT pg_temp.customer('rf-one');
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
-- only a done payment can be canceled
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, failure_class, failure_code)
SELECT 'order-rf-declined', gen_random_uuid()::text, customer_id, billing_key_id, merchant, 'failed', '단건 결제', 1000,
       current_user, 'card_declined', 'REJECT_CARD_PAYMENT'
  FROM toss_billing.payments WHERE id = :plain;
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, failure_class)
SELECT 'order-rf-unknown', gen_random_uuid()::text, customer_id, billing_key_id, merchant, 'unknown', '단건 결제', 1000,
       current_user, 'outcome_unknown'
  FROM toss_billing.payments WHERE id = :plain;
SELECT toss_billing._cancel_intent('order-rf-declined', '환불', NULL, 'rf_clerk');
SELECT toss_billing._cancel_intent('order-rf-unknown', '환불', NULL, 'rf_clerk');
SELECT count(*) = :cancels_before AS nothing_recorded FROM toss_billing.cancels;

-- a partial cancel, by order id: recorded in flight with a fresh
-- Idempotency-Key; the worker sends cancelAmount 3000 to the payment key
SELECT c.cancel_id AS c1, c.payment_key = :'plain_key' AS payment_key,
       c.idempotency_key ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS uuid_key,
       c.merchant, c.cancel_amount
  FROM toss_billing._cancel_intent('order-rf-plain', '부분 환불', 3000, 'rf_clerk') c \gset
SELECT :'payment_key' AS payment_key, :'uuid_key' AS uuid_key, :'merchant' AS merchant, :'cancel_amount' AS cancel_amount;
SELECT state, requested_amount, reason, requested_by, idempotency_key IS NOT NULL AS has_key,
       caller_pid = pg_backend_pid() AS caller_recorded, transaction_key, canceled_amount
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

-- Toss answers the first: the cancel takes its entry of the Payment's
-- cancels[], the payment row takes the Payment
SELECT pg_temp.with_cancel(:'pay', 3000, '부분 환불', 'txrd_rf_c1', '2025-04-01 10:05+09') AS pay \gset
SELECT toss_billing._cancel_outcome(:c1, 'done', 200, NULL, NULL, NULL, :'pay');
SELECT state, transaction_key, canceled_amount, canceled_at, http_status, response->>'status' AS response_status
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
  FROM toss_billing.events e WHERE e.type = 'payment_refunded' ORDER BY e.id;

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
SELECT toss_billing._mark_stale('5 minutes') AS marked;
SELECT state, failure_class, failure_message FROM toss_billing.cancels WHERE id = :stuck;
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
SELECT toss_billing._record_outcomes(ARRAY[id], '{failed}', '{400}', '{transient}', '{PROVIDER_ERROR}', '{NULL}', '{NULL}')
  FROM toss_billing.payments WHERE order_id = 'order-rf-unknown';
SELECT pg_temp.cleanup('rf-');
