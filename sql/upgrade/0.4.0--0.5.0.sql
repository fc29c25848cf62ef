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
-- every order of an obligation, whatever its state: the intent's and the
-- claims' "latest order of the obligation", order_status(), webhooks and
-- reconcile find them here, not among the customer's or all the orders
CREATE INDEX payments_obligation ON toss_billing.payments (obligation);

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

-- ==================================================================== invoices (issue 14)
-- Invoices, seats, usage, coupons and price-change consent.  What a 0.4.0
-- subscription had becomes: quantity 1; every period its orders charged (or
-- are charging) an invoice with one plan line of the order's amount (paid,
-- open, or void when it was given up); the orders pay those invoices.

-- Functions whose signature changes (a parameter with a default added).
DROP FUNCTION toss_billing.change_plan(bigint, bigint);
DROP FUNCTION toss_billing.create_plan(text, bigint, text, integer, integer);

ALTER TABLE toss_billing.plans ADD COLUMN tax_free boolean NOT NULL DEFAULT false;
ALTER TABLE toss_billing.subscriptions
    ADD COLUMN quantity integer NOT NULL DEFAULT 1 CHECK (quantity OPERATOR(pg_catalog.>=) 1),
    ADD COLUMN pending_quantity integer CHECK (pending_quantity OPERATOR(pg_catalog.>=) 1),
    ADD COLUMN pending_quantity_period integer,
    ADD COLUMN pending_amount bigint CHECK (pending_amount OPERATOR(pg_catalog.>=) 100),
    ADD COLUMN pending_amount_period integer,
    ADD COLUMN deferred_until timestamptz,
    ADD CONSTRAINT subscriptions_pending_quantity_pair CHECK ((pending_quantity IS NULL) OPERATOR(pg_catalog.=) (pending_quantity_period IS NULL)),
    ADD CONSTRAINT subscriptions_pending_amount_pair CHECK ((pending_amount IS NULL) OPERATOR(pg_catalog.=) (pending_amount_period IS NULL));
CREATE INDEX subscriptions_pending_terms ON toss_billing.subscriptions (current_period_start)
    WHERE pending_quantity_period IS NOT NULL OR pending_amount_period IS NOT NULL;

-- Metered components of a plan.  A subscription on the plan records usage
-- of the metric (record_usage); at the end of each period its usage becomes
-- one line per meter on the next invoice.
--   aggregation  how a period's records make one quantity: sum (of all
--                records), max (the largest), last (the latest by time)
--   unit_amount  price per unit (KRW, may be fractional: 0.5 per request);
--                or tiers: a JSON array of {"up_to": n | null, "unit_amount": x,
--                "flat_amount": n}, up_to increasing, the last one null
--                (no bound); tiers_mode graduated (each unit at the price of
--                its tier) or volume (every unit at the price of the tier the
--                quantity falls in)
--   tax_free     the usage lines are tax-free (면세): part of taxFreeAmount
CREATE TABLE toss_billing.plan_meters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id     bigint NOT NULL REFERENCES toss_billing.plans (id),
    metric      text NOT NULL CHECK (metric OPERATOR(pg_catalog.~) '^[a-z][a-z0-9_.:-]{0,62}$'),
    description text NOT NULL
                CHECK (pg_catalog.char_length(description) OPERATOR(pg_catalog.<=) 200
                       AND description OPERATOR(pg_catalog.!~) '[\x01-\x1f\x7f]'),
    aggregation text NOT NULL DEFAULT 'sum'
                CHECK (aggregation OPERATOR(pg_catalog.=) ANY (ARRAY['sum', 'max', 'last'])),
    unit_amount numeric CHECK (unit_amount OPERATOR(pg_catalog.>=) 0),
    tiers       jsonb,
    tiers_mode  text CHECK (tiers_mode OPERATOR(pg_catalog.=) ANY (ARRAY['graduated', 'volume'])),
    tax_free    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT plan_meters_price CHECK ((unit_amount IS NULL) OPERATOR(pg_catalog.<>) (tiers IS NULL)
                                        AND (tiers IS NULL) OPERATOR(pg_catalog.=) (tiers_mode IS NULL)),
    CONSTRAINT plan_meters_metric_per_plan UNIQUE (plan_id, metric)
);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.plan_meters', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.plan_meters_id_seq', '');

