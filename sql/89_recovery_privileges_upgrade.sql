-- Who may do what with 0.3.0's objects, and the 0.2.0 -> 0.3.0 upgrade, on
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- to 0.5.0.  Operators refund, delete keys, take webhooks in, reconcile and
-- resolve discrepancies through their entry points; auditors read; the SQL
-- halves and the C functions that call Toss for them stay with the extension
-- owner, and so do the replay tokens (Idempotency-Keys) recovery uses.
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
                              '_sync_cancels', '_record_payment_state', '_refund_events', '_backend_start',
                              '_retry_now', '_claim_unknown_cancels'])
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
-- nor is an attempt's Idempotency-Key (a replay token), while the rest of
-- the attempt (what recovery did with it) is readable
SELECT a.attname,
       has_column_privilege('tb_rec_clerk', 'toss_billing.attempts', a.attname, 'SELECT') AS operator_reads,
       has_column_privilege('tb_rec_audit', 'toss_billing.attempts', a.attname, 'SELECT') AS auditor_reads
  FROM pg_attribute a
 WHERE a.attrelid = 'toss_billing.attempts'::regclass
   AND a.attname IN ('idempotency_key', 'state', 'resolve_attempts', 'next_resolve_at', 'caller_pid')
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
SELECT toss_billing._mark_stale();
SELECT toss_billing._claim_unknown(10);
SELECT idempotency_key FROM toss_billing.attempts LIMIT 1;
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

-- on to 0.5.0 (through 0.4.0), with that left in flight and unknown: every
-- payment becomes an order with one attempt that keeps its Idempotency-Key,
-- its lookups and its back-off; the refund in flight gets its customer and
-- a deadline
CREATE TEMP TABLE before AS
SELECT id, order_id, idempotency_key, attempt_number, resolve_attempts, next_resolve_at, caller_pid, updated_at
  FROM toss_billing.payments;
ALTER EXTENSION toss_billing UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'toss_billing';
SELECT regexp_replace(p.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS order_id,
       regexp_replace(p.obligation, ':[0-9]+:', ':#:') AS obligation, p.generation, p.state,
       a.attempt_number, a.state AS attempt_state, a.idempotency_key = b.idempotency_key AS same_idempotency_key,
       a.resolve_attempts, a.next_resolve_at IS NOT DISTINCT FROM b.next_resolve_at AS same_next_resolve_at,
       a.caller_pid IS NOT DISTINCT FROM b.caller_pid AS same_caller,
       a.deadline - b.updated_at AS deadline_after_update
  FROM toss_billing.payments p
  JOIN toss_billing.attempts a ON a.payment_id = p.id
  JOIN before b ON b.id = p.id
 ORDER BY p.id;
SELECT c.state, c.customer_id = :customer AS customer_filled, c.deadline - c.updated_at AS deadline_after_update
  FROM toss_billing.cancels c;

-- and 0.5.0's recovery works on them: the subscription's attempt and the
-- refund were interrupted (the server restarted since) and become unknown
UPDATE toss_billing.attempts SET created_at = pg_postmaster_start_time() - interval '1 minute' WHERE state = 'in_flight';
UPDATE toss_billing.cancels SET created_at = pg_postmaster_start_time() - interval '1 minute' WHERE state = 'in_flight';
SELECT toss_billing._mark_stale() AS marked;
SELECT regexp_replace(p.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS order_id, p.state, a.state AS attempt_state,
       a.failure_message
  FROM toss_billing.payments p JOIN toss_billing.attempts a ON a.payment_id = p.id ORDER BY p.id;
SELECT e.type, e.reason, e.customer_id = :customer AS customer_filled
  FROM toss_billing.events e WHERE e.type = 'payment_unknown';
-- the lookups: the newly unknown attempt is due, with its own Idempotency-Key
-- (the period is owed, so it may be posted again); the one looked up under
-- 0.3.0 keeps its back-off
SELECT regexp_replace(u.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS order_id, u.customer_key,
       u.idempotency_key = b.idempotency_key AS same_idempotency_key, u.amount, u.may_repost
  FROM toss_billing._claim_unknown(10) u JOIN before b ON b.id = u.payment_id;
SELECT order_id, payment_key, idempotency_key IS NOT NULL AS has_key, cancel_amount, reason, total_amount
  FROM toss_billing._claim_unknown_cancels(10);

\c :regress_db
DROP DATABASE tb_upgrade3;
