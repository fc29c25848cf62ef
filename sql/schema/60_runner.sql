-- 60_runner: the runner's SQL half.  CALL toss_billing.run_due() (C, in
-- runner.c) claims due subscription periods with _claim_due, calls Toss for
-- them concurrently, and records the outcomes with _record_outcomes; pg_cron
-- can schedule it.

-- @data

-- Subscription order ids end with this installation's random tag, so two
-- databases billing through one Toss merchant never produce the same order id
-- (and a lookup by order id never mistakes the other's payment for ours).
-- The row is made on first use, so a restored dump keeps its tag.
CREATE TABLE toss_billing.installation (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    order_tag text NOT NULL CHECK (order_tag OPERATOR(pg_catalog.~) '^[a-z0-9]{8}$')
);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.installation', '');

-- @code

CREATE OR REPLACE FUNCTION toss_billing._order_tag()
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tag text;
BEGIN
    SELECT i.order_tag INTO v_tag FROM toss_billing.installation i;
    IF v_tag IS NULL THEN
        INSERT INTO toss_billing.installation (order_tag)
        VALUES (pg_catalog.substr(pg_catalog.md5(pg_catalog.gen_random_uuid()::text), 1, 8))
        ON CONFLICT DO NOTHING;
        SELECT i.order_tag INTO v_tag FROM toss_billing.installation i;
    END IF;
    RETURN v_tag;
END;
$$;

-- Claims up to max_count due subscription periods for the runner.  First
-- applies the transitions that need no charge; then, for each due
-- subscription, earliest first (next_charge_at reached on its clock, trial
-- over, not paused, an active billing key, no attempt pending, in flight or
-- unknown, its open period not already paid), records ONE in_flight attempt
-- for its open period and returns what the Toss call needs.  Rows locked by
-- another runner are skipped, and the unique index on (subscription_id,
-- period_number) turns any race into "nothing claimed".  The caller commits
-- before calling Toss.
CREATE OR REPLACE FUNCTION toss_billing._claim_due(max_count integer)
RETURNS TABLE(payment_id bigint, order_id text, idempotency_key text, customer_key text, amount bigint,
              tax_free_amount bigint, order_name text, customer_email text, customer_name text,
              billing_key_id bigint, merchant text, encrypted_key bytea)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_limit integer := _claim_due.max_count;
    v_tag text := toss_billing._order_tag();
    v_now timestamptz;
    v_horizon timestamptz;
BEGIN
    IF v_limit IS NULL OR v_limit < 0 THEN
        RAISE EXCEPTION 'max_count must be a non-negative integer' USING ERRCODE = '22023';
    END IF;
    PERFORM toss_billing._apply_transitions(NULL);
    IF v_limit = 0 THEN
        RETURN;
    END IF;
    v_now := toss_billing.now();
    v_horizon := GREATEST(v_now, (SELECT pg_catalog.max(tc.now_at) FROM toss_billing.test_clocks tc));

    RETURN QUERY
    WITH due AS (
        SELECT s.id, s.customer_id, s.period_number,
               COALESCE(s.amount_override, pl.amount) AS amount, pl.name AS order_name
          FROM toss_billing.subscriptions s
          JOIN toss_billing.plans pl ON pl.id = s.plan_id
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE s.next_charge_at <= v_horizon
           AND s.next_charge_at <= COALESCE(tc.now_at, v_now)
           AND (s.status = ANY (ARRAY['active', 'past_due'])
                OR (s.status = 'trialing' AND s.trial_end <= COALESCE(tc.now_at, v_now)))
           AND EXISTS (SELECT FROM toss_billing.billing_keys bk
                        WHERE bk.customer_id = s.customer_id AND bk.status = 'active')
           -- OFFSET 0 keeps each check a per-row index probe: pulled up into an
           -- anti-join, the planner may materialize every open attempt and
           -- compare all pairs, which grows with the runner's concurrency.
           AND NOT EXISTS (SELECT FROM toss_billing.payments p
                            WHERE p.subscription_id = s.id
                              AND p.state = ANY (ARRAY['pending', 'in_flight', 'unknown'])
                           OFFSET 0)
           AND NOT EXISTS (SELECT FROM toss_billing.payments p
                            WHERE p.subscription_id = s.id AND p.period_number = s.period_number
                              AND p.state = 'done'
                           OFFSET 0)
         ORDER BY s.next_charge_at, s.id
         LIMIT v_limit
           FOR UPDATE OF s SKIP LOCKED),
    attempts AS (
        SELECT d.*,
               COALESCE((SELECT pg_catalog.max(p.attempt_number) FROM toss_billing.payments p
                          WHERE p.subscription_id = d.id AND p.period_number = d.period_number), 0) + 1
                   AS attempt_number
          FROM due d),
    claimed AS (
        INSERT INTO toss_billing.payments AS p
               (order_id, idempotency_key, customer_id, billing_key_id, merchant, state, order_name, amount,
                tax_free_amount, customer_email, customer_name, requested_by, subscription_id, period_number,
                attempt_number)
        SELECT pg_catalog.format('sub%s-p%s-a%s-%s', a.id, a.period_number, a.attempt_number, v_tag),
               pg_catalog.gen_random_uuid()::text, a.customer_id, bk.id, bk.merchant, 'in_flight', a.order_name,
               a.amount, 0, c.email, c.name, CURRENT_USER, a.id, a.period_number, a.attempt_number
          FROM attempts a
          JOIN toss_billing.customers c ON c.id = a.customer_id
          JOIN toss_billing.billing_keys bk ON bk.customer_id = a.customer_id AND bk.status = 'active'
        ON CONFLICT DO NOTHING
        RETURNING p.id, p.order_id, p.idempotency_key, p.customer_id, p.amount, p.tax_free_amount, p.order_name,
                  p.customer_email, p.customer_name, p.billing_key_id, p.merchant)
    SELECT cl.id, cl.order_id, cl.idempotency_key, c.customer_key, cl.amount, cl.tax_free_amount, cl.order_name,
           cl.customer_email, cl.customer_name, cl.billing_key_id, cl.merchant, bk.encrypted_key
      FROM claimed cl
      JOIN toss_billing.customers c ON c.id = cl.customer_id
      JOIN toss_billing.billing_keys bk ON bk.id = cl.billing_key_id
     ORDER BY cl.id;
END;
$$;

-- Records the outcomes of claimed attempts (one array element per payment)
-- and settles their subscriptions.  The ledger row is completed exactly as
-- the single-charge path does (toss_store_charge_outcome): code and message
-- fall back to the Payment's failure object, Toss's fields are read from
-- the response.  Only attempts still pending, in flight or unknown are
-- touched, so recording an outcome twice changes nothing.
CREATE OR REPLACE FUNCTION toss_billing._record_outcomes(
    payment_ids bigint[],
    states text[],
    http_statuses integer[],
    failure_classes text[],
    failure_codes text[],
    failure_messages text[],
    responses jsonb[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n integer := COALESCE(pg_catalog.cardinality(_record_outcomes.payment_ids), 0);
    v_outcomes toss_billing._outcome[];
    v_subscriptions bigint[];
BEGIN
    IF COALESCE(pg_catalog.cardinality(_record_outcomes.states), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.http_statuses), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.failure_classes), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.failure_codes), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.failure_messages), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.responses), 0) <> v_n THEN
        RAISE EXCEPTION 'the outcome arrays must all have the same length' USING ERRCODE = '22023';
    END IF;
    IF v_n = 0 THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM unnest(_record_outcomes.states) st
                WHERE st IS NULL OR st <> ALL (ARRAY['done', 'failed', 'unknown'])) THEN
        RAISE EXCEPTION 'an outcome state must be done, failed or unknown' USING ERRCODE = '22023';
    END IF;

    -- The subscriptions first, in id order, and only then the payments.
    -- A claim holds the subscriptions it claimed (FOR UPDATE SKIP LOCKED)
    -- and its insert may wait for a payment of one of them that is being
    -- recorded; recording must therefore never hold such a payment while it
    -- waits for a subscription, or the two deadlock.
    PERFORM FROM toss_billing.subscriptions s
     WHERE s.id = ANY (ARRAY(SELECT p.subscription_id FROM toss_billing.payments p
                              WHERE p.id = ANY (_record_outcomes.payment_ids)
                                AND p.subscription_id IS NOT NULL))
     ORDER BY s.id
       FOR UPDATE;

    WITH given AS (
        SELECT *
          FROM unnest(_record_outcomes.payment_ids, _record_outcomes.states, _record_outcomes.http_statuses,
                      _record_outcomes.failure_classes, _record_outcomes.failure_codes,
                      _record_outcomes.failure_messages, _record_outcomes.responses)
               AS i(payment_id, state, http_status, failure_class, failure_code, failure_message, response)),
    still_open AS (
        SELECT p.id, p.state
          FROM toss_billing.payments p
         WHERE p.id = ANY (_record_outcomes.payment_ids)
           AND p.state = ANY (ARRAY['pending', 'in_flight', 'unknown'])
         ORDER BY p.id
           FOR UPDATE),
    recorded AS (
        UPDATE toss_billing.payments p
           SET state = i.state,
               http_status = NULLIF(i.http_status, 0),
               failure_class = i.failure_class,
               failure_code = COALESCE(i.failure_code, i.response->'failure'->>'code'),
               failure_message = COALESCE(i.failure_message, i.response->'failure'->>'message'),
               toss_status = i.response->>'status',
               payment_key = i.response->>'paymentKey',
               total_amount = (i.response->>'totalAmount')::bigint,
               balance_amount = (i.response->>'balanceAmount')::bigint,
               supplied_amount = (i.response->>'suppliedAmount')::bigint,
               vat = (i.response->>'vat')::bigint,
               requested_at = (i.response->>'requestedAt')::timestamptz,
               approved_at = (i.response->>'approvedAt')::timestamptz,
               response = i.response,
               updated_at = pg_catalog.now()
          FROM given i, still_open o
         WHERE p.id = i.payment_id AND o.id = i.payment_id
        RETURNING ROW(p.id, p.subscription_id, p.period_number, p.attempt_number, p.amount, o.state, p.state,
                      p.failure_class, p.failure_code, p.failure_message)::toss_billing._outcome AS outcome)
    SELECT pg_catalog.array_agg(r.outcome) INTO v_outcomes FROM recorded r;

    SELECT pg_catalog.array_agg(DISTINCT o.subscription_id) INTO v_subscriptions
      FROM unnest(v_outcomes) o WHERE o.subscription_id IS NOT NULL;
    IF v_subscriptions IS NULL THEN
        RETURN;
    END IF;
    PERFORM toss_billing._settle_paid(v_outcomes);
    PERFORM toss_billing._settle_failed(v_outcomes);
    PERFORM toss_billing._settle_unknown(v_outcomes);
    -- catching up: the period just opened may already have ended
    PERFORM toss_billing._apply_transitions(v_subscriptions);
