-- The price-change consent rule (전자상거래법 제13조 제6항, 시행령 제20조의2):
-- the events that tell the app to ask (30 days before the effective date,
-- then the reminder), what a consent must be to count, the two fallbacks
-- when it is missing (keep the old amount and ask again; cancel), terms that
-- change again (superseded) or go back (withdrawn), a removed coupon, the
-- rule switched off, and the auditor's view.
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

-- the DETAIL of a refused call (requirement ids written as #)
CREATE FUNCTION pg_temp.err_detail(statement text)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_detail text;
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || regexp_replace(v_detail, 'requirement [0-9]+', 'requirement #', 'g');
END;
$$;

SELECT id AS monthly FROM toss_billing.create_plan('월간 뉴스레터', 5900) \gset
SELECT id AS yearly FROM toss_billing.create_plan('연간 뉴스레터', 59000, 'year') \gset
SELECT count(*) FROM (SELECT pg_temp.customer(k) FROM unnest(ARRAY['cs-year', 'cs-keep', 'cs-cancel', 'cs-back',
                                                                  'cs-coupon', 'cs-off']) k) x;
SELECT toss_billing.freeze_clock('2025-01-10 12:00+09');

-- a yearly subscription: the price rises from the next year.  The
-- requirement is made at once; its consent_required event comes 30 days
-- before the effective date, the reminder 7 days before
SELECT id AS y FROM toss_billing.create_subscription('cs-year', :yearly) \gset
SELECT * FROM pg_temp.run('done');
SELECT pending_amount_period FROM toss_billing.change_price(:y, 69000);
SELECT reason, quantity, old_amount, new_amount, effective_at, notice_at, reminder_at, noticed_at, payment_method, status
  FROM toss_billing.consent_requirements WHERE subscription_id = :y;
SELECT * FROM pg_temp.sub_events(:y);
SELECT toss_billing.advance_clock('335 days');
SELECT count(*) FROM toss_billing._claim_due(0);
SELECT * FROM pg_temp.sub_events(:y);
SELECT toss_billing.advance_clock('1 day');
SELECT count(*) FROM toss_billing._claim_due(0);
SELECT * FROM pg_temp.sub_events(:y);
SELECT detail - 'requirement_id' AS detail FROM toss_billing.events WHERE subscription_id = :y AND type = 'consent_required';
SELECT toss_billing.advance_clock('23 days');
SELECT count(*) FROM toss_billing._claim_due(0);
SELECT * FROM pg_temp.sub_events(:y);
SELECT pg_temp.requirement(:y) AS ry \gset
-- what does not count: 31 days before; evidence naming other amounts.  What
-- is refused: a time before the requirement was made (2025-01-10 12:00: the
-- customer cannot have been told of the change), a time in the future,
-- evidence that is not an object, bad channels, NULLs
SELECT required_at FROM toss_billing.consent_requirements WHERE id = :ry;
SELECT counts, why_not FROM toss_billing.record_consent(:y, :ry, '2025-12-10 11:59+09', 'web', '{}');
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, ''2025-01-10 11:59+09'', ''web'', ''{}'')', :y, :ry));
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, ''2024-12-10 11:59+09'', ''web'', ''{}'')', :y, :ry));
SELECT counts, why_not FROM toss_billing.record_consent(:y, :ry, toss_billing.now(), 'web', '{"new_amount": 65000}');
SELECT status FROM toss_billing.consent_requirements WHERE id = :ry;
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, now() + interval ''1 year'', ''web'', ''{}'')', :y, :ry));
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, toss_billing.now(), ''web'', ''[1]'')', :y, :ry));
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, toss_billing.now(), '''', ''{}'')', :y, :ry));
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, ''infinity'', ''web'', ''{}'')', :y, :ry));
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, toss_billing.now(), ''web'', NULL)', :y, :ry));
-- ... and what counts: within the 30 days (here 10 days before), for these amounts
SELECT counts, why_not, consented_at, old_amount, new_amount, effective_at, recorded_by = session_user AS by_session_user
  FROM toss_billing.record_consent(:y, :ry, '2025-12-31 12:00+09', 'kakao', '{"template": "price-up", "old_amount": 59000, "new_amount": 69000}');
SELECT toss_billing.advance_clock('7 days');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.sub_events(:y);

-- a change made late, 5 days before it takes effect: the 30-day window
-- opened before the requirement existed, but a consent dated before the
-- requirement (here 20 days before the effective date) cannot be to it and
-- is refused; one given once the customer was told counts
SELECT pg_temp.customer('cs-late');
SELECT toss_billing.freeze_clock('2025-02-01 09:00+09');
SELECT id AS l FROM toss_billing.create_subscription('cs-late', :monthly) \gset
SELECT * FROM pg_temp.run('done');
SELECT toss_billing.advance_clock('23 days');
SELECT pending_amount_period FROM toss_billing.change_price(:l, 6900);
SELECT reason, old_amount, new_amount, effective_at, required_at, noticed_at, status
  FROM toss_billing.consent_requirements WHERE subscription_id = :l;
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, ''2025-02-09 09:00+09'', ''web'', ''{}'')',
                          :l, pg_temp.requirement(:l)));
SELECT pg_temp.err_detail(format('SELECT toss_billing.record_consent(%s, %s, ''2025-02-09 09:00+09'', ''web'', ''{}'')',
                                 :l, pg_temp.requirement(:l)));
SELECT count(*) AS consents FROM toss_billing.consents WHERE subscription_id = :l;
SELECT counts, why_not, consented_at FROM toss_billing.record_consent(:l, pg_temp.requirement(:l), toss_billing.now(), 'web', '{}');
SELECT status FROM toss_billing.consent_requirements WHERE subscription_id = :l;
SELECT status FROM toss_billing.cancel_subscription(:l, false);

-- keep_old_amount (the default): without consent the previous amount is
-- charged, the increase taken off by a consent_adjustment line; the next
-- period asks again, and once consented the new price is charged
SELECT toss_billing.freeze_clock('2025-03-01 09:00+09');
SELECT id AS k FROM toss_billing.create_subscription('cs-keep', :monthly) \gset
-- (a requirement is its subscription's only)
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, toss_billing.now(), ''web'', ''{}'')', :k, :ry));
SELECT * FROM pg_temp.run('done');
SELECT pending_amount_period FROM toss_billing.change_price(:k, 7900);
SELECT toss_billing.advance_clock('1 mon');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.lines(:k, 2);
SELECT reason, old_amount, new_amount, effective_at, status, fallback FROM toss_billing.consent_requirements
 WHERE subscription_id = :k ORDER BY id;
SELECT * FROM pg_temp.sub_events(:k);
SELECT toss_billing.advance_clock('20 days');
SELECT counts FROM toss_billing.record_consent(:k, pg_temp.requirement(:k), toss_billing.now(), 'app', '{}');
SELECT toss_billing.advance_clock('10 days');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.invoices(:k);

-- cancel: without consent the subscription ends when the increase would
-- take effect, never charged the new price
SELECT consent_fallback FROM toss_billing.set_invoice_policy(consent_fallback => 'cancel');
SELECT id AS c FROM toss_billing.create_subscription('cs-cancel', :monthly) \gset
SELECT * FROM pg_temp.run('done');
SELECT pending_amount_period FROM toss_billing.change_price(:c, 7900);
SELECT toss_billing.advance_clock('1 mon');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('cs-cancel');
SELECT * FROM pg_temp.invoices(:c);
SELECT * FROM pg_temp.sub_events(:c);
SELECT consent_fallback FROM toss_billing.set_invoice_policy(consent_fallback => 'keep_old_amount');

-- terms that change again supersede the requirement (its consent no longer
-- counts for them); terms that go back withdraw it
SELECT id AS b FROM toss_billing.create_subscription('cs-back', :monthly) \gset
SELECT * FROM pg_temp.run('done');
SELECT pending_amount FROM toss_billing.change_price(:b, 6900);
SELECT pending_amount FROM toss_billing.change_price(:b, 7900);
SELECT pending_amount FROM toss_billing.change_price(:b, 5900);
SELECT old_amount, new_amount, status FROM toss_billing.consent_requirements WHERE subscription_id = :b ORDER BY id;
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, toss_billing.now(), ''web'', ''{}'')',
                          :b, (SELECT min(id) FROM toss_billing.consent_requirements WHERE subscription_id = :b)));

-- a coupon removed raises the recurring amount too
SELECT code FROM toss_billing.create_coupon('FRIEND', percent_off => 50, duration => 'forever');
SELECT id AS cp FROM toss_billing.create_subscription('cs-coupon', :monthly) \gset
SELECT status FROM toss_billing.apply_coupon(:cp, 'FRIEND');
SELECT * FROM pg_temp.run('done');
SELECT toss_billing.remove_coupon(:cp);
SELECT reason, old_amount, new_amount, status FROM toss_billing.consent_requirements WHERE subscription_id = :cp;

-- the rule switched off (an installation billing businesses): no requirements
SELECT consent_rule FROM toss_billing.set_invoice_policy(consent_rule => 'off');
SELECT id AS o FROM toss_billing.create_subscription('cs-off', :monthly) \gset
SELECT * FROM pg_temp.run('done');
SELECT pending_amount FROM toss_billing.change_price(:o, 9900);
SELECT count(*) AS requirements FROM toss_billing.consent_requirements WHERE subscription_id = :o;
SELECT toss_billing.advance_clock('1 mon');
SELECT * FROM pg_temp.run('done') WHERE customer_key = 'cs-off';
SELECT consent_rule FROM toss_billing.set_invoice_policy(consent_rule => 'enforce');
SELECT pg_temp.err('SELECT toss_billing.set_invoice_policy(consent_rule => ''sometimes'')');

-- seats change after a price increase was announced: the requirement is
-- restated at the quantity the invoice will charge (superseded by one with
-- the amounts at the new quantity, restated_from the first), so the
-- evidence check compares what the customer is shown now; a consent that
-- counted still counts after the customer changes the seats; the seats
-- themselves never make a requirement.  (On a test clock of its own: the
-- others' subscriptions are not due meanwhile.)
SELECT toss_billing.create_test_clock('2025-08-01 10:00+09') AS seat_clock \gset
SELECT count(*) FROM (SELECT pg_temp.customer(k) FROM unnest(ARRAY['cs-seats', 'cs-seats-coupon']) k) x;
SELECT id AS q FROM toss_billing.create_subscription('cs-seats', :monthly, anchor => '2025-08-01 10:00+09',
                                                     test_clock_id => :seat_clock) \gset
SELECT * FROM pg_temp.run('done');
SELECT toss_billing.advance_test_clock(:seat_clock, '10 days');
SELECT pending_amount_period FROM toss_billing.change_price(:q, 7900);
SELECT quantity FROM toss_billing.set_quantity(:q, 3);
SELECT quantity, old_amount, new_amount, status, restated_from IS NOT NULL AS restated, required_at
  FROM toss_billing.consent_requirements WHERE subscription_id = :q ORDER BY id;
SELECT occurred_at, type, reason, detail->>'quantity' AS quantity, detail->>'old_amount' AS old_amount,
       detail->>'new_amount' AS new_amount
  FROM toss_billing.events WHERE subscription_id = :q AND type = 'consent_required' ORDER BY id;
-- the customer is shown the amounts at 3 seats, and consents: it counts
SELECT counts, why_not, old_amount, new_amount
  FROM toss_billing.record_consent(:q, pg_temp.requirement(:q), toss_billing.subscription_now(:q), 'web',
                                   '{"old_amount": 17700, "new_amount": 23700}');
-- the first statement takes no consent any more
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, toss_billing.subscription_now(%s), ''web'', ''{}'')',
                          :q, (SELECT min(id) FROM toss_billing.consent_requirements WHERE subscription_id = :q), :q));
SELECT pg_temp.err_detail(format('SELECT toss_billing.record_consent(%s, %s, toss_billing.subscription_now(%s), ''web'', ''{}'')',
                                 :q, (SELECT min(id) FROM toss_billing.consent_requirements WHERE subscription_id = :q), :q));
-- down to 2 seats from the next period: restated again, still consented (no new notice)
SELECT pending_quantity FROM toss_billing.set_quantity(:q, 2);
SELECT quantity, old_amount, new_amount, status, restated_from = (SELECT min(id) FROM toss_billing.consent_requirements
                                                                    WHERE subscription_id = :q) AS restates_the_first
  FROM toss_billing.consent_requirements WHERE subscription_id = :q ORDER BY id;
SELECT count(*) AS consent_required_events FROM toss_billing.events WHERE subscription_id = :q AND type = 'consent_required';
SELECT period_number, recurring_amount, consent, consent_requirement_id = pg_temp.requirement(:q) AS its_requirement
  FROM toss_billing.preview_invoice(:q);
-- Sep 1: 2 seats at 7,900 = 15,800, consented (and the proration of the
-- third seat's 21 days); the auditor sees one price change at the
-- quantity charged, with the consent given at 3 seats
SELECT toss_billing.advance_test_clock(:seat_clock, '21 days');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.invoices(:q);
SELECT * FROM pg_temp.lines(:q, 2);
SELECT quantity, old_amount, new_amount, status, invoice_status, charged_recurring_amount, channel, evidence,
       consents_not_counted, restated_from IS NOT NULL AS restated
  FROM toss_billing.price_increases WHERE subscription_id = :q ORDER BY requirement_id;

-- a seat increase alone makes no requirement; a price change that is an
-- increase only at 3 seats (a fixed coupon's 5,000 off: 3 x 7,900 - 5,000
-- = 18,700 > 17,700, but 7,900 - 5,000 = 2,900 < 5,900) is withdrawn when
-- the customer goes down to 1 seat
SELECT code FROM toss_billing.create_coupon('SEAT5000', amount_off => 5000, duration => 'forever');
SELECT id AS qc FROM toss_billing.create_subscription('cs-seats-coupon', :monthly, anchor => '2025-09-01 10:00+09',
                                                      test_clock_id => :seat_clock) \gset
SELECT quantity FROM toss_billing.set_quantity(:qc, 3);
SELECT * FROM pg_temp.run('done');
SELECT quantity FROM toss_billing.set_quantity(:qc, 4, proration => 'none');
SELECT quantity FROM toss_billing.set_quantity(:qc, 3, proration => 'none');
SELECT count(*) AS requirements FROM toss_billing.consent_requirements WHERE subscription_id = :qc;
SELECT status FROM toss_billing.apply_coupon(:qc, 'SEAT5000');
SELECT pending_amount FROM toss_billing.change_price(:qc, 7900);
SELECT pending_quantity FROM toss_billing.set_quantity(:qc, 1);
SELECT reason, quantity, old_amount, new_amount, status FROM toss_billing.consent_requirements
 WHERE subscription_id = :qc ORDER BY id;
SELECT count(*) FROM (SELECT toss_billing.cancel_subscription(x, false) FROM unnest(ARRAY[:q, :qc]) x) c;

-- the auditor's view: every increase, whatever became of it, with evidence
SELECT customer_key, reason, old_amount, new_amount, status, fallback, channel, evidence, consents_not_counted IS NOT NULL AS had_others,
       invoice_status, charged_recurring_amount
  FROM toss_billing.price_increases WHERE customer_key LIKE 'cs-%' ORDER BY requirement_id;
SELECT x->>'why_not' AS why_not FROM toss_billing.price_increases p, jsonb_array_elements(p.consents_not_counted) x
 WHERE p.customer_key = 'cs-year' ORDER BY x->>'consent_id';

SELECT pg_temp.cleanup('cs-');
