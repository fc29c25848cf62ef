-- 0.1.0 -> 0.2.0: ALTER EXTENSION UPDATE on a database that already has a
-- ledger gives the same objects as a fresh install, and keeps the ledger.
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

\c :regress_db
DROP DATABASE tb_upgrade;
