-- 40_ledger: the ledger: orders (toss_billing.payments, one row per Toss
-- orderId: one obligation, a subscription period or a toss_charge call) and
-- attempts (toss_billing.attempts, one row per POST under an order), Toss's
-- Payment object as a SQL type, and the single charge (toss_charge,
-- order_status).  An attempt is written before its HTTP call (in_flight,
-- committed) and completed after it, in transactions of their own.

-- @data

-- The card part of a Payment.
CREATE TYPE toss_billing.card AS (
    amount                 bigint,
    issuer_code            text,
    acquirer_code          text,
    number                 text,
    installment_plan_months integer,
    approve_no             text,
    use_card_point         boolean,
    card_type              text,
    owner_type             text,
    acquire_status         text,
    is_interest_free       boolean,
    interest_payer         text
);

-- Toss's Payment object (API version 2022-11-16), one typed column per field,
-- plus the response exactly as received.
CREATE TYPE toss_billing.payment AS (
    payment_key            text,
    order_id               text,
    order_name             text,
    status                 text,
    type                   text,
    method                 text,
    m_id                   text,
    version                text,
    currency               text,
    country                text,
    total_amount           bigint,
    balance_amount         bigint,
    supplied_amount        bigint,
    vat                    bigint,
    tax_free_amount        bigint,
    tax_exemption_amount   bigint,
    requested_at           timestamptz,
    approved_at            timestamptz,
    use_escrow             boolean,
    culture_expense        boolean,
    is_partial_cancelable  boolean,
    last_transaction_key   text,
    card                   toss_billing.card,
    virtual_account        jsonb,
    transfer               jsonb,
    mobile_phone           jsonb,
    gift_certificate       jsonb,
    cash_receipt           jsonb,
    cash_receipts          jsonb,
    discount               jsonb,
    easy_pay               jsonb,
    cancels                jsonb,
    failure_code           text,
    failure_message        text,
    receipt_url            text,
    checkout_url           text,
    secret                 text,
    metadata               jsonb,
    raw                    jsonb
);

-- Orders.  A row is one obligation's Toss order: a subscription period
-- (obligation 'subscription:<id>:<period>') or one toss_charge call
-- (obligation 'charge:<order id the caller chose>').  Every attempt to pay
-- it posts this order_id, each with an Idempotency-Key of its own, so Toss
-- itself refuses to approve it twice (DUPLICATED_ORDER_ID).  A new order
-- for the same obligation (the next generation, a new order_id) is made
-- only after Toss confirmed by lookup that this one has no approved payment
-- and is final.  At most one live or paid order per obligation.
--   state      pending (owed; no attempt in flight), in_flight, unknown (an
--              attempt's outcome is not known yet), done (paid: Toss's
--              Payment verified against the order), failed (closed unpaid)
--   hold_reason  set when an answer could not be verified: nothing is
--              posted again for the order automatically (lookups go on)
--   failure_*, http_status  the last attempt's failure
--   generation the how-many-th order of its obligation (a new order id is
--              made only when Toss refuses the old one again)
--   recovered  a payment of ours that Toss has and the ledger lacked,
--              inserted by reconcile (no billing key)
--   invoice_id the invoice the order pays (32_invoices): a subscription
--              period's, or one of its own (obligation 'invoice:<id>');
--              its amount and tax_free_amount are the invoice's amount_due
--              and tax_free_amount
-- toss_status, payment_key, amounts, approved_at and response are Toss's
-- verified Payment.
CREATE TABLE toss_billing.payments (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id         text NOT NULL UNIQUE
                     CHECK (order_id OPERATOR(pg_catalog.~) '^[A-Za-z0-9_-]{6,64}$'),
    customer_id      bigint REFERENCES toss_billing.customers (id),
    billing_key_id   bigint REFERENCES toss_billing.billing_keys (id),
    merchant         text NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'in_flight', 'done', 'failed', 'unknown'])),
    order_name       text NOT NULL CHECK (pg_catalog.char_length(order_name) OPERATOR(pg_catalog.<=) 100),
    amount           bigint NOT NULL CHECK (amount OPERATOR(pg_catalog.>=) 100),
    tax_free_amount  bigint NOT NULL DEFAULT 0
                     CHECK (tax_free_amount OPERATOR(pg_catalog.>=) 0 AND tax_free_amount OPERATOR(pg_catalog.<=) amount),
    customer_email   text,
    customer_name    text,
    toss_status      text,
    payment_key      text,
    total_amount     bigint,
    balance_amount   bigint,
    supplied_amount  bigint,
    vat              bigint,
    failure_class    text,
    failure_code     text,
    failure_message  text,
    http_status      integer,
    requested_at     timestamptz,
    approved_at      timestamptz,
    response         jsonb,
    requested_by     name NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    subscription_id  bigint REFERENCES toss_billing.subscriptions (id),
    period_number    integer,
    generation       integer NOT NULL DEFAULT 1 CHECK (generation OPERATOR(pg_catalog.>=) 1),
    recovered        boolean NOT NULL DEFAULT false,
    obligation       text NOT NULL,
    hold_reason      text,
    invoice_id       bigint REFERENCES toss_billing.invoices (id),
    CONSTRAINT payments_subscription_period CHECK (
        (subscription_id IS NULL AND period_number IS NULL)
        OR (subscription_id IS NOT NULL AND period_number IS NOT NULL AND period_number OPERATOR(pg_catalog.>=) 0)),
    CONSTRAINT payments_billing_key_or_recovered CHECK (billing_key_id IS NOT NULL OR recovered),
    CONSTRAINT payments_customer_or_recovered CHECK (customer_id IS NOT NULL OR recovered)
);
CREATE INDEX payments_created_at ON toss_billing.payments (created_at);
CREATE INDEX payments_state ON toss_billing.payments (state)
    WHERE state OPERATOR(pg_catalog.<>) ALL (ARRAY['done', 'failed']);
