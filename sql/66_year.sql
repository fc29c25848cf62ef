-- A year of subscriptions on a frozen clock, driven through the runner's SQL
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- half (_claim_due, then _record_outcomes with the outcome each step asks
-- for): month ends and a leap day, a plan change at the next period, a
-- decline and its retry, an unknown outcome and its recovery, a pause, missed
-- runs caught up one period at a time, a cancel at period end, a trial on a
-- test clock and a yearly plan anchored on Feb 29.
\set SHOW_CONTEXT never
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
\getenv tbtest TB_TEST
\set ECHO none
\set helpers :tbtest '/../../sql/include/subscription_helpers.psql'
\i :helpers
\set ECHO all

SELECT id AS standard FROM toss_billing.create_plan('스탠다드 월간', 9900) \gset
SELECT id AS premium FROM toss_billing.create_plan('프리미엄 월간', 19900) \gset
SELECT id AS trial FROM toss_billing.create_plan('체험 후 월간', 4900, trial_days => 14) \gset
SELECT id AS yearly FROM toss_billing.create_plan('연간 구독', 99000, 'year') \gset
SELECT pg_temp.customer('yr-monthly', '박토스', 'toss@example.com');
SELECT pg_temp.customer('yr-trial');
SELECT pg_temp.customer('yr-leap');

-- Jan 31, midnight in Seoul: subscribe; the first period is charged at once
SELECT toss_billing.freeze_clock('2024-01-31 00:00+09');
SELECT id AS monthly FROM toss_billing.create_subscription('yr-monthly', :standard) \gset
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('yr-');

