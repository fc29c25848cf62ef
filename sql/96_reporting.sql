-- Reporting: a known month of activity (March 2024, Asia/Seoul) on a test
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- clock, through the runner's SQL half and the recorder's, with Toss's
-- answers as the emulator gives them: first charges, declines recovered by
-- dunning and one that exhausts dunning, a weekly, a yearly and a trial
-- plan, a one-off charge near midnight, a plan change, a full and a
-- partial refund, a cancel at once and one at the period's end, a deleted
-- card, a payment reconcile recovers and a foreign payment it does not take
-- in.  Every view's figures are checked exactly; the auditor role reads
-- every view and nothing else.  In a database of its own, so that the
-- views see only this month.
\set SHOW_CONTEXT never
\getenv tbtest TB_TEST
CREATE DATABASE toss_reports;
\c toss_reports
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
SET extra_float_digits = 0;
CREATE EXTENSION toss_billing;
\set ECHO none
\set helpers :tbtest '/../../sql/include/subscription_helpers.psql'
\i :helpers
\set helpers :tbtest '/../../sql/include/toss_json_helpers.psql'
\i :helpers
\set ECHO all

-- the test clock and the database clock move together
SELECT toss_billing.create_test_clock('2024-03-01 10:00+09') AS clock \gset
SELECT toss_billing.freeze_clock('2024-03-01 10:00+09') IS NOT NULL AS frozen;
CREATE FUNCTION pg_temp.at(t timestamptz) RETURNS timestamptz LANGUAGE sql AS $$
    SELECT toss_billing.advance_test_clock(tc.id, t - tc.now_at) FROM toss_billing.test_clocks tc;
    SELECT toss_billing.freeze_clock(t);
