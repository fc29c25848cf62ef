-- toss_billing 0.4.0 -> 0.5.0.  The generated upgrade script runs the
-- schema's "first" checks, then this migration of what 0.4.0 has, then the
-- code sections of every schema file, then the part after "@after-code".
-- What 0.5.0 changes in the data: the ledger becomes orders
-- (toss_billing.payments, one row per Toss orderId) and attempts (one row
-- per POST); every existing row becomes an order with one attempt.

-- Replay tokens are the owner's alone: an issuance's Idempotency-Key returns
-- the billing key in the clear to anyone who also has the secret key.
REVOKE SELECT (idempotency_key) ON toss_billing.billing_keys FROM toss_billing_operator, toss_billing_auditor;
REVOKE SELECT ON toss_billing.cancels FROM toss_billing_operator, toss_billing_auditor;

-- Functions whose signature or result changes, and the type they share.
DROP FUNCTION toss_billing._claim_due(integer);
DROP FUNCTION toss_billing._record_outcomes(bigint[], text[], integer[], text[], text[], text[], jsonb[]);
DROP FUNCTION toss_billing._mark_stale(interval);
DROP FUNCTION toss_billing._claim_unknown(integer);
DROP FUNCTION toss_billing._claim_unknown_cancels(integer);
DROP FUNCTION toss_billing._cancel_intent(text, text, bigint, name);
DROP FUNCTION toss_billing._cancel_outcome(bigint, text, integer, text, text, text, jsonb);
DROP FUNCTION toss_billing.set_dunning_policy(interval[], interval, text);
DROP FUNCTION toss_billing._store_payment_state(bigint, jsonb);
DROP FUNCTION toss_billing._settle_paid(toss_billing._outcome[]);
DROP FUNCTION toss_billing._settle_failed(toss_billing._outcome[]);
DROP FUNCTION toss_billing._settle_unknown(toss_billing._outcome[]);
DROP TYPE toss_billing._outcome;
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

-- What Toss's answers mean, as data (filled by the code of 35_answers).
CREATE TABLE toss_billing.failure_classes (
    class       text PRIMARY KEY,
    sqlstate    text NOT NULL CHECK (sqlstate OPERATOR(pg_catalog.~) '^[0-9A-Z]{5}$'),
    dunning     text NOT NULL
                CHECK (dunning OPERATOR(pg_catalog.=) ANY (ARRAY['retry', 'dunning', 'key_gone', 'stop', 'none'])),
    description text NOT NULL
);
CREATE TABLE toss_billing.error_codes (
    code       text NOT NULL CHECK (code OPERATOR(pg_catalog.~) '^[A-Z0-9_]+%?$'),
    applies_to text NOT NULL DEFAULT 'any'
               CHECK (applies_to OPERATOR(pg_catalog.=) ANY (ARRAY['any', 'charge', 'issue', 'cancel', 'lookup'])),
    class      text NOT NULL REFERENCES toss_billing.failure_classes (class),
    PRIMARY KEY (code, applies_to)
);

-- Attempts, and the ledger's rows as orders with one attempt each.
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

INSERT INTO toss_billing.attempts
       (payment_id, customer_id, attempt_number, order_id, billing_key_id, idempotency_key, state, deadline,
        http_status, failure_class, failure_code, failure_message, response, requested_by, caller_pid,
        caller_started_at, resolve_attempts, next_resolve_at, created_at, updated_at)
SELECT p.id, p.customer_id, 1, p.order_id, p.billing_key_id, p.idempotency_key,
       CASE WHEN p.state OPERATOR(pg_catalog.=) 'pending' THEN 'in_flight' ELSE p.state END,
       CASE WHEN p.state OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'in_flight'])
            THEN p.updated_at OPERATOR(pg_catalog.+) interval '131 seconds' END,
       p.http_status, p.failure_class, p.failure_code, p.failure_message,
       pg_catalog.convert_to(p.response::text, 'UTF8'), p.requested_by, p.caller_pid, p.caller_started_at,
       p.resolve_attempts, p.next_resolve_at, p.created_at, p.updated_at
  FROM toss_billing.payments p
 ORDER BY p.id;

ALTER TABLE toss_billing.payments RENAME COLUMN attempt_number TO generation;
ALTER TABLE toss_billing.payments DROP CONSTRAINT payments_subscription_period;
UPDATE toss_billing.payments SET generation = 1 WHERE generation IS NULL;
ALTER TABLE toss_billing.payments
    ALTER COLUMN generation SET DEFAULT 1,
    ALTER COLUMN generation SET NOT NULL,
    ADD CONSTRAINT payments_generation_check CHECK (generation OPERATOR(pg_catalog.>=) 1),
    ADD CONSTRAINT payments_subscription_period CHECK (
        (subscription_id IS NULL AND period_number IS NULL)
        OR (subscription_id IS NOT NULL AND period_number IS NOT NULL AND period_number OPERATOR(pg_catalog.>=) 0)),
    ADD COLUMN obligation text,
    ADD COLUMN hold_reason text;
UPDATE toss_billing.payments p
   SET obligation = CASE WHEN p.subscription_id IS NOT NULL
                         THEN pg_catalog.format('subscription:%s:%s', p.subscription_id, p.period_number)
                         WHEN p.recovered THEN 'recovered:' OPERATOR(pg_catalog.||) p.order_id
                         ELSE 'charge:' OPERATOR(pg_catalog.||) p.order_id END;
