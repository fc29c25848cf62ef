\echo Use "ALTER EXTENSION toss_billing UPDATE" to load this file. \quit
-- toss_billing 0.2.0 -> 0.3.0: exactly once under crashes.  The SQL half of
-- recovery (in-flight attempts that lost their caller become unknown and are
-- resolved by order id), refunds (toss_cancel), billing key deletion
-- (toss_delete_billing_key), webhooks (ingest_webhook) and reconciliation
-- with Toss's transactions (reconcile), plus the declarations of the C
-- functions that call Toss for them.
--
-- Style as in 0.2.0: everything is schema-qualified; table definitions,
-- indexes and defaults spell operators as OPERATOR(pg_catalog.x); function
-- bodies run with an empty search_path.  Nothing is granted to PUBLIC.  Recovery
-- works on real time (pg_catalog.now(): updated_at, server start), never on
-- the billing clock; subscription events keep using the subscription's clock.

-- ---------------------------------------------------------------- who is calling

-- The start time of the current backend.  Together with its pid it names the
-- process that wrote an in-flight row, so that a row whose process is gone
-- (a killed worker, a crash restart) is known to have lost its caller.
CREATE FUNCTION toss_billing._backend_start()
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.backend_start FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a;
$$;

-- ---------------------------------------------------------------- the ledger

-- resolve_attempts / next_resolve_at: the resolver's backoff for an unknown
-- attempt.  recovered: a payment Toss has that the ledger lacked, inserted
-- by reconcile; it has no billing key (and no customer when Toss's
-- customerKey is not one of ours).  caller_pid / caller_started_at: the
-- process that wrote the row (defaults, so every writer records itself).
-- Existing rows get no caller: only the restart and age rules apply to them.
ALTER TABLE toss_billing.payments
    ADD COLUMN resolve_attempts integer NOT NULL DEFAULT 0
        CHECK (resolve_attempts OPERATOR(pg_catalog.>=) 0),
    ADD COLUMN next_resolve_at timestamptz,
    ADD COLUMN recovered boolean NOT NULL DEFAULT false,
    ADD COLUMN caller_pid integer,
    ADD COLUMN caller_started_at timestamptz,
    ALTER COLUMN billing_key_id DROP NOT NULL,
    ALTER COLUMN customer_id DROP NOT NULL,
    ADD CONSTRAINT payments_billing_key_or_recovered CHECK (billing_key_id IS NOT NULL OR recovered),
    ADD CONSTRAINT payments_customer_or_recovered CHECK (customer_id IS NOT NULL OR recovered);
ALTER TABLE toss_billing.payments
    ALTER COLUMN caller_pid SET DEFAULT pg_catalog.pg_backend_pid(),
    ALTER COLUMN caller_started_at SET DEFAULT toss_billing._backend_start();
-- cheap when there is nothing to do: both cover only the rows they look for
CREATE INDEX payments_in_flight ON toss_billing.payments (updated_at)
    WHERE state OPERATOR(pg_catalog.=) 'in_flight';
CREATE INDEX payments_unknown ON toss_billing.payments (created_at, id)
    WHERE state OPERATOR(pg_catalog.=) 'unknown' AND NOT recovered;
CREATE INDEX payments_payment_key ON toss_billing.payments (payment_key)
    WHERE payment_key IS NOT NULL;
CREATE INDEX payments_approved_at ON toss_billing.payments (approved_at)
    WHERE state OPERATOR(pg_catalog.=) 'done';

-- New event types: refunds, payments recovered from Toss, billing key deletion.
ALTER TABLE toss_billing.events DROP CONSTRAINT events_type_check;
ALTER TABLE toss_billing.events ADD CONSTRAINT events_type_check
    CHECK (type OPERATOR(pg_catalog.=) ANY (ARRAY['created', 'status_changed', 'payment_succeeded',
                                                  'payment_failed', 'payment_unknown', 'plan_change_scheduled',
                                                  'plan_changed', 'cancel_scheduled', 'retry_scheduled', 'alert',
                                                  'payment_refunded', 'payment_recovered', 'billing_key_deleted']));

-- ---------------------------------------------------------------- billing keys

-- key_hash: a keyed hash of the billing key (written by C at issuance, and
-- by _backfill_key_hashes for keys issued before 0.3.0), to find a key named
-- by a BILLING_DELETED webhook without storing it in the clear.
ALTER TABLE toss_billing.billing_keys
    ADD COLUMN key_hash bytea,
    ADD COLUMN deleted_at timestamptz,
    ADD COLUMN deleted_reason text;
CREATE UNIQUE INDEX billing_keys_key_hash ON toss_billing.billing_keys (key_hash)
    WHERE key_hash IS NOT NULL;
CREATE INDEX billing_keys_unhashed ON toss_billing.billing_keys (id)
    WHERE key_hash IS NULL AND status OPERATOR(pg_catalog.=) ANY (ARRAY['active', 'replaced']);

CREATE OR REPLACE VIEW toss_billing.billing_key_info AS
SELECT bk.id, c.customer_key, bk.merchant, bk.status, bk.mid, bk.method,
       bk.card_company, bk.card_issuer_code, bk.card_acquirer_code,
       bk.card_number, bk.card_type, bk.card_owner_type,
       bk.authenticated_at, bk.failure_code, bk.failure_message,
       bk.created_at, bk.updated_at, bk.deleted_at, bk.deleted_reason
  FROM toss_billing.billing_keys bk
  JOIN toss_billing.customers c ON c.id OPERATOR(pg_catalog.=) bk.customer_id;

-- ---------------------------------------------------------------- refunds

-- One row per cancel (refund) of a payment.  A toss_cancel call writes its
-- row in_flight with a fresh Idempotency-Key before calling Toss.  A cancel
-- made outside toss_cancel (Toss's console, another system) is recorded
-- from Toss's Payment when a webhook or reconcile shows it: it has no
-- idempotency key and no requested_by.  requested_amount NULL = the whole
-- remaining balance.
CREATE TABLE toss_billing.cancels (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id        bigint NOT NULL REFERENCES toss_billing.payments (id),
    idempotency_key   text UNIQUE,
    requested_amount  bigint CHECK (requested_amount OPERATOR(pg_catalog.>) 0),
    reason            text NOT NULL
                      CHECK (pg_catalog.char_length(reason) OPERATOR(pg_catalog.>=) 1
                             AND pg_catalog.char_length(reason) OPERATOR(pg_catalog.<=) 200),
    state             text NOT NULL DEFAULT 'in_flight'
                      CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY['in_flight', 'done', 'failed', 'unknown'])),
    requested_by      name,
    transaction_key   text,
    canceled_amount   bigint CHECK (canceled_amount OPERATOR(pg_catalog.>=) 0),
    canceled_at       timestamptz,
    failure_class     text,
    failure_code      text,
    failure_message   text,
    http_status       integer,
    response          jsonb,
    caller_pid        integer DEFAULT pg_catalog.pg_backend_pid(),
    caller_started_at timestamptz DEFAULT toss_billing._backend_start(),
    resolve_attempts  integer NOT NULL DEFAULT 0,
    next_resolve_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT cancels_outside_toss_cancel_done CHECK (idempotency_key IS NOT NULL OR state OPERATOR(pg_catalog.=) 'done')
);
CREATE INDEX cancels_payment ON toss_billing.cancels (payment_id);
CREATE UNIQUE INDEX cancels_transaction_key ON toss_billing.cancels (transaction_key)
    WHERE transaction_key IS NOT NULL;
CREATE INDEX cancels_open ON toss_billing.cancels (updated_at)
    WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['in_flight', 'unknown']);

-- ---------------------------------------------------------------- webhooks

-- Every webhook delivery Toss made, once: a retry (same transmission id, or
-- the same event) finds its first delivery by dedupe_key.  Only Toss's own
-- headers (tosspayments-*) are kept; a billing key in a payload is redacted.
CREATE TABLE toss_billing.webhook_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedupe_key   text NOT NULL UNIQUE,
    event_type   text,
    payload      jsonb NOT NULL,
    headers      jsonb,
    received_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    processed_at timestamptz,
    outcome      text
);
CREATE INDEX webhook_events_received_at ON toss_billing.webhook_events (received_at);

-- ---------------------------------------------------------------- reconciliation

-- What reconcile (or a webhook) found where the ledger and Toss disagree.
-- At most one open row per (order_id, kind): running again adds nothing.
CREATE TABLE toss_billing.discrepancies (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detected_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    kind          text NOT NULL
                  CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['missing_in_ledger', 'state_mismatch', 'amount_mismatch',
                                                                'payment_key_mismatch', 'missing_at_toss', 'cancel_missing',
                                                                'cancel_amount_mismatch', 'duplicate_charge'])),
    order_id      text NOT NULL,
    payment_key   text,
    ledger_state  text,
    toss_status   text,
    ledger_amount bigint,
    toss_amount   bigint,
    detail        jsonb,
    resolved_at   timestamptz
);
CREATE UNIQUE INDEX discrepancies_one_open ON toss_billing.discrepancies (order_id, kind)
    WHERE resolved_at IS NULL;
