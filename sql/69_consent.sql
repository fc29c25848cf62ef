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
-- is refused: a time in the future, evidence that is not an object, bad channels, NULLs
SELECT counts, why_not FROM toss_billing.record_consent(:y, :ry, '2024-12-10 11:59+09', 'web', '{}');
SELECT counts, why_not FROM toss_billing.record_consent(:y, :ry, toss_billing.now(), 'web', '{"new_amount": 65000}');
SELECT status FROM toss_billing.consent_requirements WHERE id = :ry;
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, now() + interval ''1 year'', ''web'', ''{}'')', :y, :ry));
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, toss_billing.now(), ''web'', ''[1]'')', :y, :ry));
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, toss_billing.now(), '''', ''{}'')', :y, :ry));
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, ''infinity'', ''web'', ''{}'')', :y, :ry));
SELECT pg_temp.err(format('SELECT toss_billing.record_consent(%s, %s, toss_billing.now(), ''web'', NULL)', :y, :ry));
-- ... and what counts: within the 30 days, for these amounts
SELECT counts, why_not, old_amount, new_amount, effective_at, recorded_by = session_user AS by_session_user
  FROM toss_billing.record_consent(:y, :ry, toss_billing.now(), 'kakao', '{"template": "price-up", "old_amount": 59000, "new_amount": 69000}');
SELECT toss_billing.advance_clock('7 days');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.sub_events(:y);

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

-- the auditor's view: every increase, whatever became of it, with evidence
SELECT customer_key, reason, old_amount, new_amount, status, fallback, channel, evidence, consents_not_counted IS NOT NULL AS had_others,
       invoice_status, charged_recurring_amount
  FROM toss_billing.price_increases WHERE customer_key LIKE 'cs-%' ORDER BY requirement_id;
SELECT x->>'why_not' AS why_not FROM toss_billing.price_increases p, jsonb_array_elements(p.consents_not_counted) x
 WHERE p.customer_key = 'cs-year' ORDER BY x->>'consent_id';

SELECT pg_temp.cleanup('cs-');
