-- Refunds end to end: toss_billing.toss_cancel() against the emulator's real
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- cancel API.  A partial cancel by payment key and the rest by order id
-- (PARTIAL_CANCELED with a balance of 0: fully refunded), a single full
-- cancel (CANCELED), over-refunds and cancels of failed payments refused
-- before anything is recorded or sent, a connection reset and a lost
-- response on the cancel settled by the idempotent replay (one cancel at
-- Toss), a cancel without any answer recorded unknown and holding its
-- amount, a cancel Toss refuses, a cancel made outside toss_billing brought
-- in by the next answer, an answer that does not match the payment taken
-- for nothing (the cancel stays unknown until Toss's Payment, fetched again
-- for its webhook, settles it), every cancel carrying its payment's
-- customer, and the Idempotency-Key of every cancel persisted and sent.  In
-- a database of its own.
\set SHOW_CONTEXT never
\getenv tbtest TB_TEST
\getenv emu_url EMULATOR_URL
CREATE DATABASE toss_live_refunds;
\c toss_live_refunds
SET TimeZone = 'Asia/Seoul';
CREATE EXTENSION toss_billing;

-- the newest /v1 requests the emulator received
CREATE FUNCTION pg_temp.requests(log jsonb)
RETURNS TABLE (n bigint, method text, path text, idempotency_key text, body jsonb, status integer,
               outcome text, replayed boolean)
LANGUAGE sql AS $$
    SELECT r.n, r.value->>'method', r.value->>'path', r.value->>'idempotencyKey', r.value->'body',
           (r.value->>'status')::integer, r.value->>'outcome', (r.value->>'replayed')::boolean
      FROM jsonb_array_elements(log) WITH ORDINALITY AS r(value, n);
$$;
-- what the emulator holds for an order: its status, balance and cancels
CREATE FUNCTION pg_temp.at_toss(payments jsonb, ledger jsonb, order_id text)
RETURNS TABLE (status text, total_amount bigint, balance_amount bigint, cancels integer, canceled_amount bigint,
               charged integer)
LANGUAGE sql AS $$
    SELECT p->>'status', (p->>'totalAmount')::bigint, (p->>'balanceAmount')::bigint, (p->>'cancels')::integer,
           COALESCE((ledger->'canceledAmountByOrderId'->>order_id)::bigint, 0),
           COALESCE((ledger->'doneByOrderId'->>order_id)::integer, 0)
      FROM jsonb_array_elements(payments) p
     WHERE p->>'orderId' = order_id AND p->>'mId' = (SELECT mid FROM toss_billing.billing_keys LIMIT 1);
$$;

SELECT customer_key FROM toss_billing.create_customer('환불고객', NULL, 'lr-one');
\set ak `$TB_TEST/emu authkey lr-one 9410001234567890`
SELECT status FROM toss_billing.toss_issue_billing_key('lr-one', :'ak');
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'lr-declined');
\set ak `$TB_TEST/emu authkey lr-declined 4111111111110002`
SELECT status FROM toss_billing.toss_issue_billing_key('lr-declined', :'ak');

SELECT status, total_amount, balance_amount FROM toss_billing.toss_charge('lr-one', 10000, '환불 테스트', 'lr90-partial');
SELECT payment_key AS partial_key FROM toss_billing.payments WHERE order_id = 'lr90-partial' \gset

-- a partial cancel, by payment key
SELECT status, total_amount, balance_amount, supplied_amount, vat, is_partial_cancelable,
       jsonb_array_length(cancels) AS cancels, (cancels->0->>'cancelAmount')::bigint AS cancel_amount,
       cancels->0->>'cancelReason' AS cancel_reason,
       last_transaction_key = cancels->0->>'transactionKey' AS last_transaction_is_the_cancel
  FROM toss_billing.toss_cancel(:'partial_key', '부분 환불', 3000);
