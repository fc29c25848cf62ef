-- Invoices charged by the runner (CALL toss_billing.run_due()) against the
-- emulator (issue 14): every charge Toss receives is exactly an invoice's
-- amount_due and tax-free part (taxFreeAmount), under the invoice's order
-- id; invoices of total 0 or under 100 KRW are never sent.  reconcile()
-- recovers an invoice's order the ledger lost (inv<id>-a<k>-<tag>) into the
-- ledger, settling the invoice.  In a database of its own, so the runner
-- and reconcile see only these.
\set SHOW_CONTEXT never
\getenv tbtest TB_TEST
CREATE DATABASE toss_invoices;
\c toss_invoices
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET client_min_messages = warning;
CREATE EXTENSION toss_billing;
-- reconcile() lists every transaction of the merchant in its window, and
-- the emulator is shared with the earlier tests: Toss's window is to the
-- second, so this test's window starts a second after everything before it
SELECT pg_sleep(1.1);
SELECT now() AS window_start \gset
SELECT toss_billing.freeze_clock('2026-05-01 10:00+09');
SELECT id AS plan FROM toss_billing.create_plan('라이브 학습', 12000, tax_free => true) \gset
SELECT id AS plus FROM toss_billing.create_plan('라이브 학습 플러스', 24000, tax_free => true) \gset
SELECT id AS app FROM toss_billing.create_plan('라이브 앱', 9900) \gset
SELECT count(*) FROM toss_billing.add_plan_meter(:app, 'api_calls', tiers => '[{"up_to": 100, "unit_amount": 0},
                                                                               {"up_to": null, "unit_amount": 3}]');
SELECT code FROM toss_billing.create_coupon('FREE', percent_off => 100, duration => 'once');

SELECT count(toss_billing.create_customer(NULL, NULL, k))
  FROM unnest(ARRAY['il-usage', 'il-upgrade', 'il-free', 'il-small']) k;
\set ak `$TB_TEST/emu authkey il-usage`
SELECT status FROM toss_billing.toss_issue_billing_key('il-usage', :'ak');
\set ak `$TB_TEST/emu authkey il-upgrade`
SELECT status FROM toss_billing.toss_issue_billing_key('il-upgrade', :'ak');
\set ak `$TB_TEST/emu authkey il-free`
SELECT status FROM toss_billing.toss_issue_billing_key('il-free', :'ak');
\set ak `$TB_TEST/emu authkey il-small`
SELECT status FROM toss_billing.toss_issue_billing_key('il-small', :'ak');

--   il-usage    a plan with metered API calls and a tax-free one-off item
--   il-upgrade  a tax-free plan upgraded mid-period, the difference charged at once
--   il-free     a 100% coupon: its second invoice totals 0
--   il-small    a credit leaves 50 KRW: carried to the next invoice
SELECT id AS s_usage FROM toss_billing.create_subscription('il-usage', :app) \gset
SELECT id AS s_upgrade FROM toss_billing.create_subscription('il-upgrade', :plan) \gset
SELECT id AS s_free FROM toss_billing.create_subscription('il-free', :app) \gset
SELECT id AS s_small FROM toss_billing.create_subscription('il-small', :app) \gset
CALL toss_billing.run_due() \gset
SELECT :claimed AS claimed, :done AS done, :failed AS failed, :unknown AS unknown;