$$;
-- one runner pass: every claimed period answered done, or declined for
-- the customers named
CREATE FUNCTION pg_temp.pass(declined text[] DEFAULT '{}')
RETURNS TABLE (customer_key text, period integer, amount bigint, state text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    c record;
    v_at timestamptz;
    v_ids bigint[] := '{}';
    v_states text[] := '{}';
    v_payments jsonb[] := '{}';
    v_decline boolean;
BEGIN
    FOR c IN SELECT d.* FROM toss_billing._claim_due(100) d ORDER BY d.customer_key LOOP
        v_at := toss_billing.now();
        SELECT p.period_number INTO period FROM toss_billing.payments p WHERE p.id = c.payment_id;
        v_decline := c.customer_key = ANY (declined);
        v_ids := v_ids || c.attempt_id;
        v_states := v_states || CASE WHEN v_decline THEN 'failed' ELSE 'done' END;
        v_payments := v_payments || CASE WHEN v_decline
            THEN pg_temp.payment_json(c.order_id, c.order_name, c.amount, v_at,
                                      'REJECT_CARD_PAYMENT', '한도초과 혹은 잔액부족으로 결제에 실패했습니다.')
            ELSE pg_temp.payment_json(c.order_id, c.order_name, c.amount, v_at) END;
        customer_key := c.customer_key; amount := c.amount;
        state := CASE WHEN v_decline THEN 'failed' ELSE 'done' END;
        RETURN NEXT;
    END LOOP;
    PERFORM toss_billing._record_outcomes(
        v_ids, v_states,
        ARRAY(SELECT CASE WHEN s = 'done' THEN 200 ELSE 403 END FROM unnest(v_states) s),
        ARRAY(SELECT CASE WHEN s = 'done' THEN NULL ELSE 'card_declined' END FROM unnest(v_states) s),
        array_fill(NULL::text, ARRAY[cardinality(v_ids)]), array_fill(NULL::text, ARRAY[cardinality(v_ids)]),
        array_fill(NULL::bytea, ARRAY[cardinality(v_ids)]), v_payments,
        array_fill(NULL::text, ARRAY[cardinality(v_ids)]), array_fill(false, ARRAY[cardinality(v_ids)]));
END;
$$;
-- a refund of a payment, as toss_cancel's two halves record it
CREATE FUNCTION pg_temp.refund(order_id text, amount bigint, reason text, at timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_c record;
    v_pay jsonb;
BEGIN
    SELECT * INTO v_c FROM toss_billing._cancel_intent(order_id, reason, amount, 'rp_clerk');
    SELECT p.response INTO v_pay FROM toss_billing.payments p WHERE p.order_id = refund.order_id;
    PERFORM toss_billing._cancel_outcome(v_c.cancel_id, 'done', 200, NULL, NULL, NULL,
                                         pg_temp.with_cancel(v_pay, amount, reason, 'rptx-' || v_c.cancel_id, at));
    RETURN v_c.cancel_id;
END;
$$;
CREATE FUNCTION pg_temp.sub(customer_key text) RETURNS bigint LANGUAGE sql AS $$
    SELECT s.id FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
     WHERE c.customer_key = $1 ORDER BY s.id DESC LIMIT 1;
$$;

SELECT id AS basic FROM toss_billing.create_plan('베이직', 9900) \gset
SELECT id AS pro FROM toss_billing.create_plan('프로', 19900) \gset
SELECT id AS annual FROM toss_billing.create_plan('연간', 120000, 'year') \gset
SELECT id AS weekly FROM toss_billing.create_plan('주간', 1200, 'week') \gset
SELECT id AS trial FROM toss_billing.create_plan('체험 후 월간', 9900, 'month', 1, 14) \gset
SELECT count(pg_temp.customer(k)) AS customers
  FROM unnest(ARRAY['rp-alice', 'rp-bob', 'rp-carol', 'rp-dave', 'rp-erin', 'rp-frank', 'rp-hank', 'rp-gina']) k;
SELECT count(*) AS subscriptions FROM (
    SELECT toss_billing.create_subscription(k, p, test_clock_id => :clock)
      FROM (VALUES ('rp-alice', :basic), ('rp-bob', :basic), ('rp-carol', :annual), ('rp-dave', :weekly),
                   ('rp-erin', :trial), ('rp-frank', :basic), ('rp-hank', :basic)) v(k, p)) s;
-- a price increase is charged only with the customer's consent (34_consent,
-- 전자상거래법 §13⑥): a customer's consent to it, recorded as she gives it
CREATE FUNCTION pg_temp.consent(customer_key text) RETURNS boolean LANGUAGE sql AS $$
    SELECT c.counts
      FROM toss_billing.consent_requirements r,
           toss_billing.record_consent(r.subscription_id, r.id, toss_billing.now(), 'web',
                                       jsonb_build_object('old_amount', r.old_amount, 'new_amount', r.new_amount)) c
     WHERE r.subscription_id = pg_temp.sub(customer_key) AND r.status = 'pending';
$$;
-- erin agrees to pay 9900 a month after her trial when she subscribes
SELECT pg_temp.consent('rp-erin') AS erin_consents;

-- ---------------------------------------------------------------- the month

-- 1 March: first charges; bob and frank are declined
SELECT * FROM pg_temp.pass(ARRAY['rp-bob', 'rp-frank']);
-- 2 March: dunning recovers bob; frank is declined again (and on 4, 6, 8 March: exhausted)
SELECT pg_temp.at('2024-03-02 10:00+09') IS NOT NULL AS moved;
SELECT * FROM pg_temp.pass(ARRAY['rp-frank']);
SELECT pg_temp.at('2024-03-04 10:00+09') IS NOT NULL AS moved;
SELECT * FROM pg_temp.pass(ARRAY['rp-frank']);
SELECT pg_temp.at('2024-03-06 10:00+09') IS NOT NULL AS moved;
SELECT * FROM pg_temp.pass(ARRAY['rp-frank']);
SELECT pg_temp.at('2024-03-08 10:00+09') IS NOT NULL AS moved;
SELECT * FROM pg_temp.pass(ARRAY['rp-frank']);
-- 9 March: 500 of dave's weekly payment of 8 March refunded
SELECT pg_temp.at('2024-03-09 10:00+09') IS NOT NULL AS moved;
SELECT order_id AS dave_0308 FROM toss_billing.payments
 WHERE subscription_id = pg_temp.sub('rp-dave') AND period_number = 1 \gset
SELECT pg_temp.refund(:'dave_0308', 500, '부분 환불', '2024-03-09 10:00+09') > 0 AS refunded;
-- 10 March: alice moves to Pro from her next period
SELECT pg_temp.at('2024-03-10 10:00+09') IS NOT NULL AS moved;
SELECT pending_plan_period FROM toss_billing.change_plan(pg_temp.sub('rp-alice'), :pro);
SELECT pg_temp.consent('rp-alice') AS alice_consents;
-- 12 March 08:30 KST (11 March in UTC): alice buys a one-off item
SELECT pg_temp.at('2024-03-12 08:30+09') IS NOT NULL AS moved;
SELECT pg_temp.charged('rp-alice', 'rp-oneoff-alice', 5000, '2024-03-12 08:29:59+09') > 0 AS charged;
-- 15 March: dave renews, erin's trial ends and she pays; carol cancels at
-- once and her yearly payment is refunded in full
SELECT pg_temp.at('2024-03-15 10:00+09') IS NOT NULL AS moved;
SELECT * FROM pg_temp.pass();
SELECT pg_temp.at('2024-03-15 11:00+09') IS NOT NULL AS moved;
SELECT status FROM toss_billing.cancel_subscription(pg_temp.sub('rp-carol'), false);
SELECT order_id AS carol_0301 FROM toss_billing.payments WHERE subscription_id = pg_temp.sub('rp-carol') \gset
SELECT pg_temp.refund(:'carol_0301', NULL, '구독 해지 환불', '2024-03-15 11:00+09') > 0 AS refunded;
-- 20 March: hank's card is deleted by the card company (paid through 1
-- April: nothing is owed yet); erin cancels at her period's end
SELECT pg_temp.at('2024-03-20 10:00+09') IS NOT NULL AS moved;
SELECT toss_billing._billing_key_deleted(bk.id, 'card company')
  FROM toss_billing.billing_keys bk JOIN toss_billing.customers c ON c.id = bk.customer_id
 WHERE c.customer_key = 'rp-hank' AND bk.status = 'active';
