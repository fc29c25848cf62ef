-- A year of a subscription billed by invoices (issue 14), on a frozen clock
-- and through the runner's SQL half: a mid-month upgrade charged at once
-- (immediate proration), a seat increase prorated on the next invoice, a
-- downgrade at the period's end, metered usage priced by graduated tiers
-- (with late usage), a 3-period coupon, a one-off (tax-free) item, a
-- zero-total invoice, a 50 KRW remainder carried to the next invoice, the
-- consent rule for the coupon's end and a price increase (a consent dated
-- 31 days before, before its requirement was made, is refused; one 10 days
-- before counts), and trials that
-- convert to paid with and without consent.  Every invoice's lines and
-- totals are checked to the won, and the runner charges exactly amount_due.
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

SELECT id AS team FROM toss_billing.create_plan('팀', 10000) \gset
SELECT id AS plus FROM toss_billing.create_plan('팀 플러스', 20000) \gset
SELECT id AS solo FROM toss_billing.create_plan('솔로', 5000) \gset
-- API calls: the first 1,000 free, then 2 KRW each up to 10,000, then 1 KRW
SELECT metric, aggregation, tiers, tiers_mode
  FROM toss_billing.add_plan_meter(:team, 'api_calls', tiers => '[{"up_to": 1000, "unit_amount": 0},
                                                                  {"up_to": 10000, "unit_amount": 2},
                                                                  {"up_to": null, "unit_amount": 1}]',
                                   description => 'API 호출');
SELECT count(*) FROM toss_billing.add_plan_meter(:plus, 'api_calls', tiers => '[{"up_to": 1000, "unit_amount": 0},
                                                                                {"up_to": 10000, "unit_amount": 2},
                                                                                {"up_to": null, "unit_amount": 1}]',
                                                 description => 'API 호출');
SELECT count(*) FROM toss_billing.add_plan_meter(:solo, 'api_calls', unit_amount => 1, description => 'API 호출');
SELECT code, percent_off, duration, duration_periods
  FROM toss_billing.create_coupon('WELCOME3', percent_off => 20, duration => 'repeating', duration_periods => 3);
SELECT pg_temp.customer('iy-team', '김팀장', 'team@example.com');

-- Jan 1: subscribed; the first invoice is the plan line alone
SELECT toss_billing.freeze_clock('2025-01-01 00:00+09');
SELECT id AS sub FROM toss_billing.create_subscription('iy-team', :team) \gset
SELECT * FROM pg_temp.preview(:sub);
SELECT * FROM pg_temp.run('done');
-- the coupon takes 20% off the next three period invoices
SELECT status, periods_applied FROM toss_billing.apply_coupon(:sub, 'WELCOME3');
SELECT status, periods_applied FROM toss_billing.apply_coupon(:sub, 'WELCOME3');
SELECT times_redeemed FROM toss_billing.coupons WHERE code = 'WELCOME3';

-- January's usage: 4,500 calls (1,000 free + 3,500 x 2 = 7,000 KRW); the
-- same idempotency key again is a no-op, with another quantity an error
SELECT toss_billing.record_usage(:sub, 'api_calls', 3000, '2025-01-05 10:00+09', 'jan-a');
SELECT toss_billing.record_usage(:sub, 'api_calls', 1500, '2025-01-12 10:00+09', 'jan-b');
SELECT toss_billing.record_usage(:sub, 'api_calls', 1500, '2025-01-12 10:00+09', 'jan-b');
SELECT pg_temp.error_of(format('SELECT toss_billing.record_usage(%s, %L, 1600, idempotency_key => %L)', :sub, 'api_calls', 'jan-b'));

-- Jan 16, midnight: an upgrade to 팀 플러스, charged at once.  The period is
-- Jan 1 - Feb 1 (31 days); 16 days are left: a credit of 10,000 x 16/31 =
-- 5,161.29 -> 5,161 and a charge of 20,000 x 16/31 = 10,322.58 -> 10,323.
-- The customer's upgrade is their consent to the next period's price.
SELECT toss_billing.advance_clock('15 days');
SELECT plan_id = :plus AS upgraded FROM toss_billing.change_plan(:sub, :plus, proration => 'immediate');
SELECT reason, old_amount, new_amount, effective_at, status FROM toss_billing.consent_requirements WHERE subscription_id = :sub;
SELECT counts, why_not FROM toss_billing.record_consent(:sub, pg_temp.requirement(:sub), toss_billing.now(), 'web',
                                                       '{"action": "upgrade", "old_amount": 10000, "new_amount": 16000}');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.invoices(:sub);
SELECT * FROM pg_temp.lines(:sub, 2);

-- Feb 1: plan 20,000 + January's usage 7,000 = 27,000, less 20% (5,400)
SELECT toss_billing.advance_clock('16 days');
SELECT * FROM pg_temp.preview(:sub);
SELECT * FROM pg_temp.run('done');
-- January usage recorded late: 600 more calls on Jan 20 go on the next
-- invoice as a late line: price(5,100) - price(4,500) = 8,200 - 7,000
SELECT toss_billing.advance_clock('2 days');
SELECT toss_billing.record_usage(:sub, 'api_calls', 600, '2025-01-20 10:00+09', 'jan-late');