-- Coupons: a discount a subscription can redeem.  percent_off (0 < p <= 100)
-- or amount_off (KRW); duration once (the next period invoice), repeating
-- (duration_periods period invoices) or forever; max_redemptions bounds
-- the number of subscriptions that redeem it (times_redeemed counts them);
-- expires_at is the last moment it can be redeemed (redemptions made
-- before go on).
CREATE TABLE toss_billing.coupons (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code             text NOT NULL UNIQUE CHECK (code OPERATOR(pg_catalog.~) '^[A-Za-z0-9_-]{1,64}$'),
    percent_off      numeric CHECK (percent_off OPERATOR(pg_catalog.>) 0 AND percent_off OPERATOR(pg_catalog.<=) 100),
    amount_off       bigint CHECK (amount_off OPERATOR(pg_catalog.>) 0),
    duration         text NOT NULL
                     CHECK (duration OPERATOR(pg_catalog.=) ANY (ARRAY['once', 'repeating', 'forever'])),
    duration_periods integer CHECK (duration_periods OPERATOR(pg_catalog.>=) 1),
    max_redemptions  integer CHECK (max_redemptions OPERATOR(pg_catalog.>=) 1),
    times_redeemed   integer NOT NULL DEFAULT 0 CHECK (times_redeemed OPERATOR(pg_catalog.>=) 0),
    expires_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT coupons_one_discount CHECK ((percent_off IS NULL) OPERATOR(pg_catalog.<>) (amount_off IS NULL)),
    CONSTRAINT coupons_duration_periods CHECK ((duration OPERATOR(pg_catalog.=) 'repeating')
                                               OPERATOR(pg_catalog.=) (duration_periods IS NOT NULL)),
    CONSTRAINT coupons_redemptions_bounded CHECK (max_redemptions IS NULL
                                                  OR times_redeemed OPERATOR(pg_catalog.<=) max_redemptions)
);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.coupons', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.coupons_id_seq', '');

-- A subscription's redemption of a coupon.  At most one is active per
-- subscription (a new coupon replaces it); a subscription redeems a coupon
-- once.  periods_applied counts the period invoices it discounted; a once
-- or repeating redemption ends when they are used up.
--   status  active, ended (used up, or removed), replaced (by another coupon)
CREATE TABLE toss_billing.coupon_redemptions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    coupon_id       bigint NOT NULL REFERENCES toss_billing.coupons (id),
    subscription_id bigint NOT NULL REFERENCES toss_billing.subscriptions (id),
    customer_id     bigint NOT NULL REFERENCES toss_billing.customers (id),
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['active', 'ended', 'replaced'])),
    periods_applied integer NOT NULL DEFAULT 0 CHECK (periods_applied OPERATOR(pg_catalog.>=) 0),
    redeemed_at     timestamptz NOT NULL,
    ended_at        timestamptz,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT coupon_redemptions_once UNIQUE (coupon_id, subscription_id)
);
CREATE UNIQUE INDEX coupon_redemptions_one_active ON toss_billing.coupon_redemptions (subscription_id)
    WHERE status OPERATOR(pg_catalog.=) 'active';
CREATE INDEX coupon_redemptions_customer ON toss_billing.coupon_redemptions (customer_id);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.coupon_redemptions', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.coupon_redemptions_id_seq', '');

