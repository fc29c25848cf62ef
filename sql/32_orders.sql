-- Orders and attempts through toss_charge, against the emulator's hostile
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- answers (issue 11): one Toss orderId per obligation, retried under the
-- same orderId; no answer counts until it is verified against the request;
-- after the request left, the caller sees the verified outcome or TB006.
-- Each block failed on 0.4.0.
\set SHOW_CONTEXT never
\set VERBOSITY default
SET client_min_messages = warning;
CREATE FUNCTION pg_temp.new_customer(customer_key text, card text DEFAULT '9410001234567890') RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM toss_billing.create_customer(NULL, NULL, customer_key);
    RETURN customer_key;
END;
$$;
SELECT pg_temp.new_customer('ord-a');
\set ak `$TB_TEST/emu authkey ord-a`
SELECT status FROM toss_billing.toss_issue_billing_key('ord-a', :'ak');

-- The orders of this file: state, generation, hold and their attempts.
CREATE FUNCTION pg_temp.orders(prefix text)
RETURNS TABLE (order_id text, state text, generation integer, held boolean, attempts text)
LANGUAGE sql AS $$
    SELECT p.order_id, p.state, p.generation, p.hold_reason IS NOT NULL,
           (SELECT string_agg(a.attempt_number || ':' || a.state || COALESCE(':' || a.failure_code, ''), ' '
                              ORDER BY a.attempt_number)
              FROM toss_billing.attempts a WHERE a.payment_id = p.id)
      FROM toss_billing.payments p WHERE p.order_id LIKE prefix || '%' ORDER BY p.id;
