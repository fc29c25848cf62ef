-- 95_reporting: the views an auditor reads to answer money questions with
-- one query each (revenue per day, MRR and churn, what failed and why, what
-- renews, who is in dunning, what was refunded, which windows were
-- reconciled) and the readable state of every subscription.  What a
-- period will be charged comes from toss_billing._next_amount, the one
-- function that says it: the amount due of the period's invoice
-- (32_invoices).
--
-- Rules every view follows:
--   * money is dated when it moved: a payment by approved_at (Toss's
--     approval time; the time recorded only when Toss gave none), a refund
--     by its cancel's canceled_at, never by created_at;
--   * days and months are counted in toss_billing.report_time_zone
--     (default Asia/Seoul), read per query, so a session may SET another;
--   * a payment is revenue when the ledger holds it done, recovered ones
--     (found by reconcile, of this installation) included; a fully refunded
--     payment is still done: its refund is counted on the refund's day;
--     foreign payments (other systems' money under the merchant) are
--     discrepancies, never ledger rows, so never revenue;
--   * subscription times are on each subscription's clock (its test clock,
--     or toss_billing.now()).

-- @data

-- failures_by_code finds a failed attempt's event (its time on the
-- subscription's clock) by payment.
CREATE INDEX events_payment ON toss_billing.events (payment_id)
    WHERE payment_id IS NOT NULL;

-- @code

-- Every subscription with plain columns: the time it is paid through, the
-- next charge and its amount, what is owed now, and a sentence saying why
-- it is in its status.  (subscriptions.current_period_start/end is the
-- open period: the NEXT one to be paid, not the one paid.)
CREATE OR REPLACE VIEW toss_billing.subscription_info AS
WITH base AS (
    SELECT s.*, c.customer_key, pl.name AS plan_name,
           COALESCE(tc.now_at, toss_billing.now()) AS now_at,
           EXISTS (SELECT FROM toss_billing.billing_keys bk
                    WHERE bk.customer_id = s.customer_id AND bk.status = 'active') AS card_usable,
           o.order_id AS open_order_id, o.state AS open_order_state, o.hold_reason AS open_hold_reason,
           f.failed_attempts, f.last_failure_class, f.last_failure_code, f.last_failure_message,
           ft.first_failed_at, ft.last_failed_at,
           cx.reason AS cancel_reason
      FROM toss_billing.subscriptions s
      JOIN toss_billing.customers c ON c.id = s.customer_id
      JOIN toss_billing.plans pl ON pl.id = s.plan_id
      LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
      LEFT JOIN LATERAL (SELECT p.order_id, p.state, p.hold_reason
                           FROM toss_billing.payments p
                          WHERE p.subscription_id = s.id AND p.period_number = s.period_number
                          ORDER BY p.generation DESC, p.id DESC
                          LIMIT 1) o ON true
      LEFT JOIN LATERAL (SELECT pg_catalog.count(*) AS failed_attempts,
                                (pg_catalog.array_agg(a.failure_class ORDER BY a.id DESC))[1] AS last_failure_class,
                                (pg_catalog.array_agg(a.failure_code ORDER BY a.id DESC))[1] AS last_failure_code,
                                (pg_catalog.array_agg(a.failure_message ORDER BY a.id DESC))[1] AS last_failure_message
                           FROM toss_billing.payments p
                           JOIN toss_billing.attempts a ON a.payment_id = p.id
                          WHERE p.subscription_id = s.id AND p.period_number = s.period_number
                            AND a.state = 'failed') f ON true
      LEFT JOIN LATERAL (SELECT pg_catalog.min(e.occurred_at) AS first_failed_at,
                                pg_catalog.max(e.occurred_at) AS last_failed_at
                           FROM toss_billing.events e
                          WHERE e.subscription_id = s.id AND e.type = 'payment_failed'
                            AND e.detail->>'period_number' = s.period_number::text) ft ON true
      LEFT JOIN LATERAL (SELECT e.reason FROM toss_billing.events e
                          WHERE s.status = 'canceled' AND e.subscription_id = s.id AND e.type = 'status_changed'
                            AND e.to_status = 'canceled'
                          ORDER BY e.id DESC LIMIT 1) cx ON true)