-- Feb 10: two more seats (an increase: prorated on the next invoice).  The
-- period is Feb 1 - Mar 1 (28 days); 19 days left: a credit of 20,000 x 1 x
-- 19/28 = 13,571.43 -> 13,571, a charge of 20,000 x 3 x 19/28 = 40,714.29 ->
-- 40,714.  And a tax-free one-off item (an onboarding workshop, 30,000).
SELECT toss_billing.advance_clock('7 days');
SELECT quantity FROM toss_billing.set_quantity(:sub, 3);
SELECT kind, description, amount, tax_free
  FROM toss_billing.add_invoice_item(:sub, 30000, '온보딩 워크숍', tax_free => true, idempotency_key => 'workshop');
SELECT id AS workshop FROM toss_billing.add_invoice_item(:sub, 30000, '온보딩 워크숍', tax_free => true,
                                                         idempotency_key => 'workshop') \gset
-- February's usage: 12,000 calls = 1,000 free + 9,000 x 2 + 2,000 x 1 = 20,000
SELECT toss_billing.record_usage(:sub, 'api_calls', 12000, '2025-02-20 10:00+09', 'feb-a');
-- quantity changes are the customer's own: no consent requirement
SELECT count(*) AS requirements FROM toss_billing.consent_requirements WHERE subscription_id = :sub AND status = 'pending';

-- Mar 1: 60,000 - 13,571 + 40,714 + 20,000 + 1,200 (late) + 30,000 = 138,343,
-- less 20% (27,668.6 -> 27,669) = 110,674; tax-free: 30,000 less its share of
-- the discount (27,669 x 30,000 / 138,343 = 6,000.1 -> 6,000) = 24,000
SELECT toss_billing.advance_clock('19 days');
SELECT * FROM pg_temp.preview(:sub);
SELECT * FROM pg_temp.run('done');
SELECT amount, tax_free_amount, invoice_id IS NOT NULL AS pays_an_invoice
  FROM toss_billing.payments WHERE subscription_id = :sub AND period_number = 2;

-- Mar 15: a downgrade to 솔로, by default at the period's end (Apr 1)
SELECT toss_billing.advance_clock('14 days');
SELECT pending_plan_id = :solo AS pending_solo, pending_plan_period FROM toss_billing.change_plan(:sub, :solo);
-- March's usage, priced by the meter of the plan it is recorded under:
-- 팀 플러스's until Apr 1, so 800 calls are free
SELECT toss_billing.record_usage(:sub, 'api_calls', 800, '2025-03-20 10:00+09', 'mar-a');

-- Apr 1: 솔로 x 3 = 15,000 + 0 usage, less 20% = 12,000: the coupon's third
-- and last period.  Its end raises May's recurring amount (12,000 -> 15,000):
-- a consent requirement, effective May 1
SELECT toss_billing.advance_clock('17 days');
SELECT * FROM pg_temp.run('done');
SELECT status, periods_applied FROM toss_billing.coupon_redemptions WHERE subscription_id = :sub;
SELECT reason, quantity, old_amount, new_amount, effective_at, status, noticed_at
  FROM toss_billing.consent_requirements WHERE subscription_id = :sub ORDER BY id;
-- April's usage on 솔로: 1 KRW per call
SELECT toss_billing.record_usage(:sub, 'api_calls', 2500, '2025-04-10 10:00+09', 'apr-a');
-- Apr 21, 10 days before: the customer consents
SELECT toss_billing.advance_clock('20 days');
SELECT counts, why_not FROM toss_billing.record_consent(:sub, pg_temp.requirement(:sub), toss_billing.now(), 'app',
                                                       '{"screen": "price-notice-v2"}');

-- May 1: 15,000 (the coupon is over; consented) + 2,500 usage
SELECT toss_billing.advance_clock('10 days');
SELECT * FROM pg_temp.run('done');

-- May 20: the price rises to 6,000 a seat from Jul 1.  June's invoice is
-- unchanged; once it is finalised the requirement for July appears
SELECT toss_billing.advance_clock('19 days');
SELECT pending_amount, pending_amount_period FROM toss_billing.change_price(:sub, 6000, '2025-07-01 00:00+09');
SELECT toss_billing.advance_clock('12 days');
SELECT * FROM pg_temp.run('done');
SELECT reason, quantity, old_amount, new_amount, effective_at, status
  FROM toss_billing.consent_requirements WHERE subscription_id = :sub ORDER BY id DESC LIMIT 1;
-- Jun 21: a consent dated May 31, 31 days before Jul 1, is refused: the
-- requirement was made on Jun 1 (when June's invoice was finalised), and a
-- consent cannot be to a change the customer was not told of yet.  One
-- given now, 10 days before, counts
SELECT toss_billing.advance_clock('20 days');
SELECT required_at FROM toss_billing.consent_requirements WHERE id = pg_temp.requirement(:sub);
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, ''2025-05-31 00:00+09'', ''email'', ''{"message_id": "m-1"}'')',
                          :sub, pg_temp.requirement(:sub)));
