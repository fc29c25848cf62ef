-- Who may do what with invoices, usage, coupons and consents (issue 14):
-- operators call the entry points and read everything, and may COPY into
-- the usage inbox; auditors read, preview and list the price increases;
-- the invoice policy and the runner's half stay with the extension owner.
\set SHOW_CONTEXT never
\set VERBOSITY terse
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
CREATE ROLE tb_inv_clerk IN ROLE toss_billing_operator;
CREATE ROLE tb_inv_audit IN ROLE toss_billing_auditor;
CREATE ROLE tb_inv_nobody;

SELECT p.proname, p.prosecdef AS definer,
       has_function_privilege('tb_inv_clerk', p.oid, 'EXECUTE') AS operator,
       has_function_privilege('tb_inv_audit', p.oid, 'EXECUTE') AS auditor,
       has_function_privilege('tb_inv_nobody', p.oid, 'EXECUTE') AS nobody
  FROM pg_proc p
 WHERE p.pronamespace = 'toss_billing'::regnamespace
   AND p.proname = ANY (ARRAY['add_plan_meter', 'create_coupon', 'apply_coupon', 'remove_coupon', 'preview_invoice',
                              'add_invoice_item', 'delete_invoice_item', 'charge_invoice_now', 'set_quantity',
                              'change_price', 'change_plan', 'record_usage', 'record_usage_batch', 'ingest_usage',
                              'record_consent', 'set_invoice_policy', '_finalize_due', '_finalize_period_invoice',
                              '_finalize_invoice', '_compose', '_write_invoice', '_settle_invoices', '_close_invoices',
                              '_review_consent', '_consent_for', '_consent_notices', '_send_due_consent_notices', '_change_now', '_usage_lines',
                              '_meter_price', '_coupon_discount', '_won', '_max_price', '_max_invoice_amount', '_invoice_amount',
                              '_usage_quantity', '_recurring', '_invoice_due_now',
                              '_charge_invoice_now_intent'])
 ORDER BY 1;
SELECT c.relname,
       has_table_privilege('tb_inv_clerk', c.oid, 'SELECT') AS operator_reads,
       has_table_privilege('tb_inv_clerk', c.oid, 'INSERT') AS operator_inserts,
       has_table_privilege('tb_inv_clerk', c.oid, 'UPDATE,TRUNCATE') AS operator_changes,
       has_table_privilege('tb_inv_audit', c.oid, 'SELECT') AS auditor_reads,
       has_table_privilege('tb_inv_audit', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE') AS auditor_writes,
       has_table_privilege('tb_inv_nobody', c.oid, 'SELECT') AS nobody_reads
  FROM pg_class c
 WHERE c.relnamespace = 'toss_billing'::regnamespace
   AND c.relname IN ('invoices', 'invoice_items', 'invoice_policy', 'plan_meters', 'coupons', 'coupon_redemptions',
                     'usage_records', 'usage_staging', 'consent_requirements', 'consents', 'price_increases')
 ORDER BY 1;

-- an operator works through the functions
SELECT toss_billing.freeze_clock('2025-06-01 10:00+09');
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'pi-customer');
SET ROLE tb_inv_clerk;
SELECT id AS plan FROM toss_billing.create_plan('권한 청구', 9900) \gset
SELECT metric FROM toss_billing.add_plan_meter(:plan, 'events', unit_amount => 1);
SELECT id AS sub FROM toss_billing.create_subscription('pi-customer', :plan) \gset
SELECT toss_billing.record_usage(:sub, 'events', 5, idempotency_key => 'e1');
INSERT INTO toss_billing.usage_staging (subscription_id, metric, quantity, usage_key) VALUES (:sub, 'events', 2, 'e2');
SELECT * FROM toss_billing.ingest_usage();
SELECT amount FROM toss_billing.add_invoice_item(:sub, 1000, '항목');
SELECT code FROM toss_billing.create_coupon('PRIV', percent_off => 10);
SELECT status FROM toss_billing.apply_coupon(:sub, 'PRIV');
SELECT quantity FROM toss_billing.set_quantity(:sub, 2);
SELECT total FROM toss_billing.preview_invoice(:sub);
SELECT count(*) > 0 AS reads_invoices FROM toss_billing.invoices WHERE subscription_id = :sub;
-- ... and cannot go around them, change the policy or run the runner's half
UPDATE toss_billing.invoices SET total = 0;
INSERT INTO toss_billing.usage_records (subscription_id, usage_key, customer_id, meter_id, quantity, occurred_at)
VALUES (:sub, 'forged', 1, 1, 1, now());
UPDATE toss_billing.coupons SET times_redeemed = 0;
SELECT toss_billing.set_invoice_policy(grace_period => '1 hour');
SELECT toss_billing._finalize_due(10);
SELECT toss_billing._invoice_due_now(1);
SELECT toss_billing._charge_invoice_now_intent(1, current_user);
SELECT toss_billing._review_consent(:sub);
RESET ROLE;

-- an auditor reads, previews and lists the increases
SET ROLE tb_inv_audit;
SELECT count(*) AS usage_records FROM toss_billing.usage_records WHERE subscription_id = :sub;
SELECT total FROM toss_billing.preview_invoice(:sub);
SELECT count(*) >= 0 AS lists_increases FROM toss_billing.price_increases;
SELECT toss_billing.record_usage(:sub, 'events', 1, idempotency_key => 'e3');
SELECT toss_billing.add_invoice_item(:sub, 1000, '감사자 항목');
RESET ROLE;

-- nobody: nothing
SET ROLE tb_inv_nobody;
SELECT count(*) FROM toss_billing.invoices;
SELECT toss_billing.preview_invoice(:sub);
RESET ROLE;

SELECT status FROM toss_billing.cancel_subscription(:sub, false);
SELECT toss_billing.unfreeze_clock() IS NOT NULL AS unfrozen;
DROP ROLE tb_inv_clerk, tb_inv_audit, tb_inv_nobody;