-- during May
SELECT toss_billing.record_usage(:s_usage, 'api_calls', 1234, '2026-05-10 10:00+09', 'may-1');
SELECT amount FROM toss_billing.add_invoice_item(:s_usage, 30000, '오프라인 강의', tax_free => true);
SELECT status FROM toss_billing.apply_coupon(:s_free, 'FREE');
SELECT amount FROM toss_billing.add_invoice_item(:s_small, -9850, '보상 크레딧');
-- May 16, 10:00: 16 of the period's 31 days are left: a credit of 12,000 x
-- 16/31 = 6,193.55 -> 6,194 and a charge of 24,000 x 16/31 = 12,387.10 ->
-- 12,387; the difference, 6,193 (tax-free), is charged at once
SELECT toss_billing.advance_clock('15 days');
SELECT plan_id = :plus AS upgraded FROM toss_billing.change_plan(:s_upgrade, :plus, proration => 'immediate');
-- (the customer's upgrade is their consent to the next period's price)
SELECT (toss_billing.record_consent(:s_upgrade, r.id, toss_billing.now(), 'upgrade', '{}')).counts
  FROM toss_billing.consent_requirements r WHERE r.subscription_id = :s_upgrade;
SELECT toss_billing.advance_clock('12 hours');
CALL toss_billing.run_due() \gset
SELECT :claimed AS claimed, :done AS done;

-- Jun 1: the period invoices
SELECT toss_billing.advance_clock('15 days 12 hours');
CALL toss_billing.run_due() \gset
SELECT :claimed AS claimed, :done AS done, :failed AS failed, :unknown AS unknown;

SELECT c.customer_key, i.kind, i.period_number, i.status, i.subtotal, i.discount, i.total, i.carried_forward,
       i.amount_due, i.tax_free_amount
  FROM toss_billing.invoices i JOIN toss_billing.customers c ON c.id = i.customer_id
 ORDER BY c.customer_key, i.id;

-- charge_subscription_now (the first charge at sign-up) charges the
-- period's invoice, finalised as the runner finalises it: 3 seats of
-- 9,900, a one-off item of 5,000, 2,000 off once: 32,700.  Every figure
-- of what is next comes from the same invoice: preview_invoice,
-- _next_amount, subscription_info, upcoming_renewals (the period after:
-- 3 seats, the coupon used up, nothing else known yet)
SELECT code FROM toss_billing.create_coupon('LESS2000', amount_off => 2000, duration => 'once');
SELECT count(toss_billing.create_customer(NULL, NULL, k)) FROM unnest(ARRAY['il-now', 'il-zero']) k;
\set ak `$TB_TEST/emu authkey il-now`
SELECT status FROM toss_billing.toss_issue_billing_key('il-now', :'ak');
\set ak `$TB_TEST/emu authkey il-zero`
SELECT status FROM toss_billing.toss_issue_billing_key('il-zero', :'ak');
SELECT id AS s_now FROM toss_billing.create_subscription('il-now', :app) \gset
SELECT quantity FROM toss_billing.set_quantity(:s_now, 3, proration => 'none');
SELECT amount FROM toss_billing.add_invoice_item(:s_now, 5000, '설치비');
SELECT status FROM toss_billing.apply_coupon(:s_now, 'LESS2000');
SELECT period_number, subtotal, discount, total, amount_due,
       (SELECT string_agg(l.kind || ' ' || l.amount, ', ') FROM unnest(lines) l) AS lines
  FROM toss_billing.preview_invoice(:s_now);
SELECT toss_billing._next_amount(:s_now) AS next_amount, toss_billing._next_amount(:s_now, 0) AS period_0,
       toss_billing._next_amount(:s_now, 1) AS period_1;
SELECT next_amount, amount_due FROM toss_billing.subscription_info WHERE id = :s_now;
SELECT period_number, amount, kind FROM toss_billing.upcoming_renewals WHERE subscription_id = :s_now ORDER BY 1;
SELECT status, total_amount, order_id ~ ('^sub' || :s_now || '-p0-a1-') AS period_order
  FROM toss_billing.charge_subscription_now(:s_now);
SELECT i.status, i.total, i.amount_due, i.amount_paid, p.amount AS order_amount, p.state
  FROM toss_billing.invoices i JOIN toss_billing.payments p ON p.invoice_id = i.id
 WHERE i.subscription_id = :s_now;
