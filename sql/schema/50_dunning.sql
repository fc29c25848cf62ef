-- 50_dunning: the dunning policy, and how a recorded outcome settles its
-- subscription: paid -> the next period; failed -> what the failure's class
-- says (failure_classes.dunning: retry, dunning, key_gone, stop); unknown ->
-- blocked until resolved.  It also says whether the period's order stays
-- owed (pending, attempted again under the same order id) or is closed, and
-- what an outcome means for the invoice the order pays (_settle_invoices).

-- @data

-- The dunning policy: one row.  retry_offsets[k] is when retry k follows
-- the first decline of the open period; after the last one the
-- subscription becomes final_status.  A transient failure is retried after
-- transient_retry, doubling with each further transient failure of the
-- same order; after transient_limit of them the order goes on the dunning
-- schedule instead, with an alert.
CREATE TABLE toss_billing.dunning_policy (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    retry_offsets   interval[] NOT NULL DEFAULT '{1 day,3 days,5 days,7 days}',
    transient_retry interval NOT NULL DEFAULT '10 minutes'
                    CHECK (transient_retry OPERATOR(pg_catalog.>) '0'::interval),
    final_status    text NOT NULL DEFAULT 'unpaid'
                    CHECK (final_status OPERATOR(pg_catalog.=) ANY (ARRAY['unpaid', 'canceled'])),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    transient_limit integer NOT NULL DEFAULT 3
                    CHECK (transient_limit OPERATOR(pg_catalog.>=) 0 AND transient_limit OPERATOR(pg_catalog.<=) 20)
);
INSERT INTO toss_billing.dunning_policy DEFAULT VALUES;
SELECT pg_catalog.pg_extension_config_dump('toss_billing.dunning_policy', '');

