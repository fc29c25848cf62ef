-- 10_customers_keys: customers and their billing keys.  A billing key is
-- stored only sealed (AES-256-GCM, bound to its row id); issuing one, and
-- deleting one at Toss, are C functions that run in a background worker.

-- @data

-- Customers: one row per Toss customerKey.
CREATE TABLE toss_billing.customers (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_key text NOT NULL UNIQUE
                 CHECK (customer_key OPERATOR(pg_catalog.~) '^[A-Za-z0-9_=.@-]{2,50}$'),
    name         text CHECK (pg_catalog.char_length(name) OPERATOR(pg_catalog.<=) 100),
    email        text CHECK (pg_catalog.char_length(email) OPERATOR(pg_catalog.<=) 100),
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.customers', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.customers_id_seq', '');

-- Billing keys: the key itself only as AES-256-GCM ciphertext bound to the
-- row id; the rest is the card summary Toss returns.  key_hash is a keyed
-- hash of the key (written by C at issuance, and by _backfill_key_hashes for
-- keys issued before 0.3.0), to find a key named by a BILLING_DELETED
-- webhook without storing it in the clear.  auth_key_hash is a keyed hash
-- of the authKey the key was issued for (0.5.0), so that the successUrl
-- loaded again with the same authKey returns the key already issued.
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
    key_hash           bytea,
    deleted_at         timestamptz,
    deleted_reason     text,
    auth_key_hash      bytea,
    CHECK (status OPERATOR(pg_catalog.<>) 'active' OR encrypted_key IS NOT NULL)
);
CREATE UNIQUE INDEX billing_keys_one_active ON toss_billing.billing_keys (customer_id)
    WHERE status OPERATOR(pg_catalog.=) 'active';
CREATE UNIQUE INDEX billing_keys_key_hash ON toss_billing.billing_keys (key_hash)
    WHERE key_hash IS NOT NULL;
CREATE INDEX billing_keys_unhashed ON toss_billing.billing_keys (id)
    WHERE key_hash IS NULL AND status OPERATOR(pg_catalog.=) ANY (ARRAY['active', 'replaced']);
