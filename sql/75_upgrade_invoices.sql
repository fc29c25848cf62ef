-- 0.4.0 -> 0.5.0 with a ledger made by 0.4.0's own functions (issue 14):
-- every period 0.4.0 charged becomes an invoice with one plan line of its
-- order's amount (paid, or open while it is owed or in flight), every
-- subscription order pays its period's invoice, subscriptions get quantity
-- 1, and the upgrade makes the consent requirements of what they will
-- charge next (a trial converting, a dearer plan scheduled).  Then 0.5.0
-- runs on it: the attempt in flight pays its invoice, the next periods are
-- invoiced and charged at the same amounts.
\set SHOW_CONTEXT never
\set regress_db :DBNAME
CREATE DATABASE tb_upgrade_inv;
\c tb_upgrade_inv
SET client_min_messages = warning;
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
CREATE EXTENSION toss_billing VERSION '0.3.0';
ALTER EXTENSION toss_billing UPDATE TO '0.4.0';
SELECT toss_billing.freeze_clock('2025-10-01 00:00+09') IS NOT NULL AS frozen;
SELECT id AS plan FROM toss_billing.create_plan('업그레이드 청구', 4900) \gset
SELECT id AS dear FROM toss_billing.create_plan('업그레이드 청구 플러스', 7900) \gset
SELECT id AS trial FROM toss_billing.create_plan('업그레이드 체험', 4900, trial_days => 20) \gset
INSERT INTO toss_billing.billing_keys (customer_id, status, encrypted_key, idempotency_key, card_number)
SELECT c.id, 'active', '\x00', 'key-' || c.customer_key, '94100012****789*'
  FROM unnest(ARRAY['ui-paid', 'ui-declined', 'ui-flight', 'ui-plan', 'ui-trial']) AS k,
       LATERAL toss_billing.create_customer(NULL, NULL, k) c;
SELECT count(*) FROM (SELECT toss_billing.create_subscription(k, :plan)
                        FROM unnest(ARRAY['ui-paid', 'ui-declined', 'ui-flight', 'ui-plan']) k) s;
