-- toss_billing install script.  Everything lives in schema toss_billing and is
-- schema-qualified; nothing is granted to PUBLIC.
\echo Use "CREATE EXTENSION toss_billing" to load this file. \quit

-- Roles: operators call the functions, auditors read the ledger.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'toss_billing_operator') THEN
        CREATE ROLE toss_billing_operator NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'toss_billing_auditor') THEN
        CREATE ROLE toss_billing_auditor NOLOGIN;
    END IF;
END
$roles$;

REVOKE ALL ON SCHEMA toss_billing FROM PUBLIC;
GRANT USAGE ON SCHEMA toss_billing TO toss_billing_operator, toss_billing_auditor;

-- Customers: one row per Toss customerKey.
CREATE TABLE toss_billing.customers (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_key text NOT NULL UNIQUE
                 CHECK (customer_key OPERATOR(pg_catalog.~) '^[A-Za-z0-9_=.@-]{2,50}$'),
    name         text CHECK (pg_catalog.char_length(name) OPERATOR(pg_catalog.<=) 100),
    email        text CHECK (pg_catalog.char_length(email) OPERATOR(pg_catalog.<=) 100),
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Billing keys: the key itself only as AES-256-GCM ciphertext bound to the
-- row id; the rest is the card summary Toss returns.
CREATE TABLE toss_billing.billing_keys (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id        bigint NOT NULL REFERENCES toss_billing.customers (id),
    merchant           text NOT NULL DEFAULT 'default',
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'active', 'replaced', 'deleted', 'failed', 'unknown'])),
    encrypted_key      bytea,
    idempotency_key    text NOT NULL UNIQUE,
    mid                text,
    method             text,
    card_company       text,
    card_issuer_code   text,
    card_acquirer_code text,
    card_number        text,
    card_type          text,
    card_owner_type    text,
    authenticated_at   timestamptz,
    failure_code       text,
    failure_message    text,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK (status OPERATOR(pg_catalog.<>) 'active' OR encrypted_key IS NOT NULL)
);
CREATE UNIQUE INDEX billing_keys_one_active ON toss_billing.billing_keys (customer_id)
    WHERE status OPERATOR(pg_catalog.=) 'active';

-- The ledger: one row per charge attempt, written before the HTTP call
-- (state in_flight) and updated after it.
CREATE TABLE toss_billing.payments (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id         text NOT NULL UNIQUE
                     CHECK (order_id OPERATOR(pg_catalog.~) '^[A-Za-z0-9_-]{6,64}$'),
    idempotency_key  text NOT NULL UNIQUE,
    customer_id      bigint NOT NULL REFERENCES toss_billing.customers (id),
    billing_key_id   bigint NOT NULL REFERENCES toss_billing.billing_keys (id),
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
    updated_at       timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX payments_created_at ON toss_billing.payments (created_at);
CREATE INDEX payments_state ON toss_billing.payments (state)
    WHERE state OPERATOR(pg_catalog.<>) ALL (ARRAY['done', 'failed']);
CREATE INDEX payments_customer ON toss_billing.payments (customer_id);

SELECT pg_catalog.pg_extension_config_dump('toss_billing.customers', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.billing_keys', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.payments', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.customers_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.billing_keys_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.payments_id_seq', '');

-- What a billing key row shows without its secret.
CREATE VIEW toss_billing.billing_key_info AS
SELECT bk.id, c.customer_key, bk.merchant, bk.status, bk.mid, bk.method,
       bk.card_company, bk.card_issuer_code, bk.card_acquirer_code,
       bk.card_number, bk.card_type, bk.card_owner_type,
       bk.authenticated_at, bk.failure_code, bk.failure_message,
       bk.created_at, bk.updated_at
  FROM toss_billing.billing_keys bk
  JOIN toss_billing.customers c ON c.id OPERATOR(pg_catalog.=) bk.customer_id;

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

CREATE FUNCTION toss_billing.create_customer(
    name text DEFAULT NULL,
    email text DEFAULT NULL,
    customer_key text DEFAULT NULL)
RETURNS toss_billing.customers
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO toss_billing.customers (customer_key, name, email)
    VALUES (COALESCE(customer_key, pg_catalog.gen_random_uuid()::text), name, email)
    RETURNING *;
$$;

CREATE FUNCTION toss_billing.toss_issue_billing_key(
    customer_key text,
    auth_key text,
    merchant text DEFAULT 'default')
RETURNS toss_billing.billing_key_info
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'toss_issue_billing_key';

CREATE FUNCTION toss_billing.toss_charge(
    customer_key text,
    amount bigint,
    order_name text,
    order_id text DEFAULT NULL,
    customer_email text DEFAULT NULL,
    customer_name text DEFAULT NULL,
    tax_free_amount bigint DEFAULT 0)
RETURNS toss_billing.payment
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'toss_charge';

-- Privileges: nothing for PUBLIC; operators run billing, auditors read.
REVOKE ALL ON ALL TABLES IN SCHEMA toss_billing FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA toss_billing FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA toss_billing FROM PUBLIC;
REVOKE ALL ON TYPE toss_billing.card, toss_billing.payment FROM PUBLIC;
GRANT USAGE ON TYPE toss_billing.card, toss_billing.payment TO toss_billing_operator, toss_billing_auditor;

GRANT EXECUTE ON FUNCTION toss_billing.create_customer(text, text, text),
                          toss_billing.toss_issue_billing_key(text, text, text),
                          toss_billing.toss_charge(text, bigint, text, text, text, text, bigint)
    TO toss_billing_operator;
GRANT SELECT, INSERT ON toss_billing.customers TO toss_billing_operator;
GRANT UPDATE (name, email) ON toss_billing.customers TO toss_billing_operator;
GRANT SELECT ON toss_billing.billing_key_info, toss_billing.payments TO toss_billing_operator;

GRANT SELECT ON toss_billing.customers, toss_billing.billing_key_info, toss_billing.payments
    TO toss_billing_auditor;
-- Everything of billing_keys but the ciphertext.
GRANT SELECT (id, customer_id, merchant, status, idempotency_key, mid, method, card_company,
              card_issuer_code, card_acquirer_code, card_number, card_type, card_owner_type,
              authenticated_at, failure_code, failure_message, created_at, updated_at)
    ON toss_billing.billing_keys TO toss_billing_auditor, toss_billing_operator;