ALTER TABLE toss_billing.payments ALTER COLUMN obligation SET NOT NULL;
DROP INDEX toss_billing.payments_one_per_period;
DROP INDEX toss_billing.payments_in_flight;
DROP INDEX toss_billing.payments_unknown;
DROP INDEX toss_billing.payments_subscription_open;
ALTER TABLE toss_billing.payments
    DROP COLUMN idempotency_key,
    DROP COLUMN resolve_attempts,
    DROP COLUMN next_resolve_at,
    DROP COLUMN caller_pid,
    DROP COLUMN caller_started_at;
CREATE INDEX payments_subscription_open ON toss_billing.payments (subscription_id)
    WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['in_flight', 'unknown']);
CREATE UNIQUE INDEX payments_one_per_obligation ON toss_billing.payments (obligation)
    WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'in_flight', 'unknown', 'done']);

-- Every table that grows with customers carries customer_id.
ALTER TABLE toss_billing.events ADD COLUMN customer_id bigint REFERENCES toss_billing.customers (id);
UPDATE toss_billing.events e SET customer_id = s.customer_id
  FROM toss_billing.subscriptions s WHERE s.id OPERATOR(pg_catalog.=) e.subscription_id;
CREATE INDEX events_customer ON toss_billing.events (customer_id);
ALTER TABLE toss_billing.cancels
    ADD COLUMN customer_id bigint REFERENCES toss_billing.customers (id),
    ADD COLUMN deadline timestamptz,
    ADD COLUMN raw_response bytea;
UPDATE toss_billing.cancels c SET customer_id = p.customer_id,
       deadline = CASE WHEN c.state OPERATOR(pg_catalog.=) 'in_flight'
                       THEN c.updated_at OPERATOR(pg_catalog.+) interval '131 seconds' END
  FROM toss_billing.payments p WHERE p.id OPERATOR(pg_catalog.=) c.payment_id;
CREATE INDEX cancels_customer ON toss_billing.cancels (customer_id);

-- Dunning bounds transient retries.
ALTER TABLE toss_billing.dunning_policy
    ADD COLUMN transient_limit integer NOT NULL DEFAULT 3
        CHECK (transient_limit OPERATOR(pg_catalog.>=) 0 AND transient_limit OPERATOR(pg_catalog.<=) 20);

-- New kinds of discrepancy: answers that did not match, other people's money.
ALTER TABLE toss_billing.discrepancies DROP CONSTRAINT discrepancies_kind_check;
ALTER TABLE toss_billing.discrepancies ADD CONSTRAINT discrepancies_kind_check
    CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['missing_in_ledger', 'state_mismatch', 'amount_mismatch',
                                                  'payment_key_mismatch', 'missing_at_toss', 'cancel_missing',
                                                  'cancel_amount_mismatch', 'duplicate_charge',
                                                  'unverified_answer', 'foreign_payment']));

-- ---- auditing and operating (issue 15): the run log, alert
-- acknowledgements, the authKey of each billing key, and run_due's run id.
-- run_due gains INOUT run_id: a procedure's signature includes it, so the
-- old one goes (CREATE OR REPLACE would add a second, ambiguous one).
DROP PROCEDURE toss_billing.run_due(integer, interval, bigint, bigint, bigint, bigint, bigint, double precision);
ALTER TABLE toss_billing.billing_keys ADD COLUMN auth_key_hash bytea;
CREATE INDEX billing_keys_auth_key ON toss_billing.billing_keys (customer_id, auth_key_hash)
    WHERE auth_key_hash IS NOT NULL;
CREATE INDEX events_payment ON toss_billing.events (payment_id)
    WHERE payment_id IS NOT NULL;
CREATE TABLE toss_billing.run_log (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text NOT NULL
                     CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['run_due', 'recovery', 'reconcile'])),
    parent_id        bigint,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    outcome          text CHECK (outcome OPERATOR(pg_catalog.=) ANY (ARRAY['finished', 'interrupted'])),
    run_by           name NOT NULL,
    pid              integer NOT NULL,
    backend_start    timestamptz,
    params           jsonb,
    claimed          bigint,
    done             bigint,
    failed           bigint,
    unknown          bigint,
    throttled        bigint,
    errors           bigint,
    checked          bigint,
    recovered        bigint,
    discrepancies    bigint,
    elapsed_ms       double precision,
    first_attempt_id bigint
);
CREATE INDEX run_log_started_at ON toss_billing.run_log (started_at);
CREATE INDEX run_log_kind ON toss_billing.run_log (kind, started_at);
CREATE INDEX run_log_open ON toss_billing.run_log (id) WHERE outcome IS NULL;
SELECT pg_catalog.pg_extension_config_dump('toss_billing.run_log', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.run_log_id_seq', '');
CREATE TABLE toss_billing.alert_acks (
    event_id        bigint PRIMARY KEY REFERENCES toss_billing.events (id),
    customer_id     bigint REFERENCES toss_billing.customers (id),
    acknowledged_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    acknowledged_by name NOT NULL,
    note            text CHECK (pg_catalog.char_length(note) OPERATOR(pg_catalog.<=) 1000)
);
CREATE INDEX alert_acks_customer ON toss_billing.alert_acks (customer_id);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.alert_acks', '');
-- ---- end of auditing and operating (issue 15)

-- @after-code

CREATE EVENT TRIGGER toss_billing_drop_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA')
    EXECUTE FUNCTION toss_billing._guard_drop();
