-- 70_recovery: what run_due does before it claims new work.  In-flight
-- payments and cancels that lost their caller become unknown, and unknown
-- ones are resolved by looking the order up (or replaying the same request
-- with the same Idempotency-Key), never by charging again.  Recovery works
-- on real time (pg_catalog.now(), updated_at, the server's start), never on
-- the billing clock.

-- @code

-- Called by run_due at the start of every run, before it claims new work.
-- An attempt in flight whose caller is gone becomes unknown: written before
-- the server last started (nobody is calling for it), written by a process
-- that no longer exists (a killed worker; a crash restart, which keeps the
-- postmaster's start time), or past its own deadline (by when its call and
-- lookup are over: stored with the attempt, so whoever made the call, with
-- whatever timeout, is judged by its own clock).  Its order becomes
-- unknown; a subscription attempt gets a payment_unknown event and keeps
-- blocking new charges of its subscription until it is resolved by looking
-- the order up (_claim_unknown).  Cancels in flight are marked the same
-- way.  Rows locked by someone (an outcome being recorded) are skipped.
-- Returns how many attempts and cancels it marked.
CREATE OR REPLACE FUNCTION toss_billing._mark_stale()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_started timestamptz := pg_catalog.pg_postmaster_start_time();
    v_attempts integer;
    v_cancels integer;
BEGIN
    -- the processes alive now, not as an earlier statement of this
    -- transaction saw them
    PERFORM pg_catalog.pg_stat_clear_snapshot();

    WITH alive AS MATERIALIZED (
        SELECT a.pid, a.backend_start FROM pg_catalog.pg_stat_get_activity(NULL) a),
    candidates AS (
        SELECT a.id, a.created_at < v_started AS restarted, a.deadline < pg_catalog.now() AS expired,
               a.caller_pid IS NOT NULL AND a.caller_started_at IS NOT NULL
               AND NOT EXISTS (SELECT FROM alive x
                                WHERE x.pid = a.caller_pid
                                  AND (x.backend_start IS NULL OR x.backend_start = a.caller_started_at)) AS gone
          FROM toss_billing.attempts a
         WHERE a.state = 'in_flight'),
    stale AS (
        SELECT a.id, a.payment_id,
               CASE WHEN c.restarted THEN 'restart' WHEN c.gone THEN 'caller_gone' ELSE 'deadline' END AS cause
          FROM candidates c
          JOIN toss_billing.attempts a ON a.id = c.id
         WHERE a.state = 'in_flight' AND (c.restarted OR c.gone OR c.expired)
         ORDER BY a.id
           FOR UPDATE OF a SKIP LOCKED),
    marked AS (
        UPDATE toss_billing.attempts a
           SET state = 'unknown', failure_class = 'outcome_unknown', failure_code = NULL,
               failure_message = CASE st.cause
                   WHEN 'restart' THEN 'the call was interrupted by a server restart; '
                   WHEN 'caller_gone' THEN 'the process making the call ended without recording an outcome; '
                   ELSE 'no outcome was recorded by the attempt''s deadline; the call was interrupted and ' END
                   || 'the outcome will be resolved by looking the order id up',
               next_resolve_at = NULL, updated_at = pg_catalog.now()
          FROM stale st
         WHERE a.id = st.id
        RETURNING a.id, a.payment_id, a.attempt_number, a.failure_message, st.cause),
    orders AS (
        UPDATE toss_billing.payments p
           SET state = 'unknown', failure_class = 'outcome_unknown', failure_code = NULL,
               failure_message = m.failure_message, updated_at = pg_catalog.now()
          FROM marked m
         WHERE p.id = m.payment_id AND p.state = ANY (ARRAY['in_flight', 'pending'])
        RETURNING p.id, p.subscription_id, p.period_number, m.attempt_number, m.failure_message, m.cause),
    logged AS (
        INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, payment_id, type, from_status,
                                         to_status, reason, detail)
        SELECT COALESCE(tc.now_at, toss_billing.now()), s.id, s.customer_id, o.id, 'payment_unknown', s.status,
               s.status,
               CASE o.cause WHEN 'restart' THEN 'attempt interrupted by a server restart, to be resolved by order id'
                            WHEN 'caller_gone' THEN 'attempt interrupted (its process ended), to be resolved by order id'
                            ELSE 'attempt interrupted (no outcome by its deadline), to be resolved by order id' END,
               pg_catalog.jsonb_build_object('period_number', o.period_number, 'attempt_number', o.attempt_number,
                                             'cause', o.cause, 'failure_message', o.failure_message)
          FROM orders o
          JOIN toss_billing.subscriptions s ON s.id = o.subscription_id
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         ORDER BY o.id
        RETURNING id)
    SELECT pg_catalog.count(*) INTO v_attempts FROM marked;

    WITH alive AS MATERIALIZED (
        SELECT a.pid, a.backend_start FROM pg_catalog.pg_stat_get_activity(NULL) a),
    candidates AS (
        SELECT c.id, c.created_at < v_started AS restarted, c.deadline < pg_catalog.now() AS expired,
               c.caller_pid IS NOT NULL AND c.caller_started_at IS NOT NULL
               AND NOT EXISTS (SELECT FROM alive a
                                WHERE a.pid = c.caller_pid
                                  AND (a.backend_start IS NULL OR a.backend_start = c.caller_started_at)) AS gone
          FROM toss_billing.cancels c
         WHERE c.state = 'in_flight'),
    stale AS (
        SELECT c.id, CASE WHEN k.restarted THEN 'restart' WHEN k.gone THEN 'caller_gone' ELSE 'deadline' END AS cause
          FROM candidates k
          JOIN toss_billing.cancels c ON c.id = k.id
         WHERE c.state = 'in_flight' AND (k.restarted OR k.gone OR k.expired)
         ORDER BY c.id
           FOR UPDATE OF c SKIP LOCKED)
    UPDATE toss_billing.cancels c
       SET state = 'unknown', failure_class = 'outcome_unknown', failure_code = NULL,
           failure_message = CASE st.cause
               WHEN 'restart' THEN 'the cancel call was interrupted by a server restart; '
               WHEN 'caller_gone' THEN 'the process making the cancel call ended without recording an outcome; '
               ELSE 'no outcome was recorded by the cancel''s deadline; the cancel call was interrupted and ' END
               || 'the runner replays it with its own Idempotency-Key',
           updated_at = pg_catalog.now()
      FROM stale st
     WHERE c.id = st.id;
    GET DIAGNOSTICS v_cancels = ROW_COUNT;
    RETURN v_attempts + v_cancels;
