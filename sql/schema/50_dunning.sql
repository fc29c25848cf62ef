-- 50_dunning: the dunning policy, and how a recorded outcome settles its
-- subscription (paid -> next period; failed -> retry, dunning or stop;
-- unknown -> blocked until resolved).

-- @data

-- The dunning policy: one row.  retry_offsets[k] is when retry k follows
-- the first decline of the open period; after the last one the
-- subscription becomes final_status.  A transient failure is retried after
-- transient_retry.
CREATE TABLE toss_billing.dunning_policy (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    retry_offsets   interval[] NOT NULL DEFAULT '{1 day,3 days,5 days,7 days}',
    transient_retry interval NOT NULL DEFAULT '10 minutes'
                    CHECK (transient_retry OPERATOR(pg_catalog.>) '0'::interval),
    final_status    text NOT NULL DEFAULT 'unpaid'
                    CHECK (final_status OPERATOR(pg_catalog.=) ANY (ARRAY['unpaid', 'canceled'])),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO toss_billing.dunning_policy DEFAULT VALUES;
SELECT pg_catalog.pg_extension_config_dump('toss_billing.dunning_policy', '');

-- One recorded outcome, as _record_outcomes hands it to the steps that
-- settle subscriptions.
CREATE TYPE toss_billing._outcome AS (
    payment_id      bigint,
    subscription_id bigint,
    period_number   integer,
    attempt_number  integer,
    amount          bigint,
    from_state      text,
    state           text,
    failure_class   text,
    failure_code    text,
    failure_message text
);

-- @code

-- Inserting a policy replaces the one there is, so that restoring a dump
-- (whose row arrives after CREATE EXTENSION made the default one) works.
CREATE OR REPLACE FUNCTION toss_billing._dunning_policy_replace()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM toss_billing.dunning_policy;
    RETURN NEW;
END;
$$;
CREATE OR REPLACE TRIGGER dunning_policy_replace BEFORE INSERT ON toss_billing.dunning_policy
    FOR EACH ROW EXECUTE FUNCTION toss_billing._dunning_policy_replace();

-- Changes the dunning policy; a NULL argument keeps the current value.
CREATE OR REPLACE FUNCTION toss_billing.set_dunning_policy(
    retry_offsets interval[] DEFAULT NULL,
    transient_retry interval DEFAULT NULL,
    final_status text DEFAULT NULL)
RETURNS toss_billing.dunning_policy
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_policy toss_billing.dunning_policy;
BEGIN
    IF set_dunning_policy.retry_offsets IS NOT NULL AND (
           pg_catalog.array_ndims(set_dunning_policy.retry_offsets) > 1
           OR EXISTS (SELECT
                        FROM unnest(set_dunning_policy.retry_offsets) WITH ORDINALITY AS o(off, k)
                       WHERE o.off IS NULL OR o.off <= '0'::interval
                          OR o.off <= set_dunning_policy.retry_offsets[o.k - 1])) THEN
        RAISE EXCEPTION 'retry_offsets must be positive and increasing' USING ERRCODE = '22023',
            DETAIL = 'Each offset counts from the first decline of a period, e.g. {1 day,3 days,5 days,7 days}.';
    END IF;
    IF set_dunning_policy.transient_retry <= '0'::interval THEN
        RAISE EXCEPTION 'transient_retry must be positive' USING ERRCODE = '22023';
    END IF;
    IF set_dunning_policy.final_status <> ALL (ARRAY['unpaid', 'canceled']) THEN
        RAISE EXCEPTION 'final_status must be unpaid or canceled' USING ERRCODE = '22023';
    END IF;
    UPDATE toss_billing.dunning_policy p
       SET retry_offsets = COALESCE(set_dunning_policy.retry_offsets, p.retry_offsets),
           transient_retry = COALESCE(set_dunning_policy.transient_retry, p.transient_retry),
           final_status = COALESCE(set_dunning_policy.final_status, p.final_status),
           updated_at = pg_catalog.now()
    RETURNING * INTO v_policy;
    RETURN v_policy;
END;
$$;

-- Settles the subscriptions whose attempt succeeded: the open period is
-- paid, so the subscription moves on to the next period, due at its start
-- (at once when catching up), with dunning reset; trialing, past_due and
-- unpaid become active.  A payment for a paused subscription moves the
-- period on but leaves it paused; one for a canceled subscription, or for
-- a period that is not open, raises an alert.
CREATE OR REPLACE FUNCTION toss_billing._settle_paid(outcomes toss_billing._outcome[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.now();
BEGIN
    WITH paid AS (
        SELECT DISTINCT ON (s.id) o.*, s.status AS from_status,
               s.period_number = o.period_number AND s.status <> 'canceled' AS open,
               COALESCE(tc.now_at, v_now) AS now_at
          FROM unnest(_settle_paid.outcomes) o
          JOIN toss_billing.subscriptions s ON s.id = o.subscription_id
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE o.state = 'done'
         ORDER BY s.id, o.payment_id),
    settled AS (
        SELECT p.*, CASE WHEN p.open AND p.from_status <> 'paused' THEN 'active' ELSE p.from_status END AS to_status
          FROM paid p),
    changed AS (
        UPDATE toss_billing.subscriptions s
           SET period_number = s.period_number + 1,
               current_period_start = s.current_period_end,
               current_period_end = toss_billing.period_start(s.billing_anchor, s.time_zone, pl.interval_unit,
                                                              pl.interval_count,
                                                              s.period_number + 2 - s.anchor_period),
               next_charge_at = CASE WHEN st.to_status = 'active' THEN s.current_period_end END,
               status = st.to_status, dunning_attempt = 0, dunning_started_at = NULL,
               updated_at = pg_catalog.now()
          FROM settled st, toss_billing.plans pl
         WHERE s.id = st.subscription_id AND st.open AND pl.id = s.plan_id
        RETURNING s.id, s.next_charge_at)
    INSERT INTO toss_billing.events (occurred_at, subscription_id, payment_id, type, from_status, to_status,
                                     reason, detail)
    SELECT e.occurred_at, e.subscription_id, e.payment_id, e.type, e.from_status, e.to_status, e.reason, e.detail
      FROM (
        SELECT st.now_at, st.subscription_id, st.payment_id, 'payment_succeeded', st.from_status, st.to_status,
               'payment succeeded',
               pg_catalog.jsonb_build_object('period_number', st.period_number, 'attempt_number', st.attempt_number,
                                             'amount', st.amount, 'next_charge_at', c.next_charge_at), 1 AS k
          FROM settled st LEFT JOIN changed c ON c.id = st.subscription_id
        UNION ALL
        SELECT st.now_at, st.subscription_id, st.payment_id, 'status_changed', st.from_status, st.to_status,
               'payment succeeded', NULL, 2
          FROM settled st WHERE st.to_status <> st.from_status
        UNION ALL
        SELECT st.now_at, st.subscription_id, st.payment_id, 'alert', st.from_status, st.to_status,
               CASE WHEN st.from_status = 'canceled' THEN 'payment succeeded for a canceled subscription'
                    ELSE 'payment succeeded for a period that is not open' END,
               pg_catalog.jsonb_build_object('period_number', st.period_number, 'amount', st.amount), 3
          FROM settled st WHERE NOT st.open
        ) AS e(occurred_at, subscription_id, payment_id, type, from_status, to_status, reason, detail, k)
     ORDER BY e.subscription_id, e.k;
END;
$$;

-- Settles the subscriptions whose attempt failed, by failure class:
-- transient -> retried after the policy's transient_retry (a new attempt);
-- card_declined, not_found -> the next dunning slot, counted from the
-- period's first decline, and past_due; after the last slot the policy's
-- final_status; anything else (configuration, invalid_request, ...) ->
-- charging stops (past_due, next_charge_at NULL) with an alert.  Failures
-- of paused or canceled subscriptions, or of a period that is not open,
-- are only recorded.
CREATE OR REPLACE FUNCTION toss_billing._settle_failed(outcomes toss_billing._outcome[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.now();
    v_policy toss_billing.dunning_policy;
BEGIN
    SELECT * INTO STRICT v_policy FROM toss_billing.dunning_policy;
    WITH failed AS (
        SELECT DISTINCT ON (s.id) o.*, s.status AS from_status, s.dunning_attempt, s.dunning_started_at,
               s.next_charge_at, COALESCE(tc.now_at, v_now) AS now_at,
               CASE WHEN s.period_number <> o.period_number
                         OR s.status <> ALL (ARRAY['trialing', 'active', 'past_due']) THEN 'record'
                    WHEN o.failure_class = 'transient' THEN 'retry'
                    WHEN o.failure_class = ANY (ARRAY['card_declined', 'not_found']) THEN
                        CASE WHEN s.dunning_attempt < COALESCE(pg_catalog.cardinality(v_policy.retry_offsets), 0)
                             THEN 'dunning' ELSE 'final' END
                    ELSE 'stop' END AS action
          FROM unnest(_settle_failed.outcomes) o
          JOIN toss_billing.subscriptions s ON s.id = o.subscription_id
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE o.state = 'failed'
         ORDER BY s.id, o.payment_id),
    settled AS (
        SELECT f.*,
               CASE f.action
                   WHEN 'record' THEN f.from_status
                   WHEN 'retry' THEN CASE WHEN f.from_status = 'trialing' THEN 'active' ELSE f.from_status END
                   WHEN 'final' THEN v_policy.final_status
                   ELSE 'past_due' END AS to_status,
               CASE f.action
                   WHEN 'record' THEN f.next_charge_at
                   WHEN 'retry' THEN f.now_at + v_policy.transient_retry
                   WHEN 'dunning' THEN COALESCE(f.dunning_started_at, f.now_at)
                                       + v_policy.retry_offsets[f.dunning_attempt + 1]
                   END AS retry_at,
               CASE WHEN f.action = ANY (ARRAY['dunning', 'final']) THEN f.dunning_attempt + 1
                    ELSE f.dunning_attempt END AS new_dunning_attempt,
               CASE WHEN f.action = ANY (ARRAY['dunning', 'final']) THEN COALESCE(f.dunning_started_at, f.now_at)
                    ELSE f.dunning_started_at END AS new_dunning_started_at
          FROM failed f),
    changed AS (
        UPDATE toss_billing.subscriptions s
           SET status = st.to_status, next_charge_at = st.retry_at, dunning_attempt = st.new_dunning_attempt,
               dunning_started_at = st.new_dunning_started_at,
               canceled_at = CASE WHEN st.to_status = 'canceled' THEN st.now_at ELSE s.canceled_at END,
               updated_at = pg_catalog.now()
          FROM settled st
         WHERE s.id = st.subscription_id AND st.action <> 'record'
        RETURNING s.id)
    INSERT INTO toss_billing.events (occurred_at, subscription_id, payment_id, type, from_status, to_status,
                                     reason, detail)
    SELECT e.occurred_at, e.subscription_id, e.payment_id, e.type, e.from_status, e.to_status, e.reason, e.detail
      FROM (
        SELECT st.now_at, st.subscription_id, st.payment_id, 'payment_failed', st.from_status, st.to_status,
               CASE st.action
                   WHEN 'retry' THEN 'transient failure, retry scheduled'
                   WHEN 'dunning' THEN 'declined, dunning retry scheduled'
                   WHEN 'final' THEN 'declined, dunning exhausted'
                   WHEN 'stop' THEN 'charging stopped'
                   ELSE 'payment failed' END,
               pg_catalog.jsonb_build_object('period_number', st.period_number, 'attempt_number', st.attempt_number,
                                             'failure_class', st.failure_class, 'failure_code', st.failure_code,
                                             'dunning_attempt', st.new_dunning_attempt,
                                             'next_charge_at', st.retry_at), 1 AS k
          FROM settled st
        UNION ALL
        SELECT st.now_at, st.subscription_id, st.payment_id, 'status_changed', st.from_status, st.to_status,
               CASE st.action WHEN 'final' THEN 'dunning exhausted'
                              WHEN 'stop' THEN 'charging stopped'
                              ELSE 'payment failed' END,
               NULL, 2
          FROM settled st WHERE st.to_status <> st.from_status
        UNION ALL
        SELECT st.now_at, st.subscription_id, st.payment_id, 'alert', st.from_status, st.to_status,
               pg_catalog.format('charging stopped (%s)', COALESCE(st.failure_class, 'unclassified failure')),
               pg_catalog.jsonb_build_object('failure_class', st.failure_class, 'failure_code', st.failure_code,
                                             'failure_message', st.failure_message,
                                             'hint', 'Fix the cause, then call toss_billing.retry_subscription().'),
               3
          FROM settled st WHERE st.action = 'stop'
        ) AS e(occurred_at, subscription_id, payment_id, type, from_status, to_status, reason, detail, k)
     ORDER BY e.subscription_id, e.k;
END;
$$;

-- Records the attempts whose outcome is unknown: the subscription stays
-- blocked (no new attempt while one is unknown) until the attempt is
-- resolved by looking the order up.
CREATE OR REPLACE FUNCTION toss_billing._settle_unknown(outcomes toss_billing._outcome[])
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO toss_billing.events (occurred_at, subscription_id, payment_id, type, from_status, to_status,
                                     reason, detail)
    SELECT COALESCE(tc.now_at, toss_billing.now()), s.id, o.payment_id, 'payment_unknown', s.status, s.status,
           'outcome unknown, charging blocked until it is resolved',
           pg_catalog.jsonb_build_object('period_number', o.period_number, 'attempt_number', o.attempt_number,
                                         'failure_message', o.failure_message)
      FROM unnest($1) o
      JOIN toss_billing.subscriptions s ON s.id = o.subscription_id
      LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
     WHERE o.state = 'unknown' AND o.from_state <> 'unknown'
     ORDER BY s.id, o.payment_id;
$$;

REVOKE ALL ON TYPE toss_billing._outcome FROM PUBLIC;
GRANT SELECT ON toss_billing.dunning_policy TO toss_billing_operator, toss_billing_auditor;
