-- 40_ledger: the ledger of charges (toss_billing.payments), Toss's Payment
-- object as a SQL type, and the single charge (toss_charge).  A row is
-- written before its HTTP call (state in_flight) and completed after it, in
-- transactions of their own.

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

-- The ledger: one row per charge attempt, written before the HTTP call
-- (state in_flight) and updated after it.  A subscription attempt names its
-- subscription period; at most one live or successful attempt per period
-- (payments_one_per_period): a second charge of a period cannot even be
-- recorded as an intent.  Failed attempts may be many.
-- resolve_attempts / next_resolve_at: the resolver's backoff for an unknown
-- attempt.  recovered: a payment Toss has that the ledger lacked, inserted
-- by reconcile; it has no billing key (and no customer when Toss's
-- customerKey is not one of ours).  caller_pid / caller_started_at: the
-- process that wrote the row (defaults, so every writer records itself).
CREATE TABLE toss_billing.payments (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id         text NOT NULL UNIQUE
                     CHECK (order_id OPERATOR(pg_catalog.~) '^[A-Za-z0-9_-]{6,64}$'),
    idempotency_key  text NOT NULL UNIQUE,
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
    attempt_number   integer,
    resolve_attempts integer NOT NULL DEFAULT 0 CHECK (resolve_attempts OPERATOR(pg_catalog.>=) 0),
    next_resolve_at  timestamptz,
    recovered        boolean NOT NULL DEFAULT false,
    caller_pid       integer DEFAULT pg_catalog.pg_backend_pid(),
    caller_started_at timestamptz DEFAULT toss_billing._backend_start(),
    CONSTRAINT payments_subscription_period CHECK (
        (subscription_id IS NULL AND period_number IS NULL AND attempt_number IS NULL)
        OR (subscription_id IS NOT NULL AND period_number IS NOT NULL AND attempt_number IS NOT NULL
            AND period_number OPERATOR(pg_catalog.>=) 0 AND attempt_number OPERATOR(pg_catalog.>=) 1)),
    CONSTRAINT payments_billing_key_or_recovered CHECK (billing_key_id IS NOT NULL OR recovered),
    CONSTRAINT payments_customer_or_recovered CHECK (customer_id IS NOT NULL OR recovered)
);
CREATE INDEX payments_created_at ON toss_billing.payments (created_at);
CREATE INDEX payments_state ON toss_billing.payments (state)
    WHERE state OPERATOR(pg_catalog.<>) ALL (ARRAY['done', 'failed']);
CREATE INDEX payments_customer ON toss_billing.payments (customer_id);
CREATE UNIQUE INDEX payments_one_per_period ON toss_billing.payments (subscription_id, period_number)
    WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'in_flight', 'unknown', 'done']);
CREATE INDEX payments_subscription ON toss_billing.payments (subscription_id, period_number, attempt_number)
    WHERE subscription_id IS NOT NULL;
CREATE INDEX payments_subscription_open ON toss_billing.payments (subscription_id)
    WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'in_flight', 'unknown']);
-- cheap when there is nothing to do: both cover only the rows they look for
CREATE INDEX payments_in_flight ON toss_billing.payments (updated_at)
    WHERE state OPERATOR(pg_catalog.=) 'in_flight';
CREATE INDEX payments_unknown ON toss_billing.payments (created_at, id)
    WHERE state OPERATOR(pg_catalog.=) 'unknown' AND NOT recovered;
CREATE INDEX payments_payment_key ON toss_billing.payments (payment_key)
    WHERE payment_key IS NOT NULL;
CREATE INDEX payments_approved_at ON toss_billing.payments (approved_at)
    WHERE state OPERATOR(pg_catalog.=) 'done';
SELECT pg_catalog.pg_extension_config_dump('toss_billing.payments', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.payments_id_seq', '');

-- @code

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

-- A payment row takes Toss's latest Payment: status, balance, amounts and
-- the response.  A Payment older than what the row holds (a larger
-- balance: a card payment's balance only goes down) is not applied.
CREATE OR REPLACE FUNCTION toss_billing._store_payment_state(payment_id bigint, payment jsonb)
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

REVOKE ALL ON TYPE toss_billing.card, toss_billing.payment FROM PUBLIC;
GRANT USAGE ON TYPE toss_billing.card, toss_billing.payment TO toss_billing_operator, toss_billing_auditor;
GRANT EXECUTE ON FUNCTION toss_billing.toss_charge(text, bigint, text, text, text, text, bigint)
    TO toss_billing_operator;
GRANT SELECT ON toss_billing.payments TO toss_billing_operator, toss_billing_auditor;
