-- 0.1.0 -> 0.2.0: ALTER EXTENSION UPDATE on a database that already has a
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- ledger gives the same objects as a fresh install, and keeps the ledger;
-- and on to 0.5.0, where that ledger becomes orders and attempts.
\set SHOW_CONTEXT never
\set regress_db :DBNAME
CREATE DATABASE tb_upgrade;
\c tb_upgrade
SET client_min_messages = warning;
SET IntervalStyle = 'postgres';
CREATE EXTENSION toss_billing VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'toss_billing';
SELECT id AS customer FROM toss_billing.create_customer('업그레이드', NULL, 'up-customer') \gset
INSERT INTO toss_billing.billing_keys (customer_id, status, encrypted_key, idempotency_key)
VALUES (:customer, 'active', '\x00', 'up-key') RETURNING id AS key \gset
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, toss_status, total_amount)
VALUES ('order-before-upgrade', 'idem-before-upgrade', :customer, :key, 'default', 'done', '업그레이드 전 결제', 4900,
        current_user, 'DONE', 4900);

ALTER EXTENSION toss_billing UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'toss_billing';

-- the old ledger row is untouched and belongs to no subscription
SELECT order_id, state, total_amount, subscription_id, period_number, attempt_number
  FROM toss_billing.payments;

-- the new objects belong to the extension, and its data is dumped
SELECT c.relname, c.relkind
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid AND d.classid = 'pg_class'::regclass
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'toss_billing') AND d.deptype = 'e'
   AND c.relname IN ('plans', 'subscriptions', 'events', 'dunning_policy', 'clock', 'test_clocks',
                     'plans_id_seq', 'subscriptions_id_seq', 'events_id_seq', 'test_clocks_id_seq')
 ORDER BY 1;
SELECT c.relname
  FROM pg_extension e, unnest(e.extconfig) AS cfg(oid)
  JOIN pg_class c ON c.oid = cfg.oid
 WHERE e.extname = 'toss_billing'
 ORDER BY 1;
SELECT retry_offsets, transient_retry, final_status FROM toss_billing.dunning_policy;

-- and they work on the upgraded database
SELECT toss_billing.freeze_clock('2024-01-01 00:00+09') IS NOT NULL AS frozen;
SELECT id AS plan FROM toss_billing.create_plan('업그레이드 요금제', 4900) \gset
SELECT status, period_number FROM toss_billing.create_subscription('up-customer', :plan, '2024-01-01 00:00+09');
SELECT regexp_replace(order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS attempt, amount FROM toss_billing._claim_due(10);

-- on to 0.5.0 with the 0.2.0 claim in flight: the 0.1.0 payment and the
-- claimed period are orders (their obligations: the caller's order id, the
-- subscription period; generation 1) with one attempt each, which holds the
-- Idempotency-Key the payment had
CREATE TEMP TABLE before AS SELECT id, order_id, idempotency_key, state, updated_at FROM toss_billing.payments;
ALTER EXTENSION toss_billing UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'toss_billing';
SELECT regexp_replace(p.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS order_id,
       regexp_replace(p.obligation, ':[0-9]+:', ':#:') AS obligation, p.generation, p.state, p.total_amount,
       a.attempt_number, a.state AS attempt_state, a.order_id = b.order_id AS same_order_id,
       a.idempotency_key = b.idempotency_key AS same_idempotency_key,
       a.deadline - b.updated_at AS deadline_after_update
  FROM toss_billing.payments p
  JOIN toss_billing.attempts a ON a.payment_id = p.id
  JOIN before b ON b.id = p.id
 ORDER BY p.id;
SELECT count(*) AS attempts FROM toss_billing.attempts;
-- and 0.5.0 works on it: the old payment is paid by its order id, and the
-- attempt in flight is completed and pays the period
SELECT toss_order_id, obligation, state, paid, attempts FROM toss_billing.order_status('order-before-upgrade');
SELECT a.id AS flight, p.order_id AS flight_order FROM toss_billing.attempts a
  JOIN toss_billing.payments p ON p.id = a.payment_id WHERE a.state = 'in_flight' \gset
SELECT toss_billing._record_outcomes(ARRAY[:flight]::bigint[], '{done}', '{200}', '{NULL}', '{NULL}', '{NULL}', '{NULL}',
                                     ARRAY[jsonb_build_object('orderId', :'flight_order', 'status', 'DONE', 'type', 'BILLING', 'currency', 'KRW', 'mId', 'tvivarepublica',
                                                              'paymentKey', 'tbill_up_flight', 'totalAmount', 4900,
                                                              'balanceAmount', 4900,
                                                              'approvedAt', '2024-01-01T00:00:01+09:00')],
                                     '{NULL}', '{false}');
SELECT a.state, p.state AS order_state, s.status, s.period_number
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
  JOIN toss_billing.subscriptions s ON s.id = p.subscription_id
 WHERE a.id = :flight;

\c :regress_db
DROP DATABASE tb_upgrade;
