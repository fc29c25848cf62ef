-- Who may do what with 0.3.0's objects, and the 0.2.0 -> 0.3.0 upgrade.
-- Operators refund, delete keys, take webhooks in, reconcile and resolve
-- discrepancies through their entry points; auditors read; the SQL halves
-- and the C functions that call Toss for them stay with the extension owner.
\set SHOW_CONTEXT never
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
CREATE ROLE tb_rec_clerk IN ROLE toss_billing_operator;
CREATE ROLE tb_rec_audit IN ROLE toss_billing_auditor;

-- what each role may execute; SECURITY DEFINER only where an operator acts
-- through objects only the owner may write
SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS arguments, l.lanname AS language,
       p.prosecdef AS definer,
       has_function_privilege('tb_rec_clerk', p.oid, 'EXECUTE') AS operator,
       has_function_privilege('tb_rec_audit', p.oid, 'EXECUTE') AS auditor,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'toss_billing'::regnamespace
   AND p.proname = ANY (ARRAY['toss_cancel', 'toss_delete_billing_key', 'ingest_webhook', 'reconcile',
                              'resolve_discrepancy', '_mark_stale', '_claim_unknown', '_cancel_intent',
                              '_cancel_outcome', '_delete_intent', '_billing_key_deleted', '_apply_payment_state',
                              '_fetch_payment', '_billing_key_hash', '_backfill_key_hashes', '_toss_transactions',
                              '_reconcile_items', '_recover_payment', '_transaction_items', '_open_discrepancy',
                              '_sync_cancels', '_store_payment_state', '_refund_events', '_backend_start',
                              '_retry_now'])
 ORDER BY 1;
