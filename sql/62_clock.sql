-- The test clock: toss_billing.now() is the frozen database clock if there
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- is one, and a subscription on a test clock lives on that clock alone.
\set SHOW_CONTEXT never
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';

-- real time unless frozen
SELECT toss_billing.now() = now() AS real_time, count(*) AS frozen FROM toss_billing.clock;

SELECT toss_billing.freeze_clock('2024-01-31 00:00+09');
SELECT toss_billing.now();
SELECT toss_billing.advance_clock('1 month');
SELECT toss_billing.advance_clock('1 day 02:30');
SELECT toss_billing.now();
-- freezing again moves the frozen clock, even backwards
SELECT toss_billing.freeze_clock('2024-01-01 09:00+09');
SELECT toss_billing.now();
-- the clock is the same for every session: it is a row, not a setting
SELECT frozen_at FROM toss_billing.clock;

-- a clock only moves forward; an unfrozen clock cannot be advanced
SELECT toss_billing.advance_clock('-1 day');
SELECT toss_billing.advance_clock(NULL);
SELECT toss_billing.freeze_clock(NULL);
SELECT toss_billing.unfreeze_clock() = now() AS unfrozen;
SELECT toss_billing.now() = now() AS real_time;
SELECT toss_billing.advance_clock('1 day');
\echo :LAST_ERROR_SQLSTATE

-- test clocks
SELECT toss_billing.create_test_clock('2024-02-29 10:00+09') AS clock_a \gset
SELECT toss_billing.create_test_clock('2030-01-01 00:00+09') AS clock_b \gset
SELECT toss_billing.advance_test_clock(:clock_a, '1 year');
SELECT toss_billing.advance_test_clock(:clock_a, '-1 second');
SELECT toss_billing.advance_test_clock(-1, '1 day');
\echo :LAST_ERROR_SQLSTATE
SELECT id = :clock_a AS is_a, now_at FROM toss_billing.test_clocks WHERE id IN (:clock_a, :clock_b) ORDER BY id;

-- subscription_now: the subscription's test clock, else toss_billing.now()
SELECT customer_key FROM toss_billing.create_customer('시계', NULL, 'clk-customer');
SELECT id AS plan FROM toss_billing.create_plan('시계 요금제', 1000) \gset
SELECT toss_billing.freeze_clock('2024-06-01 12:00+09');
SELECT id AS sub_db FROM toss_billing.create_subscription('clk-customer', :plan) \gset
SELECT id AS sub_a FROM toss_billing.create_subscription('clk-customer', :plan, test_clock_id => :clock_a) \gset
SELECT toss_billing.subscription_now(:sub_db) AS db_clock, toss_billing.subscription_now(:sub_a) AS test_clock,
       toss_billing.subscription_now(-1) AS no_such_subscription;
-- the anchor defaults to toss_billing.now(), the database clock: on a test
-- clock that is a year ahead, the subscription starts with the period that
-- contains its clock's time.  An anchor of NULL is the subscription's own clock.
SELECT period_number, current_period_start FROM toss_billing.subscriptions WHERE id = :sub_a;
SELECT current_period_start, status
  FROM toss_billing.create_subscription('clk-customer', :plan, NULL, test_clock_id => :clock_b);
SELECT toss_billing.advance_clock('1 hour');
SELECT toss_billing.advance_test_clock(:clock_a, '1 day');
SELECT toss_billing.subscription_now(:sub_db) AS db_clock, toss_billing.subscription_now(:sub_a) AS test_clock;
SELECT toss_billing.create_subscription('clk-customer', :plan, test_clock_id => -1);
\echo :LAST_ERROR_SQLSTATE

-- nothing of this test stays due
SELECT (toss_billing.cancel_subscription(s.id, false)).status
  FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
 WHERE c.customer_key = 'clk-customer' ORDER BY s.id;
SELECT toss_billing.unfreeze_clock() = now() AS unfrozen;
