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

-- ---------------------------------------------------------------- charge_invoice_now
-- charge_invoice_now charges an invoice at once, in the call engine as
-- charge_subscription_now does: the worker commits the intent (the order
-- and its attempt in flight) before the POST and records the outcome after
-- it with the runner's own recording, so the invoice settles as a charge of
-- the runner would settle it.  Operators may call it; auditors may not.
CREATE ROLE il_clerk IN ROLE toss_billing_operator;
CREATE ROLE il_audit IN ROLE toss_billing_auditor;
-- a refused charge: its SQLSTATE, message, detail and hint (the order
-- ids' tag, random per installation, shown as <tag>)
CREATE FUNCTION pg_temp.refused(invoice_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_message text;
    v_detail text;
    v_hint text;
BEGIN
    PERFORM toss_billing.charge_invoice_now(invoice_id);
    RETURN 'charged';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_message = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    RETURN replace(SQLSTATE || ': ' || v_message
                   || CASE WHEN v_detail <> '' THEN E'\nDETAIL: ' || v_detail ELSE '' END
                   || CASE WHEN v_hint <> '' THEN E'\nHINT: ' || v_hint ELSE '' END,
                   (SELECT order_tag FROM toss_billing.installation), '<tag>');
END;
$$;
SELECT count(toss_billing.create_customer(NULL, NULL, k))
  FROM unnest(ARRAY['il-period', 'il-final', 'il-lies', 'il-dunned', 'il-upnow']) k;
\set ak `$TB_TEST/emu authkey il-period`
SELECT status FROM toss_billing.toss_issue_billing_key('il-period', :'ak');
\set ak `$TB_TEST/emu authkey il-final`
SELECT status FROM toss_billing.toss_issue_billing_key('il-final', :'ak');
\set ak `$TB_TEST/emu authkey il-lies`
SELECT status FROM toss_billing.toss_issue_billing_key('il-lies', :'ak');
-- a card every charge of which is declined
\set ak `$TB_TEST/emu authkey il-dunned 4111111111110002`
SELECT status FROM toss_billing.toss_issue_billing_key('il-dunned', :'ak');
\set ak `$TB_TEST/emu authkey il-upnow`
SELECT status FROM toss_billing.toss_issue_billing_key('il-upnow', :'ak');

-- a period's draft once the period has started is charged as the
-- subscription's period (charge_subscription_now's path): finalised without
-- waiting for the grace window, 9,900 + 2,000 under the period's order;
-- again: it is paid, nothing is sent
SELECT id AS s_period FROM toss_billing.create_subscription('il-period', :app) \gset
SELECT invoice_id AS i_period FROM toss_billing.add_invoice_item(:s_period, 2000, '설치비') \gset
SELECT status, total_amount, order_id ~ ('^sub' || :s_period || '-p0-a1-') AS period_order
  FROM toss_billing.charge_invoice_now(:i_period);
SELECT kind, period_number, status, total, amount_due, amount_paid FROM toss_billing.invoices WHERE id = :i_period;
SELECT count(*) AS attempts_before FROM toss_billing.attempts \gset
SELECT pg_temp.refused(:i_period);
SELECT count(*) = :attempts_before AS nothing_recorded FROM toss_billing.attempts;

-- an invoice whose order is in flight (the runner claimed it and has not
-- sent it yet): TB006, nothing is posted; the runner's recovery then finds
-- nothing at Toss and posts that very request, once
SELECT amount FROM toss_billing.add_invoice_item(:s_period, 4000, '추가 작업');
SELECT id AS i_busy FROM toss_billing._invoice_due_now(
    (SELECT id FROM toss_billing.invoices WHERE subscription_id = :s_period AND status = 'draft')) \gset
SELECT count(*) AS claimed FROM toss_billing._claim_invoices(1, '0 seconds', :i_busy);
SELECT count(*) AS attempts_before FROM toss_billing.attempts \gset
SELECT pg_temp.refused(:i_busy);
SELECT count(*) = :attempts_before AS nothing_recorded FROM toss_billing.attempts;
CALL toss_billing.run_due() \gset
SELECT i.kind, i.status, i.amount_paid, p.order_id ~ ('^inv' || i.id || '-a1-') AS own_order, p.state,
       (SELECT string_agg(a.attempt_number || ':' || a.state, ',' ORDER BY a.id) FROM toss_billing.attempts a
         WHERE a.payment_id = p.id) AS attempts
  FROM toss_billing.invoices i JOIN toss_billing.payments p ON p.invoice_id = i.id WHERE i.id = :i_busy;

-- a canceled subscription's final invoice whose charge is declined is
-- uncollectible; without an active card: TB004, nothing recorded; with a
-- new card, the explicit request reopens it and charges it, under the same
-- order id
SELECT id AS s_final FROM toss_billing.create_subscription('il-final', :app) \gset
SELECT status FROM toss_billing.charge_subscription_now(:s_final);
SELECT amount FROM toss_billing.add_invoice_item(:s_final, 7000, '위약금');
SELECT status FROM toss_billing.cancel_subscription(:s_final, false);
SELECT id AS i_final FROM toss_billing.invoices WHERE subscription_id = :s_final AND kind = 'final' \gset
SELECT status, amount_due, next_attempt_at IS NOT NULL AS due FROM toss_billing.invoices WHERE id = :i_final;
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","customerKey":"il-final"},"fault":{"code":"REJECT_CARD_COMPANY"},"times":1}'`
SELECT pg_temp.refused(:i_final);
SELECT status, status_reason FROM toss_billing.invoices WHERE id = :i_final;
SELECT status FROM toss_billing.toss_delete_billing_key('il-final');
SELECT count(*) AS attempts_before FROM toss_billing.attempts \gset
SELECT pg_temp.refused(:i_final);
SELECT status, count(*) = :attempts_before AS nothing_recorded FROM toss_billing.invoices, toss_billing.attempts
 WHERE invoices.id = :i_final GROUP BY status;
\set ak `$TB_TEST/emu authkey il-final`
SELECT status FROM toss_billing.toss_issue_billing_key('il-final', :'ak');
SELECT status, total_amount FROM toss_billing.charge_invoice_now(:i_final);
SELECT i.status, i.amount_paid, i.uncollectible_at IS NULL AS reopened, p.order_id ~ ('^inv' || i.id || '-a1-') AS same_order,
       (SELECT string_agg(a.attempt_number || ':' || a.state, ',' ORDER BY a.id) FROM toss_billing.attempts a
         WHERE a.payment_id = p.id) AS attempts
  FROM toss_billing.invoices i JOIN toss_billing.payments p ON p.invoice_id = i.id WHERE i.id = :i_final;
SELECT type, reason FROM toss_billing.events
 WHERE subscription_id = :s_final AND (type LIKE 'invoice%' OR type = 'retry_scheduled') ORDER BY id;

-- the next period's one-off lines, charged on an invoice of their own;
-- Toss's answer does not match the order: TB006, the order is held, and a
-- second request is refused (TB006) without posting anything; the runner
-- looks the order up and settles it as the charge Toss really made
SELECT id AS s_lies FROM toss_billing.create_subscription('il-lies', :app) \gset
SELECT status FROM toss_billing.charge_subscription_now(:s_lies);
SELECT invoice_id AS d_lies FROM toss_billing.add_invoice_item(:s_lies, 3000, '교재') \gset
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","customerKey":"il-lies"},"fault":{"mismatch":"totalAmount"},"times":1}'`
SELECT pg_temp.refused(:d_lies);
SELECT id AS i_lies FROM toss_billing.invoices WHERE subscription_id = :s_lies AND kind = 'one_off' \gset
SELECT count(*) AS attempts_before FROM toss_billing.attempts \gset
SELECT pg_temp.refused(:i_lies);
SELECT count(*) = :attempts_before AS nothing_recorded FROM toss_billing.attempts;
CALL toss_billing.run_due() \gset
SELECT i.status, i.amount_paid, p.state, p.hold_reason IS NULL AS released FROM toss_billing.invoices i
  JOIN toss_billing.payments p ON p.invoice_id = i.id WHERE i.id = :i_lies;

-- the next period's one-off lines that come to less than Toss charges
-- (50 KRW; with a credit, -2,950): 55000, nothing recorded, the lines stay
SELECT amount FROM toss_billing.add_invoice_item(:s_lies, 50, '잔돈');
SELECT id AS d_small FROM toss_billing.invoices WHERE subscription_id = :s_lies AND status = 'draft' \gset
SELECT count(*) AS attempts_before FROM toss_billing.attempts \gset
SELECT pg_temp.refused(:d_small);
SELECT amount FROM toss_billing.add_invoice_item(:s_lies, -3000, '보상');
SELECT pg_temp.refused(:d_small);
SELECT count(*) = :attempts_before AS nothing_recorded,
       (SELECT count(*) FROM toss_billing.invoice_items WHERE invoice_id = :d_small) AS lines_on_the_draft,
       (SELECT count(*) FROM toss_billing.invoices WHERE subscription_id = :s_lies) AS invoices
  FROM toss_billing.attempts;
-- bad input, and an invoice that does not exist
SELECT pg_temp.refused(NULL), pg_temp.refused(-1);

-- an uncollectible period invoice (dunning gave up: the subscription is
-- unpaid), charged at once with a new card: the subscription is retried,
-- the invoice reopened, and the period charged under its order
SELECT retry_offsets FROM toss_billing.set_dunning_policy(retry_offsets => '{1 day}');
SELECT id AS s_dunned FROM toss_billing.create_subscription('il-dunned', :app) \gset
\set VERBOSITY terse
SELECT toss_billing.charge_subscription_now(:s_dunned);
\set VERBOSITY default
SELECT toss_billing.advance_clock('1 day');
CALL toss_billing.run_due() \gset
SELECT :claimed AS claimed, :failed AS failed;
SELECT s.status, i.id AS i_dunned, i.status AS invoice_status
  FROM toss_billing.subscriptions s JOIN toss_billing.invoices i ON i.subscription_id = s.id
 WHERE s.id = :s_dunned \gset
SELECT :'status' AS subscription, :'invoice_status' AS invoice;
\set ak `$TB_TEST/emu authkey il-dunned`
SELECT status FROM toss_billing.toss_issue_billing_key('il-dunned', :'ak');
SELECT status, total_amount, order_id ~ ('^sub' || :s_dunned || '-p0-a1-') AS period_order
  FROM toss_billing.charge_invoice_now(:i_dunned);
SELECT s.status, s.period_number, i.status AS invoice_status, i.amount_paid, i.uncollectible_at IS NULL AS reopened
  FROM toss_billing.subscriptions s JOIN toss_billing.invoices i ON i.subscription_id = s.id WHERE i.id = :i_dunned;
SELECT retry_offsets FROM toss_billing.set_dunning_policy(retry_offsets => '{1 day,3 days,5 days,7 days}');

-- an upgrade with immediate proration, charged at once by an operator.
-- Jun 11, 10:00: 20 of the period's 30 days are left: a credit of 12,000 x
-- 2/3 = 8,000 and a charge of 24,000 x 2/3 = 16,000; the difference, 8,000
-- (tax-free), is what Toss is asked for and charges
SELECT id AS s_upnow FROM toss_billing.create_subscription('il-upnow', :plan, '2026-06-01 10:00+09') \gset
SELECT status, total_amount FROM toss_billing.charge_subscription_now(:s_upnow);
SELECT toss_billing.advance_clock('9 days');
SELECT toss_billing.now();
SELECT plan_id = :plus AS upgraded FROM toss_billing.change_plan(:s_upnow, :plus, proration => 'immediate');
SELECT id AS i_upnow FROM toss_billing.invoices WHERE subscription_id = :s_upnow AND kind = 'proration' \gset
SELECT kind, status, total, amount_due, tax_free_amount FROM toss_billing.invoices WHERE id = :i_upnow;
SET ROLE il_clerk;
SELECT status, total_amount, order_id ~ ('^inv' || :i_upnow || '-a1-') AS own_order,
       tax_free_amount AS tax_free_at_toss
  FROM toss_billing.charge_invoice_now(:i_upnow);
RESET ROLE;
SELECT i.status, i.amount_paid, a.requested_by
  FROM toss_billing.invoices i JOIN toss_billing.payments p ON p.invoice_id = i.id
  JOIN toss_billing.attempts a ON a.payment_id = p.id WHERE i.id = :i_upnow;
SET ROLE il_audit;
\set VERBOSITY terse
SELECT toss_billing.charge_invoice_now(:i_upnow);
\set VERBOSITY default
RESET ROLE;

-- what Toss received and approved, order by order, against the invoices
\set reqs `curl -sf "$EMULATOR_URL/__emulator/requests?limit=500"`
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
CREATE TEMP TABLE sent AS
SELECT r->'body'->>'orderId' AS order_id, r->>'idempotencyKey' AS idempotency_key, (r->>'status')::integer AS status,
       (r->'body'->>'amount')::bigint AS amount, COALESCE((r->'body'->>'taxFreeAmount')::bigint, 0) AS tax_free
  FROM jsonb_array_elements(:'reqs'::jsonb) r
 WHERE r->>'method' = 'POST' AND r->>'path' LIKE '/v1/billing/%'
   -- this database's orders (the emulator serves the whole suite): its order tag
   AND r->'body'->>'orderId' LIKE '%-' || (SELECT order_tag FROM toss_billing.installation);
-- posts: the order's POSTs (a declined one, then the one that paid, under
-- the same order id), each asking for the invoice's amount
SELECT c.customer_key, i.kind, i.period_number, i.amount_due, i.tax_free_amount,
       s.posts, s.amount AS sent_amount, s.tax_free AS sent_tax_free,
       (:'ledger'::jsonb->'amountByOrderId'->>p.order_id)::bigint AS charged_at_toss,
       (p.response->>'taxFreeAmount')::bigint AS toss_tax_free,
       p.state
  FROM toss_billing.invoices i
  JOIN toss_billing.customers c ON c.id = i.customer_id
  JOIN toss_billing.payments p ON p.invoice_id = i.id
  LEFT JOIN (SELECT order_id, count(*) AS posts, min(amount) AS amount, min(tax_free) AS tax_free
               FROM sent GROUP BY order_id HAVING min(amount) = max(amount) AND min(tax_free) = max(tax_free)) s
         ON s.order_id = p.order_id
 ORDER BY c.customer_key, i.id;