$$;
-- What the emulator charged under an order id: count and amounts.
CREATE FUNCTION pg_temp.charged(order_id text)
RETURNS TABLE (charges integer, amount bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_ledger jsonb;
BEGIN
    -- the ledger is fetched by the caller (\gset) and passed in a temp table
    SELECT l INTO v_ledger FROM pg_temp.emu_ledger;
    charges := COALESCE((v_ledger->'doneByOrderId'->>order_id)::integer, 0);
    amount := COALESCE((v_ledger->'amountByOrderId'->>order_id)::bigint, 0);
    RETURN NEXT;
END;
$$;
CREATE TEMP TABLE emu_ledger (l jsonb);

-- 1. A ghost: Toss makes the charge but answers PROVIDER_ERROR.  The caller
-- is told it failed (transient); calling again with the same order id posts
-- the SAME order id under a new Idempotency-Key, Toss refuses it as already
-- paid, and the lookup finds the first charge: paid once, not twice.
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-ghost-1"},"fault":{"ghost":true,"code":"PROVIDER_ERROR"},"times":1}'`
SELECT toss_billing.toss_charge('ord-a', 4900, '고스트', 'ord-ghost-1');
\echo :LAST_ERROR_SQLSTATE
SELECT status, total_amount FROM toss_billing.toss_charge('ord-a', 4900, '고스트', 'ord-ghost-1');
SELECT * FROM pg_temp.orders('ord-ghost-');
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
TRUNCATE emu_ledger; INSERT INTO emu_ledger VALUES (:'ledger');
SELECT * FROM pg_temp.charged('ord-ghost-1');
SELECT count(DISTINCT a.idempotency_key) AS idempotency_keys
  FROM toss_billing.attempts a WHERE a.order_id = 'ord-ghost-1';

-- 2. Answers that do not answer this order are never paid: the attempt and
-- the order become unknown and held, an unverified_answer discrepancy and an
-- alert are recorded, and the caller gets TB006 with the order id.  (The
-- emulator really charged each of them: the money is found by the lookups.)
\set VERBOSITY terse
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-lie-amount"},"fault":{"mismatch":"totalAmount"},"times":1}'`
SELECT toss_billing.toss_charge('ord-a', 4900, '거짓', 'ord-lie-amount');
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-lie-order"},"fault":{"mismatch":"orderId"},"times":1}'`
SELECT toss_billing.toss_charge('ord-a', 4900, '거짓', 'ord-lie-order');
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-lie-negative"},"fault":{"mismatch":"negativeAmount"},"times":1}'`
SELECT toss_billing.toss_charge('ord-a', 4900, '거짓', 'ord-lie-negative');
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-lie-minimal"},"fault":{"mismatch":"minimal"},"times":1}'`
SELECT toss_billing.toss_charge('ord-a', 4900, '거짓', 'ord-lie-minimal');
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-lie-mid"},"fault":{"mismatch":"mId"},"times":1}'`
SELECT toss_billing.toss_charge('ord-a', 4900, '거짓', 'ord-lie-mid');
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-lie-currency"},"fault":{"mismatch":"currency"},"times":1}'`
SELECT toss_billing.toss_charge('ord-a', 4900, '거짓', 'ord-lie-currency');
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-lie-type"},"fault":{"mismatch":"type"},"times":1}'`
SELECT toss_billing.toss_charge('ord-a', 4900, '거짓', 'ord-lie-type');
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-lie-noamount"},"fault":{"mismatch":"without:totalAmount"},"times":1}'`
SELECT toss_billing.toss_charge('ord-a', 4900, '거짓', 'ord-lie-noamount');
\echo :LAST_ERROR_SQLSTATE
-- the answer is lost and the lookup by order id returns ANOTHER order's
-- DONE payment of the same amount: not ours, never paid
SELECT status FROM toss_billing.toss_charge('ord-a', 4900, '거짓', 'ord-lie-decoy');
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-lie-other"},"fault":{"lostResponse":true},"times":1}'`
\set ignore `$TB_TEST/emu fault '{"match":{"method":"GET","orderId":"ord-lie-other"},"fault":{"mismatch":"otherOrder"},"times":1}'`
SELECT toss_billing.toss_charge('ord-a', 4900, '거짓', 'ord-lie-other');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT order_id, state, held, attempts FROM pg_temp.orders('ord-lie-');
SELECT p.order_id, p.hold_reason FROM toss_billing.payments p WHERE p.order_id LIKE 'ord-lie-%' AND p.hold_reason IS NOT NULL
 ORDER BY p.id;
SELECT order_id, kind, ledger_state FROM toss_billing.open_discrepancies WHERE order_id LIKE 'ord-lie-%' ORDER BY id;
SELECT e.detail->>'order_id' AS order_id, e.type, e.reason
  FROM toss_billing.events e JOIN toss_billing.payments p ON p.id = e.payment_id
 WHERE p.order_id LIKE 'ord-lie-%' ORDER BY e.id;
-- a held order is not posted again by a repeated call: the call looks the
-- order up (honest now) and settles it as the charge Toss really made
SELECT status, total_amount FROM toss_billing.toss_charge('ord-a', 4900, '거짓', 'ord-lie-amount');
SELECT order_id, state, held, attempts FROM pg_temp.orders('ord-lie-amount');
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
TRUNCATE emu_ledger; INSERT INTO emu_ledger VALUES (:'ledger');
SELECT * FROM pg_temp.charged('ord-lie-amount');
-- the discrepancy stays open for a person: Toss's systems told a lie
SELECT kind, ledger_state FROM toss_billing.open_discrepancies WHERE order_id = 'ord-lie-amount';

-- 3. After the request left, any error is TB006 with the order id: answers
-- whose fields have the wrong JSON type
\set VERBOSITY terse
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-type-amount"},"fault":{"mismatch":"totalAmountString"},"times":1}'`
SELECT toss_billing.toss_charge('ord-a', 4900, '타입', 'ord-type-amount');
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-type-null"},"fault":{"mismatch":"totalAmountNull"},"times":1}'`
SELECT toss_billing.toss_charge('ord-a', 4900, '타입', 'ord-type-null');
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-type-time"},"fault":{"mismatch":"approvedAtNumber"},"times":1}'`
SELECT toss_billing.toss_charge('ord-a', 4900, '타입', 'ord-type-time');
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-type-status"},"fault":{"mismatch":"statusNumber"},"times":1}'`
SELECT toss_billing.toss_charge('ord-a', 4900, '타입', 'ord-type-status');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT order_id, state, attempts FROM pg_temp.orders('ord-type-');
-- the caller's own isolation level does not matter: the call runs in a
-- worker of its own, and serializable callers get the verified payment
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT status FROM toss_billing.toss_charge('ord-a', 4900, '직렬', 'ord-serializable');
COMMIT;

-- 4. A cancelled payment is an approval that was refunded: an answer whose
-- status is CANCELED (here the lookup after a lost answer) pays the order;
-- it is not left unknown forever
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","orderId":"ord-canceled"},"fault":{"lostResponse":true},"times":1}'`
\set ignore `$TB_TEST/emu fault '{"match":{"method":"GET","orderId":"ord-canceled"},"fault":{"mismatch":"statusCanceled"},"times":1}'`
SELECT status FROM toss_billing.toss_charge('ord-a', 4900, '취소됨', 'ord-canceled');
SELECT order_id, state, attempts FROM pg_temp.orders('ord-canceled');
SELECT toss_status FROM toss_billing.payments WHERE order_id = 'ord-canceled';

-- 5. One order per obligation: the same call while the order is in flight
-- is refused with TB006 (not known yet), never posted a second time
SELECT id AS busy_payment FROM toss_billing.payments WHERE order_id = 'ord-ghost-1' \gset
UPDATE toss_billing.payments SET state = 'in_flight' WHERE id = :busy_payment;
SELECT toss_billing.toss_charge('ord-a', 4900, '고스트', 'ord-ghost-1');
\echo :LAST_ERROR_SQLSTATE
UPDATE toss_billing.payments SET state = 'done' WHERE id = :busy_payment;

-- 6. Every outcome write is guarded by the attempt's state: a late outcome
-- for an attempt that is already settled changes nothing
SELECT a.id AS settled_attempt FROM toss_billing.attempts a
 WHERE a.order_id = 'ord-serializable' AND a.state = 'done' \gset
SELECT toss_billing._record_outcomes(ARRAY[:settled_attempt]::bigint[], '{failed}', '{400}', '{transient}',
                                     '{PROVIDER_ERROR}', '{late}', '{NULL}', '{NULL}', '{NULL}', '{false}');
SELECT order_id, state, attempts FROM pg_temp.orders('ord-serializable');

\set ignore `$TB_TEST/emu clear-faults`
-- nothing of this file is left for the runner: the same calls again look
-- each unknown order up (Toss answers honestly now) and settle it as the
-- charge Toss really made, once; the discrepancies are resolved by a person
SELECT p.order_id, c.status, c.total_amount
  FROM toss_billing.payments p,
       LATERAL toss_billing.toss_charge('ord-a', p.amount, p.order_name, p.order_id) c
 WHERE p.order_id LIKE 'ord-%' AND p.state = 'unknown' ORDER BY p.id;
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
TRUNCATE emu_ledger; INSERT INTO emu_ledger VALUES (:'ledger');
SELECT p.order_id, p.state, (pg_temp.charged(p.order_id)).*
  FROM toss_billing.payments p WHERE p.order_id LIKE 'ord-%' ORDER BY p.id;
SELECT count(toss_billing.resolve_discrepancy(d.id, 'test: the emulator lied on purpose')) AS resolved
  FROM toss_billing.open_discrepancies d WHERE d.order_id LIKE 'ord-%';
