-- Who may do what with subscriptions: operators manage them through the
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- functions and read everything; auditors read; the runner's functions,
-- the clocks and the dunning policy stay with the extension owner; PUBLIC
-- gets nothing.
\set SHOW_CONTEXT never
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
CREATE ROLE tb_sub_nobody;
CREATE ROLE tb_sub_clerk IN ROLE toss_billing_operator;
CREATE ROLE tb_sub_audit IN ROLE toss_billing_auditor;
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'pv-customer');

-- PUBLIC: no function, table or sequence of the schema
SELECT count(*) AS public_functions FROM pg_proc
 WHERE pronamespace = 'toss_billing'::regnamespace AND has_function_privilege('public', oid, 'EXECUTE');
SELECT count(*) AS public_relations FROM pg_class
 WHERE relnamespace = 'toss_billing'::regnamespace
   AND (has_table_privilege('public', oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')
        OR (relkind = 'S' AND has_sequence_privilege('public', oid, 'USAGE,SELECT,UPDATE')));

-- every function runs with search_path = pg_catalog, pg_temp, but the
-- runner (a procedure that commits: its C code pins it per statement)
SELECT proname FROM pg_proc
 WHERE pronamespace = 'toss_billing'::regnamespace
   AND (proconfig IS NULL OR NOT 'search_path=pg_catalog, pg_temp' = ANY (proconfig));

-- what each role may execute; SECURITY DEFINER only for the operator's
-- entry points, which write the tables operators can only read
SELECT p.proname, p.prosecdef AS definer,
       has_function_privilege('tb_sub_clerk', p.oid, 'EXECUTE') AS operator,
       has_function_privilege('tb_sub_audit', p.oid, 'EXECUTE') AS auditor
  FROM pg_proc p
 WHERE p.pronamespace = 'toss_billing'::regnamespace
   AND p.proname = ANY (ARRAY['now', 'freeze_clock', 'advance_clock', 'unfreeze_clock', 'create_test_clock',
                              'advance_test_clock', 'subscription_now', 'period_start', 'create_plan', 'archive_plan',
                              'create_subscription', 'change_plan', 'cancel_subscription', 'pause_subscription',
                              'resume_subscription', 'card_replaced', 'retry_subscription', 'set_dunning_policy',
                              '_claim_due', '_order_periods', '_claim_invoices', '_order_invoices', '_order_each', '_record_outcomes', '_apply_transitions', '_settle_paid',
                              '_settle_failed', '_settle_unknown', '_retry_now', '_event', '_lock_subscription',
                              '_period_at', '_valid_time_zone', '_notify_events', '_dunning_policy_replace',
                              '_park_outcome', '_order_tag', 'run_due', 'schedule', 'unschedule'])
 ORDER BY 1;
SELECT c.relname,
       has_table_privilege('tb_sub_clerk', c.oid, 'SELECT') AS operator_reads,
       has_table_privilege('tb_sub_clerk', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE') AS operator_writes,
       has_table_privilege('tb_sub_audit', c.oid, 'SELECT') AS auditor_reads,
       has_table_privilege('tb_sub_audit', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE') AS auditor_writes
  FROM pg_class c
 WHERE c.relnamespace = 'toss_billing'::regnamespace
   AND c.relname IN ('plans', 'subscriptions', 'events', 'dunning_policy', 'clock', 'test_clocks')
 ORDER BY 1;

-- an ordinary role: nothing
SET ROLE tb_sub_nobody;
SELECT toss_billing.create_subscription('pv-customer', 1);
SELECT count(*) FROM toss_billing.subscriptions;
SELECT toss_billing.now();
RESET ROLE;

-- an operator manages subscriptions through the functions
SET ROLE tb_sub_clerk;
SELECT id AS plan FROM toss_billing.create_plan('권한 요금제', 5900) \gset
SELECT id AS sub, status FROM toss_billing.create_subscription('pv-customer', :plan) \gset
SELECT :'status' AS status;
SELECT pending_plan_period FROM toss_billing.change_plan(:sub, (toss_billing.create_plan('권한 요금제 플러스', 7900)).id);
SELECT status FROM toss_billing.pause_subscription(:sub);
SELECT status FROM toss_billing.resume_subscription(:sub);
SELECT toss_billing.card_replaced('pv-customer');
SELECT cancel_at_period_end FROM toss_billing.cancel_subscription(:sub);
SELECT toss_billing.now() = toss_billing.subscription_now(:sub) AS same_clock,
       toss_billing.period_start('2024-01-31', 'Asia/Seoul', 'month', 1, 1) AS next_month;
SELECT type, to_status FROM toss_billing.events WHERE subscription_id = :sub ORDER BY id;
SELECT retry_offsets FROM toss_billing.dunning_policy;
-- ... and cannot go around them, run the runner's half, or move the clocks
UPDATE toss_billing.subscriptions SET next_charge_at = now() WHERE id = :sub;
INSERT INTO toss_billing.events (occurred_at, type) VALUES (now(), 'alert');
DELETE FROM toss_billing.plans;
SELECT toss_billing._claim_due(10);
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing._record_outcomes('{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing._park_outcome(1, 'x');
SELECT toss_billing._apply_transitions();
SELECT toss_billing.freeze_clock(now());
SELECT toss_billing.create_test_clock(now());
SELECT toss_billing.set_dunning_policy(final_status => 'canceled');
RESET ROLE;

-- an auditor reads
SET ROLE tb_sub_audit;
SELECT status, cancel_at_period_end FROM toss_billing.subscriptions WHERE id = :sub;
SELECT count(*) > 0 AS reads_events FROM toss_billing.events WHERE subscription_id = :sub;
SELECT name FROM toss_billing.plans WHERE id = :plan;
SELECT toss_billing.create_subscription('pv-customer', :plan);
SELECT toss_billing.cancel_subscription(:sub, false);
RESET ROLE;

SELECT status FROM toss_billing.cancel_subscription(:sub, false);

-- pg_cron is optional: without it the runner is not scheduled, and says why
SELECT toss_billing.unschedule();
SELECT toss_billing.schedule();
\echo :LAST_ERROR_SQLSTATE
DROP ROLE tb_sub_nobody, tb_sub_clerk, tb_sub_audit;