-- the success page again: the same payment, nothing charged again
SELECT status, total_amount FROM toss_billing.charge_subscription_now(:s_now);
-- what is next now: period 1, 29,700; the coupon's end raises the
-- recurring amount from 27,700, which needs the customer's consent
-- (34_consent): without it, the old amount is what will be charged
SELECT period_number, amount_due, consent FROM toss_billing.preview_invoice(:s_now);
SELECT toss_billing._next_amount(:s_now) AS next_amount, next_amount AS info_next_amount
  FROM toss_billing.subscription_info WHERE id = :s_now;
-- a period already invoiced: what its invoice charged; no period before 0
SELECT toss_billing._next_amount(:s_now, 0) AS period_0;
\set VERBOSITY terse
SELECT toss_billing._next_amount(:s_now, -1);
\set VERBOSITY default
-- an invoice of 0 (a 100% coupon) has nothing to charge: refused, nothing
-- recorded; the runner settles it without a charge
SELECT id AS s_zero FROM toss_billing.create_subscription('il-zero', :app) \gset
SELECT status FROM toss_billing.apply_coupon(:s_zero, 'FREE');
SELECT toss_billing._next_amount(:s_zero) AS next_amount;
SELECT count(*) AS attempts_before FROM toss_billing.attempts \gset
\set VERBOSITY terse
SELECT toss_billing.charge_subscription_now(:s_zero);
\set VERBOSITY default
SELECT count(*) = :attempts_before AS nothing_recorded,
       (SELECT count(*) FROM toss_billing.invoices WHERE subscription_id = :s_zero AND status <> 'draft') AS finalised
  FROM toss_billing.attempts;
CALL toss_billing.run_due() \gset
SELECT :claimed AS claimed;
SELECT i.status, i.total, i.amount_due, s.period_number
  FROM toss_billing.invoices i JOIN toss_billing.subscriptions s ON s.id = i.subscription_id
 WHERE i.subscription_id = :s_zero;

-- what Toss received and approved, order by order, against the invoices
\set reqs `curl -sf "$EMULATOR_URL/__emulator/requests?limit=500"`
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
CREATE TEMP TABLE sent AS
SELECT r->'body'->>'orderId' AS order_id, (r->'body'->>'amount')::bigint AS amount,
       COALESCE((r->'body'->>'taxFreeAmount')::bigint, 0) AS tax_free
  FROM jsonb_array_elements(:'reqs'::jsonb) r
 WHERE r->>'method' = 'POST' AND r->>'path' LIKE '/v1/billing/%'
   -- this database's orders (the emulator serves the whole suite): its order tag
   AND r->'body'->>'orderId' LIKE '%-' || (SELECT order_tag FROM toss_billing.installation);
SELECT c.customer_key, i.kind, i.period_number, i.amount_due, i.tax_free_amount,
       s.amount AS sent_amount, s.tax_free AS sent_tax_free,
       (:'ledger'::jsonb->'amountByOrderId'->>p.order_id)::bigint AS charged_at_toss,
       (p.response->>'taxFreeAmount')::bigint AS toss_tax_free,
       p.state
  FROM toss_billing.invoices i
  JOIN toss_billing.customers c ON c.id = i.customer_id
  JOIN toss_billing.payments p ON p.invoice_id = i.id
  LEFT JOIN sent s ON s.order_id = p.order_id
 ORDER BY c.customer_key, i.id;
-- every POST of this database was an invoice's order, once; nothing else was charged
SELECT count(*) AS posts, count(DISTINCT order_id) AS orders,
       count(*) FILTER (WHERE order_id NOT IN (SELECT p.order_id FROM toss_billing.payments p WHERE p.invoice_id IS NOT NULL)) AS foreign
  FROM sent;
SELECT (SELECT sum((:'ledger'::jsonb->'amountByOrderId'->>s.order_id)::bigint) FROM (SELECT DISTINCT order_id FROM sent) s)
           AS charged_at_toss,
       (SELECT sum(amount_due) FROM toss_billing.invoices WHERE status = 'paid') AS invoiced_and_paid;