CREATE INDEX payments_customer ON toss_billing.payments (customer_id);
CREATE INDEX payments_subscription ON toss_billing.payments (subscription_id, period_number, generation)
    WHERE subscription_id IS NOT NULL;
CREATE INDEX payments_subscription_open ON toss_billing.payments (subscription_id)
    WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['in_flight', 'unknown']);
CREATE INDEX payments_payment_key ON toss_billing.payments (payment_key)
    WHERE payment_key IS NOT NULL;
CREATE INDEX payments_approved_at ON toss_billing.payments (approved_at)
    WHERE state OPERATOR(pg_catalog.=) 'done';
CREATE UNIQUE INDEX payments_one_per_obligation ON toss_billing.payments (obligation)
    WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'in_flight', 'unknown', 'done']);
-- every order of an obligation, whatever its state: the intent's and the
-- claims' "latest order of the obligation", order_status(), webhooks and
-- reconcile find them here, not among the customer's or all the orders
CREATE INDEX payments_obligation ON toss_billing.payments (obligation);
CREATE INDEX payments_invoice ON toss_billing.payments (invoice_id) WHERE invoice_id IS NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('toss_billing.payments', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.payments_id_seq', '');

-- Attempts: one row per POST under an order, written in_flight and
-- committed before the request leaves, with its own Idempotency-Key (the
-- owner's alone: a replay token).  A replay of an attempt (recovery posting
-- the very same request again) is the same attempt.
--   state      in_flight, done, failed, unknown
--   deadline   by when the call and its lookup are over: an attempt still
--              in flight after it lost its caller (stale detection)
--   order_id   the Toss orderId the POST used (its order's, at the time)
--   response   the answer exactly as received, secrets scrubbed, as bytes
--              (whatever Toss or a proxy sent, it always dumps and restores)
CREATE TABLE toss_billing.attempts (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id        bigint NOT NULL REFERENCES toss_billing.payments (id),
    customer_id       bigint REFERENCES toss_billing.customers (id),
    attempt_number    integer NOT NULL CHECK (attempt_number OPERATOR(pg_catalog.>=) 1),
    order_id          text NOT NULL,
    billing_key_id    bigint REFERENCES toss_billing.billing_keys (id),
    idempotency_key   text NOT NULL UNIQUE,
    state             text NOT NULL DEFAULT 'in_flight'
                      CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY['in_flight', 'done', 'failed', 'unknown'])),
    deadline          timestamptz,
    http_status       integer,
    failure_class     text,
    failure_code      text,
    failure_message   text,
    response          bytea,
    requested_by      name NOT NULL,
    caller_pid        integer DEFAULT pg_catalog.pg_backend_pid(),
    caller_started_at timestamptz DEFAULT toss_billing._backend_start(),
    resolve_attempts  integer NOT NULL DEFAULT 0 CHECK (resolve_attempts OPERATOR(pg_catalog.>=) 0),
    next_resolve_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT attempts_number_per_payment UNIQUE (payment_id, attempt_number)
);
CREATE INDEX attempts_in_flight ON toss_billing.attempts (deadline)
    WHERE state OPERATOR(pg_catalog.=) 'in_flight';