END;
$$;

-- The runner: CALL toss_billing.run_due() claims due periods, calls Toss
-- for them concurrently (libcurl multi) and records the outcomes, committing
-- its own transactions, so it must be CALLed outside a transaction block.
-- The INOUT parameters only carry the summary back (a procedure's OUT
-- parameters cannot follow ones with defaults): claimed, done, failed,
-- unknown, throttled attempts and the elapsed milliseconds.
CREATE OR REPLACE PROCEDURE toss_billing.run_due(
    max_charges integer DEFAULT 10000,
    time_budget interval DEFAULT '50 seconds',
    INOUT claimed bigint DEFAULT NULL,
    INOUT done bigint DEFAULT NULL,
    INOUT failed bigint DEFAULT NULL,
    INOUT unknown bigint DEFAULT NULL,
    INOUT throttled bigint DEFAULT NULL,
    INOUT elapsed_ms double precision DEFAULT NULL)
LANGUAGE c
AS 'MODULE_PATHNAME', 'toss_run_due';

-- Registers the runner with pg_cron as job toss_billing_run_due (replacing
-- an earlier schedule of that job); returns the job id.  The job's command
-- is just the CALL: it carries no secret.  pg_cron stays optional.
CREATE OR REPLACE FUNCTION toss_billing.schedule(cron text DEFAULT '* * * * *')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF schedule.cron IS NULL THEN
        RAISE EXCEPTION 'cron must not be null' USING ERRCODE = '22004',
            HINT = 'Give a cron schedule such as ''* * * * *'' (every minute).';
    END IF;
    IF pg_catalog.to_regnamespace('cron') IS NULL THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database' USING ERRCODE = '55000',
            HINT = 'Create the pg_cron extension in the database named by cron.database_name, or run CALL toss_billing.run_due() from any scheduler.';
    END IF;
    BEGIN
        RETURN cron.schedule('toss_billing_run_due', schedule.cron, 'CALL toss_billing.run_due()');
    EXCEPTION WHEN internal_error OR invalid_parameter_value OR syntax_error THEN
        RAISE EXCEPTION 'cron schedule "%" is not valid', schedule.cron USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('pg_cron refused it: %s.', SQLERRM),
            HINT = 'Use five cron fields (minute hour day month weekday), e.g. ''* * * * *'', or ''N seconds''.';
    END;
END;
$$;

-- Removes the runner's pg_cron job; returns whether there was one.
CREATE OR REPLACE FUNCTION toss_billing.unschedule()
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.to_regnamespace('cron') IS NULL THEN
        RETURN false;
    END IF;
    IF NOT EXISTS (SELECT FROM cron.job j WHERE j.jobname = 'toss_billing_run_due') THEN
        RETURN false;
    END IF;
    RETURN cron.unschedule('toss_billing_run_due');
END;
$$;