-- The invoice policy: one row.
--   grace_period      how long after a period starts its draft invoice can
--                     still take lines (and usage of the period that ended
--                     still counts as on time) before it is finalised and
--                     charged (Stripe's one-hour draft window); default 0
--   consent_fallback  what the runner does with an invoice whose recurring
--                     amount rises without a valid consent (34_consent):
--                     keep_old_amount (charge the previous recurring amount;
--                     a consent_adjustment line takes the increase off) or
--                     cancel (the subscription ends when the increase would
--                     take effect; a trial's conversion always cancels)
--   consent_reminder  how long before the effective date a consent_reminder
--                     event follows the consent_required one; 0 = none
--   consent_rule      enforce (the default): the consent rule of
--                     34_consent applies; off: it does not (only for an
--                     installation whose customers are businesses, which the
--                     consumer law does not cover)
CREATE TABLE toss_billing.invoice_policy (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    grace_period     interval NOT NULL DEFAULT '0'
                     CHECK (grace_period OPERATOR(pg_catalog.>=) '0'::interval
                            AND grace_period OPERATOR(pg_catalog.<=) '7 days'::interval),
    consent_fallback text NOT NULL DEFAULT 'keep_old_amount'
                     CHECK (consent_fallback OPERATOR(pg_catalog.=) ANY (ARRAY['keep_old_amount', 'cancel'])),
    consent_reminder interval NOT NULL DEFAULT '7 days'
                     CHECK (consent_reminder OPERATOR(pg_catalog.>=) '0'::interval
                            AND consent_reminder OPERATOR(pg_catalog.<) '30 days'::interval),
    consent_rule     text NOT NULL DEFAULT 'enforce'
                     CHECK (consent_rule OPERATOR(pg_catalog.=) ANY (ARRAY['enforce', 'off'])),
    updated_at       timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO toss_billing.invoice_policy DEFAULT VALUES;
SELECT pg_catalog.pg_extension_config_dump('toss_billing.invoice_policy', '');

-- Invoices.  Times (period_*, usage_*, *_at but created_at / updated_at)
-- are on the subscription's clock.
--   kind            period (one per subscription period), proration (an
--                   immediate plan or quantity change), one_off (items
--                   charged at once), final (what a canceled subscription
--                   still owes: usage, items, remainders)
--   period_number   the subscription period a period invoice bills (its
--                   plan line covers [period_start, period_end))
--   usage_from, usage_until  the usage window billed on time: records that
--                   occurred in it; older unbilled records come as late lines
--   plan_id, unit_amount, quantity  the plan line's terms; coupon_id the
--                   coupon that discounted it (NULL: none)
--   agreed_unit_amount, agreed_coupon_id  the price terms the customer is
--                   held to after this invoice (the new ones, or the old ones
--                   kept for want of consent): the baseline of the consent rule
--   subtotal        the sum of every line but the discount line
--   discount        what the discount line takes off (>= 0)
--   total           subtotal - discount
--   carried_forward a total Toss cannot be asked for (1..99 KRW, below its
--                   minimum of 100; or a credit, below 0), moved to the next
--                   invoice as a carried line (carried_into_invoice_id)
--   amount_due      what is charged: total - carried_forward (0 or >= 100)
--   tax_free_amount the tax-free part of amount_due, sent as taxFreeAmount:
--                   the tax-free lines less their share of the discount
--   amount_paid     what the paying order charged
--   recurring_amount  a period invoice's recurring part (plan lines, less
--                   their discount, plus any consent_adjustment)
--   consent         not_needed, consented, kept_old_amount, canceled (34_consent)
--   description     the Toss orderName of its order
--   next_attempt_at when the runner charges an open invoice of kind other
--                   than period (period invoices follow their subscription)
CREATE TABLE toss_billing.invoices (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id             bigint NOT NULL REFERENCES toss_billing.customers (id),
    subscription_id         bigint NOT NULL REFERENCES toss_billing.subscriptions (id),
    kind                    text NOT NULL
                            CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['period', 'proration', 'one_off', 'final'])),
    period_number           integer CHECK (period_number OPERATOR(pg_catalog.>=) 0),
    status                  text NOT NULL DEFAULT 'draft'
                            CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['draft', 'open', 'paid', 'uncollectible', 'void'])),
    description             text NOT NULL CHECK (pg_catalog.char_length(description) OPERATOR(pg_catalog.<=) 100),
    period_start            timestamptz,
    period_end              timestamptz,
    usage_from              timestamptz,
    usage_until             timestamptz,
    plan_id                 bigint REFERENCES toss_billing.plans (id),
    unit_amount             bigint,
    quantity                integer,
    coupon_id               bigint REFERENCES toss_billing.coupons (id),
    agreed_unit_amount      bigint,
    agreed_coupon_id        bigint REFERENCES toss_billing.coupons (id),
    subtotal                bigint NOT NULL DEFAULT 0,
    discount                bigint NOT NULL DEFAULT 0 CHECK (discount OPERATOR(pg_catalog.>=) 0),
    total                   bigint NOT NULL DEFAULT 0,
    carried_forward         bigint NOT NULL DEFAULT 0,
    amount_due              bigint NOT NULL DEFAULT 0
                            CHECK (amount_due OPERATOR(pg_catalog.=) 0 OR amount_due OPERATOR(pg_catalog.>=) 100),
    tax_free_amount         bigint NOT NULL DEFAULT 0
                            CHECK (tax_free_amount OPERATOR(pg_catalog.>=) 0
                                   AND tax_free_amount OPERATOR(pg_catalog.<=) amount_due),
    amount_paid             bigint NOT NULL DEFAULT 0,
    recurring_amount        bigint,
    consent                 text CHECK (consent OPERATOR(pg_catalog.=) ANY (ARRAY['not_needed', 'consented',
                                                                                  'kept_old_amount', 'canceled'])),
    carried_into_invoice_id bigint REFERENCES toss_billing.invoices (id),
    status_reason           text,
    next_attempt_at         timestamptz,
    finalized_at            timestamptz,
    paid_at                 timestamptz,
    voided_at               timestamptz,
    uncollectible_at        timestamptz,
    created_at              timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at              timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT invoices_period_number CHECK ((kind OPERATOR(pg_catalog.=) 'period')
                                             OPERATOR(pg_catalog.=) (period_number IS NOT NULL)),
    CONSTRAINT invoices_amounts CHECK (total OPERATOR(pg_catalog.=) (subtotal OPERATOR(pg_catalog.-) discount)
                                       AND amount_due OPERATOR(pg_catalog.=) (total OPERATOR(pg_catalog.-) carried_forward))
);
CREATE UNIQUE INDEX invoices_one_per_period ON toss_billing.invoices (subscription_id, period_number)
    WHERE kind OPERATOR(pg_catalog.=) 'period';