-- what the runner got for that attempt, and the ledger row it completed
SELECT regexp_replace(order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS attempt, state, toss_status, amount, total_amount,
       supplied_amount, vat, order_name, customer_name, customer_email, http_status,
       payment_key = response->>'paymentKey' AS payment_key_kept, requested_at, approved_at,
       subscription_id = :monthly AS for_subscription, period_number, generation, obligation = format('subscription:%s:0', :monthly) AS obligation_kept,
       requested_by = current_user AS by_caller
  FROM toss_billing.payments WHERE subscription_id = :monthly;
-- and the attempt under it: one POST, its raw answer kept
SELECT a.attempt_number, a.state, a.http_status, a.order_id = p.order_id AS same_order, a.deadline IS NOT NULL AS had_deadline
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
 WHERE p.subscription_id = :monthly;

-- a trial on its own test clock: nothing is due until the trial ends
SELECT toss_billing.create_test_clock('2024-02-20 09:30+09') AS trial_clock \gset
SELECT id AS trialing FROM toss_billing.create_subscription('yr-trial', :trial, NULL, test_clock_id => :trial_clock) \gset
-- (0.5.0: a trial converts to paid only with the customer's consent,
-- 전자상거래법 제13조 제6항; here given at sign-up, within the 30 days before)
SELECT (toss_billing.record_consent(:trialing, r.id, toss_billing.subscription_now(:trialing), 'signup', '{}')).counts
  FROM toss_billing.consent_requirements r WHERE r.subscription_id = :trialing;
SELECT * FROM pg_temp.run('done');
SELECT toss_billing.advance_test_clock(:trial_clock, '14 days');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('yr-trial');

-- a second before the leap day nothing is due; at midnight period 1 is
SELECT toss_billing.advance_clock('28 days 23:59:59');
SELECT * FROM pg_temp.run('done');
SELECT toss_billing.advance_clock('1 second');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('yr-monthly');

-- Mar 10: upgrade from the next period on
SELECT toss_billing.advance_clock('10 days');
SELECT pending_plan_period FROM toss_billing.change_plan(:monthly, :premium);
-- (0.5.0: a dearer plan needs the customer's consent; their upgrade is it)
SELECT (toss_billing.record_consent(:monthly, r.id, toss_billing.now(), 'upgrade', '{}')).counts
  FROM toss_billing.consent_requirements r WHERE r.subscription_id = :monthly;
SELECT toss_billing.advance_clock('21 days');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('yr-monthly');

-- Apr 30: declined; past_due, retried a day later (the first dunning slot)
SELECT toss_billing.advance_clock('30 days');
SELECT * FROM pg_temp.run('declined');
SELECT * FROM pg_temp.subs('yr-monthly');
SELECT toss_billing.advance_clock('1 day');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('yr-monthly');

-- May 31: the outcome is unknown.  The period stays open but blocked: an
-- hour later nothing is claimed, until the attempt is resolved (here as a
-- recovery that found the payment DONE by its order id would record it)
SELECT toss_billing.advance_clock('30 days');
SELECT * FROM pg_temp.run('unknown');
SELECT toss_billing.advance_clock('1 hour');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('yr-monthly');
SELECT id AS unknown_payment FROM toss_billing.payments WHERE subscription_id = :monthly AND state = 'unknown' \gset
SELECT toss_billing._record_outcomes(ARRAY[a.id], '{done}', '{200}', '{NULL}', '{NULL}', '{NULL}', '{NULL}',
                                     ARRAY[pg_temp.payment_json(p.order_id, p.order_name, p.amount, '2024-05-31 00:00+09')],
                                     '{NULL}', '{false}')
  FROM toss_billing.payments p JOIN toss_billing.attempts a ON a.payment_id = p.id AND a.state = 'unknown'
 WHERE p.id = :unknown_payment;
SELECT * FROM pg_temp.subs('yr-monthly');

-- Jun 10: paused.  Its paid time ends on Jun 30 and nothing is charged while
-- paused; resumed on Aug 15 it starts a fresh period that day
SELECT toss_billing.advance_clock('9 days 23:00');
SELECT status FROM toss_billing.pause_subscription(:monthly);
SELECT toss_billing.advance_clock('30 days');
SELECT * FROM pg_temp.run('done');
SELECT toss_billing.advance_clock('36 days');
SELECT status, period_number, current_period_start, current_period_end, next_charge_at
  FROM toss_billing.resume_subscription(:monthly);
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('yr-monthly');

-- the runner stops for four months.  On Dec 20 four periods are due; each
-- run charges the next one, and a fifth run finds nothing
SELECT toss_billing.advance_clock('127 days');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('yr-monthly');

-- cancel at the end of the paid time: on Jan 15 it ends, uncharged
SELECT status, cancel_at FROM toss_billing.cancel_subscription(:monthly);
SELECT toss_billing.advance_clock('26 days');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('yr-monthly');

-- every period was charged once, under one order each; only the declined
-- attempt failed, and its retry re-posted the same order id
SELECT regexp_replace(order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS "order", order_name, amount, state, toss_status,
       failure_class, failure_code, approved_at
  FROM toss_billing.payments WHERE subscription_id = :monthly ORDER BY id;
SELECT regexp_replace(p.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS "order", a.attempt_number, a.state,
       a.failure_class, a.failure_code, a.http_status
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
 WHERE p.subscription_id = :monthly AND p.period_number IN (3, 4) ORDER BY a.id;
SELECT occurred_at, type, from_status, to_status, reason
  FROM toss_billing.events WHERE subscription_id = :monthly ORDER BY id;

-- a yearly plan from a leap day on a test clock: Feb 28 in common years,
-- Feb 29 again in 2028; two missed years are caught up one run at a time
SELECT toss_billing.create_test_clock('2024-02-29 09:00+09') AS leap_clock \gset
SELECT id AS leap FROM toss_billing.create_subscription('yr-leap', :yearly, '2024-02-29 09:00+09',
                                                        test_clock_id => :leap_clock) \gset
SELECT * FROM pg_temp.run('done');
SELECT toss_billing.advance_test_clock(:leap_clock, '365 days');
SELECT * FROM pg_temp.run('done');
SELECT toss_billing.advance_test_clock(:leap_clock, '3 years 1 day');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.run('done');
SELECT period_number, current_period_start, current_period_end, next_charge_at
  FROM toss_billing.subscriptions WHERE id = :leap;
SELECT regexp_replace(order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS attempt, requested_at, approved_at
  FROM toss_billing.payments WHERE subscription_id = :leap ORDER BY id;
-- its invoices are finalised and paid on its own clock, not the database's
SELECT i.period_number, i.status, i.finalized_at, i.paid_at, i.paid_at = p.approved_at - interval '1 second' AS paid_when_charged
  FROM toss_billing.invoices i JOIN toss_billing.payments p ON p.invoice_id = i.id AND p.state = 'done'
 WHERE i.subscription_id = :leap ORDER BY i.period_number;

SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events()
 WHERE customer_key <> 'yr-monthly';

SELECT pg_temp.cleanup('yr-');