SELECT b.id, b.customer_key, b.plan_id, b.plan_name, b.status,
       CASE
           WHEN b.status = 'canceled' THEN
               pg_catalog.format('canceled at %s (%s)', b.canceled_at, COALESCE(b.cancel_reason, 'canceled'))
           WHEN b.status = 'paused' THEN
               pg_catalog.format('paused since %s: nothing is charged and no period ends until it is resumed', b.paused_at)
           WHEN b.open_order_state = 'in_flight' THEN 'a charge of the open period is in flight'
           WHEN b.open_order_state = 'unknown' THEN
               'the outcome of a charge of the open period is unknown: it is being resolved by looking the order up, nothing is charged meanwhile'
           WHEN b.open_hold_reason IS NOT NULL AND b.open_order_state = 'pending' THEN
               'held: an answer from Toss did not match the order; nothing is charged until its discrepancy is resolved (toss_billing.open_discrepancies)'
           WHEN b.status = 'trialing' THEN
               pg_catalog.format('in trial until %s; the first charge is due then', b.trial_end)
           WHEN b.status = 'unpaid' THEN
               pg_catalog.format('unpaid: dunning ended after %s failed attempts with the open period unpaid; nothing is charged until retry_subscription() or card_replaced()',
                                 COALESCE(b.failed_attempts, 0))
           WHEN NOT b.card_usable AND b.current_period_start > b.now_at THEN
               pg_catalog.format('card deleted: paid through %s, nothing is owed yet; a new card (then card_replaced()) is needed before then',
                                 b.current_period_start)
           WHEN NOT b.card_usable THEN
               'card deleted: the open period is owed and nothing is scheduled until a new card is registered (then card_replaced())'
           WHEN b.status = 'past_due' AND b.next_charge_at IS NULL THEN
               pg_catalog.format('charging stopped after a %s failure (%s): fix the cause, then call retry_subscription()',
                                 COALESCE(b.last_failure_class, 'unclassified'), COALESCE(b.last_failure_code, 'no code'))
           WHEN b.status = 'past_due' THEN
               pg_catalog.format('in dunning: %s failed attempts since %s (last: %s); next retry at %s',
                                 b.failed_attempts, COALESCE(b.dunning_started_at, b.first_failed_at),
                                 COALESCE(b.last_failure_code, b.last_failure_class, 'no code'), b.next_charge_at)
           WHEN b.cancel_at_period_end THEN
               pg_catalog.format('active; cancels at %s, nothing is charged from then on', b.cancel_at)
           WHEN b.current_period_start > b.now_at THEN
               pg_catalog.format('active; paid through %s, next charge at %s', b.current_period_start, b.next_charge_at)
           WHEN b.failed_attempts > 0 THEN
               pg_catalog.format('active; the open period is owed, retrying after a %s failure (%s) at %s',
                                 COALESCE(b.last_failure_class, 'unclassified'), COALESCE(b.last_failure_code, 'no code'),
                                 b.next_charge_at)
           ELSE 'active; the open period is due and is charged by the next run'
       END AS status_reason,
       CASE WHEN b.status = 'canceled' THEN LEAST(b.current_period_start, b.canceled_at)
            ELSE b.current_period_start END AS paid_through,
       b.next_charge_at,
       CASE WHEN b.status <> 'canceled' THEN toss_billing._next_amount(b.id) END AS next_amount,
       CASE WHEN b.status = ANY (ARRAY['active', 'past_due', 'unpaid']) AND b.current_period_start <= b.now_at
                 AND b.open_order_state IS DISTINCT FROM 'done'
            THEN toss_billing._next_amount(b.id) ELSE 0 END AS amount_due,
       b.period_number, b.current_period_start AS open_period_start, b.current_period_end AS open_period_end,
       b.trial_end, CASE WHEN b.cancel_at_period_end THEN b.cancel_at END AS cancel_at, b.canceled_at, b.paused_at,
       b.pending_plan_id, b.pending_plan_period, b.amount_override, b.card_usable,
       b.dunning_attempt, b.dunning_started_at, COALESCE(b.failed_attempts, 0) AS failed_attempts,
       b.first_failed_at, b.last_failed_at, b.last_failure_class, b.last_failure_code, b.last_failure_message,
       b.open_order_id, b.open_order_state, b.time_zone, b.now_at, b.test_clock_id, b.created_at
  FROM base b;

-- Per day (toss_billing.report_time_zone) and merchant: payments approved
-- (count, gross KRW), refunds made (count, KRW, dated when they were made),
-- net, and how many of the payments were recovered by reconcile.
CREATE OR REPLACE VIEW toss_billing.revenue_daily AS
WITH zone AS (
    SELECT COALESCE(NULLIF(pg_catalog.current_setting('toss_billing.report_time_zone', true), ''), 'Asia/Seoul') AS tz),
flows AS (
    SELECT (COALESCE(p.approved_at, p.requested_at, p.created_at) AT TIME ZONE z.tz)::date AS day, p.merchant,
           1 AS payments, COALESCE(p.total_amount, p.amount) AS gross, 0 AS refunds, 0::bigint AS refunded,
           CASE WHEN p.recovered THEN 1 ELSE 0 END AS recovered
      FROM toss_billing.payments p, zone z
     WHERE p.state = 'done'
    UNION ALL
    SELECT (COALESCE(c.canceled_at, c.updated_at) AT TIME ZONE z.tz)::date, p.merchant,
           0, 0::bigint, 1, COALESCE(c.canceled_amount, 0), 0
      FROM toss_billing.cancels c
      JOIN toss_billing.payments p ON p.id = c.payment_id, zone z
     WHERE c.state = 'done')