CREATE INDEX invoices_subscription ON toss_billing.invoices (subscription_id, id);
CREATE INDEX invoices_customer ON toss_billing.invoices (customer_id);
CREATE INDEX invoices_due ON toss_billing.invoices (next_attempt_at, id)
    WHERE status OPERATOR(pg_catalog.=) 'open' AND next_attempt_at IS NOT NULL;
CREATE INDEX invoices_carried ON toss_billing.invoices (subscription_id)
    WHERE carried_forward OPERATOR(pg_catalog.<>) 0 AND carried_into_invoice_id IS NULL;
-- the period invoices being charged (the runner's claim): as many as are
-- due, however long the history
CREATE INDEX invoices_open_period ON toss_billing.invoices (subscription_id, period_number)
    WHERE kind OPERATOR(pg_catalog.=) 'period'
      AND status OPERATOR(pg_catalog.=) ANY (ARRAY['open', 'uncollectible']);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.invoices', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.invoices_id_seq', '');

-- The lines of invoices.
--   kind        plan, proration (credit for unused time: negative; charge
--               for the remaining time), usage (one per meter and window;
--               late: usage of a window an earlier invoice finalised),
--               one_off (add_invoice_item), carried (an earlier invoice's
--               carried_forward, source_invoice_id), consent_adjustment
--               (takes an unconsented increase off), discount (one per
--               invoice, coupon_id; negative)
--   quantity, unit_amount  how the amount was reached (unit_amount NULL
--               for tiered usage: detail has the tiers)
--   amount      KRW, negative for credits
--   tax_free    part of the invoice's tax-free amount
--   item_key    add_invoice_item's idempotency_key (the application's own
--               key, not a Toss Idempotency-Key), unique per subscription
CREATE TABLE toss_billing.invoice_items (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id        bigint NOT NULL REFERENCES toss_billing.invoices (id),
    customer_id       bigint NOT NULL REFERENCES toss_billing.customers (id),
    subscription_id   bigint NOT NULL REFERENCES toss_billing.subscriptions (id),
    kind              text NOT NULL
                      CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['plan', 'proration', 'usage', 'one_off', 'carried',
                                                                     'consent_adjustment', 'discount'])),
    description       text NOT NULL
                      CHECK (pg_catalog.char_length(description) OPERATOR(pg_catalog.<=) 300),
    period_start      timestamptz,
    period_end        timestamptz,
    quantity          bigint NOT NULL DEFAULT 1,
    unit_amount       numeric,
    amount            bigint NOT NULL,
    tax_free          boolean NOT NULL DEFAULT false,
    late              boolean NOT NULL DEFAULT false,
    meter_id          bigint REFERENCES toss_billing.plan_meters (id),
    coupon_id         bigint REFERENCES toss_billing.coupons (id),
    source_invoice_id bigint REFERENCES toss_billing.invoices (id),
    item_key          text CHECK (pg_catalog.char_length(item_key) OPERATOR(pg_catalog.<=) 255),
    detail            jsonb,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX invoice_items_invoice ON toss_billing.invoice_items (invoice_id);
