-- What the runner does with a subscription it cannot process
-- (_apply_due_transitions, _finalize_due, _defer_subscription): the
-- subscription fails alone, with an alert, and is deferred (deferred_until:
-- no transition, no invoice, no charge until then; 10 minutes after the
-- first failure of its kind in the period, doubling, at most a day), so
-- that failing subscriptions, however many, never hold up the others; an
-- outcome is recorded even when the transitions that follow it fail.  The
-- causes are planted: constraints that refuse one subscription's rows.
\set SHOW_CONTEXT never
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
\getenv tbtest TB_TEST
\set ECHO none
\set helpers :tbtest '/../../sql/include/subscription_helpers.psql'
\i :helpers

-- the alerts of these tests' customers: reason, error, period, retry time
CREATE FUNCTION pg_temp.deferral_alerts(key_prefix text)
RETURNS TABLE (customer_key text, reason text, sqlstate text, period text, retry_at timestamptz)
LANGUAGE sql AS $$
    SELECT a.customer_key, a.reason, a.detail->>'sqlstate', a.detail->>'period_number',
           (a.detail->>'retry_at')::timestamptz
      FROM toss_billing.alerts a
     WHERE a.customer_key LIKE key_prefix || '%'
     ORDER BY a.id;
$$;

-- the subscriptions of these tests, with deferred_until
CREATE FUNCTION pg_temp.deferrals(key_prefix text)
RETURNS TABLE (customer_key text, status text, period integer, quantity integer, next_charge_at timestamptz,
               deferred_until timestamptz)
LANGUAGE sql AS $$
    SELECT c.customer_key, s.status, s.period_number, s.quantity, s.next_charge_at, s.deferred_until
      FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
     WHERE c.customer_key LIKE key_prefix || '%'
     ORDER BY s.id;
$$;
\set ECHO all

SELECT id AS plan FROM toss_billing.create_plan('기본', 9900) \gset

-- 1. period invoices that cannot be finalised
SELECT toss_billing.freeze_clock('2025-05-01 09:00+09');
-- five subscriptions whose invoice cannot be written (a price of 7700, which
-- the constraint below refuses), due a minute before three fine ones
SELECT count(pg_temp.customer('df-inv-bad-' || i)) FROM generate_series(1, 5) i;
SELECT count(pg_temp.customer('df-inv-ok-' || i)) FROM generate_series(1, 3) i;
SELECT count(toss_billing.create_subscription('df-inv-bad-' || i, :plan, '2025-05-01 08:59+09', amount_override => 7700))
  FROM generate_series(1, 5) i;
SELECT count(toss_billing.create_subscription('df-inv-ok-' || i, :plan, '2025-05-01 09:00+09'))
  FROM generate_series(1, 3) i;
ALTER TABLE toss_billing.invoices ADD CONSTRAINT deferral_trap CHECK (unit_amount IS DISTINCT FROM 7700) NOT VALID;

-- a claim of 4: the first four due all fail, their places go to the next
-- four (one more that fails, the three fine ones), and the fine ones are
-- charged in this very claim
SELECT * FROM pg_temp.run('done', 4);
SELECT * FROM pg_temp.deferrals('df-inv-');
SELECT * FROM pg_temp.deferral_alerts('df-inv-');

-- at once again: nothing is tried (no new alert), nothing is claimed
SELECT * FROM pg_temp.run('done', 4);
SELECT count(*) AS alerts FROM pg_temp.deferral_alerts('df-inv-');

-- ten minutes on each is tried again, fails again, and waits 20 minutes
SELECT toss_billing.advance_clock('10 minutes');
SELECT * FROM pg_temp.run('done', 4);
SELECT customer_key, deferred_until FROM pg_temp.deferrals('df-inv-bad-');
SELECT period, retry_at, count(*) FROM pg_temp.deferral_alerts('df-inv-') GROUP BY 1, 2 ORDER BY 2;

-- asked for at once (charge_subscription_now), the error is raised to the
-- caller, whatever the back-off, and recorded as no alert
SELECT pg_temp.error_of(format('SELECT toss_billing.charge_subscription_now(%s)', s.id))
  FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
 WHERE c.customer_key = 'df-inv-bad-1';
SELECT count(*) AS alerts FROM pg_temp.deferral_alerts('df-inv-');

