-- Toss's errors map to one SQLSTATE per class; the ledger records each failure.
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
\set SHOW_CONTEXT never
\getenv tbtest TB_TEST
CREATE FUNCTION pg_temp.new_customer(customer text) RETURNS text
LANGUAGE sql AS $$
    SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, customer)
$$;

-- card declined (TB001)
SELECT pg_temp.new_customer('cust-reject');
\set ak `$TB_TEST/emu authkey cust-reject 4111111111110001`
SELECT status FROM toss_billing.toss_issue_billing_key('cust-reject', :'ak');
SELECT toss_billing.toss_charge('cust-reject', 4900, '구독', 'order-reject-1');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.new_customer('cust-fds');
\set ak `$TB_TEST/emu authkey cust-fds 4111111111110007`
SELECT status FROM toss_billing.toss_issue_billing_key('cust-fds', :'ak');
SELECT toss_billing.toss_charge('cust-fds', 4900, '구독', 'order-fds-1');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.new_customer('cust-unknown-type');
\set ak `$TB_TEST/emu authkey cust-unknown-type 4330121234567890`
SELECT status, card_type FROM toss_billing.toss_issue_billing_key('cust-unknown-type', :'ak');
SELECT toss_billing.toss_charge('cust-unknown-type', 4900, '구독', 'order-cardtype-1');
\echo :LAST_ERROR_SQLSTATE

-- transient (TB003): a card-company hiccup, then success on a later attempt
SELECT pg_temp.new_customer('cust-flaky');
\set ak `$TB_TEST/emu authkey cust-flaky 4111111111119001`
SELECT status FROM toss_billing.toss_issue_billing_key('cust-flaky', :'ak');
SELECT toss_billing.toss_charge('cust-flaky', 4900, '구독', 'order-flaky-1');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.toss_charge('cust-flaky', 4900, '구독', 'order-flaky-2');
SELECT status FROM toss_billing.toss_charge('cust-flaky', 4900, '구독', 'order-flaky-3');

-- transient 5xx: the order is looked up, found absent, and recorded as failed
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"order-5xx-1"},"fault":{"code":"FAILED_INTERNAL_SYSTEM_PROCESSING"}}'`
SELECT toss_billing.toss_charge('cust-flaky', 4900, '구독', 'order-5xx-1');
\echo :LAST_ERROR_SQLSTATE

-- invalid request (TB005)
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"order-invalid-1"},"fault":{"code":"INVALID_REQUEST","message":"잘못된 요청입니다."}}'`
SELECT toss_billing.toss_charge('cust-flaky', 4900, '구독', 'order-invalid-1');
\echo :LAST_ERROR_SQLSTATE

-- not found (TB004): an auth key Toss never issued
SELECT pg_temp.new_customer('cust-errors');
SELECT toss_billing.toss_issue_billing_key('cust-errors', 'no-such-auth-key');
\echo :LAST_ERROR_SQLSTATE

-- configuration (TB002): a client key where a secret key belongs, and a garbled key
\set ak `$TB_TEST/emu authkey cust-errors 9410001234567890 '' test_sk_regressClient0000003`
SELECT toss_billing.toss_issue_billing_key('cust-errors', :'ak', 'clientkey');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.toss_issue_billing_key('cust-errors', :'ak', 'garbled');
\echo :LAST_ERROR_SQLSTATE
SELECT status, failure_code FROM toss_billing.billing_key_info
 WHERE customer_key = 'cust-errors' ORDER BY id;

-- outcome unknown (TB006): the connection breaks and Toss has no record yet
\set VERBOSITY terse
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"order-reset-1"},"fault":{"reset":true}}'`
SELECT toss_billing.toss_charge('cust-flaky', 4900, '구독', 'order-reset-1');
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"order-garbage-1"},"fault":{"malformedJson":true}}'`
SELECT toss_billing.toss_charge('cust-flaky', 4900, '구독', 'order-garbage-1');
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"order-html-1"},"fault":{"html502":true}}'`
SELECT toss_billing.toss_charge('cust-flaky', 4900, '구독', 'order-html-1');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- the charge went through but the answer was lost: the lookup by order id finds it
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"order-lost-1"},"fault":{"lostResponse":true}}'`
SELECT status, total_amount FROM toss_billing.toss_charge('cust-flaky', 4900, '구독', 'order-lost-1');
\set done `$TB_TEST/emu done-count order-lost-1`
SELECT :done AS emulator_done_charges;

-- Toss says the order id is taken by a different payment (made, say, by
-- another system under our order id, then lost from this ledger)
SELECT status FROM toss_billing.toss_charge('cust-flaky', 1000, '다른 결제', 'order-taken-1');
DELETE FROM toss_billing.attempts WHERE order_id = 'order-taken-1';
DELETE FROM toss_billing.payments WHERE order_id = 'order-taken-1';
-- Toss refuses the order id and its lookup shows a payment that is not
-- this order's (another amount): it never counts, the order is held
SELECT toss_billing.toss_charge('cust-flaky', 4900, '구독', 'order-taken-1');
\echo :LAST_ERROR_SQLSTATE
SELECT state, hold_reason FROM toss_billing.payments WHERE order_id = 'order-taken-1';
SELECT kind, ledger_state FROM toss_billing.open_discrepancies WHERE order_id = 'order-taken-1';

\set ignore `$TB_TEST/emu clear-faults`

-- what order_status says of an unknown order, and of a failed one
SELECT toss_order_id, obligation, state, paid, attempts, failure_class, hold_reason IS NULL AS not_held, advice
  FROM toss_billing.order_status('order-reset-1');
SELECT toss_order_id, state, paid, attempts, failure_class, failure_code, advice
  FROM toss_billing.order_status('order-flaky-1');
SELECT toss_billing.order_status('order-never-made');
\echo :LAST_ERROR_SQLSTATE

-- the same call again settles an unknown order by looking it up (Toss has
-- no record of it, so the very same request is posted again) and retries a
-- failed one under its own order id: one order, two attempts, one charge
SELECT status, order_id FROM toss_billing.toss_charge('cust-flaky', 4900, '구독', 'order-reset-1');
SELECT status, order_id FROM toss_billing.toss_charge('cust-flaky', 4900, '구독', 'order-flaky-1');
SELECT p.order_id, p.state, p.generation, count(a.*) AS attempts,
       string_agg(a.state, ',' ORDER BY a.attempt_number) AS attempt_states,
       count(DISTINCT a.idempotency_key) AS idempotency_keys
  FROM toss_billing.payments p JOIN toss_billing.attempts a ON a.payment_id = p.id
 WHERE p.order_id IN ('order-reset-1', 'order-flaky-1')
 GROUP BY p.id ORDER BY p.id;
\set done `$TB_TEST/emu done-count order-reset-1`
SELECT :done AS charges_at_toss_reset;
\set done `$TB_TEST/emu done-count order-flaky-1`
SELECT :done AS charges_at_toss_flaky;

-- every attempt is in the ledger with its class and Toss code
SELECT order_id, state, toss_status, failure_class, failure_code,
       failure_message IS NOT NULL AS has_message
  FROM toss_billing.payments
 WHERE order_id ~ '^order-(reject|fds|cardtype|flaky|5xx|invalid|reset|garbage|html|lost|taken)'
 ORDER BY id;