CREATE INDEX invoice_items_customer ON toss_billing.invoice_items (customer_id);
CREATE UNIQUE INDEX invoice_items_item_key ON toss_billing.invoice_items (subscription_id, item_key)
    WHERE item_key IS NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('toss_billing.invoice_items', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.invoice_items_id_seq', '');

-- One line of an invoice being composed (preview_invoice shows them):
-- invoice_items' columns; item_id is the stored line's id (NULL for a line
-- computed at finalisation).
CREATE TYPE toss_billing.invoice_line AS (
    item_id           bigint,
    kind              text,
    description       text,
    period_start      timestamptz,
    period_end        timestamptz,
    quantity          bigint,
    unit_amount       numeric,
    amount            bigint,
    tax_free          boolean,
    late              boolean,
    meter_id          bigint,
    coupon_id         bigint,
    source_invoice_id bigint,
    detail            jsonb
);

-- An invoice as it would be finalised now (preview_invoice): its header
-- (the columns of toss_billing.invoices), lines and totals.
CREATE TYPE toss_billing.invoice_preview AS (
    subscription_id        bigint,
    invoice_id             bigint,
    kind                   text,
    period_number          integer,
    description            text,
    period_start           timestamptz,
    period_end             timestamptz,
    usage_from             timestamptz,
    usage_until            timestamptz,
    lines                  toss_billing.invoice_line[],
    subtotal               bigint,
    discount               bigint,
    total                  bigint,
    carried_forward        bigint,
    amount_due             bigint,
    tax_free_amount        bigint,
    recurring_amount       bigint,
    plan_id                bigint,
    unit_amount            bigint,
    quantity               integer,
    coupon_id              bigint,
    agreed_unit_amount     bigint,
    agreed_coupon_id       bigint,
    consent                text,
    consent_requirement_id bigint
);

-- One usage record as the composition of an invoice takes it.
CREATE TYPE toss_billing._usage_row AS (
    meter_id        bigint,
    quantity        bigint,
    occurred_at     timestamptz,
    recorded_at     timestamptz,
    usage_key       text
);

-- Usage records.
--   meter_id       the meter of the subscription's plan when it was
--                  recorded (its price applies)
--   occurred_at    when the usage happened (the "at" of record_usage; the
--                  subscription's clock when not given)
--   recorded_at    when it was recorded (real time)
--   invoice_id     the invoice that billed it (NULL: not billed yet)
CREATE TABLE toss_billing.usage_records (
    subscription_id bigint NOT NULL REFERENCES toss_billing.subscriptions (id),
    usage_key       text NOT NULL,
    customer_id     bigint NOT NULL REFERENCES toss_billing.customers (id),
    meter_id        bigint NOT NULL REFERENCES toss_billing.plan_meters (id),
    quantity        bigint NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    invoice_id      bigint REFERENCES toss_billing.invoices (id),
    CONSTRAINT usage_records_pkey PRIMARY KEY (subscription_id, usage_key)
);
CREATE INDEX usage_records_unbilled ON toss_billing.usage_records (subscription_id, occurred_at)
    WHERE invoice_id IS NULL;
CREATE INDEX usage_records_window ON toss_billing.usage_records (subscription_id, occurred_at);
CREATE INDEX usage_records_invoice ON toss_billing.usage_records (invoice_id) WHERE invoice_id IS NOT NULL;
CREATE INDEX usage_records_customer ON toss_billing.usage_records (customer_id);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.usage_records', '');

-- The inbox an application may COPY usage into (operators may INSERT,
-- SELECT and DELETE here): subscription_id, metric, quantity, "at"
-- (optional), usage_key (its idempotency key).  ingest_usage() moves the rows into
-- usage_records; a row it cannot take stays with its rejected_reason (and
-- customer_id, when the subscription exists) until someone deletes it.
CREATE TABLE toss_billing.usage_staging (
    subscription_id bigint,
    metric          text,
    quantity        bigint,
    "at"            timestamptz,
    usage_key       text,
    staged_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    rejected_reason text,
    customer_id     bigint
);
CREATE INDEX usage_staging_customer ON toss_billing.usage_staging (customer_id) WHERE customer_id IS NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('toss_billing.usage_staging', '');

-- Consent requirements: one per increase of a period's recurring amount.
--   period_number, effective_at  the period whose invoice would charge it,
--                  and when (its start)
--   reason         trial_conversion, plan_change, price_change, coupon_expiry
--   quantity       the quantity the amounts are computed at
--   old_unit_amount, old_coupon_id  the baseline terms (NULL for a trial)
--   new_unit_amount, new_coupon_id, new_plan_id  the new terms
--   old_amount, new_amount  the recurring amounts, at quantity
--   payment_method the card to be charged (masked number) when it was made
--   status         pending (no counting consent yet), consented, missing
--                  (the period was invoiced without it: fallback says what
--                  was done), superseded (the terms changed again: a new
--                  requirement replaces it), withdrawn (no increase any more)
--   required_at    when it was made (the subscription's clock)
--   notice_at, noticed_at    30 days before the effective date; when the
--                  consent_required event was recorded
--   reminder_at, reminded_at the policy's reminder; its event
--   invoice_id     the invoice it governed
CREATE TABLE toss_billing.consent_requirements (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES toss_billing.subscriptions (id),
    customer_id     bigint NOT NULL REFERENCES toss_billing.customers (id),
    period_number   integer NOT NULL,
    effective_at    timestamptz NOT NULL,
    reason          text NOT NULL
                    CHECK (reason OPERATOR(pg_catalog.=) ANY (ARRAY['trial_conversion', 'plan_change', 'price_change',
                                                                     'coupon_expiry'])),
    quantity        integer NOT NULL,
    old_unit_amount bigint,
    old_coupon_id   bigint REFERENCES toss_billing.coupons (id),
    old_amount      bigint NOT NULL,
    new_plan_id     bigint NOT NULL REFERENCES toss_billing.plans (id),
    new_unit_amount bigint NOT NULL,
    new_coupon_id   bigint REFERENCES toss_billing.coupons (id),
    new_amount      bigint NOT NULL,
    payment_method  text,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'consented', 'missing', 'superseded',
                                                                     'withdrawn'])),
    fallback        text CHECK (fallback OPERATOR(pg_catalog.=) ANY (ARRAY['kept_old_amount', 'canceled'])),
    required_at     timestamptz NOT NULL,
    notice_at       timestamptz NOT NULL,
    noticed_at      timestamptz,
    reminder_at     timestamptz,
    reminded_at     timestamptz,
    invoice_id      bigint REFERENCES toss_billing.invoices (id),
    resolved_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT consent_requirements_increase CHECK (new_amount OPERATOR(pg_catalog.>) old_amount)
);
CREATE INDEX consent_requirements_subscription ON toss_billing.consent_requirements (subscription_id, period_number);
CREATE INDEX consent_requirements_customer ON toss_billing.consent_requirements (customer_id);
CREATE INDEX consent_requirements_notice ON toss_billing.consent_requirements (notice_at)
    WHERE status OPERATOR(pg_catalog.=) 'pending' AND noticed_at IS NULL;
