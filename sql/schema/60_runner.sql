-- 60_runner: the runner's SQL half.  CALL toss_billing.run_due() (C, in
-- runner.c) claims due subscription periods and invoices with _claim_due,
-- calls Toss for them concurrently, and records the outcomes with
-- _record_outcomes; pg_cron can schedule it.

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

-- What one Toss charge call needs, as the claims return it: the attempt
-- (its id, Idempotency-Key and number), its order (id, order id, amounts,
-- name, the customer's key, e-mail and name) and the billing key to charge
-- (id, merchant, sealed key, Toss mId).  _attempt_orders makes the rows;
-- _claim_due and _claim_invoices return them; runner.c reads them.
CREATE TYPE toss_billing._charge_call AS (
    attempt_id      bigint,
    payment_id      bigint,
    order_id        text,
    idempotency_key text,
    customer_key    text,
    amount          bigint,
    tax_free_amount bigint,
    order_name      text,
    customer_email  text,
    customer_name   text,
    billing_key_id  bigint,
    merchant        text,
    encrypted_key   bytea,
    mid             text,
    attempt_number  integer
);

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

-- Makes the next attempt of each of the given orders -- claimed in_flight
-- by the caller in this transaction, for their subscription period or
-- their invoice -- with its own Idempotency-Key and a deadline of twice
-- call_timeout (the call and its lookup), and returns what each Toss call
-- needs (_charge_call), in attempt order.
CREATE OR REPLACE FUNCTION toss_billing._attempt_orders(order_ids bigint[], call_timeout interval)
RETURNS SETOF toss_billing._charge_call
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_deadline timestamptz := pg_catalog.now() + 2 * COALESCE(_attempt_orders.call_timeout, '65 seconds');
BEGIN
    RETURN QUERY
    WITH attempted AS (
        INSERT INTO toss_billing.attempts AS a
               (payment_id, customer_id, attempt_number, order_id, billing_key_id, idempotency_key, state, deadline,
                requested_by)
        SELECT p.id, p.customer_id,
               COALESCE((SELECT pg_catalog.max(x.attempt_number) FROM toss_billing.attempts x
                          WHERE x.payment_id = p.id), 0) + 1,
               p.order_id, p.billing_key_id, pg_catalog.gen_random_uuid()::text, 'in_flight', v_deadline, CURRENT_USER
          FROM pg_catalog.unnest(_attempt_orders.order_ids) WITH ORDINALITY AS u(id, ord)
          JOIN toss_billing.payments p ON p.id = u.id
         ORDER BY u.ord
        RETURNING a.id, a.payment_id, a.idempotency_key, a.attempt_number)
    SELECT at.id, p.id, p.order_id, at.idempotency_key, c.customer_key, p.amount, p.tax_free_amount, p.order_name,
           p.customer_email, p.customer_name, bk.id, bk.merchant, bk.encrypted_key, bk.mid, at.attempt_number
      FROM attempted at
      JOIN toss_billing.payments p ON p.id = at.payment_id
      JOIN toss_billing.customers c ON c.id = p.customer_id
      JOIN toss_billing.billing_keys bk ON bk.id = p.billing_key_id
     ORDER BY at.id;
END;
$$;

-- The orders and attempts of due subscriptions (_claim_due: locked by the
-- caller, each with its open period's invoice to charge): the order already
-- owed for the period (pending), under its order id, or a new one (order id
-- sub<id>-p<period>-a<generation>-<tag>), for the invoice's amount_due and
-- tax_free_amount; then ONE in_flight attempt each (_attempt_orders).
CREATE OR REPLACE FUNCTION toss_billing._order_periods(subscription_ids bigint[], call_timeout interval, tag text)
RETURNS SETOF toss_billing._charge_call
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_tag text := _order_periods.tag;
    v_orders bigint[];
BEGIN
    WITH due AS (
        SELECT s.id, s.customer_id, s.period_number, i.id AS invoice_id,
               i.amount_due AS amount, i.tax_free_amount AS tax_free, i.description AS order_name
          FROM toss_billing.subscriptions s
          JOIN toss_billing.invoices i ON i.subscription_id = s.id AND i.kind = 'period'
                                      AND i.period_number = s.period_number
                                      AND i.status = ANY (ARRAY['open', 'uncollectible']) AND i.amount_due >= 100
         WHERE s.id = ANY (_order_periods.subscription_ids)),
    owed AS (
        SELECT d.*, op.id AS open_payment_id,
               COALESCE((SELECT pg_catalog.max(p.generation) FROM toss_billing.payments p
                          WHERE p.subscription_id = d.id AND p.period_number = d.period_number), 0) + 1
                   AS next_generation,
               bk.id AS key_id, bk.merchant AS key_merchant, c.email, c.name
          FROM due d
          JOIN toss_billing.customers c ON c.id = d.customer_id
          JOIN toss_billing.billing_keys bk ON bk.customer_id = d.customer_id AND bk.status = 'active'
          LEFT JOIN LATERAL (SELECT p.id FROM toss_billing.payments p
                              WHERE p.subscription_id = d.id AND p.period_number = d.period_number
                                AND p.state = 'pending'
                              ORDER BY p.id DESC
                              LIMIT 1) op ON true),
    created AS (
        INSERT INTO toss_billing.payments AS p
               (order_id, obligation, customer_id, billing_key_id, merchant, state, order_name, amount,
                tax_free_amount, customer_email, customer_name, requested_by, subscription_id, period_number,
                generation, invoice_id)
        SELECT pg_catalog.format('sub%s-p%s-a%s-%s', o.id, o.period_number, o.next_generation, v_tag),
               pg_catalog.format('subscription:%s:%s', o.id, o.period_number), o.customer_id, o.key_id,
               o.key_merchant, 'in_flight', o.order_name, o.amount, o.tax_free, o.email, o.name, CURRENT_USER, o.id,
               o.period_number, o.next_generation, o.invoice_id
          FROM owed o
         WHERE o.open_payment_id IS NULL
        ON CONFLICT DO NOTHING
        RETURNING p.id),
    reopened AS (
        UPDATE toss_billing.payments p
           SET state = 'in_flight', billing_key_id = o.key_id, merchant = o.key_merchant,
               customer_email = o.email, customer_name = o.name, invoice_id = o.invoice_id,
               updated_at = pg_catalog.now()
          FROM owed o
         -- an order owed for the period charges the invoice's amount, or nothing
         WHERE p.id = o.open_payment_id AND p.state = 'pending'
           AND p.amount = o.amount AND p.tax_free_amount = o.tax_free
        RETURNING p.id)
    SELECT pg_catalog.array_agg(x.id ORDER BY x.id) INTO v_orders
      FROM (SELECT id FROM created UNION ALL SELECT id FROM reopened) x;
    RETURN QUERY SELECT * FROM toss_billing._attempt_orders(v_orders, _order_periods.call_timeout);
END;
$$;

-- The orders and attempts of a claim's locked rows: step (_order_periods
-- for subscriptions, _order_invoices for invoices of their own) for all of
-- them together; if that fails, for each alone, in a subtransaction of its
-- own: one that fails defers its subscription with an alert of this reason
-- (_defer_subscription; an invoice's error starts "invoice N:") and the
-- others are claimed.  raise_errors: the caller asked for that one row
-- (charge_subscription_now, charge_invoice_now): its error is raised.
-- Returns what the Toss calls need, in claim order.
CREATE OR REPLACE FUNCTION toss_billing._order_each(step text, ids bigint[], call_timeout interval, tag text,
                                                    reason text, raise_errors boolean)
RETURNS toss_billing._charge_call[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_call text := pg_catalog.format('SELECT ARRAY(SELECT c FROM toss_billing.%I($1, $2, $3) c)', _order_each.step);
    v_calls toss_billing._charge_call[];
    v_one toss_billing._charge_call[];
    v_id bigint;
BEGIN
    BEGIN
        EXECUTE v_call INTO v_calls USING _order_each.ids, _order_each.call_timeout, _order_each.tag;
        RETURN v_calls;
    EXCEPTION WHEN OTHERS THEN
        IF _order_each.raise_errors THEN
            RAISE;
        END IF;
    END;
    v_calls := '{}';
    FOREACH v_id IN ARRAY _order_each.ids LOOP
        BEGIN
            EXECUTE v_call INTO v_one USING ARRAY[v_id], _order_each.call_timeout, _order_each.tag;
            v_calls := v_calls || v_one;
        EXCEPTION WHEN OTHERS THEN
            IF _order_each.step = '_order_invoices' THEN
                PERFORM toss_billing._defer_subscription(i.subscription_id, _order_each.reason, SQLSTATE,
                                                         pg_catalog.format('invoice %s: %s', i.id, SQLERRM))
                   FROM toss_billing.invoices i WHERE i.id = v_id;
            ELSE
                PERFORM toss_billing._defer_subscription(v_id, _order_each.reason, SQLSTATE, SQLERRM);
            END IF;
        END;
    END LOOP;
    RETURN v_calls;
END;
$$;

-- Claims up to max_count due charges for the runner.  First applies the
-- transitions that need no charge (_apply_due_transitions), sends the
-- consent events that are due (_send_due_consent_notices) and finalises the
-- period invoices that are due (32_invoices: a total of 0 or one carried
-- forward settles its period there); a subscription any of these fails for
-- is deferred (_defer_subscription).  Then, for each due subscription,
-- earliest first (next_charge_at reached on its clock, not deferred, trial
-- over, not paused, an active billing key, no order of it in flight or
-- unknown, its open period not paid, the period's invoice open), records
-- ONE in_flight attempt for its open period's order -- the order already
-- owed for the period (pending), under its order id, or a new one, for the
-- invoice's amount_due and tax_free_amount -- and returns what the Toss call
-- needs; then the same for open invoices of their own that are due
-- (_claim_invoices: next_attempt_at reached; an immediate proration, one-off
-- items, a final invoice), under obligation 'invoice:<id>'.  Rows locked by
-- another runner are skipped, and the unique index on the obligation turns
-- any race into "nothing claimed".  The caller commits before calling Toss.
-- call_timeout: the caller's timeout for one call; the attempt's deadline
-- is twice that (the call and its lookup).
-- only_subscription: claim that subscription's open period alone
-- (charge_subscription_now, which makes it due first), by the very same
-- rules: its transitions, its period invoice finalised (without waiting for
-- the grace window: the charge is asked for now), its period's order; no
-- other subscription's work, no invoices of their own, no consent notices.
CREATE OR REPLACE FUNCTION toss_billing._claim_due(max_count integer, call_timeout interval DEFAULT '65 seconds',
                                                    only_subscription bigint DEFAULT NULL)
RETURNS SETOF toss_billing._charge_call
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_limit integer := _claim_due.max_count;
    v_tag text := toss_billing._order_tag();
    v_now timestamptz;
    v_horizon timestamptz;
    v_due bigint[];
    v_calls toss_billing._charge_call[];
    v_claimed integer;
BEGIN
    IF v_limit IS NULL OR v_limit < 0 THEN
        RAISE EXCEPTION 'max_count must be a non-negative integer' USING ERRCODE = '22023';
    END IF;
    IF _claim_due.only_subscription IS NOT NULL THEN
        PERFORM toss_billing._apply_transitions(ARRAY[_claim_due.only_subscription]);
    ELSE
        PERFORM toss_billing._apply_due_transitions();
    END IF;
    IF _claim_due.only_subscription IS NULL THEN
        PERFORM toss_billing._send_due_consent_notices();
    END IF;
    IF v_limit = 0 THEN
        RETURN;
    END IF;
    PERFORM toss_billing._finalize_due(v_limit, _claim_due.only_subscription);
    v_now := toss_billing.now();
    v_horizon := GREATEST(v_now, (SELECT pg_catalog.max(tc.now_at) FROM toss_billing.test_clocks tc));

    -- the due subscriptions, locked
    v_due := ARRAY(
        SELECT s.id
          FROM toss_billing.subscriptions s
          -- what is charged is the period's invoice, exactly
          JOIN toss_billing.invoices i ON i.subscription_id = s.id AND i.kind = 'period'
                                      AND i.period_number = s.period_number
                                      AND i.status = ANY (ARRAY['open', 'uncollectible']) AND i.amount_due >= 100
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE s.next_charge_at <= v_horizon
           AND s.next_charge_at <= COALESCE(tc.now_at, v_now)
           AND (s.id = _claim_due.only_subscription
                OR (_claim_due.only_subscription IS NULL
                    AND (s.deferred_until IS NULL OR s.deferred_until <= COALESCE(tc.now_at, v_now))))
           AND (s.status = ANY (ARRAY['active', 'past_due'])
                OR (s.status = 'trialing' AND s.trial_end <= COALESCE(tc.now_at, v_now)))
           AND EXISTS (SELECT FROM toss_billing.billing_keys bk
                        WHERE bk.customer_id = s.customer_id AND bk.status = 'active')
           -- OFFSET 0 keeps each check a per-row index probe: pulled up into an
           -- anti-join, the planner may materialize every open order and
           -- compare all pairs, which grows with the runner's concurrency.
           AND NOT EXISTS (SELECT FROM toss_billing.payments p
                            WHERE p.subscription_id = s.id
                              AND p.state = ANY (ARRAY['in_flight', 'unknown'])
                           OFFSET 0)
           -- paid, or held (an answer did not match: nothing is posted for
           -- it again until a person resolves its discrepancy)
           AND NOT EXISTS (SELECT FROM toss_billing.payments p
                            WHERE p.subscription_id = s.id AND p.period_number = s.period_number
                              AND (p.state = 'done' OR (p.state = 'pending' AND p.hold_reason IS NOT NULL))
                           OFFSET 0)
         ORDER BY s.next_charge_at, s.id
         LIMIT v_limit
           FOR UPDATE OF s SKIP LOCKED);
    -- their orders and attempts (charge_subscription_now gets any error)
    v_calls := toss_billing._order_each('_order_periods', v_due, _claim_due.call_timeout, v_tag,
                                        'the period''s order could not be recorded',
                                        _claim_due.only_subscription IS NOT NULL);
    RETURN QUERY SELECT * FROM pg_catalog.unnest(v_calls);
    GET DIAGNOSTICS v_claimed = ROW_COUNT;
    v_limit := v_limit - v_claimed;
    IF v_limit <= 0 OR _claim_due.only_subscription IS NOT NULL THEN
        RETURN;
    END IF;

    -- then invoices charged under orders of their own (_claim_invoices)
    RETURN QUERY SELECT * FROM toss_billing._claim_invoices(v_limit, _claim_due.call_timeout);
END;
$$;

-- The orders and attempts of due invoices of their own (_claim_invoices:
-- locked by the caller) under obligation 'invoice:<id>': the latest order
-- of the obligation again (pending, or failed: the same order id), or its
-- first one (order id inv<id>-a1-<tag>); then ONE in_flight attempt each
-- (_attempt_orders).
CREATE OR REPLACE FUNCTION toss_billing._order_invoices(invoice_ids bigint[], call_timeout interval, tag text)
RETURNS SETOF toss_billing._charge_call
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_tag text := _order_invoices.tag;
    v_orders bigint[];
BEGIN
    WITH due AS (
        SELECT i.id, i.customer_id, i.amount_due AS amount, i.tax_free_amount AS tax_free, i.description AS order_name
          FROM toss_billing.invoices i
         WHERE i.id = ANY (_order_invoices.invoice_ids)),
    owed AS (
        SELECT d.*, lo.id AS last_id, lo.generation AS last_generation,
               bk.id AS key_id, bk.merchant AS key_merchant, c.email, c.name
          FROM due d
          JOIN toss_billing.customers c ON c.id = d.customer_id
          JOIN toss_billing.billing_keys bk ON bk.customer_id = d.customer_id AND bk.status = 'active'
          LEFT JOIN LATERAL (SELECT p.id, p.generation FROM toss_billing.payments p
                              WHERE p.obligation = 'invoice:' || d.id
                              ORDER BY p.generation DESC, p.id DESC
                              LIMIT 1) lo ON true),
    created AS (
        INSERT INTO toss_billing.payments AS p
               (order_id, obligation, customer_id, billing_key_id, merchant, state, order_name, amount,
                tax_free_amount, customer_email, customer_name, requested_by, generation, invoice_id)
        SELECT pg_catalog.format('inv%s-a1-%s', o.id, v_tag), 'invoice:' || o.id, o.customer_id, o.key_id,
               o.key_merchant, 'in_flight', o.order_name, o.amount, o.tax_free, o.email, o.name, CURRENT_USER, 1, o.id
          FROM owed o
         WHERE o.last_id IS NULL
        ON CONFLICT DO NOTHING
        RETURNING p.id),
    reopened AS (
        UPDATE toss_billing.payments p
           SET state = 'in_flight', billing_key_id = o.key_id, merchant = o.key_merchant,
               customer_email = o.email, customer_name = o.name, updated_at = pg_catalog.now()
          FROM owed o
         WHERE p.id = o.last_id AND p.state = ANY (ARRAY['pending', 'failed']) AND p.hold_reason IS NULL
        RETURNING p.id)
    SELECT pg_catalog.array_agg(x.id ORDER BY x.id) INTO v_orders
      FROM (SELECT id FROM created UNION ALL SELECT id FROM reopened) x;
    RETURN QUERY SELECT * FROM toss_billing._attempt_orders(v_orders, _order_invoices.call_timeout);
END;
$$;

-- Claims up to max_count due invoices charged under orders of their own (an
-- immediate proration, one-off items, a final invoice: open, next_attempt_at
-- reached on the subscription's clock, at least 100 KRW due, an active
-- billing key, no order of it in flight, unknown, paid or held), earliest
-- first, under obligation 'invoice:<id>': the latest order of the
-- obligation again (pending, or failed: the same order id), or its first
-- one; records ONE in_flight attempt for each and returns what the Toss call
-- needs (_charge_call).  Rows locked by another transaction are
-- skipped (SKIP LOCKED), and the unique index on the obligation turns any
-- race into "nothing claimed".  The caller commits before calling Toss.
-- _claim_due runs it after the subscriptions' periods; only_invoice claims
-- that invoice alone, by the very same rules (charge_invoice_now, which
-- makes it due first).
CREATE OR REPLACE FUNCTION toss_billing._claim_invoices(max_count integer, call_timeout interval DEFAULT '65 seconds',
                                                         only_invoice bigint DEFAULT NULL)
RETURNS SETOF toss_billing._charge_call
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_limit integer := _claim_invoices.max_count;
    v_tag text := toss_billing._order_tag();
    v_now timestamptz := toss_billing.now();
    v_horizon timestamptz := GREATEST(v_now, (SELECT pg_catalog.max(tc.now_at) FROM toss_billing.test_clocks tc));
    v_due bigint[];
    v_calls toss_billing._charge_call[];
BEGIN
    IF v_limit IS NULL OR v_limit < 0 THEN
        RAISE EXCEPTION 'max_count must be a non-negative integer' USING ERRCODE = '22023';
    END IF;
    IF v_limit = 0 THEN
        RETURN;
    END IF;
    -- the due invoices, locked
    v_due := ARRAY(
        SELECT i.id
          FROM toss_billing.invoices i
          JOIN toss_billing.subscriptions s ON s.id = i.subscription_id
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE i.status = 'open' AND i.next_attempt_at <= v_horizon
           AND i.next_attempt_at <= COALESCE(tc.now_at, v_now)
           AND i.kind <> 'period' AND i.amount_due >= 100
           AND (i.id = _claim_invoices.only_invoice
                OR (_claim_invoices.only_invoice IS NULL
                    AND (s.deferred_until IS NULL OR s.deferred_until <= COALESCE(tc.now_at, v_now))))
           AND EXISTS (SELECT FROM toss_billing.billing_keys bk
                        WHERE bk.customer_id = i.customer_id AND bk.status = 'active')
           AND NOT EXISTS (SELECT FROM toss_billing.payments p
                            WHERE p.invoice_id = i.id
                              AND (p.state = ANY (ARRAY['in_flight', 'unknown', 'done'])
                                   OR (p.state = 'pending' AND p.hold_reason IS NOT NULL))
                           OFFSET 0)
         ORDER BY i.next_attempt_at, i.id
         LIMIT v_limit
           FOR UPDATE OF i SKIP LOCKED);
    -- their orders and attempts (charge_invoice_now gets any error)
    v_calls := toss_billing._order_each('_order_invoices', v_due, _claim_invoices.call_timeout, v_tag,
                                        'an invoice''s order could not be recorded',
                                        _claim_invoices.only_invoice IS NOT NULL);
    RETURN QUERY SELECT * FROM pg_catalog.unnest(v_calls);
END;
$$;

-- Records the outcomes of attempts (one array element per attempt) and
-- settles their orders and subscriptions.  Per attempt:
--   states           done, failed or unknown
--   responses        the answer as received (bytes, secrets scrubbed)
--   payments         Toss's Payment, only when it was verified against the
--                    order (done; or ABORTED for a failure)
--   holds            why an answer could not be verified: the order is
--                    held (nothing is posted for it again automatically), a
--                    discrepancy unverified_answer and an alert record it
--   reuse_refused    Toss refused to take the order id again and its lookup
--                    shows no approved payment: the order is closed and the
--                    next generation of it (a new order id) is made
-- Only attempts still in flight or unknown are touched, and a paid order
-- is never changed, so recording an outcome twice changes nothing.
CREATE OR REPLACE FUNCTION toss_billing._record_outcomes(
    attempt_ids bigint[],
    states text[],
    http_statuses integer[],
    failure_classes text[],
    failure_codes text[],
    failure_messages text[],
    responses bytea[],
    payments jsonb[],
    holds text[],
    reuse_refused boolean[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n integer := COALESCE(pg_catalog.cardinality(_record_outcomes.attempt_ids), 0);
    v_outcomes toss_billing._outcome[];
    v_subscriptions bigint[];
    v_states text[];
    v_invoiced boolean;
    r record;
BEGIN
    IF COALESCE(pg_catalog.cardinality(_record_outcomes.states), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.http_statuses), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.failure_classes), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.failure_codes), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.failure_messages), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.responses), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.payments), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.holds), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.reuse_refused), 0) <> v_n THEN
        RAISE EXCEPTION 'the outcome arrays must all have the same length' USING ERRCODE = '22023';
    END IF;
    IF v_n = 0 THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM unnest(_record_outcomes.states) st
                WHERE st IS NULL OR st <> ALL (ARRAY['done', 'failed', 'unknown'])) THEN
        RAISE EXCEPTION 'an outcome state must be done, failed or unknown' USING ERRCODE = '22023';
    END IF;

    -- The subscriptions first, in id order, and only then the orders and
    -- attempts.  A claim holds the subscriptions it claimed (FOR UPDATE SKIP
    -- LOCKED) and its writes may wait for an order of one of them that is
    -- being recorded; recording must therefore never hold such an order
    -- while it waits for a subscription, or the two deadlock.
    PERFORM FROM toss_billing.subscriptions s
     WHERE s.id = ANY (ARRAY(SELECT p.subscription_id
                               FROM toss_billing.attempts a
                               JOIN toss_billing.payments p ON p.id = a.payment_id
                              WHERE a.id = ANY (_record_outcomes.attempt_ids) AND p.subscription_id IS NOT NULL))
     ORDER BY s.id
       FOR UPDATE;
    -- then the invoices the orders pay (a claim of an invoice of its own
    -- holds the invoice, then writes its order)
    PERFORM FROM toss_billing.invoices i
     WHERE i.id = ANY (ARRAY(SELECT p.invoice_id
                               FROM toss_billing.attempts a
                               JOIN toss_billing.payments p ON p.id = a.payment_id
                              WHERE a.id = ANY (_record_outcomes.attempt_ids) AND p.invoice_id IS NOT NULL))
     ORDER BY i.id
       FOR UPDATE;

    WITH input AS (
        SELECT *
          FROM unnest(_record_outcomes.attempt_ids, _record_outcomes.states, _record_outcomes.http_statuses,
                      _record_outcomes.failure_classes, _record_outcomes.failure_codes,
                      _record_outcomes.failure_messages, _record_outcomes.responses, _record_outcomes.payments,
                      _record_outcomes.holds, _record_outcomes.reuse_refused)
               AS i(attempt_id, state, http_status, failure_class, failure_code, failure_message, response,
                    payment, hold, reuse_refused)),
    -- a done outcome counts only with a Payment that answers this order (the
    -- C side checked it already; the same predicate checks it here, so no
    -- writer can mark an order paid from an answer that does not match):
    -- once per row (materialized), on the jsonb as it is
    verified AS MATERIALIZED (
        SELECT i.*,
               CASE WHEN i.payment IS NOT NULL AND i.state = ANY (ARRAY['done', 'failed'])
                    THEN toss_billing._verify_payment(i.payment, p.order_id, p.amount, bk.mid) END AS verdict
          FROM input i
          LEFT JOIN toss_billing.attempts a ON a.id = i.attempt_id
          LEFT JOIN toss_billing.payments p ON p.id = a.payment_id
          LEFT JOIN toss_billing.billing_keys bk ON bk.id = a.billing_key_id),
    checked AS (
        SELECT v.*,
               CASE WHEN v.state <> 'done' THEN NULL
                    WHEN v.payment IS NULL THEN 'a done outcome without its Payment'
                    ELSE NULLIF(pg_catalog.regexp_replace(v.verdict, '^unverified: ', ''), 'approved') END AS why,
               -- a failure's Payment (ABORTED) counts only if it is this order's
               v.state = 'failed' AND v.payment IS NOT NULL AND v.verdict = 'failed' AS failure_verified
          FROM verified v),
    given AS (
        SELECT v.attempt_id,
               CASE WHEN v.why IS NULL THEN v.state ELSE 'unknown' END AS state,
               v.http_status,
               CASE WHEN v.why IS NULL THEN v.failure_class ELSE 'outcome_unknown' END AS failure_class,
               v.failure_code,
               CASE WHEN v.why IS NULL THEN v.failure_message
                    ELSE 'toss''s answer does not match the order: ' || v.why END AS failure_message,
               v.response,
               CASE WHEN v.state = 'done' AND v.why IS NULL THEN v.payment
                    WHEN v.failure_verified THEN v.payment END AS payment,
               COALESCE(v.why, v.hold) AS hold,
               v.reuse_refused
          FROM checked v),
    still_open AS (
        SELECT a.id, a.state
          FROM toss_billing.attempts a
         WHERE a.id = ANY (_record_outcomes.attempt_ids)
           AND a.state = ANY (ARRAY['in_flight', 'unknown'])
         ORDER BY a.id
           FOR UPDATE),
    attempts_recorded AS (
        UPDATE toss_billing.attempts a
           SET state = i.state,
               http_status = NULLIF(i.http_status, 0),
               failure_class = CASE WHEN i.state = 'done' THEN NULL ELSE i.failure_class END,
               failure_code = CASE WHEN i.state = 'done' THEN NULL
                                   ELSE COALESCE(i.failure_code, i.payment->'failure'->>'code') END,
               failure_message = CASE WHEN i.state = 'done' THEN NULL
                                      ELSE COALESCE(i.failure_message, i.payment->'failure'->>'message') END,
               response = COALESCE(i.response, a.response),
               updated_at = pg_catalog.now()
          FROM given i, still_open o
         WHERE a.id = i.attempt_id AND o.id = i.attempt_id
        RETURNING a.id, a.payment_id, a.attempt_number, a.billing_key_id, o.state AS from_state, a.state,
                  a.failure_class, a.failure_code, a.failure_message, a.http_status),
    orders_recorded AS (
        UPDATE toss_billing.payments p
           SET state = CASE ar.state
                           WHEN 'done' THEN 'done'
                           WHEN 'unknown' THEN 'unknown'
                           ELSE CASE WHEN i.reuse_refused OR p.subscription_id IS NULL THEN 'failed' ELSE 'pending' END
                       END,
               http_status = ar.http_status,
               failure_class = ar.failure_class,
               failure_code = ar.failure_code,
               failure_message = CASE WHEN i.reuse_refused
                                      THEN 'toss refuses to take this order id again and holds no approved payment for it; a new order id replaces it'
                                      ELSE ar.failure_message END,
               -- a verified answer (paid, or a failed Payment of this order)
               -- releases a hold; anything else keeps it
               hold_reason = CASE WHEN ar.state = 'done' OR (ar.state = 'failed' AND i.payment IS NOT NULL) THEN NULL
                                  ELSE COALESCE(i.hold, p.hold_reason) END,
               toss_status = CASE WHEN i.payment IS NOT NULL THEN i.payment->>'status' ELSE p.toss_status END,
               payment_key = CASE WHEN ar.state = 'done' THEN i.payment->>'paymentKey' ELSE p.payment_key END,
               total_amount = CASE WHEN ar.state = 'done' THEN (i.payment->>'totalAmount')::bigint ELSE p.total_amount END,
               balance_amount = CASE WHEN ar.state = 'done' THEN (i.payment->>'balanceAmount')::bigint ELSE p.balance_amount END,
               supplied_amount = CASE WHEN ar.state = 'done' THEN (i.payment->>'suppliedAmount')::bigint ELSE p.supplied_amount END,
               vat = CASE WHEN ar.state = 'done' THEN (i.payment->>'vat')::bigint ELSE p.vat END,
               requested_at = CASE WHEN ar.state = 'done' THEN (i.payment->>'requestedAt')::timestamptz ELSE p.requested_at END,
               approved_at = CASE WHEN ar.state = 'done' THEN (i.payment->>'approvedAt')::timestamptz ELSE p.approved_at END,
               response = CASE WHEN i.payment IS NOT NULL THEN i.payment ELSE p.response END,
               updated_at = pg_catalog.now()
          FROM attempts_recorded ar, given i
         WHERE p.id = ar.payment_id AND i.attempt_id = ar.id AND p.state <> 'done'
        RETURNING p.id, p.subscription_id, p.period_number, p.amount, p.order_id, p.customer_id, p.obligation,
                  p.generation, p.invoice_id, p.state AS order_state, p.hold_reason, i.hold, i.reuse_refused, i.payment,
                  ar.id AS attempt_id, ar.attempt_number, ar.from_state, ar.state AS attempt_state,
                  ar.failure_class, ar.failure_code, ar.failure_message, ar.billing_key_id)
    SELECT pg_catalog.array_agg(ROW(o.attempt_id, o.id, o.subscription_id, o.period_number, o.attempt_number, o.amount,
                                    o.from_state, o.attempt_state, o.failure_class, o.failure_code,
                                    o.failure_message, o.billing_key_id, o.reuse_refused)::toss_billing._outcome
                                ORDER BY o.id),
           pg_catalog.array_agg(DISTINCT o.subscription_id) FILTER (WHERE o.subscription_id IS NOT NULL),
           pg_catalog.array_agg(DISTINCT o.attempt_state),
           pg_catalog.bool_or(o.invoice_id IS NOT NULL)
      INTO v_outcomes, v_subscriptions, v_states, v_invoiced
      FROM orders_recorded o;

    IF v_outcomes IS NULL THEN
        RETURN;
    END IF;

    FOR r IN SELECT p.*, a.id AS attempt_id, o.reuse_refused, o.state AS outcome_state
               FROM unnest(v_outcomes) o
               JOIN toss_billing.payments p ON p.id = o.payment_id
               JOIN toss_billing.attempts a ON a.id = o.attempt_id
              WHERE o.reuse_refused OR (o.state = 'unknown' AND p.hold_reason IS NOT NULL)
                 OR (o.state = 'done' AND p.toss_status = ANY (ARRAY['CANCELED', 'PARTIAL_CANCELED']))
              ORDER BY p.id
    LOOP
        IF r.reuse_refused THEN
            -- the next generation of the order: a new order id for the same obligation
            INSERT INTO toss_billing.payments
                   (order_id, obligation, customer_id, billing_key_id, merchant, state, order_name, amount,
                    tax_free_amount, customer_email, customer_name, requested_by, subscription_id, period_number,
                    generation, invoice_id)
            VALUES (CASE WHEN r.subscription_id IS NOT NULL
                         THEN pg_catalog.format('sub%s-p%s-a%s-%s', r.subscription_id, r.period_number,
                                                r.generation + 1, toss_billing._order_tag())
                         WHEN r.obligation LIKE 'invoice:%'
                         THEN pg_catalog.format('inv%s-a%s-%s', r.invoice_id, r.generation + 1, toss_billing._order_tag())
                         ELSE pg_catalog.format('%s-r%s-%s', pg_catalog.left(pg_catalog.substr(r.obligation, 8), 48),
                                                r.generation + 1, pg_catalog.substr(pg_catalog.md5(r.obligation), 1, 6))
                    END,
                    r.obligation, r.customer_id, r.billing_key_id, r.merchant, 'pending', r.order_name, r.amount,
                    r.tax_free_amount, r.customer_email, r.customer_name, r.requested_by, r.subscription_id,
                    r.period_number, r.generation + 1, r.invoice_id)
            ON CONFLICT DO NOTHING;
        ELSIF r.outcome_state = 'unknown' THEN
            PERFORM toss_billing._open_discrepancy('unverified_answer', r.order_id, r.payment_key, 'unknown', r.toss_status,
                                                   r.amount, NULL,
                                                   pg_catalog.jsonb_build_object(
                                                       'attempt_id', r.attempt_id, 'why', r.hold_reason,
                                                       'hint', 'Toss''s answer did not match the order, so nothing is posted for it again automatically. Look the order up at Toss, then resolve this discrepancy.'));
            INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, payment_id, type, from_status,
                                             to_status, reason, detail)
            SELECT CASE WHEN s.id IS NULL THEN toss_billing.now() ELSE toss_billing.subscription_now(s.id) END, s.id,
                   r.customer_id, r.id, 'alert',
                   s.status, s.status, 'an answer from toss did not match the order; the order is held',
                   pg_catalog.jsonb_build_object('order_id', r.order_id, 'why', r.hold_reason)
              FROM (SELECT r.subscription_id AS id) x
              LEFT JOIN toss_billing.subscriptions s ON s.id = x.id;
        ELSE
            PERFORM toss_billing._sync_cancels(r.id, r.response);
        END IF;
    END LOOP;

    -- each settles the outcomes of one state: called only when there are
    -- any (a batch is usually all paid)
    IF v_subscriptions IS NOT NULL THEN
        IF 'done' = ANY (v_states) THEN
            PERFORM toss_billing._settle_paid(v_outcomes);
        END IF;
        IF 'failed' = ANY (v_states) THEN
            PERFORM toss_billing._settle_failed(v_outcomes);
        END IF;
        IF 'unknown' = ANY (v_states) THEN
            PERFORM toss_billing._settle_unknown(v_outcomes);
        END IF;
    END IF;
    -- the invoices the orders pay follow them (a toss_charge's order pays none)
    IF v_invoiced THEN
        PERFORM toss_billing._settle_invoices(v_outcomes);
    END IF;
    IF v_subscriptions IS NULL THEN
        RETURN;
    END IF;
    -- catching up: the period just opened may already have ended.  The
    -- outcomes stand whatever happens here: a transition that cannot be
    -- applied is left to the next claim (_apply_due_transitions defers it
    -- with an alert, and its subscription is not charged meanwhile).
    BEGIN
        PERFORM toss_billing._apply_transitions(v_subscriptions);
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
END;
$$;

-- Parks an outcome that could not be recorded (the recorder's last resort,
-- after the batch and the row alone failed): the attempt and its order
-- become unknown with the error, to be looked up at Toss again by the next
-- runs; nothing is lost and no other row waits for it.
CREATE OR REPLACE FUNCTION toss_billing._park_outcome(attempt_id bigint, error text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_message text := pg_catalog.left('the outcome could not be recorded: ' || COALESCE(_park_outcome.error, ''), 2000);
    v_payment bigint;
BEGIN
    UPDATE toss_billing.attempts a
       SET state = 'unknown', failure_class = 'outcome_unknown', failure_code = NULL, failure_message = v_message,
           updated_at = pg_catalog.now()
     WHERE a.id = _park_outcome.attempt_id AND a.state = ANY (ARRAY['in_flight', 'unknown'])
    RETURNING a.payment_id INTO v_payment;
    UPDATE toss_billing.payments p
       SET state = 'unknown', failure_class = 'outcome_unknown', failure_code = NULL, failure_message = v_message,
           updated_at = pg_catalog.now()
     WHERE p.id = v_payment AND p.state = ANY (ARRAY['in_flight', 'pending']);
END;
$$;

-- The runner: CALL toss_billing.run_due() claims due periods, calls Toss
-- for them concurrently (libcurl multi) and records the outcomes, committing
-- its own transactions, so it must be CALLed outside a transaction block.
-- (A procedure that commits cannot carry a SET clause: its C code runs
-- each of its statements with search_path = pg_catalog, pg_temp.)
-- The INOUT parameters only carry the summary back (a procedure's OUT
-- parameters cannot follow ones with defaults): claimed, done, failed,
-- unknown, throttled attempts, the elapsed milliseconds, and the id of the
-- run's row in toss_billing.runs.
CREATE OR REPLACE PROCEDURE toss_billing.run_due(
    max_charges integer DEFAULT 10000,
    time_budget interval DEFAULT '50 seconds',
    INOUT claimed bigint DEFAULT NULL,
    INOUT done bigint DEFAULT NULL,
    INOUT failed bigint DEFAULT NULL,
    INOUT unknown bigint DEFAULT NULL,
    INOUT throttled bigint DEFAULT NULL,
    INOUT elapsed_ms double precision DEFAULT NULL,
    INOUT run_id bigint DEFAULT NULL)
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