-- One recorded outcome, as _record_outcomes hands it to the steps that
-- settle subscriptions.  reuse_refused: Toss refused to take the order id
-- again (a new order replaces it; nothing was charged).
CREATE TYPE toss_billing._outcome AS (
    attempt_id      bigint,
    payment_id      bigint,
    subscription_id bigint,
    period_number   integer,
    attempt_number  integer,
    amount          bigint,
    from_state      text,
    state           text,
    failure_class   text,
    failure_code    text,
    failure_message text,
    billing_key_id  bigint,
    reuse_refused   boolean
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
    final_status text DEFAULT NULL,
    transient_limit integer DEFAULT NULL)
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
    IF set_dunning_policy.transient_limit NOT BETWEEN 0 AND 20 THEN
        RAISE EXCEPTION 'transient_limit must be between 0 and 20' USING ERRCODE = '22023',
            DETAIL = 'It counts the transient failures of one order retried on the transient backoff.';
    END IF;
    UPDATE toss_billing.dunning_policy p
       SET retry_offsets = COALESCE(set_dunning_policy.retry_offsets, p.retry_offsets),
           transient_retry = COALESCE(set_dunning_policy.transient_retry, p.transient_retry),
           final_status = COALESCE(set_dunning_policy.final_status, p.final_status),
           transient_limit = COALESCE(set_dunning_policy.transient_limit, p.transient_limit),
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
-- a period that is not open, raises an alert.  An outcome from_state
-- 'no_charge' is a period invoice paid without a charge (its total was 0,
-- or carried forward): its event is invoice_paid.
CREATE OR REPLACE FUNCTION toss_billing._settle_paid(outcomes toss_billing._outcome[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.now();
BEGIN
    WITH paid AS (
        SELECT DISTINCT ON (s.id) o.*, s.status AS from_status, s.customer_id,
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
    INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, payment_id, type, from_status,
                                     to_status, reason, detail)
    SELECT e.occurred_at, e.subscription_id, e.customer_id, e.payment_id, e.type, e.from_status, e.to_status,
           e.reason, e.detail
      FROM (
        SELECT st.now_at, st.subscription_id, st.customer_id, st.payment_id,
               CASE WHEN st.from_state = 'no_charge' THEN 'invoice_paid' ELSE 'payment_succeeded' END, st.from_status,
               st.to_status,
               CASE WHEN st.from_state = 'no_charge' THEN 'invoice paid without a charge: ' || st.failure_message
                    ELSE 'payment succeeded' END,
               pg_catalog.jsonb_build_object('period_number', st.period_number, 'attempt_number', st.attempt_number,
                                             'amount', st.amount, 'next_charge_at', c.next_charge_at), 1 AS k
          FROM settled st LEFT JOIN changed c ON c.id = st.subscription_id
        UNION ALL
        SELECT st.now_at, st.subscription_id, st.customer_id, st.payment_id, 'status_changed', st.from_status,
               st.to_status, CASE WHEN st.from_state = 'no_charge' THEN 'invoice paid' ELSE 'payment succeeded' END, NULL, 2
          FROM settled st WHERE st.to_status <> st.from_status
        UNION ALL
        SELECT st.now_at, st.subscription_id, st.customer_id, st.payment_id, 'alert', st.from_status, st.to_status,
               CASE WHEN st.from_status = 'canceled' THEN 'payment succeeded for a canceled subscription'
                    ELSE 'payment succeeded for a period that is not open' END,
               pg_catalog.jsonb_build_object('period_number', st.period_number, 'amount', st.amount), 3
          FROM settled st WHERE NOT st.open
        ) AS e(occurred_at, subscription_id, customer_id, payment_id, type, from_status, to_status, reason, detail, k)
     ORDER BY e.subscription_id, e.k;
END;
$$;

-- Settles the subscriptions whose attempt failed.  What happens is data:
-- the failure's class and its row of failure_classes (dunning):
--   retry     transient: the same order again after transient_retry,
--             doubling, up to transient_limit failures of the order; then
--             the dunning schedule, with an alert
--   dunning   the next dunning slot, counted from the period's first
--             decline, and past_due; after the last slot the policy's
--             final_status
--   key_gone  the billing key is marked deleted (past_due, nothing
--             scheduled until card_replaced)
--   stop      charging stops (past_due, next_charge_at NULL) with an alert
-- Toss refusing to take the order id again retries at once (its new order
-- is already made).  The period's order stays owed (pending: the next
-- attempt uses the same order id) unless the obligation is void: the
-- subscription is canceled or the period is no longer open.  Failures of a
-- paused or unpaid subscription are only recorded.
CREATE OR REPLACE FUNCTION toss_billing._settle_failed(outcomes toss_billing._outcome[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.now();
    v_policy toss_billing.dunning_policy;
    v_gone bigint[];
    v_codes text[];
BEGIN
    SELECT * INTO STRICT v_policy FROM toss_billing.dunning_policy;
    WITH failed AS (
        SELECT DISTINCT ON (s.id) o.*, s.status AS from_status, s.customer_id, s.dunning_attempt,
               s.dunning_started_at, s.next_charge_at, s.period_number AS open_period,
               COALESCE(tc.now_at, v_now) AS now_at,
               (SELECT pg_catalog.count(*) FROM toss_billing.attempts a
                 WHERE a.payment_id = o.payment_id AND a.state = 'failed'
                   AND a.failure_class = 'transient')::integer AS transient_failures,
               COALESCE(fc.dunning, 'stop') AS rule,
               EXISTS (SELECT FROM toss_billing.billing_keys bk
                        WHERE bk.customer_id = s.customer_id AND bk.status = 'active') AS has_key,
               (SELECT p.hold_reason FROM toss_billing.payments p WHERE p.id = o.payment_id) AS hold_reason
          FROM unnest(_settle_failed.outcomes) o
          JOIN toss_billing.subscriptions s ON s.id = o.subscription_id
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
          LEFT JOIN toss_billing.failure_classes fc ON fc.class = o.failure_class
         WHERE o.state = 'failed'
         ORDER BY s.id, o.payment_id),
    decided AS (
        SELECT f.*,
               CASE WHEN f.period_number <> f.open_period OR f.from_status = 'canceled' THEN 'void'
                    WHEN f.from_status <> ALL (ARRAY['trialing', 'active', 'past_due']) THEN 'record'
                    -- no card to charge (deleted meanwhile): nothing is
                    -- scheduled; a new card (card_replaced) retries the period
                    WHEN NOT f.has_key AND f.rule <> 'key_gone' THEN 'record'
                    -- held by an answer that did not match: not retried
                    -- until its discrepancy is resolved
                    WHEN f.hold_reason IS NOT NULL THEN 'record'
                    WHEN f.reuse_refused THEN 'reissue'
                    WHEN f.rule = 'retry' AND f.transient_failures <= v_policy.transient_limit THEN 'retry'
                    WHEN f.rule = ANY (ARRAY['retry', 'dunning']) THEN
                        CASE WHEN f.dunning_attempt < COALESCE(pg_catalog.cardinality(v_policy.retry_offsets), 0)
                             THEN 'dunning' ELSE 'final' END
                    WHEN f.rule = 'key_gone' THEN 'key_gone'
                    ELSE 'stop' END AS action
          FROM failed f),
    settled AS (
        SELECT d.*,
               CASE d.action
                   WHEN 'retry' THEN CASE WHEN d.from_status = 'trialing' THEN 'active' ELSE d.from_status END
                   WHEN 'final' THEN v_policy.final_status
                   WHEN 'dunning' THEN 'past_due'
                   WHEN 'stop' THEN 'past_due'
                   ELSE d.from_status END AS to_status,
               CASE d.action
                   WHEN 'reissue' THEN d.now_at
                   WHEN 'retry' THEN d.now_at + v_policy.transient_retry
                                                * pg_catalog.power(2, GREATEST(d.transient_failures - 1, 0))
                   WHEN 'dunning' THEN COALESCE(d.dunning_started_at, d.now_at)
                                       + v_policy.retry_offsets[d.dunning_attempt + 1]
                   WHEN 'final' THEN NULL
                   WHEN 'stop' THEN NULL
                   ELSE d.next_charge_at END AS retry_at,
               CASE WHEN d.action = ANY (ARRAY['dunning', 'final']) THEN d.dunning_attempt + 1
                    ELSE d.dunning_attempt END AS new_dunning_attempt,
               CASE WHEN d.action = ANY (ARRAY['dunning', 'final']) THEN COALESCE(d.dunning_started_at, d.now_at)
                    ELSE d.dunning_started_at END AS new_dunning_started_at
          FROM decided d),
    changed AS (
        UPDATE toss_billing.subscriptions s
           SET status = st.to_status, next_charge_at = st.retry_at, dunning_attempt = st.new_dunning_attempt,
               dunning_started_at = st.new_dunning_started_at,
               canceled_at = CASE WHEN st.to_status = 'canceled' THEN st.now_at ELSE s.canceled_at END,
               updated_at = pg_catalog.now()
          FROM settled st
         WHERE s.id = st.subscription_id AND st.action <> ALL (ARRAY['void', 'record', 'key_gone'])
        RETURNING s.id),
    orders AS (
        -- the order: owed (attempted again under the same order id) or void
        UPDATE toss_billing.payments p
           SET state = CASE WHEN st.action = 'void' OR st.to_status = 'canceled' THEN 'failed' ELSE 'pending' END,
               updated_at = pg_catalog.now()
          FROM settled st
         WHERE p.id = st.payment_id AND st.action <> 'reissue' AND p.state = ANY (ARRAY['pending', 'failed'])
        RETURNING p.id),
    logged AS (
        INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, payment_id, type, from_status,
                                         to_status, reason, detail)
        SELECT e.occurred_at, e.subscription_id, e.customer_id, e.payment_id, e.type, e.from_status, e.to_status,
               e.reason, e.detail
          FROM (
            SELECT st.now_at, st.subscription_id, st.customer_id, st.payment_id, 'payment_failed', st.from_status,
                   st.to_status,
                   CASE st.action
                       WHEN 'retry' THEN 'transient failure, retry scheduled'
                       WHEN 'reissue' THEN 'toss refused the order id again, retrying under a new one'
                       WHEN 'dunning' THEN CASE WHEN st.rule = 'retry' THEN 'transient failures persist, dunning retry scheduled'
                                                ELSE 'declined, dunning retry scheduled' END
                       WHEN 'final' THEN 'declined, dunning exhausted'
                       WHEN 'stop' THEN 'charging stopped'
                       WHEN 'key_gone' THEN 'the billing key is gone at toss'
                       WHEN 'record' THEN CASE WHEN NOT st.has_key
                                               THEN 'payment failed; no active billing key, a new card retries it'
                                               WHEN st.hold_reason IS NOT NULL
                                               THEN 'payment failed; the order is held until its discrepancy is resolved'
                                               ELSE 'payment failed' END
                       ELSE 'payment failed' END,
                   pg_catalog.jsonb_build_object('period_number', st.period_number, 'attempt_number', st.attempt_number,
                                                 'failure_class', st.failure_class, 'failure_code', st.failure_code,
                                                 'dunning_attempt', st.new_dunning_attempt,
                                                 'next_charge_at', st.retry_at), 1 AS k
              FROM settled st
            UNION ALL
            SELECT st.now_at, st.subscription_id, st.customer_id, st.payment_id, 'status_changed', st.from_status,
                   st.to_status,
                   CASE st.action WHEN 'final' THEN 'dunning exhausted'
                                  WHEN 'stop' THEN 'charging stopped'
                                  ELSE 'payment failed' END,
                   NULL, 2
              FROM settled st WHERE st.to_status <> st.from_status
            UNION ALL
            SELECT st.now_at, st.subscription_id, st.customer_id, st.payment_id, 'alert', st.from_status, st.to_status,
                   CASE WHEN st.action = 'stop'
                        THEN pg_catalog.format('charging stopped (%s)', COALESCE(st.failure_class, 'unclassified failure'))
                        ELSE pg_catalog.format('%s transient failures of one order; the dunning schedule takes over',
                                               st.transient_failures) END,
                   pg_catalog.jsonb_build_object('failure_class', st.failure_class, 'failure_code', st.failure_code,
                                                 'failure_message', st.failure_message,
                                                 'hint', CASE WHEN st.action = 'stop'
                                                              THEN 'Fix the cause, then call toss_billing.retry_subscription().'
                                                              ELSE 'Check Toss''s status and toss_billing.api_url.' END),
                   3
              FROM settled st
             WHERE st.action = 'stop' OR (st.action = ANY (ARRAY['dunning', 'final']) AND st.rule = 'retry')
            ) AS e(occurred_at, subscription_id, customer_id, payment_id, type, from_status, to_status, reason, detail, k)
         ORDER BY e.subscription_id, e.k
        RETURNING 1)
    SELECT pg_catalog.array_agg(st.billing_key_id), pg_catalog.array_agg(st.failure_code)
      INTO v_gone, v_codes
      FROM settled st
     WHERE st.action = 'key_gone' AND st.billing_key_id IS NOT NULL;

    -- a billing key Toss no longer has is marked deleted, as a webhook would
    FOR i IN 1 .. COALESCE(pg_catalog.cardinality(v_gone), 0) LOOP
        PERFORM toss_billing._billing_key_deleted(v_gone[i], pg_catalog.format('toss answered %s to a charge', v_codes[i]));
    END LOOP;
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
    INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, payment_id, type, from_status,
                                     to_status, reason, detail)
    SELECT COALESCE(tc.now_at, toss_billing.now()), s.id, s.customer_id, o.payment_id, 'payment_unknown', s.status,
           s.status, 'outcome unknown, charging blocked until it is resolved',
           pg_catalog.jsonb_build_object('period_number', o.period_number, 'attempt_number', o.attempt_number,
                                         'failure_message', o.failure_message)
      FROM unnest($1) o
      JOIN toss_billing.subscriptions s ON s.id = o.subscription_id
      LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
     WHERE o.state = 'unknown' AND o.from_state <> 'unknown'
     ORDER BY s.id, o.payment_id;
$$;

-- What the recorded outcomes mean for the invoices their orders pay:
--   done     the invoice is paid (even if it was voided meanwhile: the money
--            is real; an alert says so)
--   failed   a period invoice follows its subscription: uncollectible when
--            dunning left it unpaid, void when it was canceled; another
--            invoice is charged again after a transient failure (the
--            dunning policy's transient backoff and limit) or when Toss
--            refused its order id (a new order id replaces it); otherwise it
--            is voided and its total is carried to the subscription's next
--            invoice (uncollectible once the subscription is canceled)
CREATE OR REPLACE FUNCTION toss_billing._settle_invoices(outcomes toss_billing._outcome[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_policy toss_billing.dunning_policy;
    r record;
    v_clock timestamptz := toss_billing.now();
    v_now timestamptz;
    v_transient integer;
    v_closed bigint[];
BEGIN
    IF _settle_invoices.outcomes IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO v_policy FROM toss_billing.dunning_policy;
    -- the common case at once: a period's invoice paid (no event of its
    -- own: the payment's event tells it); the rows below then skip it
    UPDATE toss_billing.invoices i
       SET status = 'paid', amount_paid = p.amount,
           paid_at = COALESCE(tc.now_at, v_clock), next_attempt_at = NULL,
           status_reason = NULL, updated_at = pg_catalog.now()
      FROM pg_catalog.unnest(_settle_invoices.outcomes) o, toss_billing.payments p,
           toss_billing.subscriptions s LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
     WHERE o.state = 'done' AND p.id = o.payment_id AND i.id = p.invoice_id AND s.id = i.subscription_id
       AND i.kind = 'period' AND i.status <> ALL (ARRAY['paid', 'void']);
    FOR r IN
        SELECT o.state, o.payment_id, o.failure_class, o.reuse_refused, p.hold_reason, p.amount AS order_amount,
               i.id AS invoice_id, i.kind, i.status AS invoice_status, i.total, i.subscription_id, i.customer_id,
               s.status AS sub_status, COALESCE(fc.dunning, 'stop') AS rule
          FROM pg_catalog.unnest(_settle_invoices.outcomes) o
          JOIN toss_billing.payments p ON p.id = o.payment_id
          JOIN toss_billing.invoices i ON i.id = p.invoice_id
          JOIN toss_billing.subscriptions s ON s.id = i.subscription_id
          LEFT JOIN toss_billing.failure_classes fc ON fc.class = o.failure_class
         WHERE o.state = ANY (ARRAY['done', 'failed'])
           AND NOT (o.state = 'done' AND i.status = 'paid')
         ORDER BY i.id
    LOOP
        v_now := toss_billing.subscription_now(r.subscription_id);
        IF r.state = 'done' THEN
            CONTINUE WHEN r.invoice_status = 'paid';
            UPDATE toss_billing.invoices i
               SET status = 'paid', amount_paid = r.order_amount, paid_at = v_now, next_attempt_at = NULL,
                   status_reason = CASE WHEN r.invoice_status = 'void'
                                        THEN 'paid after it was voided: toss approved its charge' END,
                   updated_at = pg_catalog.now()
             WHERE i.id = r.invoice_id;
            IF r.kind <> 'period' OR r.invoice_status = 'void' THEN
                PERFORM toss_billing._event(r.subscription_id,
                                            CASE WHEN r.invoice_status = 'void' THEN 'alert' ELSE 'invoice_paid' END,
                                            r.sub_status, r.sub_status,
                                            CASE WHEN r.invoice_status = 'void'
                                                 THEN 'a voided invoice was paid: toss approved its charge'
                                                 ELSE 'invoice paid' END,
                                            v_now,
                                            pg_catalog.jsonb_build_object('invoice_id', r.invoice_id, 'kind', r.kind,
                                                                          'amount', r.order_amount),
                                            r.payment_id);
            END IF;
            CONTINUE;
        END IF;
        CONTINUE WHEN r.invoice_status <> ALL (ARRAY['open', 'uncollectible']);
        IF r.kind = 'period' THEN
            IF r.sub_status = 'unpaid' AND r.invoice_status = 'open' THEN
                UPDATE toss_billing.invoices i
                   SET status = 'uncollectible', uncollectible_at = v_now,
                       status_reason = 'dunning exhausted: the subscription is unpaid', updated_at = pg_catalog.now()
                 WHERE i.id = r.invoice_id;
                PERFORM toss_billing._event(r.subscription_id, 'invoice_uncollectible', r.sub_status, r.sub_status,
                                            'dunning exhausted', v_now,
                                            pg_catalog.jsonb_build_object('invoice_id', r.invoice_id), r.payment_id);
            ELSIF r.sub_status = 'canceled' THEN
                v_closed := v_closed || r.subscription_id;
            END IF;
            CONTINUE;
        END IF;
        -- an invoice of its own order
        SELECT pg_catalog.count(*) INTO v_transient FROM toss_billing.attempts a
         WHERE a.payment_id = r.payment_id AND a.state = 'failed' AND a.failure_class = 'transient';
        IF r.reuse_refused THEN
            UPDATE toss_billing.invoices i SET next_attempt_at = v_now, updated_at = pg_catalog.now() WHERE i.id = r.invoice_id;
        ELSIF r.hold_reason IS NOT NULL THEN
            UPDATE toss_billing.invoices i SET next_attempt_at = NULL, updated_at = pg_catalog.now(),
                   status_reason = 'held: an answer from toss did not match the order'
             WHERE i.id = r.invoice_id;
        ELSIF r.rule = 'retry' AND v_transient <= v_policy.transient_limit THEN
            UPDATE toss_billing.invoices i
               SET next_attempt_at = v_now + v_policy.transient_retry * pg_catalog.power(2, GREATEST(v_transient - 1, 0)),
                   updated_at = pg_catalog.now()
             WHERE i.id = r.invoice_id;
        ELSE
            UPDATE toss_billing.invoices i
               SET status = CASE WHEN r.sub_status = 'canceled' THEN 'uncollectible' ELSE 'void' END,
                   carried_forward = CASE WHEN r.sub_status = 'canceled' THEN i.carried_forward ELSE i.total END,
                   amount_due = CASE WHEN r.sub_status = 'canceled' THEN i.amount_due ELSE 0 END,
                   tax_free_amount = CASE WHEN r.sub_status = 'canceled' THEN i.tax_free_amount ELSE 0 END,
                   voided_at = CASE WHEN r.sub_status <> 'canceled' THEN v_now END,
                   uncollectible_at = CASE WHEN r.sub_status = 'canceled' THEN v_now END,
                   next_attempt_at = NULL,
                   status_reason = CASE WHEN r.sub_status = 'canceled'
                                        THEN pg_catalog.format('its charge failed (%s) and the subscription is canceled',
                                                               COALESCE(r.failure_class, 'failure'))
                                        ELSE pg_catalog.format('its charge failed (%s): the amount is carried to the next invoice',
                                                               COALESCE(r.failure_class, 'failure')) END,
                   updated_at = pg_catalog.now()
             WHERE i.id = r.invoice_id;
            PERFORM toss_billing._event(r.subscription_id,
                                        CASE WHEN r.sub_status = 'canceled' THEN 'invoice_uncollectible' ELSE 'invoice_voided' END,
                                        r.sub_status, r.sub_status,
                                        CASE WHEN r.sub_status = 'canceled' THEN 'its charge failed'
                                             ELSE 'its charge failed: the amount is carried to the next invoice' END,
                                        v_now,
                                        pg_catalog.jsonb_build_object('invoice_id', r.invoice_id, 'total', r.total,
                                                                      'failure_class', r.failure_class),
                                        r.payment_id);
        END IF;
    END LOOP;
    IF v_closed IS NOT NULL THEN
        PERFORM toss_billing._close_invoices(v_closed, 'the subscription was canceled');
    END IF;
END;
$$;

REVOKE ALL ON TYPE toss_billing._outcome FROM PUBLIC;
GRANT SELECT ON toss_billing.dunning_policy TO toss_billing_operator, toss_billing_auditor;