SELECT f.day, f.merchant, pg_catalog.sum(f.payments)::bigint AS payments, pg_catalog.sum(f.gross)::bigint AS gross,
       pg_catalog.sum(f.refunds)::bigint AS refunds, pg_catalog.sum(f.refunded)::bigint AS refunded,
       (pg_catalog.sum(f.gross) - pg_catalog.sum(f.refunded))::bigint AS net,
       pg_catalog.sum(f.recovered)::bigint AS recovered, (SELECT z.tz FROM zone z) AS time_zone
  FROM flows f
 GROUP BY f.day, f.merchant;

-- A subscription's monthly recurring revenue as of a time ("at"; NULL:
-- now): the recurring amount its next period invoice charges then -- the
-- plan line (price x quantity) less the coupon's discount on it, with the
-- consent rule's outcome (an increase without a valid consent: the old
-- amount kept), i.e. invoices.recurring_amount; no usage, one-off items,
-- prorations or carried amounts -- normalised to a month by that invoice's
-- plan (month x 1, year / 12, week x 52 / 12, day x 365 / 12, over the
-- interval count).  The next period invoice as of "at" is the subscription's
-- first period invoice not finalised before it: as it was finalised (what it
-- charged, exactly), else -- not finalised yet, or "at" is now -- as
-- _preview_period composes it now (what preview_invoice shows).  A
-- subscription that will have no next period invoice (canceled, or its
-- next one canceled by the consent rule) counts the recurring amount of the
-- last period invoice finalised before "at".  Whether the subscription
-- counts at all (its status then) is the caller's.  Writes nothing.
CREATE OR REPLACE FUNCTION toss_billing._mrr(subscription_id bigint, "at" timestamptz DEFAULT NULL)
RETURNS numeric
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions;
    v_amount bigint;
    v_plan bigint;
    r toss_billing.invoice_preview;
BEGIN
    IF _mrr.subscription_id IS NULL THEN
        RAISE EXCEPTION 'subscription_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = _mrr.subscription_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription % does not exist', _mrr.subscription_id USING ERRCODE = 'P0002';
    END IF;
    IF NOT pg_catalog.isfinite(_mrr.at) THEN
        RAISE EXCEPTION 'at must be a finite time' USING ERRCODE = '22023';
    END IF;
    -- the next period invoice, as finalised
    IF _mrr.at IS NOT NULL THEN
        SELECT i.recurring_amount, i.plan_id INTO v_amount, v_plan
          FROM toss_billing.invoices i
         WHERE i.subscription_id = v_sub.id AND i.kind = 'period' AND i.status <> 'draft'
           AND i.finalized_at >= _mrr.at AND i.recurring_amount IS NOT NULL
         ORDER BY i.period_number
         LIMIT 1;
    END IF;
    -- not finalised yet: as it would be finalised now
    IF v_amount IS NULL AND v_sub.status <> 'canceled' THEN
        r := toss_billing._preview_period(v_sub, toss_billing._next_period(v_sub));
        v_amount := r.recurring_amount;
        v_plan := r.plan_id;
    END IF;
    -- none to come: the last one
    IF v_amount IS NULL THEN
        SELECT i.recurring_amount, i.plan_id INTO v_amount, v_plan
          FROM toss_billing.invoices i
         WHERE i.subscription_id = v_sub.id AND i.kind = 'period' AND i.status <> 'draft'
           AND (_mrr.at IS NULL OR i.finalized_at < _mrr.at) AND i.recurring_amount IS NOT NULL
         ORDER BY i.period_number DESC
         LIMIT 1;
    END IF;
    IF v_amount IS NULL THEN
        RETURN 0;
    END IF;
    RETURN (SELECT v_amount::numeric
                   * CASE pl.interval_unit WHEN 'month' THEN 1.0 WHEN 'year' THEN 1.0 / 12
                                           WHEN 'week' THEN 52.0 / 12 WHEN 'day' THEN 365.0 / 12 END
                   / pl.interval_count
              FROM toss_billing.plans pl WHERE pl.id = v_plan);
END;
$$;

-- Monthly recurring revenue at each month's end (toss_billing.
-- report_time_zone) from the month of the first subscription to now (the
-- current month: as of now), and how it moved: each subscription's MRR at
-- the end of the month against the end of the month before.  A
-- subscription counts while active or past_due (trialing, paused, unpaid
-- and canceled count 0), at what toss_billing._mrr says: the recurring
-- amount of its next period invoice as of the month's end (now, for the
-- current month) -- the plan's price (or its own) x its quantity (seats),
-- less a coupon's discount on it for as long as the coupon discounts that
-- invoice, and the old amount where the consent rule keeps it -- as that
-- invoice was finalised, or, not finalised yet, as preview_invoice
-- composes it now; usage, one-off items, prorations and carried amounts
-- are not recurring and never count.  Normalised to a month (year / 12,
-- week * 52 / 12, day * 365 / 12, over the interval count).  A change
-- counts from the month's end its next invoice charges it at (a change
-- scheduled for the next period, from the month it was made in).  new: from
-- 0, never counted before; reactivated: from 0, counted before; expansion /
-- contraction: up / down; churned: to 0.  mrr = the previous month's mrr +
-- new + expansion + contraction + churned + reactivated (each rounded to
-- the won).
CREATE OR REPLACE VIEW toss_billing.mrr AS
WITH params AS (
    SELECT COALESCE(NULLIF(pg_catalog.current_setting('toss_billing.report_time_zone', true), ''), 'Asia/Seoul') AS tz,
           GREATEST(toss_billing.now(), (SELECT pg_catalog.max(tc.now_at) FROM toss_billing.test_clocks tc)) AS now_at),