-- the Idempotency-Key recorded before the call is the one Toss received
\set req `$TB_TEST/emu last-request`
SELECT (:'req'::jsonb)->>'method' AS method,
       (:'req'::jsonb)->>'path' = format('/v1/payments/%s/cancel', :'partial_key') AS cancel_path,
       (:'req'::jsonb)->'body' AS body,
       (:'req'::jsonb)->>'idempotencyKey' = c.idempotency_key AS idempotency_key_persisted_and_sent
  FROM toss_billing.cancels c ORDER BY c.id DESC LIMIT 1;
SELECT c.state, c.requested_amount, c.canceled_amount, c.reason, c.requested_by = current_user AS requested_by_me,
       c.http_status, c.transaction_key = p.response->>'lastTransactionKey' AS transaction_key,
       c.canceled_at IS NOT NULL AS has_canceled_at, c.failure_class, c.customer_id = p.customer_id AS customer
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
 WHERE p.order_id = 'lr90-partial' ORDER BY c.id;
SELECT state, toss_status, total_amount, balance_amount, supplied_amount, vat
  FROM toss_billing.payments WHERE order_id = 'lr90-partial';

-- the rest, by order id: Toss keeps PARTIAL_CANCELED with a balance of 0
SELECT status, total_amount, balance_amount, supplied_amount, vat, jsonb_array_length(cancels) AS cancels,
       (cancels->1->>'cancelAmount')::bigint AS cancel_amount
  FROM toss_billing.toss_cancel('lr90-partial', '나머지 환불', NULL);
\set req `$TB_TEST/emu last-request`
SELECT (:'req'::jsonb)->>'path' = format('/v1/payments/%s/cancel', :'partial_key') AS cancel_path,
       (:'req'::jsonb)->'body' AS body_without_cancel_amount,
       (:'req'::jsonb)->>'idempotencyKey' = c.idempotency_key AS idempotency_key_persisted_and_sent
  FROM toss_billing.cancels c ORDER BY c.id DESC LIMIT 1;
SELECT c.state, c.requested_amount, c.canceled_amount, c.reason, c.http_status
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
 WHERE p.order_id = 'lr90-partial' ORDER BY c.id;
SELECT count(DISTINCT c.idempotency_key) AS idempotency_keys, count(DISTINCT c.transaction_key) AS transaction_keys,
       sum(c.canceled_amount) AS refunded
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
 WHERE p.order_id = 'lr90-partial';
SELECT state, toss_status, total_amount, balance_amount, supplied_amount, vat,
       response->>'status' AS response_status, jsonb_array_length(response->'cancels') AS response_cancels
  FROM toss_billing.payments WHERE order_id = 'lr90-partial';
\set payments `curl -sf $EMULATOR_URL/__emulator/payments`
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
SELECT * FROM pg_temp.at_toss(:'payments', :'ledger', 'lr90-partial');

-- fully refunded: refused before anything is recorded or sent
\set before `$TB_TEST/emu last-request`
SELECT count(*) AS cancels_before FROM toss_billing.cancels \gset
SELECT toss_billing.toss_cancel('lr90-partial', '한 번 더', NULL);
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY sqlstate
SELECT toss_billing.toss_cancel(:'partial_key', '한 번 더', 100);
\set VERBOSITY default
\set after `$TB_TEST/emu last-request`
SELECT count(*) = :cancels_before AS nothing_recorded, :'before'::jsonb = :'after'::jsonb AS nothing_sent
  FROM toss_billing.cancels;

-- a single full cancel: CANCELED
SELECT status, total_amount FROM toss_billing.toss_charge('lr-one', 5000, '환불 테스트', 'lr90-full');
SELECT status, total_amount, balance_amount, supplied_amount, vat, jsonb_array_length(cancels) AS cancels,
       (cancels->0->>'cancelAmount')::bigint AS cancel_amount
  FROM toss_billing.toss_cancel('lr90-full', '전액 환불');