-- the cause removed, each is finalised and charged at its next try
ALTER TABLE toss_billing.invoices DROP CONSTRAINT deferral_trap;
SELECT toss_billing.advance_clock('20 minutes');
SELECT * FROM pg_temp.run('done', 10);
SELECT customer_key, status, period FROM pg_temp.deferrals('df-inv-');
SELECT pg_temp.cleanup('df-');

-- 2. a transition that cannot be applied: two subscriptions canceled at the
-- end of their period, whose cancellation the constraint below refuses, and
-- one that renews.  The cancellations fail alone; the renewal is charged;
-- the two are neither charged for the next period nor finalised while
-- deferred, and are canceled once the cause is gone
SELECT toss_billing.freeze_clock('2025-08-01 09:00+09');
SELECT count(pg_temp.customer('df-tr-cancel-' || i)) FROM generate_series(1, 2) i;
SELECT pg_temp.customer('df-tr-renew');
SELECT min(s.id) AS cancel_lo, max(s.id) AS cancel_hi
  FROM generate_series(1, 2) i,
       LATERAL toss_billing.create_subscription('df-tr-cancel-' || i, :plan, '2025-08-01 08:59+09') s \gset
SELECT count(toss_billing.create_subscription('df-tr-renew', :plan, '2025-08-01 09:00+09'));
SELECT customer_key, attempt, state FROM pg_temp.run('done');
SELECT count(toss_billing.cancel_subscription(id, true)) FROM generate_series(:cancel_lo, :cancel_hi) id;
ALTER TABLE toss_billing.subscriptions ADD CONSTRAINT deferral_trap
    CHECK (status <> 'canceled' OR id NOT BETWEEN :cancel_lo AND :cancel_hi) NOT VALID;
-- a month on: the renewal is charged, the cancellations deferred
SELECT toss_billing.advance_clock('1 month');
SELECT customer_key, attempt, state FROM pg_temp.run('done');
SELECT customer_key, status, period, deferred_until FROM pg_temp.deferrals('df-tr-');
SELECT customer_key, reason, sqlstate, period, retry_at FROM pg_temp.deferral_alerts('df-tr-');
SELECT c.customer_key, i.period_number, i.status FROM toss_billing.invoices i
  JOIN toss_billing.customers c ON c.id = i.customer_id
 WHERE c.customer_key LIKE 'df-tr-cancel-%' AND i.period_number = 1;
-- once the cause is gone and the back-off over: canceled, never charged
ALTER TABLE toss_billing.subscriptions DROP CONSTRAINT deferral_trap;
SELECT toss_billing.advance_clock('10 minutes');
SELECT customer_key, attempt, state FROM pg_temp.run('done');
SELECT customer_key, status, period FROM pg_temp.deferrals('df-tr-');
SELECT pg_temp.cleanup('df-');

-- 3. the same while an outcome is recorded: a seat count (3 → 2) scheduled
-- for period 1 whose change cannot be recorded (the constraint below refuses
-- its event).  Period 0 is over before it is paid, so recording its payment
-- opens period 1 and applies the seat count at once, which fails: the
-- payment is recorded all the same (done, not unknown); the next claim
-- defers the subscription, which is not charged for period 1 at the old
-- count; with the cause gone it is, at the new one
SELECT toss_billing.freeze_clock('2025-10-01 09:00+09');
SELECT pg_temp.customer('df-seats');
SELECT (toss_billing.create_subscription('df-seats', :plan, '2025-10-01 09:00+09')).id AS seats \gset
SELECT quantity FROM toss_billing.set_quantity(:seats, 3);
SELECT toss_billing._finalize_due(10);
SELECT quantity, pending_quantity, pending_quantity_period FROM toss_billing.set_quantity(:seats, 2);
ALTER TABLE toss_billing.events ADD CONSTRAINT deferral_trap
    CHECK (type <> 'quantity_changed' OR subscription_id <> :seats) NOT VALID;