months AS (
    SELECT m.m::date AS month, (m.m + interval '1 month') AT TIME ZONE p.tz AS month_end, p.now_at, p.tz,
           (m.m + interval '1 month') AT TIME ZONE p.tz > p.now_at AS current
      FROM params p
     CROSS JOIN LATERAL (SELECT pg_catalog.date_trunc('month', pg_catalog.min(e.occurred_at) AT TIME ZONE p.tz) AS first
                           FROM toss_billing.events e WHERE e.type = 'created') b
     CROSS JOIN LATERAL pg_catalog.generate_series(b.first, pg_catalog.date_trunc('month', p.now_at AT TIME ZONE p.tz),
                                                   interval '1 month') AS m(m)),
state AS (
    SELECT mo.month, mo.month_end, mo.now_at, mo.tz, mo.current, s.id AS subscription_id,
           CASE WHEN (CASE WHEN mo.current THEN s.status ELSE st.status END) = ANY (ARRAY['active', 'past_due'])
                THEN toss_billing._mrr(s.id, CASE WHEN NOT mo.current THEN mo.month_end END)
                ELSE 0 END AS mrr
      FROM months mo
     CROSS JOIN toss_billing.subscriptions s
      LEFT JOIN LATERAL (SELECT e.to_status AS status FROM toss_billing.events e
                          WHERE e.subscription_id = s.id AND e.to_status IS NOT NULL AND e.occurred_at < mo.month_end
                          ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1) st ON NOT mo.current),
moves AS (
    SELECT st.*,
           COALESCE(pg_catalog.lag(st.mrr) OVER w, 0) AS prev,
           COALESCE(pg_catalog.bool_or(st.mrr > 0) OVER (PARTITION BY st.subscription_id ORDER BY st.month
                                                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), false) AS had
      FROM state st
    WINDOW w AS (PARTITION BY st.subscription_id ORDER BY st.month))
SELECT m.month, m.current, LEAST(m.month_end, m.now_at) AS as_of,
       pg_catalog.round(pg_catalog.sum(m.mrr))::bigint AS mrr,
       pg_catalog.count(*) FILTER (WHERE m.mrr > 0) AS subscriptions,
       pg_catalog.round(pg_catalog.sum(CASE WHEN m.prev = 0 AND m.mrr > 0 AND NOT m.had THEN m.mrr ELSE 0 END))::bigint AS new_mrr,
       pg_catalog.round(pg_catalog.sum(CASE WHEN m.prev > 0 AND m.mrr > m.prev THEN m.mrr - m.prev ELSE 0 END))::bigint
           AS expansion_mrr,
       pg_catalog.round(pg_catalog.sum(CASE WHEN m.prev > 0 AND m.mrr > 0 AND m.mrr < m.prev THEN m.mrr - m.prev ELSE 0 END))::bigint
           AS contraction_mrr,
       pg_catalog.round(pg_catalog.sum(CASE WHEN m.prev > 0 AND m.mrr = 0 THEN -m.prev ELSE 0 END))::bigint AS churned_mrr,
       pg_catalog.round(pg_catalog.sum(CASE WHEN m.prev = 0 AND m.mrr > 0 AND m.had THEN m.mrr ELSE 0 END))::bigint
           AS reactivated_mrr,
       pg_catalog.round(pg_catalog.sum(m.mrr - m.prev))::bigint AS net_change,
       pg_catalog.count(*) FILTER (WHERE m.prev = 0 AND m.mrr > 0 AND NOT m.had) AS new_subscriptions,
       pg_catalog.count(*) FILTER (WHERE m.prev > 0 AND m.mrr = 0) AS churned_subscriptions,
       pg_catalog.count(*) FILTER (WHERE m.prev = 0 AND m.mrr > 0 AND m.had) AS reactivated_subscriptions,
       m.tz AS time_zone
  FROM moves m
 GROUP BY m.month, m.current, m.month_end, m.now_at, m.tz;

