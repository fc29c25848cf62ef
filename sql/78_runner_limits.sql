-- The runner's limits: toss_billing.max_requests_per_second paces the calls,
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- and throttling by Toss (429 / FORBIDDEN_CONSECUTIVE_REQUEST) is backed off
-- from and recorded as a transient failure, never as a charge.  In a database
-- of its own, so the runner sees only these subscriptions.
\set SHOW_CONTEXT never
\getenv tbtest TB_TEST
CREATE DATABASE toss_limits;
\c toss_limits
CREATE EXTENSION toss_billing;
SELECT toss_billing.freeze_clock('2026-02-01 09:00+09') IS NOT NULL AS frozen;
SELECT id AS plan FROM toss_billing.create_plan('한도 테스트', 1000) \gset
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'lim-1');
\set ak `$TB_TEST/emu authkey lim-1`
SELECT status FROM toss_billing.toss_issue_billing_key('lim-1', :'ak');
SELECT count(toss_billing.create_subscription('lim-1', :plan)) FROM generate_series(1, 10);

-- 10 charges at 5 per second take at least 1.8 s (the first call starts at once)
SET toss_billing.max_requests_per_second = 5;
CALL toss_billing.run_due() \gset
\echo claimed :claimed done :done failed :failed throttled :throttled
SELECT :elapsed_ms >= 1800 AS paced, :elapsed_ms < 6000 AS not_stalled;
RESET toss_billing.max_requests_per_second;

-- Toss throttles: 2 requests a second per merchant, answered 403 FORBIDDEN_CONSECUTIVE_REQUEST
\set ignore `curl -sf -X POST -H 'Content-Type: application/json' -d '{"rateLimit":{"perSecond":2,"burst":2,"code":"FORBIDDEN_CONSECUTIVE_REQUEST"}}' $EMULATOR_URL/__emulator/config`
SELECT toss_billing.advance_clock('1 month') IS NOT NULL AS next_month;
SET toss_billing.max_concurrency = 8;
CALL toss_billing.run_due() \gset
SELECT :claimed = 10 AS all_claimed, :done + :failed = 10 AS all_settled, :unknown = 0 AS none_unknown,
       :done >= 2 AS burst_paid, :failed > 0 AS some_throttled, :throttled > 0 AS backed_off;
\set ignore `curl -sf -X POST -H 'Content-Type: application/json' -d '{"rateLimit":null}' $EMULATOR_URL/__emulator/config`
-- every throttled attempt is a transient failure: nothing charged, the
-- order still owed (pending) and retried later under its own order id
SELECT state, failure_class, failure_code
  FROM toss_billing.payments WHERE period_number = 1 GROUP BY 1, 2, 3 ORDER BY 1;
SELECT a.state, a.http_status, a.failure_class, a.failure_code
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
 WHERE p.period_number = 1 GROUP BY 1, 2, 3, 4 ORDER BY 1;
SELECT toss_billing.advance_clock('10 minutes') IS NOT NULL AS later;
CALL toss_billing.run_due() \gset
SELECT count(*) FILTER (WHERE state = 'done') AS paid_second_period, count(*) AS orders_second_period,
       max(generation) AS generations
  FROM toss_billing.payments WHERE period_number = 1;
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
SELECT count(*) AS paid, count(*) FILTER (WHERE (:'ledger'::jsonb)->'doneByOrderId'->>order_id = '1') AS charged_once_at_toss
  FROM toss_billing.payments WHERE state = 'done';
\c toss_regress
DROP DATABASE toss_limits;