SELECT toss_billing.advance_clock('1 month 1 minute');
SELECT customer_key, attempt, amount, state FROM pg_temp.run('done');
SELECT p.period_number, p.state, p.amount FROM toss_billing.payments p WHERE p.subscription_id = :seats ORDER BY p.id;
SELECT customer_key, status, period, quantity, deferred_until FROM pg_temp.deferrals('df-seats');
SELECT customer_key, attempt, amount, state FROM pg_temp.run('done');
SELECT customer_key, status, period, quantity, deferred_until FROM pg_temp.deferrals('df-seats');
SELECT customer_key, reason, sqlstate, period, retry_at FROM pg_temp.deferral_alerts('df-seats');
ALTER TABLE toss_billing.events DROP CONSTRAINT deferral_trap;
SELECT toss_billing.advance_clock('10 minutes');
SELECT customer_key, attempt, amount, state FROM pg_temp.run('done');
SELECT customer_key, status, period, quantity FROM pg_temp.deferrals('df-seats');
SELECT pg_temp.cleanup('df-');

-- 4. a consent notice that cannot be recorded: two yearly subscriptions
-- whose price rises next year, one of whose notices the constraint below
-- refuses, and a monthly one that renews.  When the notices come due (30
-- days before the rise), the refused one is deferred with an alert, the
-- other noticed, the renewal charged; once the cause is gone, it is noticed
SELECT toss_billing.freeze_clock('2026-02-01 09:00+09');
SELECT id AS yearly FROM toss_billing.create_plan('연간', 99000, 'year') \gset
SELECT count(pg_temp.customer(k)) FROM unnest(ARRAY['df-cn-refused', 'df-cn-noticed', 'df-cn-renew']) k;
SELECT (toss_billing.create_subscription('df-cn-refused', :yearly)).id AS refused \gset
SELECT (toss_billing.create_subscription('df-cn-noticed', :yearly)).id AS noticed \gset
SELECT count(*) AS paid FROM pg_temp.run('done');
SELECT count(toss_billing.change_price(id, 119000)) FROM unnest(ARRAY[:refused, :noticed]::bigint[]) id;
SELECT toss_billing.advance_clock('335 days');
SELECT count(toss_billing.create_subscription('df-cn-renew', :plan, toss_billing.now() - interval '1 month'));
ALTER TABLE toss_billing.events ADD CONSTRAINT deferral_trap
    CHECK (type <> 'consent_required' OR subscription_id <> :refused) NOT VALID;
SELECT customer_key, attempt, state FROM pg_temp.run('done');
SELECT customer_key, status, period, deferred_until FROM pg_temp.deferrals('df-cn-');
SELECT customer_key, reason, sqlstate, period, retry_at FROM pg_temp.deferral_alerts('df-cn-');
SELECT c.customer_key, e.type FROM toss_billing.events e JOIN toss_billing.customers c ON c.id = e.customer_id
 WHERE c.customer_key LIKE 'df-cn-%' AND e.type = 'consent_required' ORDER BY e.id;
ALTER TABLE toss_billing.events DROP CONSTRAINT deferral_trap;
SELECT toss_billing.advance_clock('10 minutes');
SELECT customer_key, attempt, state FROM pg_temp.run('done');
SELECT c.customer_key, e.type FROM toss_billing.events e JOIN toss_billing.customers c ON c.id = e.customer_id
 WHERE c.customer_key LIKE 'df-cn-%' AND e.type = 'consent_required' ORDER BY e.id;
SELECT pg_temp.cleanup('df-');

-- 6. an order that cannot be written (the constraint below refuses the
-- orders, then the attempts, of one subscription): the two others are
-- claimed and charged in that claim, the one is deferred with an alert,
-- and charged once the cause is gone; charge_subscription_now gets the error
SELECT toss_billing.freeze_clock('2025-12-01 09:00+09');
SELECT count(pg_temp.customer('df-ord-' || i)) FROM generate_series(1, 3) i;
SELECT min(s.id) AS ord_bad FROM generate_series(1, 3) i,
       LATERAL toss_billing.create_subscription('df-ord-' || i, :plan, '2025-12-01 09:00+09') s \gset