CREATE INDEX consent_requirements_reminder ON toss_billing.consent_requirements (reminder_at)
    WHERE status OPERATOR(pg_catalog.=) 'pending' AND reminded_at IS NULL;
SELECT pg_catalog.pg_extension_config_dump('toss_billing.consent_requirements', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.consent_requirements_id_seq', '');

-- Consents as recorded, each with its evidence, whether it counts or not.
--   consented_at   when the customer consented (the app's word)
--   channel        how (e.g. web, app, email, kakao, phone)
--   evidence       the proof (what was shown, the customer's action, ids)
--   effective_at, old_amount, new_amount  what the requirement said then
--   counts         within the 30 days before effective_at (and not after
--                  it), and for the requirement's amounts (evidence that
--                  names old_amount / new_amount must name these)
--   why_not        why it does not count
--   recorded_by    the session user that recorded it
CREATE TABLE toss_billing.consents (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    requirement_id  bigint NOT NULL REFERENCES toss_billing.consent_requirements (id),
    subscription_id bigint NOT NULL REFERENCES toss_billing.subscriptions (id),
    customer_id     bigint NOT NULL REFERENCES toss_billing.customers (id),
    consented_at    timestamptz NOT NULL,
    channel         text NOT NULL CHECK (pg_catalog.char_length(channel) OPERATOR(pg_catalog.<=) 50),
    evidence        jsonb NOT NULL,
    effective_at    timestamptz NOT NULL,
    old_amount      bigint NOT NULL,
    new_amount      bigint NOT NULL,
    counts          boolean NOT NULL,
    why_not         text,
    recorded_by     name NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX consents_requirement ON toss_billing.consents (requirement_id);
CREATE INDEX consents_customer ON toss_billing.consents (customer_id);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.consents', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.consents_id_seq', '');

ALTER TABLE toss_billing.payments ADD COLUMN invoice_id bigint REFERENCES toss_billing.invoices (id);
CREATE INDEX payments_invoice ON toss_billing.payments (invoice_id) WHERE invoice_id IS NOT NULL;

ALTER TABLE toss_billing.events DROP CONSTRAINT events_type_check;
ALTER TABLE toss_billing.events ADD CONSTRAINT events_type_check
    CHECK (type OPERATOR(pg_catalog.=) ANY (ARRAY['created', 'status_changed', 'payment_succeeded',
                                                   'payment_failed', 'payment_unknown', 'plan_change_scheduled',
                                                   'plan_changed', 'cancel_scheduled', 'retry_scheduled', 'alert',
                                                   'payment_refunded', 'payment_recovered', 'billing_key_deleted',
                                                   'invoice_paid', 'invoice_voided', 'invoice_uncollectible',
                                                   'quantity_changed', 'quantity_change_scheduled',
                                                   'price_changed', 'price_change_scheduled', 'coupon_applied',
                                                   'consent_required', 'consent_reminder', 'consent_recorded',
                                                   'consent_missing']));

-- The invoices of the periods 0.4.0 charged: one per period that has an
-- order, with one plan line of the order's amount (the paid order's, else
-- the latest).  Paid if an order of the period is done; open if one is
-- still owed or in flight, or it is the subscription's open period; void
-- otherwise (a period given up).
WITH periods AS (
    SELECT p.subscription_id, p.period_number,
           pg_catalog.bool_or(p.state OPERATOR(pg_catalog.=) 'done') AS paid,
           pg_catalog.bool_or(p.state OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'in_flight', 'unknown'])) AS live,
           (pg_catalog.array_agg(p.amount ORDER BY p.state OPERATOR(pg_catalog.=) 'done' DESC, p.generation DESC, p.id DESC))[1] AS amount,
           (pg_catalog.array_agg(p.order_name ORDER BY p.state OPERATOR(pg_catalog.=) 'done' DESC, p.generation DESC, p.id DESC))[1] AS order_name,
           pg_catalog.max(p.approved_at) AS approved_at,
           pg_catalog.min(p.created_at) AS first_order_at,
           pg_catalog.max(p.updated_at) AS last_update_at
      FROM toss_billing.payments p
     WHERE p.subscription_id IS NOT NULL
     GROUP BY p.subscription_id, p.period_number),