CREATE INDEX discrepancies_detected_at ON toss_billing.discrepancies (detected_at);

CREATE VIEW toss_billing.open_discrepancies AS
SELECT d.id, d.detected_at, d.kind, d.order_id, d.payment_key, d.ledger_state, d.toss_status,
       d.ledger_amount, d.toss_amount, d.detail
  FROM toss_billing.discrepancies d
 WHERE d.resolved_at IS NULL;

-- Opens a discrepancy unless one of that kind is already open for the
-- order; returns whether it opened one.
CREATE FUNCTION toss_billing._open_discrepancy(
    kind text,
    order_id text,
    payment_key text,
    ledger_state text,
    toss_status text,
    ledger_amount bigint,
    toss_amount bigint,
    detail jsonb)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO toss_billing.discrepancies AS d (kind, order_id, payment_key, ledger_state, toss_status, ledger_amount,
                                                 toss_amount, detail)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (order_id, kind) WHERE resolved_at IS NULL DO NOTHING;
    RETURN FOUND;
END;
$$;

-- ---------------------------------------------------------------- recovery

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
CREATE FUNCTION toss_billing._mark_stale(stale_after interval)
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
CREATE FUNCTION toss_billing._claim_unknown(max_count integer)
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

-- Makes past_due and unpaid subscriptions due again with a fresh dunning
-- schedule (unpaid ones become past_due again); returns how many.  As in
-- 0.2.0, except that an open period that has not started yet (a
-- subscription that went past_due because its billing key was deleted) is
-- charged at its start, not early.
CREATE OR REPLACE FUNCTION toss_billing._retry_now(subscription_ids bigint[], reason text)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.now();
    v_count integer;
BEGIN
    WITH due AS (
        SELECT s.id, s.status AS from_status,
               GREATEST(COALESCE(tc.now_at, v_now), s.current_period_start) AS charge_at,
               COALESCE(tc.now_at, v_now) AS now_at
          FROM toss_billing.subscriptions s
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE s.id = ANY (_retry_now.subscription_ids)
           AND s.status = ANY (ARRAY['past_due', 'unpaid'])
         ORDER BY s.id
           FOR UPDATE OF s),
    changed AS (
        UPDATE toss_billing.subscriptions s
           SET status = 'past_due', next_charge_at = d.charge_at, dunning_attempt = 0, dunning_started_at = NULL,
               updated_at = pg_catalog.now()
          FROM due d
         WHERE s.id = d.id
        RETURNING s.id, d.from_status, d.now_at, d.charge_at),
    logged AS (
        INSERT INTO toss_billing.events (occurred_at, subscription_id, type, from_status, to_status, reason, detail)
        SELECT c.now_at, c.id, 'status_changed', c.from_status, 'past_due', _retry_now.reason, NULL
          FROM changed c WHERE c.from_status <> 'past_due'
        UNION ALL
        SELECT c.now_at, c.id, 'retry_scheduled', 'past_due', 'past_due', _retry_now.reason,
               pg_catalog.jsonb_build_object('next_charge_at', c.charge_at)
          FROM changed c
        RETURNING id)
    SELECT pg_catalog.count(*) INTO v_count FROM changed;
    RETURN v_count;
END;
$$;

-- ---------------------------------------------------------------- refunds