\set req `$TB_TEST/emu last-request`
SELECT (:'req'::jsonb)->'body' AS body, (:'req'::jsonb)->>'idempotencyKey' = c.idempotency_key AS idempotency_key_persisted_and_sent
  FROM toss_billing.cancels c ORDER BY c.id DESC LIMIT 1;
SELECT p.state, p.toss_status, p.balance_amount, c.state AS cancel_state, c.requested_amount, c.canceled_amount
  FROM toss_billing.payments p JOIN toss_billing.cancels c ON c.payment_id = p.id WHERE p.order_id = 'lr90-full';
\set payments `curl -sf $EMULATOR_URL/__emulator/payments`
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
SELECT * FROM pg_temp.at_toss(:'payments', :'ledger', 'lr90-full');
SELECT toss_billing.toss_cancel('lr90-full', '한 번 더');

-- over-refunds are refused before anything is recorded or sent
SELECT status, total_amount FROM toss_billing.toss_charge('lr-one', 4000, '환불 테스트', 'lr90-over');
SELECT payment_key AS over_key FROM toss_billing.payments WHERE order_id = 'lr90-over' \gset
\set before `$TB_TEST/emu last-request`
SELECT count(*) AS cancels_before FROM toss_billing.cancels \gset
SELECT toss_billing.toss_cancel('lr90-over', '과다 환불', 4001);
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.toss_cancel(:'over_key', '과다 환불', 9223372036854775807);
-- and bad amounts and reasons before a worker even starts
SELECT toss_billing.toss_cancel('lr90-over', '과다 환불', 0);
SELECT toss_billing.toss_cancel('lr90-over', '', NULL);
SELECT toss_billing.toss_cancel('lr90-over', NULL, NULL);
SELECT toss_billing.toss_cancel('lr90-over', repeat('환', 201), NULL);
\set after `$TB_TEST/emu last-request`
SELECT count(*) = :cancels_before AS nothing_recorded, :'before'::jsonb = :'after'::jsonb AS nothing_sent
  FROM toss_billing.cancels;
-- after a partial cancel (by an operator) only the balance is left
CREATE ROLE lr90_clerk;
GRANT toss_billing_operator TO lr90_clerk;
SET ROLE lr90_clerk;
SELECT balance_amount FROM toss_billing.toss_cancel('lr90-over', '부분 환불', 1000);
RESET ROLE;
SELECT requested_by, state, canceled_amount FROM toss_billing.cancels ORDER BY id DESC LIMIT 1;
SELECT count(*) AS cancels_before FROM toss_billing.cancels \gset
SELECT toss_billing.toss_cancel('lr90-over', '과다 환불', 3001);
SELECT count(*) = :cancels_before AS nothing_recorded FROM toss_billing.cancels;
\set log `curl -sf "$EMULATOR_URL/__emulator/requests?limit=50"`
SELECT count(*) AS cancels_sent_for_the_payment, sum((body->>'cancelAmount')::bigint) AS amounts_sent
  FROM pg_temp.requests(:'log') WHERE path = format('/v1/payments/%s/cancel', :'over_key');
\set payments `curl -sf $EMULATOR_URL/__emulator/payments`
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
SELECT * FROM pg_temp.at_toss(:'payments', :'ledger', 'lr90-over');