END;
$$;

-- Claims up to max_count unknown attempts for the resolver, oldest first:
-- those due (next_resolve_at NULL or reached), skipping rows another runner
-- holds.  Each claim counts a try and pushes next_resolve_at back (1, 2,
-- 4, ... minutes, at most an hour), so a concurrent runner leaves the row
-- alone.  Returns what the C side needs to look the order up and, only if
-- Toss has no record of it and may_repost, to POST the very same request
-- again with the SAME Idempotency-Key: within the key's 15 days, and only
-- while the order is still owed (not held by an unverified answer; for a
-- subscription: its open period, the subscription still chargeable, and
-- the attempt's billing key still the customer's active one).  Otherwise a
-- lookup that finds nothing closes the attempt as not sent.  The attempt
-- stays unknown: its outcome is recorded with _record_outcomes.
CREATE OR REPLACE FUNCTION toss_billing._claim_unknown(max_count integer)
RETURNS TABLE(attempt_id bigint, payment_id bigint, order_id text, idempotency_key text, customer_key text,
              amount bigint, tax_free_amount bigint, order_name text, customer_email text, customer_name text,
              billing_key_id bigint, merchant text, encrypted_key bytea, mid text, created_at timestamptz,
              may_repost boolean)
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
        SELECT a.id
          FROM toss_billing.attempts a
         WHERE a.state = 'unknown' AND a.billing_key_id IS NOT NULL
           AND (a.next_resolve_at IS NULL OR a.next_resolve_at <= pg_catalog.now())
         ORDER BY a.created_at, a.id
         LIMIT v_limit
           FOR UPDATE OF a SKIP LOCKED),
    claimed AS (
        UPDATE toss_billing.attempts a
           SET resolve_attempts = a.resolve_attempts + 1,
               next_resolve_at = pg_catalog.now()
                                 + LEAST(pg_catalog.make_interval(mins => pg_catalog.power(2, LEAST(a.resolve_attempts, 6))::integer),
                                         '1 hour'::interval),
               updated_at = pg_catalog.now()
          FROM due d
         WHERE a.id = d.id
        RETURNING a.id, a.payment_id, a.order_id, a.idempotency_key, a.billing_key_id, a.created_at)
    SELECT cl.id, p.id, cl.order_id, cl.idempotency_key, c.customer_key, p.amount, p.tax_free_amount, p.order_name,
           p.customer_email, p.customer_name, cl.billing_key_id, bk.merchant, bk.encrypted_key, bk.mid, cl.created_at,
           p.hold_reason IS NULL
           AND cl.created_at > pg_catalog.now() - interval '15 days' + interval '1 hour'
           AND bk.status = 'active'
           -- an invoice of its own: only while it is still owed
           AND (p.invoice_id IS NULL OR p.subscription_id IS NOT NULL
                OR EXISTS (SELECT FROM toss_billing.invoices i WHERE i.id = p.invoice_id AND i.status = 'open'))
           AND (p.subscription_id IS NULL
                OR EXISTS (SELECT FROM toss_billing.subscriptions s
                            WHERE s.id = p.subscription_id AND s.period_number = p.period_number
                              AND (s.status = ANY (ARRAY['active', 'past_due', 'trialing']))))
      FROM claimed cl
      JOIN toss_billing.payments p ON p.id = cl.payment_id
      JOIN toss_billing.customers c ON c.id = p.customer_id
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
              cancel_amount bigint, reason text, created_at timestamptz, order_id text, total_amount bigint,
              mid text)
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
    SELECT b.id, p.payment_key, b.idempotency_key, p.merchant, b.requested_amount, b.reason, b.created_at,
           p.order_id, COALESCE(p.total_amount, p.amount), bk.mid
      FROM bumped b
      JOIN toss_billing.payments p ON p.id OPERATOR(pg_catalog.=) b.payment_id
      LEFT JOIN toss_billing.billing_keys bk ON bk.id OPERATOR(pg_catalog.=) p.billing_key_id
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
        UPDATE toss_billing.attempts a SET next_resolve_at = NULL
         WHERE a.state OPERATOR(pg_catalog.=) 'unknown' AND a.next_resolve_at IS NOT NULL
        RETURNING 1),
    due_cancels AS (
        UPDATE toss_billing.cancels c SET next_resolve_at = NULL
         WHERE c.state OPERATOR(pg_catalog.=) 'unknown' AND c.next_resolve_at IS NOT NULL
        RETURNING 1)
    SELECT ((SELECT pg_catalog.count(*) FROM due) OPERATOR(pg_catalog.+)
            (SELECT pg_catalog.count(*) FROM due_cancels))::integer;
$$;

GRANT EXECUTE ON FUNCTION toss_billing.resolve_unknown_now() TO toss_billing_operator;