SELECT customer_id AS ord_bad_customer FROM toss_billing.subscriptions WHERE id = :ord_bad \gset
ALTER TABLE toss_billing.payments ADD CONSTRAINT deferral_trap CHECK (subscription_id IS DISTINCT FROM :ord_bad) NOT VALID;
SELECT customer_key, attempt, state FROM pg_temp.run('done');
SELECT customer_key, status, period, deferred_until FROM pg_temp.deferrals('df-ord-');
SELECT customer_key, reason, sqlstate, period, retry_at FROM pg_temp.deferral_alerts('df-ord-');
SELECT pg_temp.error_of(format('SELECT toss_billing.charge_subscription_now(%s)', :ord_bad));
ALTER TABLE toss_billing.payments DROP CONSTRAINT deferral_trap;
-- its attempt refused instead: deferred again (20 minutes), nothing left in flight
ALTER TABLE toss_billing.attempts ADD CONSTRAINT deferral_trap CHECK (customer_id IS DISTINCT FROM :ord_bad_customer) NOT VALID;
SELECT toss_billing.advance_clock('10 minutes');
SELECT customer_key, attempt, state FROM pg_temp.run('done');
SELECT customer_key, reason, sqlstate, period, retry_at FROM pg_temp.deferral_alerts('df-ord-');
SELECT count(*) AS orders_of_it FROM toss_billing.payments WHERE subscription_id = :ord_bad;
ALTER TABLE toss_billing.attempts DROP CONSTRAINT deferral_trap;
SELECT toss_billing.advance_clock('20 minutes');
SELECT customer_key, attempt, state FROM pg_temp.run('done');
SELECT customer_key, status, period FROM pg_temp.deferrals('df-ord-');
SELECT pg_temp.cleanup('df-');

-- 7. the same for an invoice of its own (here final invoices with a one-off
-- line): the one whose order cannot be written defers its subscription,
-- the other is charged; charge_invoice_now gets the error
SELECT toss_billing.freeze_clock('2026-02-01 09:00+09');
SELECT count(pg_temp.customer('df-oi-' || i)) FROM generate_series(1, 2) i;
SELECT min(s.id) AS oi_bad, max(s.id) AS oi_ok FROM generate_series(1, 2) i,
       LATERAL toss_billing.create_subscription('df-oi-' || i, :plan, '2026-02-01 09:00+09') s \gset
SELECT customer_key, attempt, state FROM pg_temp.run('done');
SELECT count(toss_billing.add_invoice_item(id, 5000, '설치비')) FROM generate_series(:oi_bad, :oi_ok) id;
SELECT count(toss_billing.cancel_subscription(id, false)) FROM generate_series(:oi_bad, :oi_ok) id;
SELECT customer_id AS oi_bad_customer FROM toss_billing.subscriptions WHERE id = :oi_bad \gset
ALTER TABLE toss_billing.payments ADD CONSTRAINT deferral_trap CHECK (customer_id IS DISTINCT FROM :oi_bad_customer) NOT VALID;
SELECT customer_key, attempt, amount, state FROM pg_temp.run('done');
SELECT customer_key, reason, sqlstate, period, retry_at FROM pg_temp.deferral_alerts('df-oi-');
SELECT pg_temp.error_of(format('SELECT toss_billing.charge_invoice_now(%s)', i.id))
  FROM toss_billing.invoices i WHERE i.subscription_id = :oi_bad AND i.kind = 'final';
ALTER TABLE toss_billing.payments DROP CONSTRAINT deferral_trap;
SELECT toss_billing.advance_clock('10 minutes');
SELECT customer_key, attempt, amount, state FROM pg_temp.run('done');
SELECT c.customer_key, i.kind, i.status, i.amount_paid FROM toss_billing.invoices i
  JOIN toss_billing.customers c ON c.id = i.customer_id
 WHERE c.customer_key LIKE 'df-oi-%' AND i.kind = 'final' ORDER BY i.id;
SELECT pg_temp.cleanup('df-');

-- 5. the back-off doubles per failure in the same period, up to a day
SELECT toss_billing.freeze_clock('2026-01-01 09:00+09');
SELECT pg_temp.customer('df-long');
SELECT count(toss_billing.create_subscription('df-long', :plan, '2026-01-01 09:00+09', amount_override => 7700));
ALTER TABLE toss_billing.invoices ADD CONSTRAINT deferral_trap CHECK (unit_amount IS DISTINCT FROM 7700) NOT VALID;
DO $$
BEGIN
    FOR i IN 1 .. 10 LOOP
        PERFORM toss_billing._finalize_due(10);
        PERFORM toss_billing.advance_clock(s.deferred_until - toss_billing.now())
           FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
          WHERE c.customer_key = 'df-long';
    END LOOP;
END;
$$;
ALTER TABLE toss_billing.invoices DROP CONSTRAINT deferral_trap;
SELECT period, retry_at - lag(retry_at) OVER (ORDER BY retry_at) AS waited FROM pg_temp.deferral_alerts('df-long') ORDER BY retry_at;
SELECT pg_temp.cleanup('df-');