-- a failed payment charged nothing: there is nothing to cancel
SELECT toss_billing.toss_charge('lr-declined', 3000, '환불 테스트', 'lr90-declined');
SELECT state, failure_class, failure_code FROM toss_billing.payments WHERE order_id = 'lr90-declined';
\set before `$TB_TEST/emu last-request`
SELECT toss_billing.toss_cancel('lr90-declined', '실패한 결제', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.toss_cancel('lr90-nowhere', '없는 결제', NULL);
\echo :LAST_ERROR_SQLSTATE
\set after `$TB_TEST/emu last-request`
SELECT count(*) = 0 AS nothing_recorded, :'before'::jsonb = :'after'::jsonb AS nothing_sent
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
 WHERE p.order_id IN ('lr90-declined', 'lr90-nowhere');

-- the connection is reset on the cancel: the worker replays it with the
-- same Idempotency-Key, and Toss cancels exactly once
SELECT status, total_amount FROM toss_billing.toss_charge('lr-one', 6000, '환불 테스트', 'lr90-fault');
SELECT payment_key AS fault_key FROM toss_billing.payments WHERE order_id = 'lr90-fault' \gset
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
SELECT (:'ledger'::jsonb)->'totalCancelAmount' AS canceled_before \gset
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","pathPrefix":"/v1/payments/"},"fault":{"reset":true},"times":1}'`
SELECT status, balance_amount, jsonb_array_length(cancels) AS cancels
  FROM toss_billing.toss_cancel(:'fault_key', '연결 끊김', 2000);
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
SELECT ((:'ledger'::jsonb)->>'totalCancelAmount')::bigint - :canceled_before AS canceled_at_toss;
SELECT c.id AS reset_cancel FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
 WHERE p.order_id = 'lr90-fault' \gset
SELECT state, requested_amount, canceled_amount, http_status, transaction_key IS NOT NULL AS has_transaction_key,
       failure_class
  FROM toss_billing.cancels WHERE id = :reset_cancel;
\set log `curl -sf "$EMULATOR_URL/__emulator/requests?limit=2"`
SELECT 3 - r.n AS attempt, r.method, r.path = format('/v1/payments/%s/cancel', :'fault_key') AS cancel_path,
       r.idempotency_key = c.idempotency_key AS persisted_key, r.body->'cancelAmount' AS cancel_amount,
       r.status, r.outcome, r.replayed
  FROM pg_temp.requests(:'log') r, toss_billing.cancels c WHERE c.id = :reset_cancel ORDER BY attempt;
-- a lost response (Toss cancels, the answer never arrives): the replay
-- gets the first answer, so the refund is still made once
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","pathPrefix":"/v1/payments/"},"fault":{"lostResponse":true},"times":1}'`
SELECT status, balance_amount, jsonb_array_length(cancels) AS cancels
  FROM toss_billing.toss_cancel('lr90-fault', '응답 유실', 1000);
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
SELECT ((:'ledger'::jsonb)->>'totalCancelAmount')::bigint - :canceled_before AS canceled_at_toss;
\set log `curl -sf "$EMULATOR_URL/__emulator/requests?limit=2"`
SELECT 3 - r.n AS attempt, r.method, r.path = format('/v1/payments/%s/cancel', :'fault_key') AS cancel_path,
       r.idempotency_key = c.idempotency_key AS persisted_key, r.body->'cancelAmount' AS cancel_amount,
       r.status, r.outcome, r.replayed
  FROM pg_temp.requests(:'log') r,
       (SELECT c.idempotency_key FROM toss_billing.cancels c ORDER BY c.id DESC LIMIT 1) c
 ORDER BY attempt;
\set ignore `$TB_TEST/emu clear-faults`
SELECT c.state, c.requested_amount, c.canceled_amount, c.reason, c.failure_class
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
 WHERE p.order_id = 'lr90-fault' ORDER BY c.id;
SELECT toss_status, total_amount, balance_amount FROM toss_billing.payments WHERE order_id = 'lr90-fault';
-- exactly two cancels of 2,000 and 1,000 KRW at Toss
\set payments `curl -sf $EMULATOR_URL/__emulator/payments`
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
SELECT * FROM pg_temp.at_toss(:'payments', :'ledger', 'lr90-fault');

-- the call and its replay are both reset: Toss cancelled nothing, but
-- toss_billing cannot tell; the cancel is recorded unknown and holds its
-- 1,000 KRW, so at most 3,000 KRW are left to refund
SELECT status, total_amount FROM toss_billing.toss_charge('lr-one', 4000, '환불 테스트', 'lr90-unknown');
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","pathPrefix":"/v1/payments/"},"fault":{"reset":true},"times":2}'`
\set VERBOSITY terse
SELECT toss_billing.toss_cancel('lr90-unknown', '응답 없음', 1000);
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu clear-faults`
SELECT c.state, c.requested_amount, c.canceled_amount, c.http_status, c.failure_class,
       c.failure_message LIKE 'connection failure after % ms: %' AS failure_message
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
 WHERE p.order_id = 'lr90-unknown';
SELECT toss_billing.toss_cancel('lr90-unknown', '나머지 환불', 3001);
\set log `curl -sf "$EMULATOR_URL/__emulator/requests?limit=2"`
SELECT 3 - r.n AS attempt, r.method, r.idempotency_key = c.idempotency_key AS persisted_key, r.status, r.outcome
  FROM pg_temp.requests(:'log') r,
       (SELECT c.idempotency_key FROM toss_billing.cancels c ORDER BY c.id DESC LIMIT 1) c
 ORDER BY attempt;
\set payments `curl -sf $EMULATOR_URL/__emulator/payments`
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
SELECT * FROM pg_temp.at_toss(:'payments', :'ledger', 'lr90-unknown');

-- the runner settles the unknown cancel: it replays it with its own
-- Idempotency-Key (Toss never received it, so it is made now, exactly once)
CALL toss_billing.run_due() \gset
SELECT c.state, c.requested_amount, c.canceled_amount, c.resolve_attempts
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
 WHERE p.order_id = 'lr90-unknown' ORDER BY c.id;
SELECT toss_status, balance_amount FROM toss_billing.payments WHERE order_id = 'lr90-unknown';
\set payments `curl -sf $EMULATOR_URL/__emulator/payments`
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
SELECT * FROM pg_temp.at_toss(:'payments', :'ledger', 'lr90-unknown');
-- and the 3,000 KRW left can be refunded now
SELECT status, balance_amount FROM toss_billing.toss_cancel('lr90-unknown', '나머지 환불', 3000);

-- the ledger's balance is stale (a cancel made outside toss_billing, here
-- straight through Toss's API): Toss refuses a cancel of more than it has
-- left; the refused cancel is recorded failed and holds nothing; the full
-- cancel that follows cancels what Toss has left, and its answer brings in
-- the outside cancel too
SELECT status, total_amount FROM toss_billing.toss_charge('lr-one', 2000, '환불 테스트', 'lr90-outside');
SELECT format('%s/v1/payments/%s/cancel', :'emu_url', payment_key) AS outside_url,
       'Authorization: Basic ' || encode(convert_to('test_sk_regress0000000000000001:', 'UTF8'), 'base64') AS auth,
       '{"cancelReason": "콘솔 환불", "cancelAmount": 1500}' AS outside_body
  FROM toss_billing.payments WHERE order_id = 'lr90-outside' \gset
\set outside `curl -sf -X POST -H :'auth' -H 'Content-Type: application/json' --data :'outside_body' :'outside_url'`
SELECT (:'outside'::jsonb)->>'status' AS status, (:'outside'::jsonb)->'balanceAmount' AS balance_at_toss;
SELECT toss_status, balance_amount FROM toss_billing.payments WHERE order_id = 'lr90-outside';
SELECT status FROM toss_billing.toss_cancel('lr90-outside', '부분 환불', 1000);
\echo :LAST_ERROR_SQLSTATE
SELECT c.state, c.requested_amount, c.canceled_amount, c.http_status, c.failure_class, c.failure_code,
       c.transaction_key
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
 WHERE p.order_id = 'lr90-outside' ORDER BY c.id;
SELECT status, balance_amount, jsonb_array_length(cancels) AS cancels, (cancels->1->>'cancelAmount')::bigint AS cancel_amount
  FROM toss_billing.toss_cancel('lr90-outside', '나머지 환불');
SELECT c.state, c.idempotency_key IS NOT NULL AS toss_cancel, c.requested_by IS NOT NULL AS has_requester,
       c.requested_amount, c.canceled_amount, c.reason, c.failure_code
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
 WHERE p.order_id = 'lr90-outside' ORDER BY c.id;
SELECT state, toss_status, balance_amount FROM toss_billing.payments WHERE order_id = 'lr90-outside';

-- Toss makes the cancel, but its answer names another merchant (mId), and
-- the idempotent replay gets the same answer: an answer that does not match
-- the payment settles nothing; the cancel is recorded unknown (TB006),
-- keeps the raw answer but no Payment, and holds its 1,000 KRW, while the
-- payment row keeps what it had
SELECT status, total_amount FROM toss_billing.toss_charge('lr-one', 5000, '환불 테스트', 'lr90-mismatch');
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","pathPrefix":"/v1/payments/"},"fault":{"mismatch":"mId"},"times":1}'`
SELECT toss_billing.toss_cancel('lr90-mismatch', '응답 불일치', 1000);
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu clear-faults`
\set log `curl -sf "$EMULATOR_URL/__emulator/requests?limit=2"`
SELECT 3 - r.n AS attempt, r.method, r.idempotency_key = c.idempotency_key AS persisted_key, r.status, r.outcome,
       r.replayed
  FROM pg_temp.requests(:'log') r,
       (SELECT c.idempotency_key FROM toss_billing.cancels c ORDER BY c.id DESC LIMIT 1) c
 ORDER BY attempt;
SELECT c.state, c.requested_amount, c.canceled_amount, c.http_status, c.failure_class, c.failure_message,
       c.response IS NULL AS no_payment, (convert_from(c.raw_response, 'UTF8')::jsonb)->>'mId' AS answered_mid,
       c.customer_id = p.customer_id AS customer
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
 WHERE p.order_id = 'lr90-mismatch';
SELECT toss_status, balance_amount FROM toss_billing.payments WHERE order_id = 'lr90-mismatch';
\set payments `curl -sf $EMULATOR_URL/__emulator/payments`
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
SELECT * FROM pg_temp.at_toss(:'payments', :'ledger', 'lr90-mismatch');
SELECT toss_billing.toss_cancel('lr90-mismatch', '나머지 환불', 4001);
-- Toss's webhook of the cancel: the Payment fetched again matches, and the
-- unknown cancel takes its entry
\set hooks `curl -sf "$EMULATOR_URL/__emulator/webhooks?eventType=PAYMENT_STATUS_CHANGED"`
SELECT w->'payload' AS hook_payload, jsonb_build_object('tosspayments-webhook-transmission-id', w->>'transmissionId') AS hook_headers
  FROM jsonb_array_elements(:'hooks') w
 WHERE w->'payload'->'data'->>'orderId' = 'lr90-mismatch' \gset
SELECT outcome FROM toss_billing.ingest_webhook(:'hook_payload', :'hook_headers');
SELECT c.state, c.requested_amount, c.canceled_amount, c.transaction_key = p.response->>'lastTransactionKey' AS transaction_key,
       c.response->>'mId' = bk.mid AS payment_of_the_merchant, c.failure_class
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
  JOIN toss_billing.billing_keys bk ON bk.id = p.billing_key_id
 WHERE p.order_id = 'lr90-mismatch';
SELECT toss_status, balance_amount FROM toss_billing.payments WHERE order_id = 'lr90-mismatch';

-- every cancel of this database was sent with the Idempotency-Key it recorded
\set log `curl -sf "$EMULATOR_URL/__emulator/requests?limit=100"`
SELECT count(*) AS cancels, count(*) FILTER (WHERE c.idempotency_key IS NULL) AS made_outside,
       count(*) FILTER (WHERE c.idempotency_key IS NOT NULL) AS by_toss_cancel,
       count(*) FILTER (WHERE EXISTS (SELECT FROM pg_temp.requests(:'log') r
                                       WHERE r.idempotency_key = c.idempotency_key
                                         AND r.path = format('/v1/payments/%s/cancel', p.payment_key)
                                         AND r.method = 'POST')) AS sent_under_their_key,
       count(DISTINCT c.idempotency_key) AS distinct_keys,
       count(*) FILTER (WHERE c.customer_id = p.customer_id) AS with_the_customer
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id;
SELECT state, count(*) FROM toss_billing.cancels GROUP BY state ORDER BY state;
-- and the ledger agrees with Toss on every payment
\set payments `curl -sf $EMULATOR_URL/__emulator/payments`
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
SELECT p.order_id, p.state, p.toss_status, p.balance_amount, t.status AS toss_status_at_toss,
       t.balance_amount AS balance_at_toss, COALESCE(sum(c.canceled_amount), 0) AS refunded,
       t.canceled_amount AS refunded_at_toss, t.charged AS charged_at_toss
  FROM toss_billing.payments p
  LEFT JOIN toss_billing.cancels c ON c.payment_id = p.id
  LEFT JOIN LATERAL pg_temp.at_toss(:'payments', :'ledger', p.order_id) t ON true
 GROUP BY p.id, t.status, t.balance_amount, t.canceled_amount, t.charged
 ORDER BY p.id;

-- a replayed cancel whose outcome cannot be written (here a constraint
-- that refuses it) fails alone: the run goes on and charges what is due;
-- the cancel stays unknown with the error, holding its amount, and is
-- replayed once the cause is gone (made once at Toss)
SELECT status FROM toss_billing.toss_charge('lr-one', 3000, '환불 테스트', 'lr90-trap');
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","pathPrefix":"/v1/payments/"},"fault":{"reset":true},"times":2}'`
\set VERBOSITY terse
SELECT toss_billing.toss_cancel('lr90-trap', '기록 불가', 1000);
\set VERBOSITY default
\set ignore `$TB_TEST/emu clear-faults`
SELECT c.id AS trap_cancel FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
 WHERE p.order_id = 'lr90-trap' \gset
ALTER TABLE toss_billing.cancels ADD CONSTRAINT lr90_trap CHECK (state <> 'done' OR id <> :trap_cancel) NOT VALID;
SELECT id AS trap_plan FROM toss_billing.create_plan('환불 중 구독', 9900) \gset
SELECT status FROM toss_billing.create_subscription('lr-one', :trap_plan);
CALL toss_billing.run_due() \gset
SELECT :claimed AS claimed, :done AS done;
SELECT p.state, p.amount FROM toss_billing.payments p
  JOIN toss_billing.subscriptions s ON s.id = p.subscription_id WHERE s.plan_id = :trap_plan;
SELECT state, requested_amount, failure_class, failure_message FROM toss_billing.cancels WHERE id = :trap_cancel;
SELECT toss_status, balance_amount FROM toss_billing.payments WHERE order_id = 'lr90-trap';
ALTER TABLE toss_billing.cancels DROP CONSTRAINT lr90_trap;
-- (its back-off skipped)
UPDATE toss_billing.cancels SET next_resolve_at = NULL WHERE id = :trap_cancel;
CALL toss_billing.run_due() \gset
SELECT state, requested_amount, canceled_amount, failure_message FROM toss_billing.cancels WHERE id = :trap_cancel;
SELECT toss_status, balance_amount FROM toss_billing.payments WHERE order_id = 'lr90-trap';
\set payments `curl -sf $EMULATOR_URL/__emulator/payments`
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
SELECT * FROM pg_temp.at_toss(:'payments', :'ledger', 'lr90-trap');
SELECT (toss_billing.cancel_subscription(s.id, false)).status FROM toss_billing.subscriptions s
 WHERE s.plan_id = :trap_plan;

\c toss_regress
DROP DATABASE toss_live_refunds;
DROP ROLE lr90_clerk;