made AS (
    INSERT INTO toss_billing.invoices AS i
           (customer_id, subscription_id, kind, period_number, status, description, period_start, period_end, plan_id,
            unit_amount, quantity, agreed_unit_amount, subtotal, total, amount_due, amount_paid, recurring_amount,
            consent, status_reason, finalized_at, paid_at, voided_at)
    SELECT s.customer_id, s.id, 'period', pr.period_number,
           CASE WHEN pr.paid THEN 'paid'
                WHEN pr.live OR (pr.period_number OPERATOR(pg_catalog.=) s.period_number
                                 AND s.status OPERATOR(pg_catalog.<>) 'canceled') THEN 'open'
                ELSE 'void' END,
           pg_catalog.left(pr.order_name, 100),
           CASE WHEN pr.period_number OPERATOR(pg_catalog.>=) s.anchor_period
                THEN toss_billing.period_start(s.billing_anchor, s.time_zone, pl.interval_unit, pl.interval_count,
                                               pr.period_number OPERATOR(pg_catalog.-) s.anchor_period) END,
           CASE WHEN pr.period_number OPERATOR(pg_catalog.>=) s.anchor_period
                THEN toss_billing.period_start(s.billing_anchor, s.time_zone, pl.interval_unit, pl.interval_count,
                                               pr.period_number OPERATOR(pg_catalog.+) 1 OPERATOR(pg_catalog.-) s.anchor_period) END,
           s.plan_id, pr.amount, 1, pr.amount, pr.amount, pr.amount, pr.amount,
           CASE WHEN pr.paid THEN pr.amount ELSE 0 END, pr.amount, 'not_needed',
           CASE WHEN NOT pr.paid AND NOT pr.live
                     AND NOT (pr.period_number OPERATOR(pg_catalog.=) s.period_number
                              AND s.status OPERATOR(pg_catalog.<>) 'canceled')
                THEN 'given up before 0.5.0' END,
           pr.first_order_at,
           CASE WHEN pr.paid THEN COALESCE(pr.approved_at, pr.last_update_at) END,
           CASE WHEN NOT pr.paid AND NOT pr.live
                     AND NOT (pr.period_number OPERATOR(pg_catalog.=) s.period_number
                              AND s.status OPERATOR(pg_catalog.<>) 'canceled')
                THEN pr.last_update_at END
      FROM periods pr
      JOIN toss_billing.subscriptions s ON s.id OPERATOR(pg_catalog.=) pr.subscription_id
      JOIN toss_billing.plans pl ON pl.id OPERATOR(pg_catalog.=) s.plan_id
     ORDER BY s.id, pr.period_number
    RETURNING i.id, i.subscription_id, i.customer_id, i.period_number, i.description, i.period_start, i.period_end,
              i.unit_amount)