-- A payment row takes Toss's latest Payment: status, balance, amounts and
-- the response.  A Payment older than what the row holds (a larger
-- balance: a card payment's balance only goes down) is not applied.
CREATE FUNCTION toss_billing._store_payment_state(payment_id bigint, payment jsonb)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE toss_billing.payments p
       SET toss_status = COALESCE(_store_payment_state.payment->>'status', p.toss_status),
           payment_key = COALESCE(p.payment_key, _store_payment_state.payment->>'paymentKey'),
           total_amount = COALESCE(p.total_amount, (_store_payment_state.payment->>'totalAmount')::bigint),
           balance_amount = COALESCE((_store_payment_state.payment->>'balanceAmount')::bigint, p.balance_amount),
           supplied_amount = COALESCE((_store_payment_state.payment->>'suppliedAmount')::bigint, p.supplied_amount),
           vat = COALESCE((_store_payment_state.payment->>'vat')::bigint, p.vat),
           approved_at = COALESCE(p.approved_at, (_store_payment_state.payment->>'approvedAt')::timestamptz),
           response = _store_payment_state.payment,
           updated_at = pg_catalog.now()
     WHERE p.id = _store_payment_state.payment_id
       AND (p.balance_amount IS NULL OR (_store_payment_state.payment->>'balanceAmount') IS NULL
            OR (_store_payment_state.payment->>'balanceAmount')::bigint <= p.balance_amount);
    RETURN FOUND;
END;
$$;

-- payment_refunded events for the given (done) cancels of subscription
-- payments; a balance of 0 is a full refund whether Toss's status is
-- CANCELED or PARTIAL_CANCELED.
CREATE FUNCTION toss_billing._refund_events(cancel_ids bigint[])
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO toss_billing.events (occurred_at, subscription_id, payment_id, type, from_status, to_status,
                                     reason, detail)
    SELECT COALESCE(tc.now_at, toss_billing.now()), s.id, p.id, 'payment_refunded', s.status, s.status,
           CASE WHEN p.balance_amount = 0 THEN 'payment fully refunded' ELSE 'payment partially refunded' END,
           pg_catalog.jsonb_build_object('cancel_id', c.id, 'period_number', p.period_number,
                                         'amount', c.canceled_amount, 'balance_amount', p.balance_amount,
                                         'fully_refunded', p.balance_amount = 0, 'toss_status', p.toss_status,
                                         'reason', c.reason, 'outside_toss_billing', c.idempotency_key IS NULL)
      FROM toss_billing.cancels c
      JOIN toss_billing.payments p ON p.id = c.payment_id
      JOIN toss_billing.subscriptions s ON s.id = p.subscription_id
      LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
     WHERE c.id = ANY ($1) AND c.state = 'done'
     ORDER BY c.id;
$$;

-- Records the cancels in a Payment's cancels[] that the ledger lacks
-- (cancelStatus DONE, by transactionKey).  An open cancel of ours waiting
-- for its outcome takes the entry that fits it (the same amount; for a full
-- cancel, an entry that left no balance); any other entry is a cancel made
-- outside toss_cancel and gets a row of its own.  Call it after the payment
-- row took the Payment.  Returns how many cancels it recorded.
CREATE FUNCTION toss_billing._sync_cancels(payment_id bigint, payment jsonb)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e record;
    v_open bigint;
    v_id bigint;
    v_ids bigint[] := '{}';
BEGIN
    PERFORM FROM toss_billing.payments p WHERE p.id = _sync_cancels.payment_id FOR UPDATE;
    IF pg_catalog.jsonb_typeof(_sync_cancels.payment->'cancels') IS DISTINCT FROM 'array' THEN
        RETURN 0;
    END IF;
    FOR e IN
        SELECT x.value->>'transactionKey' AS transaction_key,
               pg_catalog.abs((x.value->>'cancelAmount')::bigint) AS amount,
               (x.value->>'refundableAmount')::bigint AS refundable,
               (x.value->>'canceledAt')::timestamptz AS canceled_at,
               x.value->>'cancelReason' AS reason
          FROM pg_catalog.jsonb_array_elements(_sync_cancels.payment->'cancels') WITH ORDINALITY AS x(value, n)
         WHERE COALESCE(x.value->>'cancelStatus', 'DONE') = 'DONE' AND x.value->>'transactionKey' IS NOT NULL
         ORDER BY x.n
    LOOP
        IF EXISTS (SELECT FROM toss_billing.cancels c WHERE c.transaction_key = e.transaction_key) THEN
            CONTINUE;
        END IF;
        SELECT c.id INTO v_open
          FROM toss_billing.cancels c
         WHERE c.payment_id = _sync_cancels.payment_id AND c.state = ANY (ARRAY['in_flight', 'unknown'])
           AND (c.requested_amount = e.amount OR (c.requested_amount IS NULL AND COALESCE(e.refundable, 0) = 0))
         ORDER BY c.requested_amount IS NULL, c.id
         LIMIT 1
           FOR UPDATE;
        IF FOUND THEN
            UPDATE toss_billing.cancels c
               SET state = 'done', transaction_key = e.transaction_key, canceled_amount = e.amount,
                   canceled_at = e.canceled_at, failure_class = NULL, failure_code = NULL, failure_message = NULL,
                   response = _sync_cancels.payment, updated_at = pg_catalog.now()
             WHERE c.id = v_open;
            v_id := v_open;
        ELSE
            INSERT INTO toss_billing.cancels (payment_id, idempotency_key, requested_amount, reason, state,
                                              requested_by, transaction_key, canceled_amount, canceled_at, response,
                                              caller_pid, caller_started_at)
            VALUES (_sync_cancels.payment_id, NULL, NULLIF(e.amount, 0),
                    pg_catalog.left(COALESCE(NULLIF(e.reason, ''), 'canceled outside toss_billing'), 200), 'done',
                    NULL, e.transaction_key, e.amount, e.canceled_at, _sync_cancels.payment, NULL, NULL)
            RETURNING id INTO v_id;
        END IF;
        v_ids := v_ids || v_id;
    END LOOP;
    PERFORM toss_billing._refund_events(v_ids);
    RETURN pg_catalog.cardinality(v_ids);
END;
$$;

-- The first half of toss_cancel: checks the cancel and records it in_flight,
-- before anything is sent.  payment is a payment key or an order id; the
-- payment must be done.  amount NULL cancels the whole remaining balance.
-- The payment row is locked, so concurrent cancels are counted one after
-- the other: a cancel may take at most the balance minus what cancels in
-- flight or unknown already hold (an open full cancel holds all of it).
-- With such cancels open, a full cancel is sent as a cancel of what they
-- leave.  Returns the row's id, the payment key and merchant to call, the
-- Idempotency-Key, and the amount to send (NULL: a full cancel).  The C
-- worker commits this before calling Toss.
CREATE FUNCTION toss_billing._cancel_intent(payment text, reason text, amount bigint, requested_by name)
RETURNS TABLE(cancel_id bigint, payment_key text, idempotency_key text, merchant text, cancel_amount bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_p toss_billing.payments;
    v_balance bigint;
    v_held bigint;
    v_full_open boolean;
    v_left bigint;
    v_send bigint;
    v_id bigint;
    v_key text := pg_catalog.gen_random_uuid()::text;
BEGIN
    IF _cancel_intent.payment IS NULL THEN
        RAISE EXCEPTION 'payment must not be null' USING ERRCODE = '22004',
            HINT = 'Pass the payment key or the order id of the payment to cancel.';
    END IF;
    IF _cancel_intent.reason IS NULL THEN
        RAISE EXCEPTION 'reason must not be null' USING ERRCODE = '22004',
            DETAIL = 'Toss requires a cancel reason.';
    END IF;
    IF pg_catalog.char_length(_cancel_intent.reason) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'reason must be 1 to 200 characters' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('Toss takes a cancel reason of at most 200 characters; this one has %s.',
                                       pg_catalog.char_length(_cancel_intent.reason));
    END IF;
    IF _cancel_intent.amount <= 0 THEN
        RAISE EXCEPTION 'cancel amount must be positive' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('The amount is %s KRW.', _cancel_intent.amount),
            HINT = 'Give a positive amount in KRW, or NULL to cancel the whole remaining balance.';
    END IF;

    SELECT * INTO v_p FROM toss_billing.payments p WHERE p.payment_key = _cancel_intent.payment FOR UPDATE;
    IF NOT FOUND THEN
        SELECT * INTO v_p FROM toss_billing.payments p WHERE p.order_id = _cancel_intent.payment FOR UPDATE;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payment "%" is not in the ledger', _cancel_intent.payment USING ERRCODE = 'TB004',
            DETAIL = 'No row of toss_billing.payments has this payment key or order id.';
    END IF;
    IF v_p.state <> 'done' OR v_p.payment_key IS NULL THEN
        RAISE EXCEPTION 'payment "%" is not done', _cancel_intent.payment USING ERRCODE = '55000',
            DETAIL = pg_catalog.format('Only a completed payment can be canceled; the payment with order id %s is %s.',
                                       v_p.order_id, v_p.state),
            HINT = CASE WHEN v_p.state = ANY (ARRAY['pending', 'in_flight', 'unknown'])
                        THEN 'Wait until its outcome is known: the runner resolves it by order id.'
                        ELSE 'A failed attempt charged nothing, so there is nothing to refund.' END;
    END IF;

    v_balance := COALESCE(v_p.balance_amount, v_p.total_amount, v_p.amount);
    SELECT COALESCE(pg_catalog.sum(c.requested_amount), 0), COALESCE(pg_catalog.bool_or(c.requested_amount IS NULL), false)
      INTO v_held, v_full_open
      FROM toss_billing.cancels c
     WHERE c.payment_id = v_p.id AND c.state = ANY (ARRAY['in_flight', 'unknown']);
    v_left := CASE WHEN v_full_open THEN 0 ELSE GREATEST(v_balance - v_held, 0) END;

    IF v_balance <= 0 AND v_held = 0 AND NOT v_full_open THEN
        RAISE EXCEPTION 'payment "%" is fully refunded', _cancel_intent.payment USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('Its balance is 0 KRW (Toss status %s); nothing is left to cancel.',
                                       COALESCE(v_p.toss_status, 'unknown'));
    END IF;
    IF v_left <= 0 OR _cancel_intent.amount > v_left THEN
        RAISE EXCEPTION 'cancel amount exceeds the refundable balance' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('The payment has %s KRW left to cancel: a balance of %s KRW, of which %s is held by cancels in flight or unknown; %s was asked.',
                                       v_left, v_balance,
                                       CASE WHEN v_full_open THEN 'all' ELSE v_held::text || ' KRW' END,
                                       COALESCE(_cancel_intent.amount::text || ' KRW', 'the whole balance')),
            HINT = 'Cancel at most the amount left; a cancel whose outcome is unknown holds its amount until it is settled.';
    END IF;

    v_send := CASE WHEN _cancel_intent.amount IS NOT NULL THEN _cancel_intent.amount
                   WHEN v_held > 0 THEN v_left END;
    INSERT INTO toss_billing.cancels (payment_id, idempotency_key, requested_amount, reason, state, requested_by)
    VALUES (v_p.id, v_key, v_send, _cancel_intent.reason, 'in_flight',
            COALESCE(_cancel_intent.requested_by, CURRENT_USER))
    RETURNING id INTO v_id;
    RETURN QUERY SELECT v_id, v_p.payment_key, v_key, v_p.merchant, v_send;
END;
$$;

-- The second half of toss_cancel: records what Toss answered.  response is
-- the Payment Toss returns after the cancel.  done: the cancel takes its
-- entry of the Payment's cancels[] (the last one not recorded yet that fits
-- its amount) and the payment row takes the Payment (status, balance,
-- response); other entries the ledger lacks are recorded too; subscription
-- payments get a payment_refunded event.  failed / unknown: recorded as
-- they are; an unknown cancel keeps holding its amount until a webhook or
-- reconcile shows what Toss did.  Only cancels still in flight or unknown
-- are touched, so recording an outcome twice changes nothing.
CREATE FUNCTION toss_billing._cancel_outcome(
    cancel_id bigint,
    state text,
    http_status integer,
    failure_class text,
    failure_code text,
    failure_message text,
    response jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_c toss_billing.cancels;
    v_entry jsonb;
BEGIN
    IF _cancel_outcome.state IS NULL OR _cancel_outcome.state <> ALL (ARRAY['done', 'failed', 'unknown']) THEN
        RAISE EXCEPTION 'a cancel outcome state must be done, failed or unknown' USING ERRCODE = '22023';
    END IF;
    -- the payment row first, as every path that records cancels locks it
    PERFORM FROM toss_billing.payments p
     WHERE p.id = (SELECT c.payment_id FROM toss_billing.cancels c WHERE c.id = _cancel_outcome.cancel_id)
       FOR UPDATE;
    SELECT * INTO v_c FROM toss_billing.cancels c WHERE c.id = _cancel_outcome.cancel_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cancel % does not exist', _cancel_outcome.cancel_id USING ERRCODE = 'P0002';
    END IF;
    IF v_c.state <> ALL (ARRAY['in_flight', 'unknown']) THEN
        RETURN;
    END IF;

    IF _cancel_outcome.state = 'done' THEN
        IF pg_catalog.jsonb_typeof(_cancel_outcome.response->'cancels') = 'array' THEN
            SELECT x.value INTO v_entry
              FROM pg_catalog.jsonb_array_elements(_cancel_outcome.response->'cancels') WITH ORDINALITY AS x(value, n)
             WHERE COALESCE(x.value->>'cancelStatus', 'DONE') = 'DONE'
               AND NOT EXISTS (SELECT FROM toss_billing.cancels o
                                WHERE o.transaction_key = x.value->>'transactionKey' AND o.id <> v_c.id)
             ORDER BY (v_c.requested_amount IS NULL
                       OR pg_catalog.abs((x.value->>'cancelAmount')::bigint) = v_c.requested_amount) DESC,
                      x.n DESC
             LIMIT 1;
        END IF;
        UPDATE toss_billing.cancels c
           SET state = 'done', http_status = NULLIF(_cancel_outcome.http_status, 0),
               failure_class = NULL, failure_code = NULL, failure_message = NULL,
               transaction_key = v_entry->>'transactionKey',
               canceled_amount = COALESCE(pg_catalog.abs((v_entry->>'cancelAmount')::bigint), c.requested_amount),
               canceled_at = COALESCE((v_entry->>'canceledAt')::timestamptz, pg_catalog.now()),
               response = _cancel_outcome.response, updated_at = pg_catalog.now()
         WHERE c.id = v_c.id;
        IF _cancel_outcome.response IS NOT NULL THEN
            PERFORM toss_billing._store_payment_state(v_c.payment_id, _cancel_outcome.response);
            PERFORM toss_billing._sync_cancels(v_c.payment_id, _cancel_outcome.response);
        END IF;
        PERFORM toss_billing._refund_events(ARRAY[v_c.id]);
    ELSE
        UPDATE toss_billing.cancels c
           SET state = _cancel_outcome.state, http_status = NULLIF(_cancel_outcome.http_status, 0),
               failure_class = _cancel_outcome.failure_class,
               failure_code = COALESCE(_cancel_outcome.failure_code, _cancel_outcome.response->>'code'),
               failure_message = COALESCE(_cancel_outcome.failure_message, _cancel_outcome.response->>'message'),
               response = _cancel_outcome.response, updated_at = pg_catalog.now()
         WHERE c.id = v_c.id;
    END IF;
END;
$$;

-- Cancels (refunds) a payment by payment key or order id: all of its
-- remaining balance, or amount KRW.  See the README.
CREATE FUNCTION toss_billing.toss_cancel(payment text, reason text, amount bigint DEFAULT NULL)
RETURNS toss_billing.payment
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'toss_cancel';

-- ---------------------------------------------------------------- billing key deletion

-- The first half of toss_delete_billing_key: the customer's active key, to
-- DELETE at Toss.  The key row stays locked until the caller commits.
CREATE FUNCTION toss_billing._delete_intent(customer_key text)
RETURNS TABLE(billing_key_id bigint, merchant text, encrypted_key bytea)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_customer_id bigint;
BEGIN
    IF _delete_intent.customer_key IS NULL THEN
        RAISE EXCEPTION 'customer_key must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT c.id INTO v_customer_id FROM toss_billing.customers c WHERE c.customer_key = _delete_intent.customer_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown customer "%"', _delete_intent.customer_key USING ERRCODE = 'TB004',
            DETAIL = 'No row of toss_billing.customers has this customer_key.';
    END IF;
    RETURN QUERY
    SELECT bk.id, bk.merchant, bk.encrypted_key
      FROM toss_billing.billing_keys bk
     WHERE bk.customer_id = v_customer_id AND bk.status = 'active'
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'customer "%" has no active billing key', _delete_intent.customer_key USING ERRCODE = '42704',
            HINT = 'Its billing keys are already deleted or replaced; toss_billing.billing_key_info lists them.';
    END IF;
END;
$$;

-- Marks a billing key deleted (by toss_delete_billing_key, or by Toss or the
-- card company as a BILLING_DELETED webhook says).  If the customer is left
-- without an active key, each of its active and past_due subscriptions goes
-- past_due with nothing scheduled (next_charge_at NULL), and each of its
-- subscriptions that is not canceled gets a billing_key_deleted event whose
-- reason says why; card_replaced() after a new key makes them due again.
-- Trialing, paused and unpaid subscriptions keep their status (they charge
-- nothing now; a due subscription without an active key waits).  A key
-- that is already deleted changes nothing.
CREATE FUNCTION toss_billing._billing_key_deleted(billing_key_id bigint, reason text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key toss_billing.billing_keys;
    v_reason text := pg_catalog.format('billing key deleted: %s',
                                       COALESCE(NULLIF(_billing_key_deleted.reason, ''), 'no reason given'));
    v_now timestamptz := toss_billing.now();
BEGIN
    IF _billing_key_deleted.billing_key_id IS NULL THEN
        RAISE EXCEPTION 'billing_key_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO v_key FROM toss_billing.billing_keys bk WHERE bk.id = _billing_key_deleted.billing_key_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'billing key % does not exist', _billing_key_deleted.billing_key_id USING ERRCODE = 'P0002';
    END IF;
    IF v_key.status = 'deleted' THEN
        RETURN;
    END IF;
    UPDATE toss_billing.billing_keys bk
       SET status = 'deleted', deleted_at = pg_catalog.now(), deleted_reason = _billing_key_deleted.reason,
           updated_at = pg_catalog.now()
     WHERE bk.id = v_key.id;
    IF EXISTS (SELECT FROM toss_billing.billing_keys bk
                WHERE bk.customer_id = v_key.customer_id AND bk.status = 'active') THEN
        RETURN;
    END IF;

    WITH affected AS (
        SELECT s.id, s.status AS from_status, s.next_charge_at, COALESCE(tc.now_at, v_now) AS now_at,
               CASE WHEN s.status = ANY (ARRAY['active', 'past_due']) THEN 'past_due' ELSE s.status END AS to_status
          FROM toss_billing.subscriptions s
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE s.customer_id = v_key.customer_id AND s.status <> 'canceled'
         ORDER BY s.id
           FOR UPDATE OF s),
    changed AS (
        UPDATE toss_billing.subscriptions s
           SET status = 'past_due', next_charge_at = NULL, updated_at = pg_catalog.now()
          FROM affected a
         WHERE s.id = a.id AND a.to_status = 'past_due'
        RETURNING s.id)
    INSERT INTO toss_billing.events (occurred_at, subscription_id, type, from_status, to_status, reason, detail)
    SELECT e.occurred_at, e.subscription_id, e.type, e.from_status, e.to_status, e.reason, e.detail
      FROM (
        SELECT a.now_at, a.id, 'billing_key_deleted', a.from_status, a.to_status, v_reason,
               pg_catalog.jsonb_build_object('billing_key_id', v_key.id, 'deleted_reason', _billing_key_deleted.reason,
                                             'next_charge_at_was', a.next_charge_at,
                                             'hint', 'Issue a new billing key, then call toss_billing.card_replaced().'),
               1 AS k
          FROM affected a
        UNION ALL
        SELECT a.now_at, a.id, 'status_changed', a.from_status, a.to_status, v_reason, NULL, 2
          FROM affected a WHERE a.to_status <> a.from_status
        ) AS e(occurred_at, subscription_id, type, from_status, to_status, reason, detail, k)
     ORDER BY e.subscription_id, e.k;
END;
$$;

-- Deletes the customer's active billing key at Toss and marks it deleted.
-- See the README.
CREATE FUNCTION toss_billing.toss_delete_billing_key(customer_key text)
RETURNS toss_billing.billing_key_info
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'toss_delete_billing_key';

-- ---------------------------------------------------------------- Toss's records (C)

-- GET /v1/payments/{paymentKey} under a merchant's secret key: the Payment.
CREATE FUNCTION toss_billing._fetch_payment(payment_key text, merchant text DEFAULT 'default')
RETURNS jsonb
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'toss_fetch_payment';

-- The keyed hash stored in billing_keys.key_hash.
CREATE FUNCTION toss_billing._billing_key_hash(billing_key text)
RETURNS bytea
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'toss_billing_key_hash';

-- Fills key_hash for keys issued before 0.3.0; returns how many.
CREATE FUNCTION toss_billing._backfill_key_hashes()
RETURNS integer
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'toss_backfill_key_hashes';

-- GET /v1/transactions over a window, every page: one item per approval and
-- one per cancel.
CREATE FUNCTION toss_billing._toss_transactions(start_at timestamptz, end_at timestamptz, merchant text DEFAULT 'default')
RETURNS SETOF jsonb
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'toss_transactions';

-- ---------------------------------------------------------------- Toss's Payment -> the ledger

-- Applies a Payment object Toss returned (never a webhook's payload: the
-- caller fetched it) to the ledger row found by paymentKey or orderId.
-- Returns what it did, as text:
--   applied:   a done row took the status, balance and response, and the
--              cancels it lacked (cancels made outside toss_cancel too);
--              an unknown attempt Toss approved became done (settling its
--              subscription, as _record_outcomes does)
--   conflict:  the ledger and Toss disagree in a way only a person should
--              settle (ledger failed but Toss approved; ledger done but
--              Toss aborted; another payment key): a discrepancy is opened
--   ignored:   not in the ledger, in flight (its caller records it), or a
--              status that changes nothing
CREATE FUNCTION toss_billing._apply_payment_state(payment jsonb)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_pay jsonb := _apply_payment_state.payment;
    v_key text := v_pay->>'paymentKey';
    v_order text := v_pay->>'orderId';
    v_status text := v_pay->>'status';
    v_approved boolean;
    v_p toss_billing.payments;
    v_n integer;
BEGIN
    IF pg_catalog.jsonb_typeof(v_pay) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'payment must be a JSON object' USING ERRCODE = '22023',
            DETAIL = 'Pass the Payment object Toss returned.';
    END IF;
    IF v_key IS NULL AND v_order IS NULL THEN
        RAISE EXCEPTION 'payment has neither paymentKey nor orderId' USING ERRCODE = '22023';
    END IF;
    v_approved := v_status = ANY (ARRAY['DONE', 'CANCELED', 'PARTIAL_CANCELED']);

    SELECT * INTO v_p FROM toss_billing.payments p WHERE p.payment_key = v_key FOR UPDATE;
    IF NOT FOUND THEN
        SELECT * INTO v_p FROM toss_billing.payments p WHERE p.order_id = v_order FOR UPDATE;
    END IF;
    IF NOT FOUND THEN
        RETURN pg_catalog.format('ignored: payment %s (order %s) is not in the ledger', v_key, v_order);
    END IF;
    IF v_p.payment_key IS NOT NULL AND v_key IS DISTINCT FROM v_p.payment_key THEN
        PERFORM toss_billing._open_discrepancy('payment_key_mismatch', v_p.order_id, v_key, v_p.state, v_status,
                                               v_p.amount, (v_pay->>'totalAmount')::bigint,
                                               pg_catalog.jsonb_build_object('ledger_payment_key', v_p.payment_key,
                                                                             'source', 'toss payment'));
        RETURN pg_catalog.format('conflict: order %s has payment key %s in the ledger, %s at toss',
                                 v_p.order_id, v_p.payment_key, v_key);
    END IF;

    IF v_p.state = 'done' AND v_approved THEN
        PERFORM toss_billing._store_payment_state(v_p.id, v_pay);
        v_n := toss_billing._sync_cancels(v_p.id, v_pay);
        SELECT * INTO v_p FROM toss_billing.payments p WHERE p.id = v_p.id;
        RETURN pg_catalog.format('applied: payment %s is %s with a balance of %s KRW%s', v_p.order_id,
                                 v_p.toss_status, v_p.balance_amount,
                                 CASE WHEN v_n > 0 THEN pg_catalog.format('; %s cancel(s) recorded', v_n) ELSE '' END);
    ELSIF v_p.state = 'unknown' AND v_approved THEN
        PERFORM toss_billing._record_outcomes(ARRAY[v_p.id], ARRAY['done'], ARRAY[0], ARRAY[NULL::text],
                                              ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[v_pay]);
        v_n := toss_billing._sync_cancels(v_p.id, v_pay);
        RETURN pg_catalog.format('applied: the unknown attempt %s is done (%s)%s', v_p.order_id, v_status,
                                 CASE WHEN v_n > 0 THEN pg_catalog.format('; %s cancel(s) recorded', v_n) ELSE '' END);
    ELSIF (v_p.state = 'failed' AND v_approved)
          OR (v_p.state = 'done' AND v_status = ANY (ARRAY['ABORTED', 'EXPIRED'])) THEN
        PERFORM toss_billing._open_discrepancy('state_mismatch', v_p.order_id, v_key, v_p.state, v_status,
                                               v_p.amount, (v_pay->>'totalAmount')::bigint,
                                               pg_catalog.jsonb_build_object('source', 'toss payment',
                                                                             'failure_code', v_p.failure_code));
        RETURN pg_catalog.format('conflict: the ledger has %s as %s, toss as %s', v_p.order_id, v_p.state, v_status);
    ELSIF v_p.state = ANY (ARRAY['pending', 'in_flight']) THEN
        RETURN pg_catalog.format('ignored: %s is in flight; its caller records the outcome', v_p.order_id);
    ELSE
        RETURN pg_catalog.format('ignored: toss status %s leaves the %s attempt %s as it is%s', v_status, v_p.state,
                                 v_p.order_id,
                                 CASE WHEN v_p.state = 'unknown' THEN '; the runner resolves it by order id' ELSE '' END);
    END IF;
END;
$$;

-- ---------------------------------------------------------------- webhooks

-- Receives one webhook delivery: pass the request body and the request
-- headers (a JSON object of name -> value; only tosspayments-* headers are
-- kept).  A delivery seen before (the tosspayments-webhook-transmission-id
-- header, else a hash of eventType, the payment key / order id / billing
-- key, status and createdAt) returns the stored row and does nothing else.
-- Otherwise the event is stored and applied in the same transaction:
--   PAYMENT_STATUS_CHANGED: the payload is not trusted (payment webhooks are
--     unsigned): the Payment is fetched from Toss under the ledger row's
--     merchant and applied with _apply_payment_state
--   BILLING_DELETED: the key is found by its keyed hash and marked deleted
--     with the payload's reason (_billing_key_deleted)
--   anything else: stored and marked ignored
-- The returned row carries the outcome.  An error (e.g. Toss unreachable)
-- rolls everything back, so the receiver answers non-2xx and Toss retries.
CREATE FUNCTION toss_billing.ingest_webhook(payload jsonb, headers jsonb DEFAULT NULL)
RETURNS toss_billing.webhook_events
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_headers jsonb;
    v_type text := ingest_webhook.payload->>'eventType';
    v_data jsonb;
    v_stored jsonb := ingest_webhook.payload;
    v_dedupe text;
    v_row toss_billing.webhook_events;
    v_outcome text;
    v_key text;
    v_order text;
    v_merchant text;
    v_ledger_key text;
    v_pay jsonb;
    v_hash bytea;
    v_bk toss_billing.billing_keys;
    v_note text := '';
BEGIN
    IF ingest_webhook.payload IS NULL THEN
        RAISE EXCEPTION 'payload must not be null' USING ERRCODE = '22004';
    END IF;
    IF pg_catalog.jsonb_typeof(ingest_webhook.payload) <> 'object' THEN
        RAISE EXCEPTION 'payload must be a JSON object' USING ERRCODE = '22023',
            DETAIL = 'Pass the request body of the webhook exactly as received.';
    END IF;
    IF ingest_webhook.headers IS NOT NULL AND pg_catalog.jsonb_typeof(ingest_webhook.headers) <> 'object' THEN
        RAISE EXCEPTION 'headers must be a JSON object' USING ERRCODE = '22023',
            DETAIL = 'Pass the request headers as an object of header name to value.';
    END IF;
    SELECT pg_catalog.jsonb_object_agg(pg_catalog.lower(h.key),
                                       CASE WHEN pg_catalog.jsonb_typeof(h.value) = 'array' THEN h.value->0 ELSE h.value END)
      INTO v_headers
      FROM pg_catalog.jsonb_each(ingest_webhook.headers) h
     WHERE pg_catalog.lower(h.key) LIKE 'tosspayments-%';

    v_data := CASE WHEN pg_catalog.jsonb_typeof(ingest_webhook.payload->'data') = 'object'
                   THEN ingest_webhook.payload->'data' ELSE ingest_webhook.payload END;
    v_dedupe := COALESCE(NULLIF(v_headers->>'tosspayments-webhook-transmission-id', ''),
                         pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
                             pg_catalog.concat_ws(E'\n', COALESCE(v_type, ''),
                                                  COALESCE(v_data->>'paymentKey', v_data->>'orderId', v_data->>'billingKey', ''),
                                                  COALESCE(v_data->>'status', ''),
                                                  COALESCE(ingest_webhook.payload->>'createdAt', '')),
                             'UTF8')), 'hex'));
    -- a billing key is a secret: it is never stored in the clear
    IF v_data ? 'billingKey' THEN
        v_stored := CASE WHEN pg_catalog.jsonb_typeof(ingest_webhook.payload->'data') = 'object'
                         THEN pg_catalog.jsonb_set(v_stored, '{data,billingKey}', '"[redacted]"')
                         ELSE pg_catalog.jsonb_set(v_stored, '{billingKey}', '"[redacted]"') END;
    END IF;

    INSERT INTO toss_billing.webhook_events AS w (dedupe_key, event_type, payload, headers)
    VALUES (v_dedupe, v_type, v_stored, v_headers)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        SELECT * INTO STRICT v_row FROM toss_billing.webhook_events w WHERE w.dedupe_key = v_dedupe;
        RETURN v_row;
    END IF;

    IF v_type = 'PAYMENT_STATUS_CHANGED' THEN
        v_key := v_data->>'paymentKey';
        v_order := v_data->>'orderId';
        SELECT p.merchant, p.payment_key INTO v_merchant, v_ledger_key
          FROM toss_billing.payments p
         WHERE p.payment_key = v_key OR p.order_id = v_order
         ORDER BY p.payment_key = v_key DESC NULLS LAST
         LIMIT 1;
        v_key := COALESCE(v_key, v_ledger_key);
        IF v_key IS NULL THEN
            v_outcome := 'ignored: the event names no payment key';
        ELSE
            BEGIN
                v_pay := toss_billing._fetch_payment(v_key, COALESCE(v_merchant, 'default'));
            EXCEPTION WHEN SQLSTATE 'TB004' THEN
                v_pay := NULL;
            END;
            IF pg_catalog.jsonb_typeof(v_pay) IS DISTINCT FROM 'object' THEN
                v_outcome := pg_catalog.format('rejected: toss has no payment %s', v_key);
            ELSE
                v_outcome := toss_billing._apply_payment_state(v_pay);
            END IF;
        END IF;
    ELSIF v_type = 'BILLING_DELETED' THEN
        v_key := v_data->>'billingKey';
        IF COALESCE(v_key, '') = '' THEN
            v_outcome := 'ignored: the event names no billing key';
        ELSE
            -- keys issued before 0.3.0 get their hash first
            IF EXISTS (SELECT FROM toss_billing.billing_keys bk
                        WHERE bk.key_hash IS NULL AND bk.status = ANY (ARRAY['active', 'replaced'])) THEN
                BEGIN
                    PERFORM toss_billing._backfill_key_hashes();
                EXCEPTION WHEN OTHERS THEN
                    v_note := pg_catalog.format(' (the hashes of older keys could not be filled: %s)', SQLERRM);
                END;
            END IF;
            v_hash := toss_billing._billing_key_hash(v_key);
            SELECT * INTO v_bk FROM toss_billing.billing_keys bk WHERE bk.key_hash = v_hash;
            IF NOT FOUND THEN
                v_outcome := 'ignored: no billing key of toss_billing matches' || v_note;
            ELSIF v_bk.status = 'deleted' THEN
                v_outcome := pg_catalog.format('ignored: billing key %s was already deleted', v_bk.id);
            ELSE
                PERFORM toss_billing._billing_key_deleted(v_bk.id,
                                                          COALESCE(NULLIF(v_data->>'reason', ''),
                                                                   'deleted by toss or the card company'));
                v_outcome := pg_catalog.format('applied: billing key %s deleted (%s)', v_bk.id,
                                               COALESCE(NULLIF(v_data->>'reason', ''), 'no reason given'));
            END IF;
        END IF;
    ELSE
        v_outcome := pg_catalog.format('ignored: event type %s is not handled', COALESCE(v_type, '(none)'));
    END IF;

    UPDATE toss_billing.webhook_events w SET processed_at = pg_catalog.now(), outcome = v_outcome
     WHERE w.id = v_row.id
    RETURNING * INTO v_row;
    RETURN v_row;