CREATE INDEX billing_keys_auth_key ON toss_billing.billing_keys (customer_id, auth_key_hash)
    WHERE auth_key_hash IS NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('toss_billing.billing_keys', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.billing_keys_id_seq', '');

-- @code

-- The rules of a customer row, checked before it is written (by
-- create_customer or by an operator's own INSERT or UPDATE) so that a bad
-- value gets 22023 with a sentence, not a bare check-constraint violation.
CREATE OR REPLACE FUNCTION toss_billing._check_customer()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.customer_key IS NULL THEN
        RAISE EXCEPTION 'customer_key must not be null' USING ERRCODE = '22004';
    END IF;
    IF NEW.customer_key !~ '^[A-Za-z0-9_=.@-]{2,50}$' THEN
        RAISE EXCEPTION 'customer_key "%" is not valid', NEW.customer_key USING ERRCODE = '22023',
            DETAIL = 'A customer key is 2 to 50 characters of letters, digits and - _ = . @.',
            HINT = 'Toss asks for a key that cannot be guessed; leave it out and a random UUID is used.';
    END IF;
    IF pg_catalog.char_length(NEW.name) > 100 THEN
        RAISE EXCEPTION 'name is longer than 100 characters' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('Toss accepts at most 100 characters; this value has %s.', pg_catalog.char_length(NEW.name));
    END IF;
    IF pg_catalog.char_length(NEW.email) > 100 THEN
        RAISE EXCEPTION 'email is longer than 100 characters' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('Toss accepts at most 100 characters; this value has %s.', pg_catalog.char_length(NEW.email));
    END IF;
    RETURN NEW;
END;
$$;
CREATE OR REPLACE TRIGGER customers_check BEFORE INSERT OR UPDATE ON toss_billing.customers
    FOR EACH ROW EXECUTE FUNCTION toss_billing._check_customer();

-- Creates a customer; customer_key defaults to a random UUID.
CREATE OR REPLACE FUNCTION toss_billing.create_customer(
    name text DEFAULT NULL,
    email text DEFAULT NULL,
    customer_key text DEFAULT NULL)
RETURNS toss_billing.customers
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_customer toss_billing.customers;
BEGIN
    INSERT INTO toss_billing.customers (customer_key, name, email)
    VALUES (COALESCE(create_customer.customer_key, pg_catalog.gen_random_uuid()::text),
            create_customer.name, create_customer.email)
    RETURNING * INTO v_customer;
    RETURN v_customer;
END;
$$;

CREATE OR REPLACE VIEW toss_billing.billing_key_info AS
SELECT bk.id, c.customer_key, bk.merchant, bk.status, bk.mid, bk.method,
       bk.card_company, bk.card_issuer_code, bk.card_acquirer_code,
       bk.card_number, bk.card_type, bk.card_owner_type,
       bk.authenticated_at, bk.failure_code, bk.failure_message,
       bk.created_at, bk.updated_at, bk.deleted_at, bk.deleted_reason
  FROM toss_billing.billing_keys bk
  JOIN toss_billing.customers c ON c.id OPERATOR(pg_catalog.=) bk.customer_id;

CREATE OR REPLACE FUNCTION toss_billing.toss_issue_billing_key(
    customer_key text,
    auth_key text,
    merchant text DEFAULT 'default')
RETURNS toss_billing.billing_key_info
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_issue_billing_key';

-- The first half of toss_delete_billing_key: the customer's active key, to
-- DELETE at Toss.  The key row stays locked until the caller commits.
CREATE OR REPLACE FUNCTION toss_billing._delete_intent(customer_key text)
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
CREATE OR REPLACE FUNCTION toss_billing._billing_key_deleted(billing_key_id bigint, reason text)
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
    INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, type, from_status, to_status, reason,
                                     detail)
    SELECT e.occurred_at, e.subscription_id, v_key.customer_id, e.type, e.from_status, e.to_status, e.reason, e.detail
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
CREATE OR REPLACE FUNCTION toss_billing.toss_delete_billing_key(customer_key text)
RETURNS toss_billing.billing_key_info
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_delete_billing_key';

-- The keyed hash stored in billing_keys.key_hash.
CREATE OR REPLACE FUNCTION toss_billing._billing_key_hash(billing_key text)
RETURNS bytea
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_billing_key_hash';

-- Fills key_hash for keys issued before 0.3.0; returns how many.
CREATE OR REPLACE FUNCTION toss_billing._backfill_key_hashes()
RETURNS integer
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_backfill_key_hashes';

GRANT EXECUTE ON FUNCTION toss_billing.create_customer(text, text, text),
                          toss_billing.toss_issue_billing_key(text, text, text),
                          toss_billing.toss_delete_billing_key(text)
    TO toss_billing_operator;
GRANT SELECT, INSERT ON toss_billing.customers TO toss_billing_operator;
GRANT UPDATE (name, email) ON toss_billing.customers TO toss_billing_operator;
GRANT SELECT ON toss_billing.billing_key_info TO toss_billing_operator;
GRANT SELECT ON toss_billing.customers, toss_billing.billing_key_info TO toss_billing_auditor;
-- Everything of billing_keys but the ciphertext, the lookup hash and the
-- issuance's Idempotency-Key (with the secret key, a replay of the issuance
-- returns the billing key in the clear for 15 days).
GRANT SELECT (id, customer_id, merchant, status, mid, method, card_company,
              card_issuer_code, card_acquirer_code, card_number, card_type, card_owner_type,
              authenticated_at, failure_code, failure_message, created_at, updated_at,
              deleted_at, deleted_reason)
    ON toss_billing.billing_keys TO toss_billing_auditor, toss_billing_operator;