-- Subscriptions and MRR lost per month (toss_billing.report_time_zone):
-- a subscription that was active or past_due and became canceled or
-- unpaid, voluntary (canceled by request or at its period's end) or
-- involuntary (dunning exhausted: unpaid, or canceled by the dunning
-- policy), with its MRR at that moment as the mrr view counts it
-- (toss_billing._mrr: the recurring amount of its next period invoice then
-- -- seats, coupons and the consent rule's kept amount included; for one
-- canceled, the last period invoice's); the rates are against the month's
-- start (the mrr view's figures at the previous month's end).  Unlike the
-- mrr view's churned_mrr (month end against month end), every loss counts
-- here, also one won back within the month.
CREATE OR REPLACE VIEW toss_billing.churn_monthly AS
WITH zone AS (
    SELECT COALESCE(NULLIF(pg_catalog.current_setting('toss_billing.report_time_zone', true), ''), 'Asia/Seoul') AS tz),
lost AS (
    SELECT (pg_catalog.date_trunc('month', e.occurred_at AT TIME ZONE z.tz))::date AS month, e.subscription_id,
           CASE WHEN e.reason = 'dunning exhausted' THEN 'involuntary' ELSE 'voluntary' END AS kind,
           toss_billing._mrr(e.subscription_id, e.occurred_at) AS mrr
      FROM toss_billing.events e
     CROSS JOIN zone z
     WHERE e.type = 'status_changed' AND e.to_status = ANY (ARRAY['canceled', 'unpaid'])
       AND e.from_status = ANY (ARRAY['active', 'past_due'])),
starts AS (
    SELECT m.month, COALESCE(pg_catalog.lag(m.subscriptions) OVER w, 0) AS subscriptions_at_start,
           COALESCE(pg_catalog.lag(m.mrr) OVER w, 0) AS mrr_at_start
      FROM toss_billing.mrr m
    WINDOW w AS (ORDER BY m.month)),
months AS (
    SELECT s.month, s.subscriptions_at_start, s.mrr_at_start FROM starts s
    UNION
    SELECT l.month, 0, 0 FROM lost l WHERE l.month NOT IN (SELECT s.month FROM starts s))
SELECT mo.month, mo.subscriptions_at_start, mo.mrr_at_start,
       pg_catalog.count(l.subscription_id) FILTER (WHERE l.kind = 'voluntary') AS voluntary,
       pg_catalog.count(l.subscription_id) FILTER (WHERE l.kind = 'involuntary') AS involuntary,
       pg_catalog.count(l.subscription_id) AS churned,
       COALESCE(pg_catalog.round(pg_catalog.sum(l.mrr) FILTER (WHERE l.kind = 'voluntary')), 0)::bigint AS voluntary_mrr,
       COALESCE(pg_catalog.round(pg_catalog.sum(l.mrr) FILTER (WHERE l.kind = 'involuntary')), 0)::bigint AS involuntary_mrr,
       COALESCE(pg_catalog.round(pg_catalog.sum(l.mrr)), 0)::bigint AS churned_mrr,
       pg_catalog.round(pg_catalog.count(l.subscription_id)::numeric / NULLIF(mo.subscriptions_at_start, 0), 4)
           AS subscription_churn_rate,
       pg_catalog.round(COALESCE(pg_catalog.sum(l.mrr), 0) / NULLIF(mo.mrr_at_start, 0), 4) AS revenue_churn_rate,
       (SELECT z.tz FROM zone z) AS time_zone
  FROM months mo
  LEFT JOIN lost l ON l.month = mo.month
 GROUP BY mo.month, mo.subscriptions_at_start, mo.mrr_at_start;

-- Failed attempts per day (toss_billing.report_time_zone; a subscription's
-- on its clock), Toss code and class: how many attempts, how many
-- obligations (subscription periods, toss_charge orders) they were for,
-- how many of those were paid later (recovered by dunning or a retry), the
-- share recovered, and the latest message.
CREATE OR REPLACE VIEW toss_billing.failures_by_code AS
WITH zone AS (
    SELECT COALESCE(NULLIF(pg_catalog.current_setting('toss_billing.report_time_zone', true), ''), 'Asia/Seoul') AS tz),
failed AS (
    SELECT a.id, p.obligation, a.failure_class, a.failure_code, a.failure_message,
           COALESCE(e.occurred_at, a.updated_at) AS failed_at,
           EXISTS (SELECT FROM toss_billing.payments x WHERE x.obligation = p.obligation AND x.state = 'done') AS paid
      FROM toss_billing.attempts a
      JOIN toss_billing.payments p ON p.id = a.payment_id
      LEFT JOIN LATERAL (SELECT e.occurred_at FROM toss_billing.events e
                          WHERE e.payment_id = a.payment_id AND e.type = 'payment_failed'
                            AND e.detail->>'attempt_number' = a.attempt_number::text
                          ORDER BY e.id LIMIT 1) e ON true
     WHERE a.state = 'failed')
SELECT (f.failed_at AT TIME ZONE z.tz)::date AS day, f.failure_class, f.failure_code,
       pg_catalog.count(*) AS attempts, pg_catalog.count(DISTINCT f.obligation) AS obligations,
       pg_catalog.count(DISTINCT f.obligation) FILTER (WHERE f.paid) AS recovered,
       pg_catalog.round(pg_catalog.count(DISTINCT f.obligation) FILTER (WHERE f.paid)::numeric
                        / pg_catalog.count(DISTINCT f.obligation), 4) AS recovered_share,
       (pg_catalog.array_agg(f.failure_message ORDER BY f.failed_at DESC, f.id DESC))[1] AS last_message,
       z.tz AS time_zone
  FROM failed f, zone z
 GROUP BY 1, f.failure_class, f.failure_code, z.tz;

-- What will be charged within the next 35 days of each subscription's
-- clock, assuming each charge succeeds: the open period's charge (at
-- next_charge_at: a first charge, a renewal, a dunning retry, the end of a
-- trial) and the renewals after it, with the plan in effect for each
-- period (a scheduled plan change from its period on, re-based when the
-- interval changes), nothing at or after a scheduled cancel, and each
-- amount from toss_billing._next_amount.  Paused, unpaid and canceled
-- subscriptions, and those with nothing scheduled (a deleted card, charging
-- stopped), renew nothing.
CREATE OR REPLACE VIEW toss_billing.upcoming_renewals AS
WITH subs AS (
    SELECT s.*, c.customer_key, COALESCE(tc.now_at, toss_billing.now()) AS now_at,
           op.interval_unit AS old_unit, op.interval_count AS old_count,
           np.interval_unit AS new_unit, np.interval_count AS new_count,
           s.pending_plan_id IS NOT NULL
               AND (np.interval_unit, np.interval_count) IS DISTINCT FROM (op.interval_unit, op.interval_count) AS rebase,
           EXISTS (SELECT FROM toss_billing.billing_keys bk
                    WHERE bk.customer_id = s.customer_id AND bk.status = 'active') AS card_usable
      FROM toss_billing.subscriptions s
      JOIN toss_billing.customers c ON c.id = s.customer_id
      JOIN toss_billing.plans op ON op.id = s.plan_id
      LEFT JOIN toss_billing.plans np ON np.id = s.pending_plan_id
      LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
     WHERE s.status = ANY (ARRAY['trialing', 'active', 'past_due']) AND s.next_charge_at IS NOT NULL),
periods AS (
    SELECT s.*, k.k, s.period_number + k.k AS period,
           CASE WHEN s.pending_plan_id IS NOT NULL AND s.period_number + k.k >= s.pending_plan_period
                THEN s.pending_plan_id ELSE s.plan_id END AS period_plan_id
      FROM subs s
     CROSS JOIN LATERAL pg_catalog.generate_series(
               0, 1 + (SELECT pg_catalog.max(CASE u.unit WHEN 'day' THEN pg_catalog.ceil(36.0 / u.cnt)
                                                          WHEN 'week' THEN pg_catalog.ceil(6.0 / u.cnt) ELSE 1 END)::integer
                         FROM (VALUES (s.old_unit, s.old_count), (s.new_unit, s.new_count)) u(unit, cnt)
                        WHERE u.unit IS NOT NULL)) AS k(k)),
timed AS (
    SELECT p.*, b.period_start, b.period_end,
           CASE WHEN p.k = 0 THEN p.next_charge_at ELSE b.period_start END AS charge_at
      FROM periods p
     CROSS JOIN LATERAL (
        SELECT (SELECT CASE WHEN p.rebase AND x.n >= p.pending_plan_period
                            THEN toss_billing.period_start(
                                     toss_billing.period_start(p.billing_anchor, p.time_zone, p.old_unit, p.old_count,
                                                               p.pending_plan_period - p.anchor_period),
                                     p.time_zone, p.new_unit, p.new_count, x.n - p.pending_plan_period)
                            ELSE toss_billing.period_start(p.billing_anchor, p.time_zone, p.old_unit, p.old_count,
                                                           x.n - p.anchor_period) END
                  FROM (SELECT p.period AS n) x) AS period_start,
               (SELECT CASE WHEN p.rebase AND x.n >= p.pending_plan_period
                            THEN toss_billing.period_start(
                                     toss_billing.period_start(p.billing_anchor, p.time_zone, p.old_unit, p.old_count,
                                                               p.pending_plan_period - p.anchor_period),
                                     p.time_zone, p.new_unit, p.new_count, x.n - p.pending_plan_period)
                            ELSE toss_billing.period_start(p.billing_anchor, p.time_zone, p.old_unit, p.old_count,
                                                           x.n - p.anchor_period) END
                  FROM (SELECT p.period + 1 AS n) x) AS period_end) b)
SELECT t.id AS subscription_id, t.customer_key, t.period AS period_number, t.charge_at,
       toss_billing._next_amount(t.id, t.period) AS amount,
       t.period_plan_id AS plan_id, pl.name AS plan_name,
       CASE WHEN t.k = 0 AND t.status = 'past_due' THEN 'retry'
            WHEN t.k = 0 AND t.status = 'trialing' THEN 'trial end'
            WHEN t.period = 0 THEN 'first'
            ELSE 'renewal' END AS kind,
       t.period_start, t.period_end, t.status,
       CASE WHEN t.cancel_at_period_end THEN t.cancel_at END AS cancel_at,
       t.card_usable, t.now_at
  FROM timed t
  JOIN toss_billing.plans pl ON pl.id = t.period_plan_id
 WHERE t.charge_at < t.now_at + interval '35 days'
   AND (NOT t.cancel_at_period_end OR t.period_start < t.cancel_at);

-- Subscriptions in dunning: past_due or unpaid with their open period
-- owed now (a past_due subscription whose card was deleted but whose paid
-- time has not run out owes nothing: it is not here, see
-- subscription_info).  since: the period's first failed attempt (or when
-- dunning began); next_retry_at NULL: nothing is scheduled (a deleted card,
-- charging stopped, dunning exhausted).
CREATE OR REPLACE VIEW toss_billing.dunning AS
SELECT si.id AS subscription_id, si.customer_key, si.status,
       COALESCE(si.first_failed_at, si.dunning_started_at, si.open_period_start) AS since,
       si.failed_attempts, si.dunning_attempt AS retries_scheduled, si.next_charge_at AS next_retry_at,
       si.last_failure_code, si.last_failure_class, si.last_failure_message, si.last_failed_at,
       si.card_usable, si.amount_due, si.open_period_start AS owed_since, si.status_reason AS reason
  FROM toss_billing.subscription_info si
 WHERE si.status = ANY (ARRAY['past_due', 'unpaid']) AND si.amount_due > 0;

