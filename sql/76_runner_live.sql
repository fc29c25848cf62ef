-- The runner end to end: CALL toss_billing.run_due() against the emulator's
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- declining, flaky and good test cards, through dunning and a card
-- replacement.  In a database of its own, so the runner sees only these
-- subscriptions.
\set SHOW_CONTEXT never
\getenv tbtest TB_TEST
CREATE DATABASE toss_live;
\c toss_live
SET TimeZone = 'Asia/Seoul';
CREATE EXTENSION toss_billing;
SELECT toss_billing.freeze_clock('2026-01-31 10:00+09');
SELECT id AS plan FROM toss_billing.create_plan('라이브 월간', 9900) \gset

SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'dl-good');
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'dl-declined');
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'dl-flaky');
\set ak `$TB_TEST/emu authkey dl-good 9410001234567890`
SELECT status FROM toss_billing.toss_issue_billing_key('dl-good', :'ak');
\set ak `$TB_TEST/emu authkey dl-declined 4111111111110002`
SELECT status FROM toss_billing.toss_issue_billing_key('dl-declined', :'ak');
\set ak `$TB_TEST/emu authkey dl-flaky 4111111111119001`
SELECT status FROM toss_billing.toss_issue_billing_key('dl-flaky', :'ak');
SELECT count(*) FROM (SELECT toss_billing.create_subscription(c, :plan)
                        FROM unnest(ARRAY['dl-good', 'dl-declined', 'dl-flaky']) c) s;

CREATE FUNCTION pg_temp.subs() RETURNS TABLE(customer_key text, status text, period_number integer,
                                             next_charge_at timestamptz, dunning_attempt integer)
LANGUAGE sql AS $$
    SELECT c.customer_key, s.status, s.period_number, s.next_charge_at, s.dunning_attempt
      FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
     ORDER BY 1
$$;

-- the first run: one paid, one declined, one transient failure
CALL toss_billing.run_due() \gset
\echo claimed :claimed done :done failed :failed unknown :unknown
SELECT * FROM pg_temp.subs();

-- transient failures retry after 10 minutes, then 20; the flaky card works
-- on its third try
SELECT toss_billing.advance_clock('10 minutes');
CALL toss_billing.run_due() \gset
\echo claimed :claimed done :done failed :failed unknown :unknown
SELECT toss_billing.advance_clock('20 minutes');
CALL toss_billing.run_due() \gset
\echo claimed :claimed done :done failed :failed unknown :unknown
SELECT * FROM pg_temp.subs();

-- the declined card is retried on the dunning schedule, a day after the first decline
CALL toss_billing.run_due() \gset
\echo claimed :claimed done :done failed :failed unknown :unknown
SELECT toss_billing.advance_clock('1 day');
CALL toss_billing.run_due() \gset
\echo claimed :claimed done :done failed :failed unknown :unknown
SELECT * FROM pg_temp.subs();

-- a new card: the open period is retried at once and paid
\set ak `$TB_TEST/emu authkey dl-declined 4906251234123456`
SELECT status, card_number FROM toss_billing.toss_issue_billing_key('dl-declined', :'ak');
SELECT toss_billing.card_replaced('dl-declined');
CALL toss_billing.run_due() \gset
\echo claimed :claimed done :done failed :failed unknown :unknown
SELECT * FROM pg_temp.subs();

-- every order in the ledger, and every attempt under it as Toss answered
-- it: retries re-posted each order's own order id
SELECT c.customer_key, regexp_replace(p.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS "order",
       p.state, p.toss_status, p.failure_class, p.failure_code
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 ORDER BY p.id;
SELECT c.customer_key, a.attempt_number, a.state, a.http_status, a.failure_class, a.failure_code,
       a.response IS NOT NULL AS raw_answer_kept, a.order_id = p.order_id AS same_order_id
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
  JOIN toss_billing.customers c ON c.id = p.customer_id
 ORDER BY a.id;
SELECT c.customer_key, e.type, e.from_status, e.to_status
  FROM toss_billing.events e JOIN toss_billing.subscriptions s ON s.id = e.subscription_id
  JOIN toss_billing.customers c ON c.id = s.customer_id
 WHERE e.type <> 'created'
 ORDER BY e.id;

-- the emulator charged each paid order exactly once, and nothing else of ours
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
SELECT count(*) AS paid,
       count(*) FILTER (WHERE (:'ledger'::jsonb)->'doneByOrderId'->>order_id = '1') AS charged_once_at_toss
  FROM toss_billing.payments WHERE state = 'done';
SELECT count(*) AS charged_at_toss_for_these_subscriptions
  FROM jsonb_object_keys((:'ledger'::jsonb)->'doneByOrderId') k
 WHERE k ~ ('-' || (SELECT order_tag FROM toss_billing.installation) || '$');
\c toss_regress
DROP DATABASE toss_live;