-- every POST of this database was an attempt of an invoice's order, each
-- attempt posted once; nothing else was charged, and nothing twice
SELECT count(*) AS posts, count(DISTINCT idempotency_key) AS attempts_posted, count(DISTINCT order_id) AS orders,
       count(*) FILTER (WHERE order_id NOT IN (SELECT p.order_id FROM toss_billing.payments p WHERE p.invoice_id IS NOT NULL)) AS foreign,
       count(*) FILTER (WHERE idempotency_key NOT IN (SELECT a.idempotency_key FROM toss_billing.attempts a)) AS not_an_attempt
  FROM sent;
SELECT count(*) AS charged_twice
  FROM jsonb_array_elements_text(:'ledger'::jsonb->'duplicateOrderIds') d
 WHERE d LIKE '%-' || (SELECT order_tag FROM toss_billing.installation);
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
 WHERE i.kind = 'proration' AND i.subscription_id = :s_upgrade \gset
SELECT :'up_order' = format('inv%s-a1-%s', :up_invoice, order_tag) AS invoice_order
  FROM toss_billing.installation;
DELETE FROM toss_billing.events WHERE payment_id IN (SELECT id FROM toss_billing.payments WHERE order_id = :'up_order');
DELETE FROM toss_billing.attempts WHERE order_id = :'up_order';
DELETE FROM toss_billing.payments WHERE order_id = :'up_order';
UPDATE toss_billing.invoices SET status = 'open', amount_paid = 0, paid_at = NULL, next_attempt_at = finalized_at
 WHERE id = :up_invoice;
SELECT count(*) AS discrepancies_before FROM toss_billing.open_discrepancies \gset
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
-- (one discrepancy is open from before: the held order above)
SELECT count(*) - :discrepancies_before AS new_discrepancies FROM toss_billing.open_discrepancies;
-- the runner has nothing to charge for it any more; running reconcile
-- again recovers nothing and opens nothing
CALL toss_billing.run_due() \gset
SELECT :claimed AS claimed;
SELECT * FROM toss_billing.reconcile(:'window_start', :'window_end');
SELECT count(*) AS orders, count(*) FILTER (WHERE recovered) AS recovered,
       (SELECT count(*) FROM toss_billing.open_discrepancies) - :discrepancies_before AS new_discrepancies
  FROM toss_billing.payments WHERE order_id = :'up_order';

\c toss_regress
DROP DATABASE toss_invoices;
DROP ROLE il_clerk, il_audit;