SELECT c.relname,
       has_table_privilege('tb_rec_clerk', c.oid, 'SELECT') AS operator_reads,
       has_table_privilege('tb_rec_clerk', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE') AS operator_writes,
       has_table_privilege('tb_rec_audit', c.oid, 'SELECT') AS auditor_reads,
       has_table_privilege('tb_rec_audit', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE') AS auditor_writes
  FROM pg_class c
 WHERE c.relnamespace = 'toss_billing'::regnamespace
   AND c.relname IN ('cancels', 'webhook_events', 'discrepancies', 'open_discrepancies')
 ORDER BY 1;
-- the key hash is no one's business but the owner's
SELECT a.attname,
       has_column_privilege('tb_rec_clerk', 'toss_billing.billing_keys', a.attname, 'SELECT') AS operator_reads,
       has_column_privilege('tb_rec_audit', 'toss_billing.billing_keys', a.attname, 'SELECT') AS auditor_reads
  FROM pg_attribute a
 WHERE a.attrelid = 'toss_billing.billing_keys'::regclass AND a.attname IN ('key_hash', 'deleted_at', 'deleted_reason')
 ORDER BY 1;

-- an operator takes a webhook in, reconciles, resolves ...
SET ROLE tb_rec_clerk;
SELECT event_type, outcome FROM toss_billing.ingest_webhook(
    '{"eventType": "METHOD_UPDATED", "createdAt": "2025-08-01T10:00:00.000000", "data": {"customerKey": "pv-rec"}}',
    '{"tosspayments-webhook-transmission-id": "pv-rec-tid-1"}');
SELECT count(*) AS webhook_events FROM toss_billing.webhook_events WHERE dedupe_key = 'pv-rec-tid-1';
SELECT * FROM toss_billing.reconcile('2025-08-02', '2025-08-01');
SELECT count(*) >= 0 AS reads_discrepancies FROM toss_billing.open_discrepancies;
SELECT count(*) >= 0 AS reads_cancels FROM toss_billing.cancels;
-- ... and cannot go around the entry points
SELECT toss_billing._cancel_intent('order-x', 'x', NULL, 'x');
SELECT toss_billing._mark_stale('1 hour');
SELECT toss_billing._billing_key_deleted(1, 'x');
SELECT toss_billing._apply_payment_state('{}');
SELECT toss_billing._fetch_payment('x');
SELECT key_hash FROM toss_billing.billing_keys LIMIT 1;
UPDATE toss_billing.webhook_events SET outcome = 'forged';
INSERT INTO toss_billing.discrepancies (kind, order_id) VALUES ('missing_at_toss', 'order-forged');
RESET ROLE;

-- an auditor reads
SET ROLE tb_rec_audit;
SELECT count(*) AS webhook_events FROM toss_billing.webhook_events WHERE dedupe_key = 'pv-rec-tid-1';
SELECT toss_billing.ingest_webhook('{}');
SELECT toss_billing.resolve_discrepancy(1);
RESET ROLE;
DROP ROLE tb_rec_clerk, tb_rec_audit;

-- 0.2.0 -> 0.3.0 on a database with a ledger, a subscription and an
-- attempt that was in flight during the upgrade
\set regress_db :DBNAME
CREATE DATABASE tb_upgrade3;
\c tb_upgrade3
SET client_min_messages = warning;
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
CREATE EXTENSION toss_billing VERSION '0.2.0';
SELECT id AS customer FROM toss_billing.create_customer('업그레이드', NULL, 'up3-customer') \gset
INSERT INTO toss_billing.billing_keys (customer_id, status, encrypted_key, idempotency_key)
VALUES (:customer, 'active', '\x00', 'up3-key') RETURNING id AS key \gset
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, toss_status, payment_key, total_amount,
                                   balance_amount)
VALUES ('order-up3-done', 'idem-up3-done', :customer, :key, 'default', 'done', '업그레이드 전 결제', 4900,
        current_user, 'DONE', 'tbill_up3_done', 4900, 4900),
       ('order-up3-flight', 'idem-up3-flight', :customer, :key, 'default', 'in_flight', '업그레이드 중 결제', 4900,
        current_user, NULL, NULL, NULL, NULL);
SELECT toss_billing.freeze_clock('2025-08-01 10:00+09') IS NOT NULL AS frozen;
SELECT id AS plan FROM toss_billing.create_plan('업그레이드 요금제', 4900) \gset
SELECT status FROM toss_billing.create_subscription('up3-customer', :plan);

ALTER EXTENSION toss_billing UPDATE TO '0.3.0';
SELECT extversion FROM pg_extension WHERE extname = 'toss_billing';

-- the ledger is kept; rows from before the upgrade name no caller
SELECT order_id, state, resolve_attempts, next_resolve_at, recovered, caller_pid, caller_started_at
  FROM toss_billing.payments ORDER BY id;
SELECT status, key_hash, deleted_at, deleted_reason FROM toss_billing.billing_keys;
-- the new objects belong to the extension, and their data is dumped
SELECT c.relname, c.relkind
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid AND d.classid = 'pg_class'::regclass
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'toss_billing') AND d.deptype = 'e'
   AND c.relname IN ('cancels', 'cancels_id_seq', 'webhook_events', 'webhook_events_id_seq', 'discrepancies',
                     'discrepancies_id_seq', 'open_discrepancies')
 ORDER BY 1;
SELECT c.relname
  FROM pg_extension e, unnest(e.extconfig) AS cfg(oid)
  JOIN pg_class c ON c.oid = cfg.oid
 WHERE e.extname = 'toss_billing'
 ORDER BY 1;

-- and they work on the upgraded database: the interrupted attempt is found
-- (the server restarted since), the old payment can be refunded
UPDATE toss_billing.payments SET created_at = pg_postmaster_start_time() - interval '1 minute'
 WHERE order_id = 'order-up3-flight';
SELECT toss_billing._mark_stale('5 minutes') AS marked;
SELECT order_id, state FROM toss_billing.payments ORDER BY id;
SELECT order_id, customer_key FROM toss_billing._claim_unknown(10);
SELECT payment_key, cancel_amount FROM toss_billing._cancel_intent('order-up3-done', '업그레이드 후 환불', 900, 'up3');
SELECT regexp_replace(order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS attempt, amount FROM toss_billing._claim_due(10);

\c :regress_db
DROP DATABASE tb_upgrade3;
