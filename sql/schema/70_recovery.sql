-- 70_recovery: what run_due does before it claims new work.  In-flight
-- payments and cancels that lost their caller become unknown, and unknown
-- ones are resolved by looking the order up (or replaying the same request
-- with the same Idempotency-Key), never by charging again.  Recovery works
-- on real time (pg_catalog.now(), updated_at, the server's start), never on
-- the billing clock.

-- @code

-- Called by run_due at the start of every run, before it claims new work.
-- An in_flight payment or cancel whose caller is gone becomes unknown:
-- written before the server last started (nobody is calling for it), written
-- by a process that no longer exists (a killed worker; a crash restart,
-- which keeps the postmaster's start time), or not updated for stale_after
-- (the C side passes 2 x toss_billing.timeout + 1 minute: longer than a call
-- and its lookup).  Unknown payments are resolved by looking the order id
-- up (_claim_unknown); a subscription attempt gets a payment_unknown event
-- and keeps blocking new charges of its subscription until it is resolved.
-- Rows locked by someone (an outcome being recorded) are skipped.
-- Returns how many payments and cancels it marked.
CREATE OR REPLACE FUNCTION toss_billing._mark_stale(stale_after interval)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_started timestamptz := pg_catalog.pg_postmaster_start_time();
    v_cutoff timestamptz;
    v_payments integer;
    v_cancels integer;
BEGIN
    IF _mark_stale.stale_after IS NULL THEN
        RAISE EXCEPTION 'stale_after must not be null' USING ERRCODE = '22004';
    END IF;
    IF _mark_stale.stale_after <= '0'::interval THEN
        RAISE EXCEPTION 'stale_after must be a positive interval' USING ERRCODE = '22023',
            DETAIL = 'It must be longer than a call and its lookup by order id, e.g. 2 x toss_billing.timeout + 1 minute.';
    END IF;
    v_cutoff := pg_catalog.now() - _mark_stale.stale_after;
    -- the processes alive now, not as an earlier statement of this
    -- transaction saw them
    PERFORM pg_catalog.pg_stat_clear_snapshot();

    WITH alive AS MATERIALIZED (
        SELECT a.pid, a.backend_start FROM pg_catalog.pg_stat_get_activity(NULL) a),
    candidates AS (
        SELECT p.id, p.created_at < v_started AS restarted, p.updated_at < v_cutoff AS old,
               p.caller_pid IS NOT NULL AND p.caller_started_at IS NOT NULL
               AND NOT EXISTS (SELECT FROM alive a
                                WHERE a.pid = p.caller_pid
                                  AND (a.backend_start IS NULL OR a.backend_start = p.caller_started_at)) AS gone
          FROM toss_billing.payments p
         WHERE p.state = 'in_flight'),
    stale AS (
        SELECT p.id, CASE WHEN c.restarted THEN 'restart' WHEN c.gone THEN 'caller_gone' ELSE 'age' END AS cause
          FROM candidates c
          JOIN toss_billing.payments p ON p.id = c.id
         WHERE p.state = 'in_flight' AND (c.restarted OR c.gone OR c.old)
         ORDER BY p.id
           FOR UPDATE OF p SKIP LOCKED),
    marked AS (
        UPDATE toss_billing.payments p
           SET state = 'unknown', failure_class = 'outcome_unknown', failure_code = NULL,
               failure_message = CASE st.cause
                   WHEN 'restart' THEN 'the call was interrupted by a server restart; '
                   WHEN 'caller_gone' THEN 'the process making the call ended without recording an outcome; '
                   ELSE pg_catalog.format('no outcome was recorded within %s; the call was interrupted and ',
                                          _mark_stale.stale_after) END
                   || 'the outcome will be resolved by looking the order id up',
               next_resolve_at = NULL, updated_at = pg_catalog.now()
          FROM stale st
         WHERE p.id = st.id
        RETURNING p.id, p.subscription_id, p.period_number, p.attempt_number, p.failure_message, st.cause),
    logged AS (
        INSERT INTO toss_billing.events (occurred_at, subscription_id, payment_id, type, from_status, to_status,
                                         reason, detail)
        SELECT COALESCE(tc.now_at, toss_billing.now()), s.id, m.id, 'payment_unknown', s.status, s.status,
               CASE m.cause WHEN 'restart' THEN 'attempt interrupted by a server restart, to be resolved by order id'
                            WHEN 'caller_gone' THEN 'attempt interrupted (its process ended), to be resolved by order id'
                            ELSE 'attempt interrupted (no outcome in time), to be resolved by order id' END,
               pg_catalog.jsonb_build_object('period_number', m.period_number, 'attempt_number', m.attempt_number,
                                             'cause', m.cause, 'failure_message', m.failure_message)
          FROM marked m
          JOIN toss_billing.subscriptions s ON s.id = m.subscription_id
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         ORDER BY m.id
        RETURNING id)
    SELECT pg_catalog.count(*) INTO v_payments FROM marked;

    WITH alive AS MATERIALIZED (
        SELECT a.pid, a.backend_start FROM pg_catalog.pg_stat_get_activity(NULL) a),
    candidates AS (
        SELECT c.id, c.created_at < v_started AS restarted, c.updated_at < v_cutoff AS old,
               c.caller_pid IS NOT NULL AND c.caller_started_at IS NOT NULL
               AND NOT EXISTS (SELECT FROM alive a
                                WHERE a.pid = c.caller_pid
                                  AND (a.backend_start IS NULL OR a.backend_start = c.caller_started_at)) AS gone
          FROM toss_billing.cancels c
         WHERE c.state = 'in_flight'),
    stale AS (
        SELECT c.id, CASE WHEN k.restarted THEN 'restart' WHEN k.gone THEN 'caller_gone' ELSE 'age' END AS cause
          FROM candidates k
          JOIN toss_billing.cancels c ON c.id = k.id
         WHERE c.state = 'in_flight' AND (k.restarted OR k.gone OR k.old)
         ORDER BY c.id
           FOR UPDATE OF c SKIP LOCKED)
    UPDATE toss_billing.cancels c
       SET state = 'unknown', failure_class = 'outcome_unknown', failure_code = NULL,
           failure_message = CASE st.cause
               WHEN 'restart' THEN 'the cancel call was interrupted by a server restart; '
               WHEN 'caller_gone' THEN 'the process making the cancel call ended without recording an outcome; '
               ELSE pg_catalog.format('no outcome was recorded within %s; the cancel call was interrupted and ',
                                      _mark_stale.stale_after) END
               || 'the outcome will be settled from toss''s payment (webhook or reconcile)',
           updated_at = pg_catalog.now()
      FROM stale st
     WHERE c.id = st.id;
    GET DIAGNOSTICS v_cancels = ROW_COUNT;
    RETURN v_payments + v_cancels;
END;
$$;

-- Claims up to max_count unknown payments for the resolver, oldest first:
-- those due (next_resolve_at NULL or reached), skipping rows another runner
-- holds.  Each claim counts an attempt and pushes next_resolve_at back
-- (1, 2, 4, ... minutes, at most an hour, from the attempts made before),
-- so a concurrent runner leaves the row alone.  Returns what the C side
-- needs to look the order up and, only if Toss has no record of it and the
-- attempt is under 15 days old (created_at; the Idempotency-Key's window),
-- to POST again with the SAME Idempotency-Key, billing key and body.
-- Recovered rows (no billing key) are never returned.  The state stays
-- unknown: the outcome is recorded with _record_outcomes.
CREATE OR REPLACE FUNCTION toss_billing._claim_unknown(max_count integer)
RETURNS TABLE(payment_id bigint, order_id text, idempotency_key text, customer_key text, amount bigint,
              tax_free_amount bigint, order_name text, customer_email text, customer_name text,
              billing_key_id bigint, merchant text, encrypted_key bytea, created_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_limit integer := _claim_unknown.max_count;
BEGIN
    IF v_limit IS NULL OR v_limit < 0 THEN
        RAISE EXCEPTION 'max_count must be a non-negative integer' USING ERRCODE = '22023';
    END IF;
    IF v_limit = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH due AS (
        SELECT p.id
          FROM toss_billing.payments p
         WHERE p.state = 'unknown' AND NOT p.recovered AND p.billing_key_id IS NOT NULL
           AND (p.next_resolve_at IS NULL OR p.next_resolve_at <= pg_catalog.now())
         ORDER BY p.created_at, p.id
         LIMIT v_limit
           FOR UPDATE OF p SKIP LOCKED),
    claimed AS (
        UPDATE toss_billing.payments p
           SET resolve_attempts = p.resolve_attempts + 1,
               next_resolve_at = pg_catalog.now()
                                 + LEAST(pg_catalog.make_interval(mins => pg_catalog.power(2, LEAST(p.resolve_attempts, 6))::integer),
                                         '1 hour'::interval),
               updated_at = pg_catalog.now()
          FROM due d
         WHERE p.id = d.id
        RETURNING p.id, p.order_id, p.idempotency_key, p.customer_id, p.amount, p.tax_free_amount, p.order_name,
                  p.customer_email, p.customer_name, p.billing_key_id, p.merchant, p.created_at)
    SELECT cl.id, cl.order_id, cl.idempotency_key, c.customer_key, cl.amount, cl.tax_free_amount, cl.order_name,
           cl.customer_email, cl.customer_name, cl.billing_key_id, cl.merchant, bk.encrypted_key, cl.created_at
      FROM claimed cl
      JOIN toss_billing.customers c ON c.id = cl.customer_id
      JOIN toss_billing.billing_keys bk ON bk.id = cl.billing_key_id
     ORDER BY cl.created_at, cl.id;
END;
$$;

-- Unknown cancels, for the runner: each is replayed with its own
-- Idempotency-Key and request (Toss answers a cancel it made from its cache
-- and makes one it never received), within the key's 15 days.  Backs off like
-- _claim_unknown so concurrent runners leave a row alone.
CREATE OR REPLACE FUNCTION toss_billing._claim_unknown_cancels(max_count integer)
RETURNS TABLE(cancel_id bigint, payment_key text, idempotency_key text, merchant text,
              cancel_amount bigint, reason text, created_at timestamptz)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH picked AS (
        SELECT c.id FROM toss_billing.cancels c
         WHERE c.state OPERATOR(pg_catalog.=) 'unknown' AND c.idempotency_key IS NOT NULL
           AND (c.next_resolve_at IS NULL OR c.next_resolve_at OPERATOR(pg_catalog.<=) pg_catalog.now())
         ORDER BY c.id
         LIMIT max_count
           FOR UPDATE SKIP LOCKED),
    bumped AS (
        UPDATE toss_billing.cancels c
           SET resolve_attempts = c.resolve_attempts OPERATOR(pg_catalog.+) 1,
               next_resolve_at = pg_catalog.now() OPERATOR(pg_catalog.+)
                   LEAST(pg_catalog.make_interval(mins => (2 OPERATOR(pg_catalog.^) LEAST(c.resolve_attempts, 6))::integer),
                         interval '1 hour')
          FROM picked WHERE c.id OPERATOR(pg_catalog.=) picked.id
        RETURNING c.id, c.payment_id, c.idempotency_key, c.requested_amount, c.reason, c.created_at)
    SELECT b.id, p.payment_key, b.idempotency_key, p.merchant, b.requested_amount, b.reason, b.created_at
      FROM bumped b JOIN toss_billing.payments p ON p.id OPERATOR(pg_catalog.=) b.payment_id
     ORDER BY b.id;
$$;

-- Resolution of unknown attempts backs off (1, 2, 4 … minutes, at most an
-- hour) so a Toss outage is not hammered.  Once the cause is known to be
-- gone (Toss is back, the network is fixed), an operator can make every
-- unknown attempt eligible for the next run at once.  Returns how many.
CREATE OR REPLACE FUNCTION toss_billing.resolve_unknown_now()
RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH due AS (
        UPDATE toss_billing.payments p SET next_resolve_at = NULL
         WHERE p.state OPERATOR(pg_catalog.=) 'unknown' AND p.next_resolve_at IS NOT NULL
        RETURNING 1),
    due_cancels AS (
        UPDATE toss_billing.cancels c SET next_resolve_at = NULL
         WHERE c.state OPERATOR(pg_catalog.=) 'unknown' AND c.next_resolve_at IS NOT NULL
        RETURNING 1)
    SELECT ((SELECT pg_catalog.count(*) FROM due) OPERATOR(pg_catalog.+)
            (SELECT pg_catalog.count(*) FROM due_cancels))::integer;
$$;

GRANT EXECUTE ON FUNCTION toss_billing.resolve_unknown_now() TO toss_billing_operator;