SELECT cancel_at FROM toss_billing.cancel_subscription(pg_temp.sub('rp-erin'));
-- 22 March: dave renews
SELECT pg_temp.at('2024-03-22 10:00+09') IS NOT NULL AS moved;
SELECT * FROM pg_temp.pass();
-- 25 March: gina subscribes and is declined, and on 26 and 29 March
SELECT pg_temp.at('2024-03-25 10:00+09') IS NOT NULL AS moved;
SELECT status FROM toss_billing.create_subscription('rp-gina', :basic, test_clock_id => :clock);
SELECT * FROM pg_temp.pass(ARRAY['rp-gina']);
-- a past_due subscription whose card was deleted, paid through a later
-- time, owes nothing: not in dunning
SELECT customer_key, status, paid_through, next_charge_at, next_amount, amount_due, status_reason
  FROM toss_billing.subscription_info ORDER BY id;
SELECT subscription_id, customer_key FROM toss_billing.dunning ORDER BY 1;
SELECT pg_temp.at('2024-03-26 10:00+09') IS NOT NULL AS moved;
SELECT * FROM pg_temp.pass(ARRAY['rp-gina']);
SELECT pg_temp.at('2024-03-29 10:00+09') IS NOT NULL AS moved;
SELECT * FROM pg_temp.pass(ARRAY['rp-gina']);
-- 1 April: alice renews on Pro, bob renews, gina is declined once more,
-- hank has no card: nothing is charged for him
SELECT pg_temp.at('2024-04-01 10:00+09') IS NOT NULL AS moved;
SELECT * FROM pg_temp.pass(ARRAY['rp-gina']);

-- reconcile March: Toss lists every approval and cancel of the ledger, a
-- payment of this installation the ledger lost (recovered) and another
-- system's payment under the merchant (foreign: not revenue)
SELECT toss_billing._order_tag() AS tag \gset
SELECT pg_temp.payment_json('tb' || :'tag' || '-lost-0001', '단건 결제', 7000, '2024-03-18 14:00+09') AS lost,
       pg_temp.payment_json('other-system-0001', '외부 결제', 50000, '2024-03-20 15:00+09') AS foreign_pay \gset