SELECT status FROM toss_billing.consent_requirements WHERE id = pg_temp.requirement(:sub);
SELECT counts, why_not FROM toss_billing.record_consent(:sub, pg_temp.requirement(:sub), toss_billing.now(), 'email',
                                                       '{"message_id": "m-2", "old_amount": 15000, "new_amount": 18000}');

-- Jul 1: 6,000 x 3 = 18,000, consented
SELECT toss_billing.advance_clock('10 days');
SELECT * FROM pg_temp.run('done');

-- a goodwill credit of 18,000 for July: August's invoice totals 0 and is
-- paid without a call to Toss
SELECT kind, amount FROM toss_billing.add_invoice_item(:sub, -18000, '장애 보상 크레딧');
SELECT toss_billing.advance_clock('31 days');
SELECT * FROM pg_temp.run('done');
-- a credit of 17,950 for August: September's total is 50 KRW, below Toss's
-- minimum of 100: never sent, carried to October's invoice
SELECT kind, amount FROM toss_billing.add_invoice_item(:sub, -17950, '부분 보상 크레딧');
SELECT toss_billing.advance_clock('31 days');
SELECT * FROM pg_temp.run('done');
SELECT toss_billing.advance_clock('30 days');
SELECT * FROM pg_temp.preview(:sub);
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('iy-team');

-- every invoice and every line, to the won
SELECT * FROM pg_temp.invoices(:sub);
SELECT * FROM pg_temp.lines(:sub);
-- the ledger charged exactly the invoices' amounts due, once each; nothing
-- for the invoices paid without a charge
SELECT regexp_replace(p.order_id, '^sub[0-9]+-|^inv[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS "order", i.kind, i.period_number,
       p.amount, p.tax_free_amount, p.state, p.amount = i.amount_due AND p.tax_free_amount = i.tax_free_amount AS exact
  FROM toss_billing.payments p JOIN toss_billing.invoices i ON i.id = p.invoice_id
 WHERE i.subscription_id = :sub ORDER BY p.id;
SELECT count(*) AS invoices_without_order FROM toss_billing.invoices i
 WHERE i.subscription_id = :sub AND NOT EXISTS (SELECT FROM toss_billing.payments p WHERE p.invoice_id = i.id);
-- every usage record billed once, the late one on the invoice after its period's
SELECT u.usage_key, u.quantity, (SELECT n FROM (SELECT i.id, row_number() OVER (ORDER BY i.id) AS n
                                                      FROM toss_billing.invoices i WHERE i.subscription_id = :sub) x
                                        WHERE x.id = u.invoice_id) AS invoice_no
  FROM toss_billing.usage_records u WHERE u.subscription_id = :sub ORDER BY u.occurred_at;
SELECT e.occurred_at, e.type, e.reason FROM toss_billing.events e
 WHERE e.subscription_id = :sub AND e.type NOT IN ('payment_succeeded', 'created') ORDER BY e.id;

-- Trials converting to paid (the conversion is an increase from 0): with a
-- consent given at sign-up, within the 30 days before the trial ends, it is
-- charged; without one it is canceled when the trial ends, never charged
SELECT id AS trial FROM toss_billing.create_plan('체험 후 팀', 9900, trial_days => 14) \gset
SELECT pg_temp.customer('iy-trial-yes');
SELECT pg_temp.customer('iy-trial-no');
SELECT id AS yes FROM toss_billing.create_subscription('iy-trial-yes', :trial) \gset
SELECT id AS no FROM toss_billing.create_subscription('iy-trial-no', :trial) \gset
SELECT subscription_id = :yes AS yes, reason, old_amount, new_amount, effective_at, status, noticed_at IS NOT NULL AS noticed
  FROM toss_billing.consent_requirements WHERE subscription_id IN (:yes, :no) ORDER BY id;
SELECT counts FROM toss_billing.record_consent(:yes, pg_temp.requirement(:yes), toss_billing.now(), 'signup',
                                              '{"checkbox": "trial-conversion-9900"}');
SELECT toss_billing.advance_clock('14 days');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('iy-trial');
SELECT subscription_id = :yes AS yes, status, fallback FROM toss_billing.consent_requirements
 WHERE subscription_id IN (:yes, :no) ORDER BY id;
SELECT * FROM pg_temp.invoices(:no);
SELECT customer_key, type, to_status, reason FROM pg_temp.new_events() WHERE customer_key = 'iy-trial-no';

-- the auditor's list of every increase, with its evidence
SELECT customer_key, reason, effective_at, old_amount, new_amount, status, fallback, channel, evidence,
       jsonb_array_length(consents_not_counted) AS not_counted, charged_recurring_amount
  FROM toss_billing.price_increases WHERE customer_key LIKE 'iy-%' ORDER BY requirement_id;

SELECT pg_temp.cleanup('iy-');
