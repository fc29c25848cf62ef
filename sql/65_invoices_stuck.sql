-- Period invoices that cannot be finalised (32_invoices: _finalize_due and
-- _defer_finalize).  Each fails alone, with an alert, and is tried again
-- only after a back-off (10 minutes after its period's first failure,
-- doubling), so subscriptions that keep failing, however many, never hold
-- up the due ones behind them: their places in a claim go to those.
\set SHOW_CONTEXT never
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
\getenv tbtest TB_TEST
\set ECHO none
\set helpers :tbtest '/../../sql/include/subscription_helpers.psql'
\i :helpers

-- the alerts of the failing customers: reason, error, period, retry time
CREATE FUNCTION pg_temp.stuck_alerts()
RETURNS TABLE (customer_key text, reason text, sqlstate text, period text, retry_at timestamptz)
LANGUAGE sql AS $$
    SELECT a.customer_key, a.reason, a.detail->>'sqlstate', a.detail->>'period_number',
           (a.detail->>'retry_at')::timestamptz
      FROM toss_billing.alerts a
     WHERE a.customer_key LIKE 'st-%'
     ORDER BY a.id;
$$;
\set ECHO all

SELECT id AS plan FROM toss_billing.create_plan('기본', 9900) \gset
SELECT toss_billing.freeze_clock('2025-05-01 09:00+09');

-- five subscriptions whose invoice cannot be written (a price of 7700, which
-- the constraint below refuses), due a minute before three fine ones
SELECT count(pg_temp.customer('st-bad-' || i)) FROM generate_series(1, 5) i;
SELECT count(pg_temp.customer('st-ok-' || i)) FROM generate_series(1, 3) i;
SELECT count(toss_billing.create_subscription('st-bad-' || i, :plan, '2025-05-01 08:59+09', amount_override => 7700))
  FROM generate_series(1, 5) i;
SELECT count(toss_billing.create_subscription('st-ok-' || i, :plan, '2025-05-01 09:00+09'))
  FROM generate_series(1, 3) i;
ALTER TABLE toss_billing.invoices ADD CONSTRAINT stuck_trap CHECK (unit_amount IS DISTINCT FROM 7700) NOT VALID;

-- a claim of 4: the first four due all fail, their places go to the next
-- four (one more that fails, the three fine ones), and the fine ones are
-- charged in this very claim
SELECT * FROM pg_temp.run('done', 4);
SELECT customer_key, status, period, next_charge_at FROM pg_temp.subs('st-');
SELECT * FROM pg_temp.stuck_alerts();

-- at once again: nothing is tried (no new alert), nothing is claimed
SELECT * FROM pg_temp.run('done', 4);
SELECT count(*) AS alerts FROM pg_temp.stuck_alerts();

-- ten minutes on each is tried again, fails again, and waits 20 minutes
SELECT toss_billing.advance_clock('10 minutes');
SELECT * FROM pg_temp.run('done', 4);
SELECT customer_key, next_charge_at FROM pg_temp.subs('st-bad-');
SELECT period, retry_at, count(*) FROM pg_temp.stuck_alerts() GROUP BY 1, 2 ORDER BY 2;

-- asked for at once (charge_subscription_now), the error is raised to the
-- caller, whatever the back-off, and recorded as no alert
SELECT pg_temp.error_of(format('SELECT toss_billing.charge_subscription_now(%s)', s.id))
  FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
 WHERE c.customer_key = 'st-bad-1';
SELECT count(*) AS alerts FROM pg_temp.stuck_alerts();

-- the cause removed, each is finalised and charged at its next try
ALTER TABLE toss_billing.invoices DROP CONSTRAINT stuck_trap;
SELECT toss_billing.advance_clock('20 minutes');
SELECT * FROM pg_temp.run('done', 10);
SELECT customer_key, status, period FROM pg_temp.subs('st-');

-- the back-off doubles per failure of the same period, up to a day (on a
-- subscription alone: the others' renewals are out of the way)
SELECT pg_temp.cleanup('st-');
SELECT toss_billing.freeze_clock('2025-07-01 09:00+09');
SELECT pg_temp.customer('st-long');
SELECT (toss_billing.create_subscription('st-long', :plan, '2025-07-01 09:00+09', amount_override => 7700)).id AS long \gset
ALTER TABLE toss_billing.invoices ADD CONSTRAINT stuck_trap CHECK (unit_amount IS DISTINCT FROM 7700) NOT VALID;
DO $$
BEGIN
    FOR i IN 1 .. 10 LOOP
        PERFORM toss_billing._finalize_due(10);
        PERFORM toss_billing.advance_clock(s.next_charge_at - toss_billing.now())
           FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
          WHERE c.customer_key = 'st-long';
    END LOOP;
END;
$$;
ALTER TABLE toss_billing.invoices DROP CONSTRAINT stuck_trap;
SELECT period, retry_at - lag(retry_at) OVER (ORDER BY retry_at) AS waited FROM pg_temp.stuck_alerts()
 WHERE customer_key = 'st-long' ORDER BY retry_at;

SELECT pg_temp.cleanup('st-');