CREATE INDEX attempts_unknown ON toss_billing.attempts (created_at, id)
    WHERE state OPERATOR(pg_catalog.=) 'unknown';
CREATE INDEX attempts_order_id ON toss_billing.attempts (order_id);
CREATE INDEX attempts_customer ON toss_billing.attempts (customer_id);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.attempts', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.attempts_id_seq', '');

-- @code

-- Charges a customer's active billing key once per order id: see the
-- README.  The C function validates the input and runs the call in a
-- background worker, which uses _charge_intent and _record_outcomes.
CREATE OR REPLACE FUNCTION toss_billing.toss_charge(
    customer_key text,
    amount bigint,
    order_name text,
    order_id text DEFAULT NULL,
    customer_email text DEFAULT NULL,
    customer_name text DEFAULT NULL,
    tax_free_amount bigint DEFAULT 0)
RETURNS toss_billing.payment
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_charge';

-- The first half of toss_charge, before anything is sent: the order of the
-- caller's order id (made if new; the same call repeated finds it again,
-- and a different charge under the same id is refused) and what to do now:
--   post    a new attempt was recorded in_flight (committed by the caller
--           before the POST)
--   lookup  an earlier attempt's outcome is unknown: look it up first; if
--           Toss has no record of it and may_repost, post that attempt
--           again, with its own Idempotency-Key
--   done    the order is paid: payment is its verified Payment
--   busy    another call for the order is in flight
-- A failed order is attempted again under the same order id, which Toss
-- never approves twice.
CREATE OR REPLACE FUNCTION toss_billing._charge_intent(
    customer_key text,
    amount bigint,
    order_name text,
    order_id text,
    customer_email text,
    customer_name text,
    tax_free_amount bigint,
    requested_by name,
    call_timeout interval)