SELECT status FROM toss_billing.create_subscription('ui-trial', :trial);
-- 0.4.0's runner half: ui-paid and ui-plan paid, ui-declined declined,
-- ui-flight in flight during the upgrade; ui-plan then schedules a dearer plan
CREATE TEMP TABLE claims AS SELECT * FROM toss_billing._claim_due(10);
SELECT c.customer_key, regexp_replace(cl.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS attempt, cl.amount
  FROM claims cl JOIN toss_billing.customers c ON c.customer_key = cl.customer_key ORDER BY cl.payment_id;
SELECT toss_billing._record_outcomes(
    array_agg(payment_id ORDER BY payment_id),
    array_agg(CASE WHEN customer_key = 'ui-declined' THEN 'failed' ELSE 'done' END ORDER BY payment_id),
    array_agg(CASE WHEN customer_key = 'ui-declined' THEN 403 ELSE 200 END ORDER BY payment_id),
    array_agg(CASE WHEN customer_key = 'ui-declined' THEN 'card_declined' END ORDER BY payment_id),
    array_agg(CASE WHEN customer_key = 'ui-declined' THEN 'REJECT_CARD_PAYMENT' END ORDER BY payment_id),
    array_agg(CASE WHEN customer_key = 'ui-declined' THEN '한도초과 혹은 잔액부족' END ORDER BY payment_id),
    array_agg(jsonb_build_object('orderId', order_id, 'status', CASE WHEN customer_key = 'ui-declined' THEN 'ABORTED' ELSE 'DONE' END,
                                 'paymentKey', 'tbill_' || order_id, 'totalAmount', amount, 'balanceAmount', amount,
                                 'approvedAt', '2025-10-01T00:00:01+09:00') ORDER BY payment_id))
  FROM claims WHERE customer_key <> 'ui-flight';
SELECT pending_plan_period FROM toss_billing.change_plan(
    (SELECT s.id FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
      WHERE c.customer_key = 'ui-plan'), :dear);

ALTER EXTENSION toss_billing UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'toss_billing';

-- the invoices 0.4.0's periods became, and the orders that pay them
SELECT c.customer_key, s.status, s.quantity, i.kind, i.period_number, i.status AS invoice_status, i.total, i.amount_due,
       i.amount_paid, i.recurring_amount, i.agreed_unit_amount, i.period_start, i.period_end
  FROM toss_billing.invoices i
  JOIN toss_billing.subscriptions s ON s.id = i.subscription_id
  JOIN toss_billing.customers c ON c.id = s.customer_id
 ORDER BY c.customer_key, i.id;
SELECT c.customer_key, it.kind, it.description, it.quantity, it.unit_amount, it.amount
  FROM toss_billing.invoice_items it JOIN toss_billing.customers c ON c.id = it.customer_id
 ORDER BY c.customer_key, it.id;
SELECT count(*) FILTER (WHERE p.invoice_id IS NULL) AS orders_without_invoice,
       count(*) FILTER (WHERE p.amount <> i.amount_due) AS orders_of_another_amount
  FROM toss_billing.payments p LEFT JOIN toss_billing.invoices i ON i.id = p.invoice_id
 WHERE p.subscription_id IS NOT NULL;
-- what they will charge next: a trial converting to paid, a dearer plan
SELECT c.customer_key, r.reason, r.old_amount, r.new_amount, r.effective_at, r.status, r.noticed_at IS NOT NULL AS noticed
  FROM toss_billing.consent_requirements r JOIN toss_billing.customers c ON c.id = r.customer_id
 ORDER BY c.customer_key;
SELECT c.customer_key, e.type FROM toss_billing.events e JOIN toss_billing.customers c ON c.id = e.customer_id
 WHERE e.type = 'consent_required' ORDER BY c.customer_key;

-- 0.5.0 on it: the attempt in flight pays its invoice
SELECT a.id AS flight, p.order_id AS flight_order FROM toss_billing.attempts a
  JOIN toss_billing.payments p ON p.id = a.payment_id WHERE a.state = 'in_flight' \gset
SELECT toss_billing._record_outcomes(ARRAY[:flight]::bigint[], '{done}', '{200}', '{NULL}', '{NULL}', '{NULL}', '{NULL}',
                                     ARRAY[jsonb_build_object('orderId', :'flight_order', 'status', 'DONE', 'type', 'BILLING',
                                                              'currency', 'KRW', 'mId', 'tvivarepublica',
                                                              'paymentKey', 'tbill_ui_flight', 'totalAmount', 4900,
                                                              'balanceAmount', 4900,
                                                              'approvedAt', '2025-10-01T00:00:01+09:00')],
                                     '{NULL}', '{false}');
SELECT i.status, i.amount_paid FROM toss_billing.invoices i
  JOIN toss_billing.payments p ON p.invoice_id = i.id WHERE p.order_id = :'flight_order';
-- consents given now: the trial's counts; the plan change takes effect on
-- Nov 1, 31 days away, so a consent today is too early and the plan's old
-- amount goes on being charged.  A month later the runner charges every
-- period its invoice (ui-declined's retry included)
SELECT c.customer_key, (x.c).counts, (x.c).why_not
  FROM toss_billing.consent_requirements r JOIN toss_billing.customers c ON c.id = r.customer_id,
       LATERAL (SELECT toss_billing.record_consent(r.subscription_id, r.id, toss_billing.now(), 'upgrade-notice', '{}') AS c) x
 ORDER BY c.customer_key;
\getenv tbtest TB_TEST
\set ECHO none
\set helpers :tbtest '/../../sql/include/subscription_helpers.psql'
\i :helpers
\set ECHO all
SELECT status FROM toss_billing.retry_subscription((SELECT s.id FROM toss_billing.subscriptions s
                                                      JOIN toss_billing.customers c ON c.id = s.customer_id
                                                     WHERE c.customer_key = 'ui-declined'));
SELECT * FROM pg_temp.run('done');
SELECT toss_billing.advance_clock('1 mon');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('ui-');

\c :regress_db
DROP DATABASE tb_upgrade_inv;
