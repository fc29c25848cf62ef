-- Plans and the subscription API: create, change plan, cancel, pause,
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- resume, and the transitions that need no charge (trial end, cancel at
-- period end, a plan change at the period boundary).  Nothing is charged
-- here: these customers have no billing key.
\set SHOW_CONTEXT never
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
\getenv tbtest TB_TEST
\set ECHO none
\set helpers :tbtest '/../../sql/include/subscription_helpers.psql'
\i :helpers
\set ECHO all

-- plans
SELECT name, amount, interval_unit, interval_count, trial_days, active
  FROM toss_billing.create_plan('베이직', 9900);
SELECT id AS basic FROM toss_billing.plans WHERE name = '베이직' \gset
SELECT id AS premium FROM toss_billing.create_plan('프리미엄', 19900) \gset
SELECT id AS trial FROM toss_billing.create_plan('체험 후 월간', 4900, trial_days => 7) \gset
SELECT id AS yearly FROM toss_billing.create_plan('연간', 99000, 'year') \gset
SELECT name, amount, interval_unit, interval_count, trial_days
  FROM toss_billing.create_plan('격주 배송', 15000, 'week', 2, 14);
SELECT toss_billing.create_plan('', 9900);
SELECT toss_billing.create_plan(repeat('가', 101), 9900);
SELECT toss_billing.create_plan(E'tab\there', 9900);
SELECT toss_billing.create_plan('싼 요금제', 99);
SELECT toss_billing.create_plan('음수', -1);
SELECT toss_billing.create_plan('격월', 9900, 'fortnight');
SELECT toss_billing.create_plan('격월', 9900, 'month', 0);
SELECT toss_billing.create_plan('격월', 9900, 'month', 1, -1);
SELECT toss_billing.create_plan(NULL, 9900);
\echo :LAST_ERROR_SQLSTATE
SELECT name, active FROM toss_billing.archive_plan(
    (SELECT id FROM toss_billing.plans WHERE name = '격주 배송'));
SELECT toss_billing.archive_plan(-1);
\echo :LAST_ERROR_SQLSTATE

-- subscriptions: the clock is frozen on 2024-03-15 10:00 in Seoul
SELECT toss_billing.freeze_clock('2024-03-15 10:00+09');
SELECT pg_catalog.count(*) FROM (VALUES ('sub-basic'), ('sub-trial'), ('sub-later'), ('sub-backdated'),
                                        ('sub-custom'), ('sub-nyc')) AS k(key),
       LATERAL toss_billing.create_customer(NULL, NULL, k.key);

-- no trial: period 0 starts now and is due now
SELECT status, period_number, current_period_start, current_period_end, next_charge_at, trial_end
  FROM toss_billing.create_subscription('sub-basic', :basic);
-- a 7-day trial: the first period starts when the trial ends
SELECT status, period_number, current_period_start, current_period_end, next_charge_at, trial_end
  FROM toss_billing.create_subscription('sub-trial', :trial);
-- an anchor in the future: nothing is due until then
SELECT status, period_number, current_period_start, current_period_end, next_charge_at
  FROM toss_billing.create_subscription('sub-later', :basic, '2024-04-01 00:00+09');
-- an anchor in the past starts with the period that contains the present,
-- so nothing before it is charged
SELECT status, period_number, current_period_start, current_period_end, next_charge_at, billing_anchor
  FROM toss_billing.create_subscription('sub-backdated', :basic, '2024-01-31 00:00+09');
-- a custom amount and metadata
SELECT status, amount_override, metadata
  FROM toss_billing.create_subscription('sub-custom', :basic, amount_override => 5000,
                                        metadata => '{"seat": 3, "channel": "app"}');
-- another time zone: periods follow New York's midnight
SELECT time_zone, current_period_start, current_period_end
  FROM toss_billing.create_subscription('sub-nyc', :yearly, '2024-03-15 00:00 America/New_York', 'America/New_York');

-- bad input
SELECT toss_billing.create_subscription('sub-nobody', :basic);
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.create_subscription('sub-basic', -1);
SELECT pg_temp.error_of($$SELECT toss_billing.create_subscription('sub-basic', (SELECT id FROM toss_billing.plans WHERE name = '격주 배송'))$$);
SELECT toss_billing.create_subscription('sub-basic', :basic, time_zone => 'UTC+9');
SELECT toss_billing.create_subscription('sub-basic', :basic, time_zone => 'Asia/Nowhere');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.create_subscription('sub-basic', :basic, amount_override => 50);
SELECT toss_billing.create_subscription('sub-basic', :basic, metadata => '[1, 2]');
SELECT toss_billing.create_subscription(NULL, :basic);
\echo :LAST_ERROR_SQLSTATE

SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events();

-- a plan change takes effect at the next period: for a trial, the first
-- paid period; for a started (unpaid) period, the one after it
SELECT id AS s_basic FROM toss_billing.subscriptions
 WHERE customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'sub-basic') \gset
SELECT id AS s_trial FROM toss_billing.subscriptions
 WHERE customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'sub-trial') \gset
SELECT id AS s_later FROM toss_billing.subscriptions
 WHERE customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'sub-later') \gset
SELECT plan_id = :basic AS still_basic, pending_plan_id = :premium AS premium_pending, pending_plan_period
  FROM toss_billing.change_plan(:s_basic, :premium);
SELECT plan_id = :trial AS still_trial, pending_plan_id = :premium AS premium_pending, pending_plan_period
  FROM toss_billing.change_plan(:s_trial, :premium);
-- choosing the current plan again withdraws the pending change
SELECT pending_plan_id, pending_plan_period FROM toss_billing.change_plan(:s_basic, :basic);
SELECT pg_temp.error_of(format('SELECT toss_billing.change_plan(%s, (SELECT id FROM toss_billing.plans WHERE name = %L))', :s_basic, '격주 배송'));
SELECT toss_billing.change_plan(:s_basic, -1);
SELECT toss_billing.change_plan(-1, :basic);
\echo :LAST_ERROR_SQLSTATE

-- cancel at period end: the end of the paid time (the trial's end), or of
-- the open period once it has started; asking twice changes nothing
SELECT status, cancel_at_period_end, cancel_at FROM toss_billing.cancel_subscription(:s_trial);
SELECT status, cancel_at_period_end, cancel_at FROM toss_billing.cancel_subscription(:s_trial);
SELECT status, cancel_at_period_end, cancel_at FROM toss_billing.cancel_subscription(:s_basic, at_period_end => true);

-- pause and resume
SELECT status, paused_at, next_charge_at FROM toss_billing.pause_subscription(:s_later);
SELECT pg_temp.error_of(format('SELECT toss_billing.pause_subscription(%s)', :s_later));
SELECT pg_temp.error_of(format('SELECT toss_billing.resume_subscription(%s)', :s_basic));
-- resumed before its paid time ended: nothing changes
SELECT status, current_period_start, current_period_end, next_charge_at FROM toss_billing.resume_subscription(:s_later);

SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events();

-- a week later the trial ends: the cancel scheduled for its end wins, so it
-- is never charged.  _claim_due(0) applies due transitions and claims nothing.
SELECT toss_billing.advance_clock('7 days');
SELECT count(*) AS claimed FROM toss_billing._claim_due(0);
SELECT * FROM pg_temp.subs('sub-');
SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events();

-- a trial that just ends becomes active, with its pending plan change
SELECT pg_temp.customer('sub-trial2');
SELECT id AS s_trial2 FROM toss_billing.create_subscription('sub-trial2', :trial) \gset
SELECT pending_plan_period FROM toss_billing.change_plan(:s_trial2, :yearly);
-- pausing a trial and resuming it before its end keeps the trial
SELECT status FROM toss_billing.pause_subscription(:s_trial2);
SELECT status, next_charge_at FROM toss_billing.resume_subscription(:s_trial2);
SELECT toss_billing.advance_clock('7 days');
SELECT count(*) AS claimed FROM toss_billing._claim_due(0);
SELECT * FROM pg_temp.subs('sub-trial2');
SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events();
-- the plan change re-based the periods on the yearly interval
SELECT detail->'rebased' AS rebased, detail->'period_number' AS period_number,
       (detail->>'to_plan_id')::bigint = :yearly AS to_yearly
  FROM toss_billing.events WHERE subscription_id = :s_trial2 AND type = 'plan_changed';

-- resuming after the paid time ended starts a fresh period at once
SELECT status FROM toss_billing.pause_subscription(:s_trial2);
SELECT toss_billing.advance_clock('400 days');
SELECT status, period_number, current_period_start, current_period_end, next_charge_at
  FROM toss_billing.resume_subscription(:s_trial2);

-- cancel now
SELECT status, canceled_at, next_charge_at FROM toss_billing.cancel_subscription(:s_later, false);
SELECT pg_temp.error_of(format('SELECT toss_billing.cancel_subscription(%s)', :s_later));
SELECT pg_temp.error_of(format('SELECT toss_billing.pause_subscription(%s)', :s_later));
SELECT pg_temp.error_of(format('SELECT toss_billing.change_plan(%s, %s)', :s_later, :premium));
SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events();

SELECT pg_temp.cleanup('sub-');
