-- A charge made at Toss survives the caller's ROLLBACK: the worker commits
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- the ledger row on its own.
\set SHOW_CONTEXT never
\getenv tbtest TB_TEST
SELECT customer_key FROM toss_billing.create_customer('롤백', NULL, 'cust-rollback');

BEGIN;
\set ak `$TB_TEST/emu authkey cust-rollback`
SELECT status FROM toss_billing.toss_issue_billing_key('cust-rollback', :'ak');
ROLLBACK;
-- the billing key Toss returned is kept (it can never be fetched again)
SELECT status FROM toss_billing.billing_key_info WHERE customer_key = 'cust-rollback';

BEGIN;
SELECT status, total_amount FROM toss_billing.toss_charge('cust-rollback', 4900, '구독', 'order-rollback-1');
ROLLBACK;
SELECT order_id, state, toss_status, total_amount FROM toss_billing.payments WHERE order_id = 'order-rollback-1';
\set done `$TB_TEST/emu done-count order-rollback-1`
SELECT :done AS emulator_done_charges;

-- the same inside a failing transaction, and in a savepoint that is rolled back
BEGIN;
SAVEPOINT s;
SELECT status FROM toss_billing.toss_charge('cust-rollback', 4900, '구독', 'order-rollback-2');
ROLLBACK TO SAVEPOINT s;
SELECT 1 / 0;
ROLLBACK;
SELECT order_id, state FROM toss_billing.payments WHERE order_id = 'order-rollback-2';

-- a statement_timeout during the call: the caller gives up, the worker records the outcome
\set ignore `$TB_TEST/emu fault '{"match":{"orderId":"order-timeout-1"},"fault":{"latencyMs":1500}}'`
SET statement_timeout = '300ms';
SELECT status FROM toss_billing.toss_charge('cust-rollback', 4900, '구독', 'order-timeout-1');
\echo :LAST_ERROR_SQLSTATE
RESET statement_timeout;
SELECT state IN ('in_flight', 'done') AS attempt_recorded FROM toss_billing.payments WHERE order_id = 'order-timeout-1';
SELECT pg_sleep(2.5);
SELECT order_id, state, toss_status FROM toss_billing.payments WHERE order_id = 'order-timeout-1';
