-- The bounds of amounts (31_prices: _max_price, _max_invoice_amount,
-- _invoice_amount): a price above 10,000,000,000 KRW is refused where it is
-- given; an invoice whose lines or totals would go beyond
-- 1,000,000,000,000,000 KRW (usage adding up, on time or late, or a price
-- stored before the bound) cannot be composed and says so, naming the line
-- and the subscription, instead of a bare "bigint out of range"; the runner
-- defers that subscription with the error in its alert and charges the
-- others, and charges it once its usage is corrected.
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

-- the alerts of these tests' customers, with the error they carry
CREATE FUNCTION pg_temp.bound_alerts()
RETURNS TABLE (customer_key text, reason text, sqlstate text, error text)
LANGUAGE sql AS $$
    SELECT a.customer_key, a.reason, a.detail->>'sqlstate',
           regexp_replace(a.detail->>'error', 'subscription [0-9]+', 'subscription #', 'g')
      FROM toss_billing.alerts a
     WHERE a.customer_key LIKE 'bd-%'
     ORDER BY a.id;
$$;
\set ECHO all

-- 1. prices are bounded where they are given: 10,000,000,000 KRW a seat
SELECT toss_billing.freeze_clock('2024-12-01 00:00+09');
SELECT pg_temp.err('SELECT toss_billing.create_plan(''too much'', 10000000001)');
SELECT name, amount FROM toss_billing.create_plan('최대', 10000000000);
SELECT id AS plan FROM toss_billing.create_plan('기본', 9900) \gset
SELECT pg_temp.customer('bd-input');
SELECT pg_temp.err(format('SELECT toss_billing.create_subscription(''bd-input'', %s, amount_override => 9223372036854775807)', :plan));
SELECT id AS input_sub FROM toss_billing.create_subscription('bd-input', :plan, amount_override => 10000000000) \gset
SELECT pg_temp.err(format('SELECT toss_billing.change_price(%s, 10000000001)', :input_sub));
SELECT pg_temp.err(format('SELECT toss_billing.add_invoice_item(%s, 10000000001, ''setup'')', :input_sub));
SELECT pg_temp.err(format('SELECT toss_billing.add_invoice_item(%s, 10000000, ''setup'', quantity => 1001)', :input_sub));
-- the largest plan line, 10,000,000,000 x 100,000 seats, is exactly the
-- most an invoice may hold; one won of one-off line more is too much
SELECT quantity FROM toss_billing.set_quantity(:input_sub, 100000, 'none');
SELECT subtotal, total, amount_due FROM toss_billing.preview_invoice(:input_sub);
SELECT amount FROM toss_billing.add_invoice_item(:input_sub, 1, 'one won more');
SELECT pg_temp.err(format('SELECT * FROM toss_billing.preview_invoice(%s)', :input_sub));
SELECT status FROM toss_billing.cancel_subscription(:input_sub, false);
-- a price stored before the bound (the owner's own UPDATE here) is caught
-- where the invoice is composed: 9 x 10^18 KRW a seat, 2 seats; the runner
-- defers that subscription and charges the one beside it
SELECT id AS stored_sub FROM toss_billing.create_subscription('bd-input', :plan) \gset
SELECT quantity FROM toss_billing.set_quantity(:stored_sub, 2, 'none');
SELECT pg_temp.customer('bd-plain');
SELECT id AS other FROM toss_billing.create_plan('다른', 5000) \gset
SELECT status FROM toss_billing.create_subscription('bd-plain', :other);
UPDATE toss_billing.plans SET amount = 9000000000000000000 WHERE id = :plan;
SELECT pg_temp.err(format('SELECT * FROM toss_billing.preview_invoice(%s)', :stored_sub));
SELECT customer_key, attempt, amount, state FROM pg_temp.run('done');
SELECT * FROM pg_temp.bound_alerts();
-- the price corrected, it is charged at its next try
UPDATE toss_billing.plans SET amount = 9900 WHERE id = :plan;
SELECT toss_billing.advance_clock('10 minutes');
SELECT customer_key, attempt, amount, state FROM pg_temp.run('done');
SELECT status FROM toss_billing.cancel_subscription(:stored_sub, false);
SELECT (toss_billing.cancel_subscription(s.id, false)).status
  FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
 WHERE c.customer_key = 'bd-plain';

-- 2. usage that adds up beyond what an invoice can hold
SELECT id AS metered FROM toss_billing.create_plan('API', 1000) \gset
SELECT metric, unit_amount FROM toss_billing.add_plan_meter(:metered, 'calls', 'sum', 100000000);
SELECT metric, unit_amount FROM toss_billing.add_plan_meter(:metered, 'peak', 'max', 100000000);
SELECT toss_billing.freeze_clock('2025-01-01 00:00+09');
SELECT pg_temp.customer('bd-sum');
SELECT pg_temp.customer('bd-max');
SELECT pg_temp.customer('bd-ok');
SELECT id AS sum_sub FROM toss_billing.create_subscription('bd-sum', :metered) \gset
SELECT id AS max_sub FROM toss_billing.create_subscription('bd-max', :metered) \gset
SELECT id AS ok_sub FROM toss_billing.create_subscription('bd-ok', :metered) \gset
SELECT customer_key, attempt, amount, state FROM pg_temp.run('done');
-- each record is within its bound (10^12 units); twenty of them at
-- 100,000,000 KRW a call are 2 x 10^21 KRW; one peak of 10^12 is 10^20 KRW
SELECT count(*) FILTER (WHERE toss_billing.record_usage(:sum_sub, 'calls', 1000000000000, '2025-01-15 10:00+09', 'c' || g))
  FROM generate_series(1, 20) g;
SELECT toss_billing.record_usage(:max_sub, 'peak', 1000000000000, '2025-01-15 10:00+09', 'p1');
SELECT toss_billing.record_usage(:ok_sub, 'calls', 3, '2025-01-15 10:00+09', 'c1');
SELECT toss_billing.advance_clock('31 days');
SELECT pg_temp.err(format('SELECT * FROM toss_billing.preview_invoice(%s)', :sum_sub));
SELECT pg_temp.err(format('SELECT * FROM toss_billing.preview_invoice(%s)', :max_sub));
-- the runner charges the fine one and defers the two, with the error
SELECT customer_key, attempt, amount, state FROM pg_temp.run('done');
SELECT * FROM pg_temp.bound_alerts() WHERE customer_key <> 'bd-input';
SELECT c.customer_key, s.period_number, s.deferred_until IS NOT NULL AS deferred
  FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
 WHERE c.customer_key LIKE 'bd-%' AND s.status <> 'canceled' ORDER BY s.id;
SELECT pg_temp.err(format('SELECT toss_billing.charge_subscription_now(%s)', :sum_sub));
-- the usage corrected (by the owner), both are charged at their next try
DELETE FROM toss_billing.usage_records WHERE subscription_id = :sum_sub AND usage_key <> 'c1';
UPDATE toss_billing.usage_records SET quantity = 4 WHERE subscription_id = :sum_sub;
UPDATE toss_billing.usage_records SET quantity = 5 WHERE subscription_id = :max_sub;
SELECT toss_billing.advance_clock('10 minutes');
SELECT customer_key, attempt, amount, state FROM pg_temp.run('done');

-- 3. late usage: a record for January, after January's invoice, that
-- would make its late line too large
SELECT toss_billing.record_usage(:ok_sub, 'calls', 1000000000000, '2025-01-20 10:00+09', 'late-1');
SELECT toss_billing.record_usage(:ok_sub, 'calls', 1000000000000, '2025-01-21 10:00+09', 'late-2');
SELECT pg_temp.err(format('SELECT * FROM toss_billing.preview_invoice(%s)', :ok_sub));
DELETE FROM toss_billing.usage_records WHERE subscription_id = :ok_sub AND usage_key = 'late-2';
UPDATE toss_billing.usage_records SET quantity = 2 WHERE subscription_id = :ok_sub AND usage_key = 'late-1';
SELECT l.description, l.quantity, l.amount FROM unnest((toss_billing.preview_invoice(:ok_sub)).lines) l
 WHERE l.kind = 'usage';

-- 4. a quantity beyond a bigint (ten million records of 10^12) says so too
SELECT toss_billing._usage_quantity(10000000000000000000, 'calls', 1, NULL);
SELECT toss_billing._invoice_amount(-1000000000000000.5, 'a credit', 1, NULL);
SELECT toss_billing._invoice_amount(-1000000000000000.4, 'a credit', 1, NULL),
       toss_billing._invoice_amount(2.5, 'a line', 1, NULL), toss_billing._invoice_amount(-2.5, 'a line', 1, NULL);

SELECT pg_temp.cleanup('bd-');