INSERT INTO toss_billing.invoice_items (invoice_id, customer_id, subscription_id, kind, description, period_start,
                                        period_end, quantity, unit_amount, amount)
SELECT m.id, m.customer_id, m.subscription_id, 'plan', m.description, m.period_start, m.period_end, 1, m.unit_amount,
       m.unit_amount
  FROM made m
 ORDER BY m.id;
UPDATE toss_billing.payments p SET invoice_id = i.id
  FROM toss_billing.invoices i
 WHERE i.subscription_id OPERATOR(pg_catalog.=) p.subscription_id AND i.kind OPERATOR(pg_catalog.=) 'period'
   AND i.period_number OPERATOR(pg_catalog.=) p.period_number;
-- ==================================================================== end of invoices (issue 14)

-- ==================================================================== invoice fixes (review findings)
-- A consent requirement restated at another quantity (set_quantity) names
-- the first requirement of the same price change (34_consent).
ALTER TABLE toss_billing.consent_requirements
    ADD COLUMN restated_from bigint REFERENCES toss_billing.consent_requirements (id);
CREATE INDEX consent_requirements_restated ON toss_billing.consent_requirements (restated_from)
    WHERE restated_from IS NOT NULL;
-- ==================================================================== end of invoice fixes

-- @after-code

CREATE EVENT TRIGGER toss_billing_drop_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA')
    EXECUTE FUNCTION toss_billing._guard_drop();

-- invoices (issue 14): the consent rule's requirements for what the
-- upgraded subscriptions will charge next (a trial converting to paid, a
-- scheduled change to a dearer plan), with their consent_required events now
SELECT pg_catalog.count(toss_billing._review_consent(s.id))
  FROM toss_billing.subscriptions s WHERE s.status OPERATOR(pg_catalog.<>) 'canceled';