SELECT (SELECT jsonb_agg(i.value ORDER BY p.id, i.n)
          FROM toss_billing.payments p
          JOIN toss_billing.customers c ON c.id = p.customer_id,
               jsonb_array_elements(pg_temp.transactions_of(p.response, c.customer_key)) WITH ORDINALITY i(value, n)
         WHERE p.state = 'done' AND p.approved_at < '2024-04-01 00:00+09')
       || (SELECT jsonb_agg(i.value || jsonb_build_object('payment', :'lost'::jsonb))
             FROM jsonb_array_elements(pg_temp.transactions_of(:'lost', 'rp-alice')) i)
       || pg_temp.transactions_of(:'foreign_pay', 'someone-else') AS items \gset
SELECT * FROM toss_billing._reconcile_items(:'items', '2024-03-01 00:00+09', '2024-04-01 00:00+09');
SELECT kind, toss_amount FROM toss_billing.open_discrepancies ORDER BY id;
SELECT pg_temp.at('2024-04-01 12:00+09') IS NOT NULL AS moved;

-- ---------------------------------------------------------------- the views

-- revenue per day: dated by approval, refunds on their own day, the
-- recovered payment counted, the foreign one not
SELECT day, merchant, payments, gross, refunds, refunded, net, recovered, time_zone
  FROM toss_billing.revenue_daily ORDER BY day;
SELECT sum(gross) AS gross, sum(refunded) AS refunded, sum(net) AS net FROM toss_billing.revenue_daily;
-- the day is the setting's: in UTC the one-off of 12 March 08:30 KST falls on 11 March
SET toss_billing.report_time_zone = 'UTC';
SELECT day, payments, gross, time_zone FROM toss_billing.revenue_daily WHERE day BETWEEN '2024-03-11' AND '2024-03-12' ORDER BY day;
RESET toss_billing.report_time_zone;
SET toss_billing.report_time_zone = 'Mars/Olympus';

-- MRR at March's end and now, with its movements: each subscription at the
-- recurring amount of its next period invoice (as finalised, else as it
-- would be finalised now).  alice's change to Pro, made in March for her
-- April period, counts at March's end already: her next invoice then is
-- Pro's (19,900; bob, erin, gina and hank 9,900; dave 1,200 a week = 5,200
-- a month); carol and frank came and went within March
SELECT month, current, as_of, mrr, subscriptions, new_mrr, expansion_mrr, contraction_mrr, churned_mrr,
       reactivated_mrr, net_change, new_subscriptions, churned_subscriptions
  FROM toss_billing.mrr ORDER BY month;
-- churn: carol by request (voluntary), frank by dunning (involuntary)
SELECT * FROM toss_billing.churn_monthly ORDER BY month;

-- what failed and why, and how much of it dunning recovered
SELECT day, failure_class, failure_code, attempts, obligations, recovered, recovered_share, last_message
  FROM toss_billing.failures_by_code ORDER BY day, failure_code;

-- what renews in the next week, and in the next 35 days
SELECT customer_key, period_number, charge_at, amount, plan_name, kind
  FROM toss_billing.upcoming_renewals WHERE charge_at < toss_billing.now() + interval '7 days'
 ORDER BY charge_at, customer_key;
SELECT customer_key, period_number, charge_at, amount, plan_name, kind, period_start, period_end, cancel_at
  FROM toss_billing.upcoming_renewals ORDER BY charge_at, customer_key;
-- erin cancels at the end of her period: nothing renews for her
SELECT count(*) AS erin_renewals FROM toss_billing.upcoming_renewals WHERE customer_key = 'rp-erin';

-- who is in dunning: gina (retrying), hank (owes now, no card), frank (exhausted)
SELECT customer_key, status, since, failed_attempts, retries_scheduled, next_retry_at, last_failure_code,
       last_failure_message, card_usable, amount_due, owed_since, reason
  FROM toss_billing.dunning ORDER BY subscription_id;

-- what was refunded
SELECT day, customer_key, state, requested_amount, canceled_amount, reason, requested_by, outside_toss_billing,
       payment_amount, payment_balance, fully_refunded, toss_status
  FROM toss_billing.refunds ORDER BY cancel_id;