SELECT count(*) AS zero_or_carried_invoices_sent
  FROM toss_billing.invoices i JOIN toss_billing.payments p ON p.invoice_id = i.id WHERE i.amount_due = 0;

-- ---------------------------------------------------------------- reconcile
-- The ledger restored from a dump made before il-upgrade's change was
-- charged: the proration invoice is open again, and its order
-- (inv<id>-a1-<tag>), attempt and events are gone -- but Toss approved it.
-- reconcile() recovers it exactly as it recovers a period's order: as this
-- installation's (not a foreign_payment), its Payment verified, for the
-- invoice's amount_due, into the ledger as that invoice's order; the
-- invoice is paid and payment_recovered and invoice_paid are recorded.
SELECT i.id AS up_invoice, p.order_id AS up_order, p.payment_key AS up_key
  FROM toss_billing.invoices i JOIN toss_billing.payments p ON p.invoice_id = i.id
 WHERE i.kind = 'proration' \gset
SELECT :'up_order' = format('inv%s-a1-%s', :up_invoice, order_tag) AS invoice_order
  FROM toss_billing.installation;
DELETE FROM toss_billing.events WHERE payment_id IN (SELECT id FROM toss_billing.payments WHERE order_id = :'up_order');
DELETE FROM toss_billing.attempts WHERE order_id = :'up_order';
DELETE FROM toss_billing.payments WHERE order_id = :'up_order';
UPDATE toss_billing.invoices SET status = 'open', amount_paid = 0, paid_at = NULL, next_attempt_at = finalized_at
 WHERE id = :up_invoice;
SELECT max(id) AS events_before FROM toss_billing.events \gset
SELECT now() + interval '1 minute' AS window_end \gset
SELECT * FROM toss_billing.reconcile(:'window_start', :'window_end');
SELECT c.customer_key, p.state, p.recovered, p.obligation = 'invoice:' || :up_invoice AS invoice_obligation,
       p.invoice_id = :up_invoice AS pays_the_invoice, p.subscription_id, p.generation, p.billing_key_id,
       p.amount, p.total_amount, p.toss_status, p.payment_key = :'up_key' AS same_payment_key, p.order_name
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE p.order_id = :'up_order';
SELECT a.attempt_number, a.state, a.idempotency_key LIKE 'recovered:%' AS recovered_key,
       a.customer_id = p.customer_id AS customer
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
 WHERE p.order_id = :'up_order';
SELECT kind, status, amount_due, amount_paid, paid_at = toss_billing.now() AS paid_now, next_attempt_at, status_reason
  FROM toss_billing.invoices WHERE id = :up_invoice;
SELECT e.type, c.customer_key, e.reason, (e.detail->>'invoice_id')::bigint = :up_invoice AS invoice,
       e.detail->>'amount' AS amount, e.detail->>'attempt_number' AS attempt_number,
       e.payment_id = (SELECT id FROM toss_billing.payments WHERE order_id = :'up_order') AS payment
  FROM toss_billing.events e JOIN toss_billing.customers c ON c.id = e.customer_id
 WHERE e.id > :events_before ORDER BY e.id;
SELECT count(*) AS open_discrepancies FROM toss_billing.open_discrepancies;
-- the runner has nothing to charge for it any more; running reconcile
-- again recovers nothing and opens nothing
CALL toss_billing.run_due() \gset
SELECT :claimed AS claimed;
SELECT * FROM toss_billing.reconcile(:'window_start', :'window_end');
SELECT count(*) AS orders, count(*) FILTER (WHERE recovered) AS recovered,
       (SELECT count(*) FROM toss_billing.open_discrepancies) AS open_discrepancies
  FROM toss_billing.payments WHERE order_id = :'up_order';

\c toss_regress
DROP DATABASE toss_invoices;