-- Every cancel (refund), with its payment: the amount asked (NULL: all of
-- the balance) and refunded, the reason, who asked (NULL when it was made
-- outside toss_billing: Toss's console, another system), when, and the
-- payment's state after it.  day: the refund's day in
-- toss_billing.report_time_zone.
CREATE OR REPLACE VIEW toss_billing.refunds AS
SELECT c.id AS cancel_id, (COALESCE(c.canceled_at, c.created_at)
                           AT TIME ZONE COALESCE(NULLIF(pg_catalog.current_setting('toss_billing.report_time_zone', true), ''),
                                                 'Asia/Seoul'))::date AS day,
       c.state, c.canceled_at, c.requested_amount, c.canceled_amount, c.reason, c.requested_by,
       c.idempotency_key IS NULL AS outside_toss_billing,
       p.id AS payment_id, p.order_id, p.payment_key, p.merchant, cu.customer_key, p.subscription_id, p.period_number,
       COALESCE(p.total_amount, p.amount) AS payment_amount, p.approved_at AS payment_approved_at,
       p.balance_amount AS payment_balance, p.balance_amount = 0 AS fully_refunded, p.toss_status,
       c.failure_code, c.failure_message, c.created_at
  FROM toss_billing.cancels c
  JOIN toss_billing.payments p ON p.id = c.payment_id
  LEFT JOIN toss_billing.customers cu ON cu.id = COALESCE(c.customer_id, p.customer_id);

-- Which time windows of each merchant's ledger have been reconciled: the
-- windows of finished reconcile runs merged where they overlap or touch
-- (reconciled), and the gaps between them, before them (from the first
-- payment) and after them (up to now), with the runs that covered each, the
-- discrepancies they opened and payments they recovered, and the ledger's
-- payments (done, by approved_at) in it.  Zero open discrepancies mean
-- nothing when the payments lie in a gap: never reconciled.
CREATE OR REPLACE VIEW toss_billing.reconcile_coverage AS
WITH windows AS (
    SELECT r.params->>'merchant' AS merchant, (r.params->>'from_at')::timestamptz AS from_at,
           (r.params->>'to_at')::timestamptz AS to_at, r.finished_at, r.discrepancies, r.recovered
      FROM toss_billing.run_log r
     WHERE r.kind = 'reconcile' AND r.outcome = 'finished'),
ordered AS (
    SELECT w.*, pg_catalog.max(w.to_at) OVER (PARTITION BY w.merchant ORDER BY w.from_at, w.to_at
                                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
      FROM windows w),
islands AS (
    SELECT o.*, pg_catalog.sum(CASE WHEN o.reach IS NULL OR o.from_at > o.reach THEN 1 ELSE 0 END)
                    OVER (PARTITION BY o.merchant ORDER BY o.from_at, o.to_at) AS island
      FROM ordered o),
covered AS (
    SELECT i.merchant, pg_catalog.min(i.from_at) AS from_at, pg_catalog.max(i.to_at) AS to_at,
           pg_catalog.count(*) AS runs, pg_catalog.min(i.finished_at) AS first_reconciled_at,
           pg_catalog.max(i.finished_at) AS last_reconciled_at,
           pg_catalog.sum(i.discrepancies)::bigint AS discrepancies_found,
           pg_catalog.sum(i.recovered)::bigint AS recovered
      FROM islands i
     GROUP BY i.merchant, i.island),
extent AS (
    SELECT m.merchant,
           LEAST((SELECT pg_catalog.min(COALESCE(p.approved_at, p.created_at)) FROM toss_billing.payments p
                   WHERE p.merchant = m.merchant AND p.state = 'done'),
                 (SELECT pg_catalog.min(w.from_at) FROM windows w WHERE w.merchant = m.merchant)) AS from_at,
           GREATEST(toss_billing.now(),
                    (SELECT pg_catalog.max(w.to_at) FROM windows w WHERE w.merchant = m.merchant),
                    (SELECT pg_catalog.max(COALESCE(p.approved_at, p.created_at)) + interval '1 microsecond'
                       FROM toss_billing.payments p WHERE p.merchant = m.merchant AND p.state = 'done')) AS to_at
      FROM (SELECT p.merchant FROM toss_billing.payments p WHERE p.state = 'done'
            UNION SELECT w.merchant FROM windows w) m),
bounded AS (
    SELECT c.*, pg_catalog.lag(c.to_at) OVER w AS prev_to, pg_catalog.lead(c.from_at) OVER w AS next_from
      FROM covered c
    WINDOW w AS (PARTITION BY c.merchant ORDER BY c.from_at)),
intervals AS (
    SELECT b.merchant, b.from_at, b.to_at, true AS reconciled, b.runs, b.first_reconciled_at, b.last_reconciled_at,
           b.discrepancies_found, b.recovered
      FROM bounded b
    UNION ALL
    SELECT b.merchant, COALESCE(b.prev_to, e.from_at), b.from_at, false, 0, NULL, NULL, 0, 0
      FROM bounded b JOIN extent e ON e.merchant = b.merchant
     WHERE COALESCE(b.prev_to, e.from_at) < b.from_at
    UNION ALL
    SELECT b.merchant, b.to_at, e.to_at, false, 0, NULL, NULL, 0, 0
      FROM bounded b JOIN extent e ON e.merchant = b.merchant
     WHERE b.next_from IS NULL AND b.to_at < e.to_at
    UNION ALL
    SELECT e.merchant, e.from_at, e.to_at, false, 0, NULL, NULL, 0, 0
      FROM extent e
     WHERE e.from_at < e.to_at AND NOT EXISTS (SELECT FROM covered c WHERE c.merchant = e.merchant))
SELECT i.merchant, i.from_at, i.to_at, i.reconciled, i.runs, i.first_reconciled_at, i.last_reconciled_at,
       i.discrepancies_found, i.recovered,
       pg_catalog.count(p.id) AS payments, COALESCE(pg_catalog.sum(COALESCE(p.total_amount, p.amount)), 0)::bigint AS amount
  FROM intervals i
  LEFT JOIN toss_billing.payments p
    ON p.merchant = i.merchant AND p.state = 'done'
   AND COALESCE(p.approved_at, p.created_at) >= i.from_at AND COALESCE(p.approved_at, p.created_at) < i.to_at
 GROUP BY i.merchant, i.from_at, i.to_at, i.reconciled, i.runs, i.first_reconciled_at, i.last_reconciled_at,
          i.discrepancies_found, i.recovered;

-- toss_billing's settings, as pg_settings shows them to the reader (the
-- key files' paths only to superusers and pg_read_all_settings), and the
-- versions of the installed SQL and of the loaded library.
CREATE OR REPLACE VIEW toss_billing.settings AS
SELECT s.name, s.setting, s.unit, s.boot_val AS default_value, s.context, s.short_desc AS description
  FROM pg_catalog.pg_settings s
 WHERE s.name LIKE 'toss_billing.%';

-- The library loaded in this backend (C).
CREATE OR REPLACE FUNCTION toss_billing._library_version()
RETURNS text
LANGUAGE c STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_library_version';

-- The installed SQL version, the loaded library's, and whether they agree
-- (after installing a new library, run ALTER EXTENSION toss_billing UPDATE).
CREATE OR REPLACE FUNCTION toss_billing.version()
RETURNS TABLE(sql_version text, library_version text, matching boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT e.extversion::text, toss_billing._library_version(), e.extversion OPERATOR(pg_catalog.=) toss_billing._library_version()
      FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'toss_billing';
$$;

GRANT EXECUTE ON FUNCTION toss_billing.version(), toss_billing._library_version() TO toss_billing_operator;
GRANT EXECUTE ON FUNCTION toss_billing._mrr(bigint, timestamptz) TO toss_billing_operator, toss_billing_auditor;
GRANT SELECT ON toss_billing.subscription_info, toss_billing.revenue_daily, toss_billing.mrr, toss_billing.churn_monthly,
                toss_billing.failures_by_code, toss_billing.upcoming_renewals, toss_billing.dunning,
                toss_billing.refunds, toss_billing.reconcile_coverage, toss_billing.settings
    TO toss_billing_operator, toss_billing_auditor;