-- is the ledger reconciled: March is, 1 April (after the window) is not
SELECT merchant, from_at, to_at, reconciled, runs, discrepancies_found, recovered, payments, amount
  FROM toss_billing.reconcile_coverage ORDER BY merchant, from_at;
SELECT bool_and(reconciled OR payments = 0) AS covered,
       (SELECT count(*) FROM toss_billing.open_discrepancies) AS open_discrepancies,
       max(last_reconciled_at) IS NOT NULL AS ever_reconciled
  FROM toss_billing.reconcile_coverage;
SELECT kind, status, checked, recovered, discrepancies, window_from, window_to, merchant, run_by = current_user AS by_me
  FROM toss_billing.runs ORDER BY id;

-- every subscription, readably
SELECT customer_key, plan_name, status, paid_through, next_charge_at, next_amount, amount_due, failed_attempts,
       card_usable, status_reason
  FROM toss_billing.subscription_info ORDER BY id;
-- _next_amount: what the period's invoice charges (as finalised, else as
-- it would be finalised now)
SELECT toss_billing._next_amount(pg_temp.sub('rp-alice')) AS alice_next,
       toss_billing._next_amount(pg_temp.sub('rp-gina')) AS gina_owed_order,
       toss_billing._next_amount(pg_temp.sub('rp-dave'), 9) AS dave_later;
SELECT toss_billing._next_amount(NULL);
SELECT toss_billing._next_amount(-1);

-- ---------------------------------------------------------------- the auditor

-- reads every view of the schema, and nothing else: no table of its own
-- run log or acknowledgements, no write anywhere, no function that is not
-- a read-only one, no secret column
CREATE ROLE rp_audit IN ROLE toss_billing_auditor;
SET ROLE rp_audit;
DO $$
DECLARE
    v record;
    n bigint;
BEGIN
    FOR v IN SELECT c.relname FROM pg_class c
              WHERE c.relnamespace = 'toss_billing'::regnamespace AND c.relkind = 'v' ORDER BY 1 LOOP
        EXECUTE format('SELECT count(*) FROM toss_billing.%I', v.relname) INTO n;
        RAISE NOTICE 'auditor reads %: % rows', v.relname, n;
    END LOOP;