RETURNS TABLE(action text, payment_id bigint, attempt_id bigint, toss_order_id text, idempotency_key text,
              billing_key_id bigint, merchant text, encrypted_key bytea, mid text, payment jsonb,
              attempt_created_at timestamptz, may_repost boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_customer bigint;
    v_key toss_billing.billing_keys;
    v_p toss_billing.payments;
    v_a toss_billing.attempts;
    v_obligation text := 'charge:' || _charge_intent.order_id;
    v_new boolean := false;
BEGIN
    SELECT c.id INTO v_customer FROM toss_billing.customers c WHERE c.customer_key = _charge_intent.customer_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown customer "%"', _charge_intent.customer_key USING ERRCODE = 'TB004',
            DETAIL = 'No row of toss_billing.customers has this customer_key.',
            HINT = 'Create the customer with toss_billing.create_customer() and commit before calling Toss.';
    END IF;
    SELECT * INTO v_key FROM toss_billing.billing_keys bk
     WHERE bk.customer_id = v_customer AND bk.status = 'active';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'customer "%" has no active billing key', _charge_intent.customer_key USING ERRCODE = 'TB004',
            HINT = 'Register a card and call toss_billing.toss_issue_billing_key() first.';
    END IF;

    -- the obligation's live order (at most one: the partial unique index
    -- finds it), else its latest failed one of this customer's (by
    -- payments_obligation), else whatever order holds the order id
    SELECT * INTO v_p FROM toss_billing.payments p
     WHERE p.obligation = v_obligation AND p.state = ANY (ARRAY['pending', 'in_flight', 'unknown', 'done'])
       FOR UPDATE;
    IF NOT FOUND THEN
        SELECT * INTO v_p FROM toss_billing.payments p
         WHERE p.obligation = v_obligation AND p.customer_id = v_customer
         ORDER BY p.generation DESC NULLS LAST, p.id DESC
         LIMIT 1
           FOR UPDATE;
    END IF;
    IF NOT FOUND THEN
        SELECT * INTO v_p FROM toss_billing.payments p WHERE p.order_id = _charge_intent.order_id FOR UPDATE;
        IF FOUND AND v_p.obligation IS DISTINCT FROM v_obligation THEN
            RAISE EXCEPTION 'order id "%" is already used by another obligation', _charge_intent.order_id
                USING ERRCODE = '23505',
                      DETAIL = pg_catalog.format('The order %s belongs to %s.', v_p.order_id, v_p.obligation),
                      HINT = 'Use an order id of your own for a toss_charge.';
        END IF;
    END IF;
    IF NOT FOUND THEN
        -- a new order is written in flight at once, with its first attempt
        -- below (one row version, not a pending one updated at once)
        INSERT INTO toss_billing.payments AS p
               (order_id, obligation, customer_id, billing_key_id, merchant, state, order_name, amount,
                tax_free_amount, customer_email, customer_name, requested_by)
        VALUES (_charge_intent.order_id, v_obligation, v_customer, v_key.id, v_key.merchant, 'in_flight',
                _charge_intent.order_name, _charge_intent.amount, _charge_intent.tax_free_amount,
                _charge_intent.customer_email, _charge_intent.customer_name, _charge_intent.requested_by)
        RETURNING * INTO v_p;
        v_new := true;
    ELSIF v_p.customer_id IS DISTINCT FROM v_customer OR v_p.amount <> _charge_intent.amount
          OR v_p.tax_free_amount <> _charge_intent.tax_free_amount OR v_p.order_name <> _charge_intent.order_name THEN
        RAISE EXCEPTION 'order id "%" is already used for another charge', _charge_intent.order_id
            USING ERRCODE = '23505',
                  DETAIL = CASE WHEN v_p.customer_id IS DISTINCT FROM v_customer
                                THEN 'That order belongs to another customer.'
                                ELSE pg_catalog.format('That order charges %s KRW (%s tax-free) for "%s"; this call asks %s KRW (%s tax-free) for "%s".',
                                                       v_p.amount, v_p.tax_free_amount, v_p.order_name, _charge_intent.amount,
                                                       _charge_intent.tax_free_amount, _charge_intent.order_name) END,
                  HINT = 'Repeat a charge with exactly the same arguments, or use a new order id for a new charge.';
    END IF;

    IF v_p.state = 'done' THEN
        RETURN QUERY SELECT 'done'::text, v_p.id, NULL::bigint, v_p.order_id, NULL::text, v_p.billing_key_id,
                            v_p.merchant, NULL::bytea, NULL::text, v_p.response, NULL::timestamptz, false;
        RETURN;
    END IF;
    IF v_p.state = 'in_flight' AND NOT v_new THEN
        RETURN QUERY SELECT 'busy'::text, v_p.id, NULL::bigint, v_p.order_id, NULL::text, v_p.billing_key_id,
                            v_p.merchant, NULL::bytea, NULL::text, NULL::jsonb, NULL::timestamptz, false;
        RETURN;
    END IF;
    IF v_p.state = 'unknown' THEN
        SELECT * INTO v_a FROM toss_billing.attempts a
         WHERE a.payment_id = v_p.id AND a.state = 'unknown'
         ORDER BY a.attempt_number DESC LIMIT 1
           FOR UPDATE;
        IF FOUND THEN
            UPDATE toss_billing.attempts a
               SET state = 'in_flight', deadline = pg_catalog.now() + 2 * _charge_intent.call_timeout,
                   caller_pid = pg_catalog.pg_backend_pid(), caller_started_at = toss_billing._backend_start(),
                   resolve_attempts = a.resolve_attempts + 1, updated_at = pg_catalog.now()
             WHERE a.id = v_a.id;
            UPDATE toss_billing.payments p SET state = 'in_flight', updated_at = pg_catalog.now() WHERE p.id = v_p.id;
            -- the very same request may be posted again, should Toss have no
            -- record of it, only while the order is owed as it was: not held
            -- by an unverified answer, within the key's 15 days, and with the
            -- attempt's billing key still the customer's active one (the
            -- customer may have replaced the card meanwhile)
            RETURN QUERY
            SELECT 'lookup'::text, v_p.id, v_a.id, v_a.order_id, v_a.idempotency_key, bk.id, bk.merchant,
                   bk.encrypted_key, bk.mid, NULL::jsonb, v_a.created_at,
                   v_p.hold_reason IS NULL AND bk.status = 'active' AND bk.id = v_key.id
                   AND v_a.created_at > pg_catalog.now() - interval '15 days' + interval '1 hour'
              FROM toss_billing.billing_keys bk WHERE bk.id = v_a.billing_key_id;
            RETURN;
        END IF;
    END IF;

    -- held (an answer from Toss did not match the order, and Toss has no
    -- record of it since): nothing is posted until a person looks
    IF v_p.hold_reason IS NOT NULL THEN
        RAISE EXCEPTION 'order "%" is held', v_p.order_id USING ERRCODE = 'TB006',
            DETAIL = pg_catalog.format('An answer from Toss did not match the order (%s), so nothing is posted for it again automatically.',
                                       v_p.hold_reason),
            HINT = 'See toss_billing.open_discrepancies; toss_billing.resolve_discrepancy() releases the order, and the same call then charges it.';
    END IF;

    -- new, pending or failed: a new attempt, under the same order id, with
    -- the customer's active key
    INSERT INTO toss_billing.attempts AS a
           (payment_id, customer_id, attempt_number, order_id, billing_key_id, idempotency_key, state, deadline,
            requested_by)
    VALUES (v_p.id, v_customer,
            COALESCE((SELECT pg_catalog.max(x.attempt_number) FROM toss_billing.attempts x WHERE x.payment_id = v_p.id), 0) + 1,
            v_p.order_id, v_key.id, pg_catalog.gen_random_uuid()::text, 'in_flight',
            pg_catalog.now() + 2 * _charge_intent.call_timeout, _charge_intent.requested_by)
    RETURNING * INTO v_a;
    IF NOT v_new THEN
        UPDATE toss_billing.payments p
           SET state = 'in_flight', billing_key_id = v_key.id, merchant = v_key.merchant,
               customer_email = _charge_intent.customer_email, customer_name = _charge_intent.customer_name,
               updated_at = pg_catalog.now()
         WHERE p.id = v_p.id;
    END IF;
    RETURN QUERY SELECT 'post'::text, v_p.id, v_a.id, v_a.order_id, v_a.idempotency_key, v_key.id, v_key.merchant,
                        v_key.encrypted_key, v_key.mid, NULL::jsonb, v_a.created_at, true;