END;
$$;

-- ---------------------------------------------------------------- reconciliation

-- Inserts a payment Toss approved that the ledger lacks (state done,
-- recovered, no billing key), from a transaction item and, when the item
-- carries it (key "payment"), Toss's Payment.  The customer is the one
-- with Toss's customerKey, else NULL.  An order id of this installation's
-- subscriptions (sub<id>-p<n>-a<k>-<tag>) links the row to its period and
-- settles it as a payment would (payment_recovered, then what
-- payment_succeeded does) -- unless the period already has a live or
-- successful attempt: then the row is not linked, and a duplicate_charge
-- discrepancy and an alert are recorded.  Returns the new row's id, or NULL
-- when it cannot be stored (a missing_in_ledger discrepancy says why).
CREATE FUNCTION toss_billing._recover_payment(item jsonb, merchant text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_pay jsonb := CASE WHEN pg_catalog.jsonb_typeof(_recover_payment.item->'payment') = 'object'
                        THEN _recover_payment.item->'payment' END;
    v_order text := _recover_payment.item->>'orderId';
    v_key text := _recover_payment.item->>'paymentKey';
    v_amount bigint := COALESCE((v_pay->>'totalAmount')::bigint, pg_catalog.abs((_recover_payment.item->>'amount')::bigint));
    v_tag text := (SELECT i.order_tag FROM toss_billing.installation i);
    v_customer bigint;
    v_m text[];
    v_sub toss_billing.subscriptions;
    v_linked boolean := false;
    v_duplicate bigint;
    v_order_name text;
    v_id bigint;
BEGIN
    IF v_order IS NULL OR v_order !~ '^[A-Za-z0-9_-]{6,64}$' OR v_amount IS NULL OR v_amount < 100 THEN
        PERFORM toss_billing._open_discrepancy('missing_in_ledger', COALESCE(v_order, '(none)'), v_key, NULL,
                                               _recover_payment.item->>'status', NULL, v_amount,
                                               pg_catalog.jsonb_build_object(
                                                   'transaction_key', _recover_payment.item->>'transactionKey',
                                                   'customer_key', _recover_payment.item->>'customerKey',
                                                   'why', 'the order id or amount cannot be stored in the ledger'));
        RETURN NULL;
    END IF;
    SELECT c.id INTO v_customer FROM toss_billing.customers c
     WHERE c.customer_key = _recover_payment.item->>'customerKey';

    v_m := pg_catalog.regexp_match(v_order, '^sub([0-9]{1,18})-p([0-9]{1,9})-a([0-9]{1,9})-([a-z0-9]{8})$');
    IF v_m IS NOT NULL AND v_m[4] = v_tag THEN
        SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = v_m[1]::bigint FOR UPDATE;
        IF FOUND AND (v_customer IS NULL OR v_customer = v_sub.customer_id) THEN
            v_customer := v_sub.customer_id;
            v_linked := true;
            SELECT pl.name INTO v_order_name FROM toss_billing.plans pl WHERE pl.id = v_sub.plan_id;
            SELECT p.id INTO v_duplicate FROM toss_billing.payments p
             WHERE p.subscription_id = v_sub.id AND p.period_number = v_m[2]::integer
               AND p.state = ANY (ARRAY['pending', 'in_flight', 'unknown', 'done'])
             LIMIT 1;
            IF FOUND THEN
                v_linked := false;
            END IF;
        END IF;
    END IF;

    INSERT INTO toss_billing.payments AS p
           (order_id, idempotency_key, customer_id, billing_key_id, merchant, state, order_name, amount,
            toss_status, payment_key, total_amount, balance_amount, supplied_amount, vat, requested_at, approved_at,
            response, requested_by, recovered, subscription_id, period_number, attempt_number)
    VALUES (v_order, 'recovered:' || COALESCE(_recover_payment.item->>'transactionKey', pg_catalog.gen_random_uuid()::text),
            v_customer, NULL, _recover_payment.merchant, 'done',
            pg_catalog.left(COALESCE(NULLIF(v_pay->>'orderName', ''), v_order_name, 'recovered from toss transactions'), 100),
            v_amount, COALESCE(v_pay->>'status', _recover_payment.item->>'status'), v_key, v_amount,
            COALESCE((v_pay->>'balanceAmount')::bigint, v_amount), (v_pay->>'suppliedAmount')::bigint,
            (v_pay->>'vat')::bigint, (v_pay->>'requestedAt')::timestamptz,
            COALESCE((v_pay->>'approvedAt')::timestamptz, (_recover_payment.item->>'transactionAt')::timestamptz),
            COALESCE(v_pay, _recover_payment.item), SESSION_USER, true,
            CASE WHEN v_linked THEN v_sub.id END, CASE WHEN v_linked THEN v_m[2]::integer END,
            CASE WHEN v_linked THEN v_m[3]::integer END)
    ON CONFLICT (order_id) DO NOTHING
    RETURNING p.id INTO v_id;
    IF v_id IS NULL THEN
        RETURN NULL;
    END IF;
    IF v_pay IS NOT NULL THEN
        PERFORM toss_billing._sync_cancels(v_id, v_pay);
    END IF;

    IF v_linked THEN
        PERFORM toss_billing._event(v_sub.id, 'payment_recovered', v_sub.status, v_sub.status,
                                    'payment found at toss, missing from the ledger',
                                    toss_billing.subscription_now(v_sub.id),
                                    pg_catalog.jsonb_build_object('period_number', v_m[2]::integer,
                                                                  'attempt_number', v_m[3]::integer,
                                                                  'amount', v_amount,
                                                                  'transaction_key', _recover_payment.item->>'transactionKey'),
                                    v_id);
        PERFORM toss_billing._settle_paid(ARRAY[ROW(v_id, v_sub.id, v_m[2]::integer, v_m[3]::integer, v_amount,
                                                    'missing', 'done', NULL, NULL, NULL)::toss_billing._outcome]);
        PERFORM toss_billing._apply_transitions(ARRAY[v_sub.id]);
    ELSIF v_duplicate IS NOT NULL THEN
        PERFORM toss_billing._open_discrepancy('duplicate_charge', v_order, v_key, 'done', _recover_payment.item->>'status',
                                               v_amount, v_amount,
                                               pg_catalog.jsonb_build_object('subscription_id', v_sub.id,
                                                                             'period_number', v_m[2]::integer,
                                                                             'other_payment_id', v_duplicate,
                                                                             'hint', 'The period was charged twice; refund one of them with toss_billing.toss_cancel().'));
        PERFORM toss_billing._event(v_sub.id, 'alert', v_sub.status, v_sub.status,
                                    'a second payment for a period was found at toss',
                                    toss_billing.subscription_now(v_sub.id),
                                    pg_catalog.jsonb_build_object('period_number', v_m[2]::integer, 'order_id', v_order,
                                                                  'other_payment_id', v_duplicate, 'amount', v_amount),
                                    v_id);
    END IF;
    RETURN v_id;
END;
$$;

-- GET /v1/transactions items as rows: an approval has status DONE, a
-- cancel CANCELED or PARTIAL_CANCELED (the payment's status after it);
-- amounts are taken as positive.
CREATE FUNCTION toss_billing._transaction_items(items jsonb)
RETURNS TABLE(n bigint, item jsonb, order_id text, payment_key text, transaction_key text, status text,
              amount bigint, is_approval boolean, is_cancel boolean)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x.n, x.value, x.value->>'orderId', x.value->>'paymentKey', x.value->>'transactionKey', x.value->>'status',
           pg_catalog.abs((x.value->>'amount')::bigint),
           x.value->>'status' = 'DONE', x.value->>'status' = ANY (ARRAY['CANCELED', 'PARTIAL_CANCELED'])
      FROM pg_catalog.jsonb_array_elements($1) WITH ORDINALITY AS x(value, n)
     WHERE pg_catalog.jsonb_typeof(x.value) = 'object';
$$;

-- The core of reconcile: compares Toss's transactions of a window (items:
-- a JSON array of GET /v1/transactions items; an item may carry Toss's
-- Payment under the key "payment") with the ledger of a merchant.
--   approval (status DONE) the ledger lacks -> inserted, recovered
--   approval of an unknown attempt, with its Payment -> resolved (done)
--   approval of a failed or unknown attempt -> state_mismatch
--   approval of another amount / payment key -> amount_mismatch / payment_key_mismatch
--   cancel (CANCELED, PARTIAL_CANCELED) the ledger lacks -> recorded from
--     its Payment if the item carries it, else cancel_missing;
--     of another amount -> cancel_amount_mismatch; of a payment the
--     ledger lacks -> missing_in_ledger
--   done payment of the window the list lacks -> missing_at_toss (not
--     for payments approved in the last minute, which Toss may list late,
--     nor within a second of the window's ends)
-- At most one open discrepancy per (order id, kind); an open one whose
-- evidence this run looked at again and found consistent is resolved.
-- Returns the orders checked, the payments recovered and the discrepancies
-- opened by this run.
CREATE FUNCTION toss_billing._reconcile_items(items jsonb, from_at timestamptz, to_at timestamptz,
                                              merchant text DEFAULT 'default')
RETURNS TABLE(checked integer, recovered integer, discrepancies integer)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_items jsonb := COALESCE(_reconcile_items.items, '[]'::jsonb);
    v_merchant text := _reconcile_items.merchant;
    v_recovered integer := 0;
    v_opened integer := 0;
    v_found text[] := '{}';           -- order_id || E'\n' || kind of what this run detected
    v_item_orders text[];
    v_approval_orders text[];
    v_cancel_keys text[];
    v_window_orders text[];
    r record;
    v_p toss_billing.payments;
    v_c toss_billing.cancels;
BEGIN
    IF _reconcile_items.from_at IS NULL OR _reconcile_items.to_at IS NULL OR v_merchant IS NULL THEN
        RAISE EXCEPTION 'from_at, to_at and merchant must not be null' USING ERRCODE = '22004';
    END IF;
    IF _reconcile_items.to_at <= _reconcile_items.from_at THEN
        RAISE EXCEPTION 'to_at must be later than from_at' USING ERRCODE = '22023';
    END IF;
    IF pg_catalog.jsonb_typeof(v_items) <> 'array' THEN
        RAISE EXCEPTION 'items must be a JSON array' USING ERRCODE = '22023';
    END IF;
    -- one reconciliation at a time
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('toss_billing.reconcile'));

    -- approvals the ledger lacks, in the order Toss made them
    FOR r IN SELECT q.* FROM (SELECT DISTINCT ON (i.order_id) i.*
                                FROM toss_billing._transaction_items(v_items) i
                               WHERE i.is_approval
                                 AND NOT EXISTS (SELECT FROM toss_billing.payments p WHERE p.order_id = i.order_id)
                               ORDER BY i.order_id, i.n) q
              ORDER BY q.item->>'transactionAt', q.n
    LOOP
        IF toss_billing._recover_payment(r.item, v_merchant) IS NOT NULL THEN
            v_recovered := v_recovered + 1;
        ELSIF NOT EXISTS (SELECT FROM toss_billing.payments p WHERE p.order_id = r.order_id) THEN
            v_found := v_found || (COALESCE(r.order_id, '(none)') || E'\n' || 'missing_in_ledger');
        END IF;
    END LOOP;

    -- approvals the ledger has
    FOR r IN SELECT DISTINCT ON (i.order_id) i.*
               FROM toss_billing._transaction_items(v_items) i
              WHERE i.is_approval AND i.order_id IS NOT NULL
              ORDER BY i.order_id, i.n
    LOOP
        SELECT * INTO v_p FROM toss_billing.payments p WHERE p.order_id = r.order_id;
        CONTINUE WHEN NOT FOUND;
        IF v_p.state = 'unknown' AND pg_catalog.jsonb_typeof(r.item->'payment') = 'object' THEN
            PERFORM toss_billing._apply_payment_state(r.item->'payment');
            SELECT * INTO v_p FROM toss_billing.payments p WHERE p.id = v_p.id;
        END IF;
        IF v_p.state = ANY (ARRAY['failed', 'unknown']) THEN
            v_found := v_found || (v_p.order_id || E'\n' || 'state_mismatch');
            IF toss_billing._open_discrepancy('state_mismatch', v_p.order_id, r.payment_key, v_p.state, r.status,
                                              v_p.amount, r.amount,
                                              pg_catalog.jsonb_build_object(
                                                  'transaction_key', r.transaction_key,
                                                  'transaction_at', r.item->>'transactionAt',
                                                  'failure_code', v_p.failure_code,
                                                  'hint', CASE v_p.state
                                                      WHEN 'unknown' THEN 'Toss approved it; the runner resolves the attempt by order id.'
                                                      ELSE 'Toss approved a charge the ledger records as failed; check whether the customer was charged twice.' END)) THEN
                v_opened := v_opened + 1;
            END IF;
        ELSIF v_p.state = 'done' THEN
            IF v_p.payment_key IS NOT NULL AND r.payment_key IS DISTINCT FROM v_p.payment_key THEN
                v_found := v_found || (v_p.order_id || E'\n' || 'payment_key_mismatch');
                IF toss_billing._open_discrepancy('payment_key_mismatch', v_p.order_id, r.payment_key, v_p.state, r.status,
                                                  v_p.amount, r.amount,
                                                  pg_catalog.jsonb_build_object('ledger_payment_key', v_p.payment_key,
                                                                                'transaction_key', r.transaction_key)) THEN
                    v_opened := v_opened + 1;
                END IF;
            END IF;
            IF COALESCE(v_p.total_amount, v_p.amount) IS DISTINCT FROM r.amount THEN
                v_found := v_found || (v_p.order_id || E'\n' || 'amount_mismatch');
                IF toss_billing._open_discrepancy('amount_mismatch', v_p.order_id, r.payment_key, v_p.state, r.status,
                                                  COALESCE(v_p.total_amount, v_p.amount), r.amount,
                                                  pg_catalog.jsonb_build_object('transaction_key', r.transaction_key,
                                                                                'requested_amount', v_p.amount)) THEN
                    v_opened := v_opened + 1;
                END IF;
            END IF;
        END IF;
    END LOOP;

    -- cancels
    FOR r IN SELECT DISTINCT ON (i.transaction_key) i.*
               FROM toss_billing._transaction_items(v_items) i
              WHERE i.is_cancel
              ORDER BY i.transaction_key, i.n
    LOOP
        SELECT * INTO v_p FROM toss_billing.payments p WHERE p.order_id = r.order_id;
        IF NOT FOUND THEN
            SELECT * INTO v_p FROM toss_billing.payments p WHERE p.payment_key = r.payment_key;
        END IF;
        IF NOT FOUND THEN
            v_found := v_found || (COALESCE(r.order_id, '(none)') || E'\n' || 'missing_in_ledger');
            IF toss_billing._open_discrepancy('missing_in_ledger', COALESCE(r.order_id, '(none)'), r.payment_key, NULL,
                                              r.status, NULL, r.amount,
                                              pg_catalog.jsonb_build_object('transaction_key', r.transaction_key,
                                                                            'why', 'a cancel of a payment the ledger lacks')) THEN
                v_opened := v_opened + 1;
            END IF;
            CONTINUE;
        END IF;
        SELECT * INTO v_c FROM toss_billing.cancels c WHERE c.transaction_key = r.transaction_key;
        IF NOT FOUND AND pg_catalog.jsonb_typeof(r.item->'payment') = 'object' THEN
            PERFORM toss_billing._apply_payment_state(r.item->'payment');
            SELECT * INTO v_c FROM toss_billing.cancels c WHERE c.transaction_key = r.transaction_key;
        END IF;
        IF NOT FOUND THEN
            v_found := v_found || (v_p.order_id || E'\n' || 'cancel_missing');
            IF toss_billing._open_discrepancy('cancel_missing', v_p.order_id, r.payment_key, v_p.state, r.status,
                                              NULL, r.amount,
                                              pg_catalog.jsonb_build_object('transaction_key', r.transaction_key,
                                                                            'transaction_at', r.item->>'transactionAt')) THEN
                v_opened := v_opened + 1;
            END IF;
        ELSIF v_c.canceled_amount IS DISTINCT FROM r.amount THEN
            v_found := v_found || (v_p.order_id || E'\n' || 'cancel_amount_mismatch');
            IF toss_billing._open_discrepancy('cancel_amount_mismatch', v_p.order_id, r.payment_key, v_c.state,
                                              r.status, v_c.canceled_amount, r.amount,
                                              pg_catalog.jsonb_build_object('transaction_key', r.transaction_key,
                                                                            'cancel_id', v_c.id)) THEN
                v_opened := v_opened + 1;
            END IF;
        END IF;
    END LOOP;

    -- done payments of the window that Toss does not list
    SELECT pg_catalog.array_agg(DISTINCT i.order_id) FILTER (WHERE i.order_id IS NOT NULL),
           pg_catalog.array_agg(DISTINCT i.order_id) FILTER (WHERE i.is_approval AND i.order_id IS NOT NULL),
           pg_catalog.array_agg(DISTINCT i.transaction_key) FILTER (WHERE i.is_cancel AND i.transaction_key IS NOT NULL)
      INTO v_item_orders, v_approval_orders, v_cancel_keys
      FROM toss_billing._transaction_items(v_items) i;
    v_item_orders := COALESCE(v_item_orders, '{}');
    v_approval_orders := COALESCE(v_approval_orders, '{}');
    v_cancel_keys := COALESCE(v_cancel_keys, '{}');
    SELECT COALESCE(pg_catalog.array_agg(p.order_id), '{}') INTO v_window_orders
      FROM toss_billing.payments p
     WHERE p.state = 'done' AND p.merchant = v_merchant
       AND COALESCE(p.approved_at, p.created_at) >= _reconcile_items.from_at + '1 second'::interval
       AND COALESCE(p.approved_at, p.created_at) < _reconcile_items.to_at - '1 second'::interval
       AND COALESCE(p.approved_at, p.created_at) < pg_catalog.now() - '1 minute'::interval
       AND p.created_at < pg_catalog.now() - '1 minute'::interval;
    FOR r IN SELECT p.*
               FROM toss_billing.payments p
              WHERE p.order_id = ANY (v_window_orders) AND p.order_id <> ALL (v_approval_orders)
              ORDER BY p.id
    LOOP
        v_found := v_found || (r.order_id || E'\n' || 'missing_at_toss');
        IF toss_billing._open_discrepancy('missing_at_toss', r.order_id, r.payment_key, r.state, NULL,
                                          COALESCE(r.total_amount, r.amount), NULL,
                                          pg_catalog.jsonb_build_object('approved_at', r.approved_at,
                                                                        'recovered', r.recovered,
                                                                        'hint', 'Toss lists no approval of this order in the window; look it up at Toss.')) THEN
            v_opened := v_opened + 1;
        END IF;
    END LOOP;

    -- open discrepancies whose evidence was looked at again and is consistent now
    UPDATE toss_billing.discrepancies d
       SET resolved_at = pg_catalog.now(),
           detail = COALESCE(d.detail, '{}'::jsonb) || pg_catalog.jsonb_build_object('resolved_by', 'reconcile')
     WHERE d.resolved_at IS NULL
       AND (d.order_id || E'\n' || d.kind) <> ALL (v_found)
       AND ((d.kind = ANY (ARRAY['state_mismatch', 'amount_mismatch', 'payment_key_mismatch', 'missing_in_ledger'])
             AND d.order_id = ANY (v_item_orders))
            OR (d.kind = 'missing_at_toss' AND (d.order_id = ANY (v_approval_orders) OR d.order_id = ANY (v_window_orders)))
            OR (d.kind = ANY (ARRAY['cancel_missing', 'cancel_amount_mismatch'])
                AND d.detail->>'transaction_key' = ANY (v_cancel_keys)));

    checked := (SELECT pg_catalog.count(*) FROM (SELECT unnest(v_item_orders) UNION SELECT unnest(v_window_orders)) o);
    recovered := v_recovered;
    discrepancies := v_opened;
    RETURN NEXT;
END;
$$;

-- Compares Toss's transactions of a window with the ledger of a merchant
-- and repairs what it can: GET /v1/transactions over [from_at, to_at)
-- (_toss_transactions), Toss's Payment for every order the items alone
-- cannot settle (missing from the ledger, an unknown attempt, a cancel the
-- ledger lacks; a failed lookup leaves the order to be flagged), then
-- _reconcile_items.  Idempotent: run it again, or on a schedule, over
-- overlapping windows.
CREATE FUNCTION toss_billing.reconcile(from_at timestamptz, to_at timestamptz, merchant text DEFAULT 'default')
RETURNS TABLE(checked integer, recovered integer, discrepancies integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_items jsonb;
    v_fetched jsonb := '{}';
    v_pay jsonb;
    r record;
BEGIN
    IF reconcile.from_at IS NULL OR reconcile.to_at IS NULL OR reconcile.merchant IS NULL THEN
        RAISE EXCEPTION 'from_at, to_at and merchant must not be null' USING ERRCODE = '22004';
    END IF;
    IF reconcile.to_at <= reconcile.from_at THEN
        RAISE EXCEPTION 'to_at must be later than from_at' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('The window is [%s, %s).', reconcile.from_at, reconcile.to_at);
    END IF;
    SELECT COALESCE(pg_catalog.jsonb_agg(t.item), '[]'::jsonb) INTO v_items
      FROM toss_billing._toss_transactions(reconcile.from_at, reconcile.to_at, reconcile.merchant) AS t(item);

    FOR r IN SELECT DISTINCT i.value->>'paymentKey' AS payment_key
               FROM pg_catalog.jsonb_array_elements(v_items) i
              WHERE i.value->>'paymentKey' IS NOT NULL
                AND ((i.value->>'status' = 'DONE'
                      AND NOT EXISTS (SELECT FROM toss_billing.payments p
                                       WHERE p.order_id = i.value->>'orderId' AND p.state <> 'unknown'))
                     OR (i.value->>'status' = ANY (ARRAY['CANCELED', 'PARTIAL_CANCELED'])
                         AND NOT EXISTS (SELECT FROM toss_billing.cancels c
                                          WHERE c.transaction_key = i.value->>'transactionKey')))
    LOOP
        BEGIN
            v_pay := toss_billing._fetch_payment(r.payment_key, reconcile.merchant);
        EXCEPTION WHEN OTHERS THEN
            v_pay := NULL;
        END;
        IF pg_catalog.jsonb_typeof(v_pay) = 'object' THEN
            v_fetched := v_fetched || pg_catalog.jsonb_build_object(r.payment_key, v_pay);
        END IF;
    END LOOP;
    IF v_fetched <> '{}'::jsonb THEN
        SELECT pg_catalog.jsonb_agg(CASE WHEN v_fetched ? (i.value->>'paymentKey')
                                         THEN i.value || pg_catalog.jsonb_build_object('payment', v_fetched->(i.value->>'paymentKey'))
                                         ELSE i.value END ORDER BY i.n)
          INTO v_items
          FROM pg_catalog.jsonb_array_elements(v_items) WITH ORDINALITY AS i(value, n);
    END IF;
    RETURN QUERY SELECT * FROM toss_billing._reconcile_items(v_items, reconcile.from_at, reconcile.to_at, reconcile.merchant);
END;
$$;

-- Marks a discrepancy resolved by hand, with an optional note.  Resolving
-- one that is resolved already changes nothing.
CREATE FUNCTION toss_billing.resolve_discrepancy(discrepancy_id bigint, note text DEFAULT NULL)
RETURNS toss_billing.discrepancies
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_d toss_billing.discrepancies;
BEGIN
    SELECT * INTO v_d FROM toss_billing.discrepancies d WHERE d.id = resolve_discrepancy.discrepancy_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'discrepancy % does not exist', resolve_discrepancy.discrepancy_id USING ERRCODE = 'P0002';
    END IF;
    IF v_d.resolved_at IS NOT NULL THEN
        RETURN v_d;
    END IF;
    UPDATE toss_billing.discrepancies d
       SET resolved_at = pg_catalog.now(),
           detail = COALESCE(d.detail, '{}'::jsonb)
                    || pg_catalog.jsonb_build_object('resolved_by', SESSION_USER::text, 'note', resolve_discrepancy.note)
     WHERE d.id = v_d.id
    RETURNING * INTO v_d;
    RETURN v_d;
END;
$$;

-- Unknown cancels, for the runner: each is replayed with its own
-- Idempotency-Key and request (Toss answers a cancel it made from its cache
-- and makes one it never received), within the key's 15 days.  Backs off like
-- _claim_unknown so concurrent runners leave a row alone.
CREATE FUNCTION toss_billing._claim_unknown_cancels(max_count integer)
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
CREATE FUNCTION toss_billing.resolve_unknown_now()
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

-- ---------------------------------------------------------------- dump, privileges

SELECT pg_catalog.pg_extension_config_dump('toss_billing.cancels', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.webhook_events', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.discrepancies', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.cancels_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.webhook_events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.discrepancies_id_seq', '');

REVOKE ALL ON ALL TABLES IN SCHEMA toss_billing FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA toss_billing FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA toss_billing FROM PUBLIC;

-- Operators refund, delete keys, take webhooks in and reconcile; everyone
-- who reads the ledger reads what these add.  The runner's functions, the
-- C functions that call Toss for them and the SQL halves stay with the
-- extension owner.
GRANT EXECUTE ON FUNCTION toss_billing.toss_cancel(text, text, bigint),
                          toss_billing.toss_delete_billing_key(text),
                          toss_billing.ingest_webhook(jsonb, jsonb),
                          toss_billing.reconcile(timestamptz, timestamptz, text),
                          toss_billing.resolve_discrepancy(bigint, text),
                          toss_billing.resolve_unknown_now()
    TO toss_billing_operator;
GRANT SELECT ON toss_billing.cancels, toss_billing.webhook_events, toss_billing.discrepancies,
                toss_billing.open_discrepancies
    TO toss_billing_operator, toss_billing_auditor;
GRANT SELECT (deleted_at, deleted_reason) ON toss_billing.billing_keys TO toss_billing_auditor, toss_billing_operator;