END
$$;
SELECT count(*) FROM toss_billing.run_log;
SELECT count(*) FROM toss_billing.alert_acks;
SELECT * FROM toss_billing.health();
SELECT toss_billing.acknowledge_alerts('{}');
SELECT toss_billing.charge_subscription_now(1);
RESET ROLE;
SELECT c.relname, c.relkind
  FROM pg_class c
 WHERE c.relnamespace = 'toss_billing'::regnamespace
   AND (has_table_privilege('rp_audit', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')
        OR (c.relkind = 'S' AND has_sequence_privilege('rp_audit', c.oid, 'USAGE,UPDATE')))
 ORDER BY 1;
SELECT c.relname AS view_not_readable FROM pg_class c
 WHERE c.relnamespace = 'toss_billing'::regnamespace AND c.relkind = 'v'
   AND NOT has_table_privilege('rp_audit', c.oid, 'SELECT');
SELECT c.relname, a.attname AS secret_column_readable
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'toss_billing'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
   AND a.attname IN ('idempotency_key', 'encrypted_key', 'key_hash', 'auth_key_hash')
   AND has_column_privilege('rp_audit', c.oid, a.attnum, 'SELECT');
SELECT p.proname, p.provolatile, p.prosecdef
  FROM pg_proc p
 WHERE p.pronamespace = 'toss_billing'::regnamespace AND has_function_privilege('rp_audit', p.oid, 'EXECUTE')
 ORDER BY 1;

-- ---------------------------------------------------------------- MRR counts seats, coupons, kept amounts
-- MRR is what each next period invoice charges for the plan, so seats, a
-- coupon's discount for as long as it discounts, and the old amount the
-- consent rule keeps count (the first mrr took the plan's price once).
-- On a clock of its own from 1 April 12:00: rp-seats 3 seats of 9,900 =
-- 29,700; rp-coupon 20% off forever = 7,920; rp-keep, whose price rises to
-- 12,900 from May without her consent, keeps 9,900
SELECT toss_billing.create_test_clock('2024-04-01 12:00+09') AS clock2 \gset
SELECT count(pg_temp.customer(k)) AS customers FROM unnest(ARRAY['rp-seats', 'rp-coupon', 'rp-keep']) k;
SELECT code FROM toss_billing.create_coupon('RP20', percent_off => 20, duration => 'forever');
SELECT count(*) AS subscriptions FROM (
    SELECT toss_billing.create_subscription(k, :basic, test_clock_id => :clock2)
      FROM unnest(ARRAY['rp-seats', 'rp-coupon', 'rp-keep']) k) s;
SELECT quantity FROM toss_billing.set_quantity(pg_temp.sub('rp-seats'), 3);
SELECT status FROM toss_billing.apply_coupon(pg_temp.sub('rp-coupon'), 'RP20');
-- (gina's dunning retry, due at noon, is charged too: past_due or active,
-- she counts 9,900 either way)
SELECT * FROM pg_temp.pass();
SELECT pending_amount FROM toss_billing.change_price(pg_temp.sub('rp-keep'), 12900);
SELECT c.customer_key, round(toss_billing._mrr(s.id), 2) AS mrr, p.period_number, p.recurring_amount, p.consent
  FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id,
       LATERAL toss_billing.preview_invoice(s.id) p
 WHERE c.customer_key IN ('rp-seats', 'rp-coupon', 'rp-keep') ORDER BY s.id;
-- 64,700 + 29,700 + 7,920 + 9,900 = 112,220
SELECT month, current, mrr, subscriptions, new_mrr, expansion_mrr, net_change FROM toss_billing.mrr ORDER BY month;
-- 1 May: they renew; rp-keep's own price is 12,900 now, her invoice keeps
-- 9,900 (a consent_adjustment line); then rp-seats cancels at once
SELECT toss_billing.advance_test_clock(:clock2, '1 month');
SELECT * FROM pg_temp.pass();
SELECT c.customer_key, i.period_number, i.amount_due, i.recurring_amount, i.consent, s.quantity, s.amount_override
  FROM toss_billing.invoices i JOIN toss_billing.subscriptions s ON s.id = i.subscription_id
  JOIN toss_billing.customers c ON c.id = s.customer_id
 WHERE c.customer_key IN ('rp-seats', 'rp-coupon', 'rp-keep') AND i.period_number = 1 ORDER BY s.id;
SELECT status FROM toss_billing.cancel_subscription(pg_temp.sub('rp-seats'), false);
-- April's end counts their May invoices (112,220); May, now: rp-seats
-- churned (-29,700), rp-keep still 9,900 (her June invoice keeps it too
-- without consent): 82,520
SELECT month, current, as_of, mrr, subscriptions, new_mrr, expansion_mrr, contraction_mrr, churned_mrr,
       net_change, new_subscriptions, churned_subscriptions
  FROM toss_billing.mrr ORDER BY month;
-- rp-seats was lost at 29,700 a month: 1 of 9 subscriptions, 29,700 / 112,220 of the MRR
SELECT month, subscriptions_at_start, mrr_at_start, voluntary, involuntary, voluntary_mrr, involuntary_mrr,
       churned_mrr, subscription_churn_rate, revenue_churn_rate
  FROM toss_billing.churn_monthly ORDER BY month;
-- _mrr says what a subscription counts when it counts (the views count
-- only active and past_due ones): at April's end its May invoice, now its
-- next one (for rp-seats, canceled, the last one)
SELECT c.customer_key, s.status, round(toss_billing._mrr(s.id, '2024-05-01 00:00+09'), 2) AS at_april_end,
       round(toss_billing._mrr(s.id), 2) AS now
  FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
 WHERE c.customer_key IN ('rp-seats', 'rp-coupon', 'rp-keep') ORDER BY s.id;
\set VERBOSITY terse
SELECT toss_billing._mrr(-1);
SELECT toss_billing._mrr(pg_temp.sub('rp-keep'), 'infinity');
\set VERBOSITY default

\c toss_regress
DROP DATABASE toss_reports;
DROP ROLE rp_audit;