END;
$$;

-- What happened to an order, by the order id the caller chose (or the Toss
-- order id of a subscription period): for an application that got TB006,
-- timed out or was cancelled.  toss_order_id is the order id Toss knows it
-- by (the caller's, unless Toss refused it and a new one replaced it);
-- advice says what to do.
CREATE OR REPLACE FUNCTION toss_billing.order_status(order_id text)
RETURNS TABLE(toss_order_id text, obligation text, state text, paid boolean, amount bigint, toss_status text,
              payment_key text, approved_at timestamptz, attempts integer, failure_class text, failure_code text,
              failure_message text, hold_reason text, advice text, updated_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF order_status.order_id IS NULL THEN
        RAISE EXCEPTION 'order_id must not be null' USING ERRCODE = '22004';
    END IF;
    RETURN QUERY
    SELECT p.order_id, p.obligation, p.state, p.state = 'done', p.amount, p.toss_status, p.payment_key,
           p.approved_at,
           (SELECT pg_catalog.count(*)::integer FROM toss_billing.attempts a WHERE a.payment_id = p.id),
           p.failure_class, p.failure_code, p.failure_message, p.hold_reason,
           CASE p.state
               WHEN 'done' THEN 'paid: nothing to do'
               WHEN 'in_flight' THEN 'a call is in flight: ask again shortly; do not charge under another order id'
               WHEN 'unknown' THEN CASE WHEN p.hold_reason IS NOT NULL
                                        THEN 'held: an answer could not be verified; see toss_billing.open_discrepancies'
                                        ELSE 'the outcome is being resolved by looking the order up: do not charge under another order id' END
               WHEN 'pending' THEN CASE WHEN p.hold_reason IS NOT NULL
                                        THEN 'held: an answer could not be verified; see toss_billing.open_discrepancies'
                                        ELSE 'owed and not paid yet' END
               ELSE CASE WHEN p.hold_reason IS NOT NULL
                         THEN 'held: an answer could not be verified; see toss_billing.open_discrepancies'
                         ELSE 'not paid: calling toss_charge again with the same order id retries it safely' END END,
           p.updated_at
      FROM toss_billing.payments p
     WHERE p.obligation = 'charge:' || order_status.order_id OR p.order_id = order_status.order_id
     ORDER BY p.state = 'done' DESC, p.id DESC
     LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'order "%" is not in the ledger', order_status.order_id USING ERRCODE = 'TB004',
            DETAIL = 'Nothing was recorded under this order id, so nothing was sent to Toss for it.';
    END IF;
END;
$$;

-- A payment row takes Toss's latest verified Payment: status, balance,
-- amounts and the response.  A Payment older than what the row holds (a
-- larger balance: a card payment's balance only goes down) is not applied.
CREATE OR REPLACE FUNCTION toss_billing._record_payment_state(payment_id bigint, payment jsonb)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE toss_billing.payments p
       SET toss_status = COALESCE(_record_payment_state.payment->>'status', p.toss_status),
           payment_key = COALESCE(p.payment_key, _record_payment_state.payment->>'paymentKey'),
           total_amount = COALESCE(p.total_amount, (_record_payment_state.payment->>'totalAmount')::bigint),
           balance_amount = COALESCE((_record_payment_state.payment->>'balanceAmount')::bigint, p.balance_amount),
           supplied_amount = COALESCE((_record_payment_state.payment->>'suppliedAmount')::bigint, p.supplied_amount),
           vat = COALESCE((_record_payment_state.payment->>'vat')::bigint, p.vat),
           approved_at = COALESCE(p.approved_at, (_record_payment_state.payment->>'approvedAt')::timestamptz),
           response = _record_payment_state.payment,
           updated_at = pg_catalog.now()
     WHERE p.id = _record_payment_state.payment_id
       AND (p.balance_amount IS NULL OR (_record_payment_state.payment->>'balanceAmount') IS NULL
            OR (_record_payment_state.payment->>'balanceAmount')::bigint <= p.balance_amount);
    RETURN FOUND;
END;
$$;

REVOKE ALL ON TYPE toss_billing.card, toss_billing.payment FROM PUBLIC;
GRANT USAGE ON TYPE toss_billing.card, toss_billing.payment TO toss_billing_operator, toss_billing_auditor;
GRANT EXECUTE ON FUNCTION toss_billing.toss_charge(text, bigint, text, text, text, text, bigint),
                          toss_billing.order_status(text)
    TO toss_billing_operator;
GRANT SELECT ON toss_billing.payments TO toss_billing_operator, toss_billing_auditor;
-- Everything of an attempt but its Idempotency-Key (a replay token).
GRANT SELECT (id, payment_id, customer_id, attempt_number, order_id, billing_key_id, state, deadline, http_status,
              failure_class, failure_code, failure_message, response, requested_by, caller_pid, caller_started_at,
              resolve_attempts, next_resolve_at, created_at, updated_at)
    ON toss_billing.attempts TO toss_billing_operator, toss_billing_auditor;
