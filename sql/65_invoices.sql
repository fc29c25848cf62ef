-- Invoices (issue 14): the mechanics one at a time -- preview without side
-- effects, the grace window of a draft, one-off items (idempotent, removable
-- while draft), making an invoice due now (_invoice_due_now, the
-- finalise-only half of charge_invoice_now, which 81_invoices_live charges
-- against the emulator) and charge_invoice_now's refusals, prorations
-- (immediate, next_period, none, a downgrade's credit carried forward), what
-- a failed charge of an invoice of its own does, coupons' limits, and bad
-- input.
\set SHOW_CONTEXT never
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
\getenv tbtest TB_TEST
\set ECHO none
\set helpers :tbtest '/../../sql/include/subscription_helpers.psql'
\i :helpers
\set helpers :tbtest '/../../sql/include/invoice_helpers.psql'
\i :helpers
\set ECHO all

SELECT id AS basic FROM toss_billing.create_plan('기본', 9900) \gset
SELECT id AS pro FROM toss_billing.create_plan('프로', 29900) \gset
SELECT id AS yearly FROM toss_billing.create_plan('기본 연간', 99000, 'year') \gset
SELECT pg_temp.customer('in-a');
SELECT pg_temp.customer('in-b');
SELECT toss_billing.freeze_clock('2025-03-01 09:00+09');
SELECT id AS a FROM toss_billing.create_subscription('in-a', :basic) \gset
SELECT * FROM pg_temp.run('done');

-- preview writes nothing: no draft, no usage marked, no coupon counted
SELECT count(*) AS invoices_before FROM toss_billing.invoices WHERE subscription_id = :a;
SELECT kind, period_number, period_start, period_end, subtotal, total, amount_due FROM toss_billing.preview_invoice(:a);
SELECT count(*) AS invoices_after FROM toss_billing.invoices WHERE subscription_id = :a;

-- one-off items go on the next invoice's draft; the same key returns the
-- same line, another line under it is refused; a draft's line can be removed
SELECT kind, description, quantity, unit_amount, amount
  FROM toss_billing.add_invoice_item(:a, 1500, '추가 저장공간', quantity => 2, idempotency_key => 'storage-1');
SELECT amount FROM toss_billing.add_invoice_item(:a, 1500, '추가 저장공간', quantity => 2, idempotency_key => 'storage-1');
SELECT pg_temp.err(format('SELECT toss_billing.add_invoice_item(%s, 1600, %L, idempotency_key => %L)',
                               :a, '추가 저장공간', 'storage-1'));
SELECT id AS mistake FROM toss_billing.add_invoice_item(:a, 5000, '잘못 넣은 항목') \gset
SELECT toss_billing.delete_invoice_item(:mistake);
SELECT * FROM pg_temp.preview(:a);
SELECT status, kind, period_number FROM toss_billing.invoices WHERE subscription_id = :a ORDER BY id;

-- the next period's draft made due now bills its one-off lines now, on an
-- invoice of their own (the period's lines stay for its start); the runner
-- charges it under obligation invoice:<id>.  charge_invoice_now refuses
-- the draft left with its period's own lines, and the paid invoice.
SELECT id AS draft FROM toss_billing.invoices WHERE subscription_id = :a AND status = 'draft' \gset
SELECT kind, status, description, amount_due, next_attempt_at FROM toss_billing._invoice_due_now(:draft);
SELECT * FROM pg_temp.run('done');
SELECT i.kind, i.status, p.obligation = 'invoice:' || i.id AS own_obligation, p.order_id ~ ('^inv' || i.id || '-a1-') AS order_id,
       p.amount, p.state
  FROM toss_billing.invoices i JOIN toss_billing.payments p ON p.invoice_id = i.id
 WHERE i.subscription_id = :a AND i.kind = 'one_off';
SELECT pg_temp.err(format('SELECT toss_billing.charge_invoice_now(%s)', :draft));
SELECT pg_temp.err(format('SELECT toss_billing.charge_invoice_now(%s)',
                               (SELECT max(id) FROM toss_billing.invoices WHERE subscription_id = :a)));

-- the grace window: a period's draft takes lines for a while after the
-- period starts; only then is it finalised and charged
SELECT grace_period FROM toss_billing.set_invoice_policy(grace_period => '1 hour');
SELECT toss_billing.advance_clock('1 mon');
SELECT * FROM pg_temp.run('done');
SELECT amount FROM toss_billing.add_invoice_item(:a, 700, '늦게 추가한 항목');
SELECT toss_billing.advance_clock('1 hour');
SELECT * FROM pg_temp.run('done');
SELECT grace_period FROM toss_billing.set_invoice_policy(grace_period => '0');
SELECT * FROM pg_temp.lines(:a, 3);

-- prorations.  In-b on 기본 from Apr 1; Apr 11 09:00 is 10 days into a
-- 30-day period (Apr 1 - May 1): 20 days are left, 2/3 of it.
SELECT id AS b FROM toss_billing.create_subscription('in-b', :basic) \gset
SELECT * FROM pg_temp.run('done');
SELECT toss_billing.advance_clock('10 days');
-- an upgrade with next_period proration: credit 9,900 x 2/3 = 6,600, charge
-- 29,900 x 2/3 = 19,933.33 -> 19,933, on the next invoice (whose recurring
-- amount, without the customer's consent, would stay 9,900)
SELECT plan_id = :pro AS pro FROM toss_billing.change_plan(:b, :pro, proration => 'next_period');
SELECT * FROM pg_temp.preview(:b);
-- back to 기본 at once: credit 29,900 x 2/3 -> -19,933, charge 6,600: a
-- credit of 13,333, never refunded, carried to the next invoice
SELECT plan_id = :basic AS basic FROM toss_billing.change_plan(:b, :basic, proration => 'immediate');
SELECT * FROM pg_temp.invoices(:b);
SELECT * FROM pg_temp.run('done');
-- and a change without proration
SELECT plan_id = :pro AS pro FROM toss_billing.change_plan(:b, :pro, proration => 'none');
SELECT plan_id = :basic AS basic FROM toss_billing.change_plan(:b, :basic, proration => 'none');
-- a seat decrease waits for the period's end; an increase by default is
-- prorated on the next invoice
SELECT quantity, pending_quantity, pending_quantity_period FROM toss_billing.set_quantity(:b, 2);
SELECT quantity, pending_quantity, pending_quantity_period FROM toss_billing.set_quantity(:b, 1);
SELECT * FROM pg_temp.preview(:b);
-- May 1: 9,900 (one seat again) + the upgrade's next_period lines (-6,600 +
-- 19,933) + the seat increase's (-6,600 + 13,200) - the credit of 13,333
-- carried from the immediate downgrade = 16,500
SELECT toss_billing.advance_clock('20 days');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.invoices(:b);
SELECT * FROM pg_temp.lines(:b);

-- a charge of an invoice of its own that Toss declines: the invoice is
-- voided and its total carried to the next period's invoice (a transient
-- failure is retried after the policy's backoff instead)
SELECT (toss_billing._invoice_due_now((toss_billing.add_invoice_item(:b, 4000, '컨설팅 1시간')).invoice_id)).status;
SELECT * FROM pg_temp.run('transient');
SELECT status, next_attempt_at FROM toss_billing.invoices WHERE subscription_id = :b AND kind = 'one_off';
SELECT * FROM pg_temp.run('done');
SELECT toss_billing.advance_clock('10 minutes');
SELECT * FROM pg_temp.run('declined');
SELECT status, total, carried_forward, amount_due, status_reason FROM toss_billing.invoices
 WHERE subscription_id = :b AND kind = 'one_off';
-- a void invoice is not charged again: what it owed is on the next invoice
SELECT pg_temp.err(format('SELECT toss_billing.charge_invoice_now(%s)',
                               (SELECT id FROM toss_billing.invoices WHERE subscription_id = :b AND kind = 'one_off')));
SELECT kind, amount, description FROM pg_temp.preview(:b) WHERE kind = 'carried';
SELECT customer_key, type, reason FROM pg_temp.new_events() WHERE customer_key = 'in-b' AND type LIKE 'invoice%';

-- prorations that cannot be: another interval, an unpaid open period
SELECT pg_temp.err(format('SELECT toss_billing.change_plan(%s, %s, proration => %L)', :b, :yearly, 'immediate'));
SELECT pg_temp.err(format('SELECT toss_billing.change_plan(%s, %s, proration => %L)', :b, :pro, 'later'));
SELECT pg_temp.err(format('SELECT toss_billing.set_quantity(%s, 0)', :b));
SELECT pg_temp.err(format('SELECT toss_billing.set_quantity(%s, 2, %L)', :b, 'sometime'));
SELECT toss_billing.advance_clock('31 days');
SELECT * FROM pg_temp.run('declined');
SELECT pg_temp.err(format('SELECT toss_billing.change_plan(%s, %s, proration => %L)', :b, :pro, 'immediate'));
SELECT pending_plan_period FROM toss_billing.change_plan(:b, :pro);
SELECT pending_plan_id FROM toss_billing.change_plan(:b, :basic);

-- coupons: amount_off never takes a total below 0; max_redemptions holds;
-- an expired code is refused; one coupon per subscription (a new one replaces it)
SELECT code, amount_off, duration FROM toss_billing.create_coupon('BIG', amount_off => 50000, duration => 'once');
SELECT code, max_redemptions FROM toss_billing.create_coupon('ONLYONE', percent_off => 12.5, duration => 'forever',
                                                             max_redemptions => 1);
SELECT code FROM toss_billing.create_coupon('OLD', percent_off => 10, expires_at => '2025-01-01 00:00+09');
SELECT status FROM toss_billing.apply_coupon(:a, 'ONLYONE');
SELECT pg_temp.err(format('SELECT toss_billing.apply_coupon(%s, %L)', :b, 'ONLYONE'));
SELECT pg_temp.err(format('SELECT toss_billing.apply_coupon(%s, %L)', :b, 'OLD'));
SELECT pg_temp.err(format('SELECT toss_billing.apply_coupon(%s, %L)', :b, 'NOPE'));
SELECT status FROM toss_billing.apply_coupon(:a, 'BIG');
SELECT c.code, r.status FROM toss_billing.coupon_redemptions r JOIN toss_billing.coupons c ON c.id = r.coupon_id
 WHERE r.subscription_id = :a ORDER BY r.id;
SELECT pg_temp.err(format('SELECT toss_billing.apply_coupon(%s, %L)', :a, 'ONLYONE'));
SELECT kind, description, amount FROM pg_temp.preview(:a) WHERE kind IN ('plan', 'discount', '= total', '= amount_due');
SELECT toss_billing.remove_coupon(:a), toss_billing.remove_coupon(:a);
SELECT pg_temp.err($$SELECT toss_billing.create_coupon('BOTH', percent_off => 10, amount_off => 100)$$);
SELECT pg_temp.err($$SELECT toss_billing.create_coupon('P', percent_off => 120)$$);
SELECT pg_temp.err($$SELECT toss_billing.create_coupon('R', percent_off => 10, duration => 'repeating')$$);
SELECT pg_temp.err($$SELECT toss_billing.create_coupon('no spaces', percent_off => 10)$$);
SELECT pg_temp.err($$SELECT toss_billing.create_coupon('BIG', percent_off => 10)$$);

-- bad input
SELECT pg_temp.err(format('SELECT toss_billing.add_invoice_item(%s, 0, %L)', :a, '영'));
SELECT pg_temp.err(format('SELECT toss_billing.add_invoice_item(%s, 100, %L)', :a, E'tab\there'));
SELECT pg_temp.err(format('SELECT toss_billing.add_invoice_item(%s, 100, %L, quantity => 0)', :a, '수량'));
SELECT pg_temp.err('SELECT toss_billing.add_invoice_item(-1, 100, ''없음'')');
SELECT pg_temp.err('SELECT toss_billing.preview_invoice(-1)');
SELECT pg_temp.err('SELECT toss_billing.charge_invoice_now(-1)');
SELECT pg_temp.err('SELECT toss_billing.delete_invoice_item(-1)');
SELECT pg_temp.err(format('SELECT toss_billing.delete_invoice_item(%s)',
                               (SELECT min(it.id) FROM toss_billing.invoice_items it WHERE it.subscription_id = :a)));
SELECT pg_temp.err(format('SELECT toss_billing.change_price(%s, 50)', :a));
SELECT pg_temp.err('SELECT toss_billing.set_invoice_policy(grace_period => ''8 days'')');
SELECT pg_temp.err('SELECT toss_billing.set_invoice_policy(consent_fallback => ''refund'')');

-- canceled now: the open invoices no order is paying are voided; what the
-- subscription still owes goes on a final invoice (here: nothing)
SELECT status FROM toss_billing.cancel_subscription(:b, false);
SELECT * FROM pg_temp.invoices(:b);
SELECT pg_temp.err(format('SELECT toss_billing.preview_invoice(%s)', :b));
SELECT pg_temp.err(format('SELECT toss_billing.add_invoice_item(%s, 100, %L)', :b, '해지 후'));

SELECT pg_temp.cleanup('in-');
