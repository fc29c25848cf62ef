-- 45_events: the durable record of everything that happens to a
-- subscription, announced on channel toss_billing_events after commit.

-- @data

-- occurred_at is the subscription's clock, created_at the real time.
-- customer_id: the subscription's (or the order's) customer.
CREATE TABLE toss_billing.events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    occurred_at     timestamptz NOT NULL,
    subscription_id bigint REFERENCES toss_billing.subscriptions (id),
    payment_id      bigint REFERENCES toss_billing.payments (id),
    type            text NOT NULL
                    CONSTRAINT events_type_check
                    CHECK (type OPERATOR(pg_catalog.=) ANY (ARRAY['created', 'status_changed', 'payment_succeeded',
                                                                   'payment_failed', 'payment_unknown', 'plan_change_scheduled',
                                                                   'plan_changed', 'cancel_scheduled', 'retry_scheduled', 'alert',
                                                                   'payment_refunded', 'payment_recovered', 'billing_key_deleted',
                                                                   'invoice_paid', 'invoice_voided', 'invoice_uncollectible',
                                                                   'quantity_changed', 'quantity_change_scheduled',
                                                                   'price_changed', 'price_change_scheduled', 'coupon_applied',
                                                                   'consent_required', 'consent_reminder', 'consent_recorded',
                                                                   'consent_missing'])),
    from_status     text,
    to_status       text,
    reason          text,
    detail          jsonb,
    customer_id     bigint REFERENCES toss_billing.customers (id)
);
CREATE INDEX events_created_at ON toss_billing.events (created_at);
CREATE INDEX events_subscription ON toss_billing.events (subscription_id, id);
CREATE INDEX events_customer ON toss_billing.events (customer_id);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.events', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.events_id_seq', '');

-- @code

-- Every event is announced on channel toss_billing_events with a small
-- JSON payload; the table stays the durable record.
CREATE OR REPLACE FUNCTION toss_billing._notify_events()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('toss_billing_events',
                                 pg_catalog.json_build_object('event_id', e.id, 'type', e.type,
                                                              'subscription_id', e.subscription_id,
                                                              'payment_id', e.payment_id,
                                                              'status', e.to_status)::text)
       FROM new_events e
      ORDER BY e.id;
    RETURN NULL;
END;
$$;
CREATE OR REPLACE TRIGGER events_notify AFTER INSERT ON toss_billing.events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION toss_billing._notify_events();

-- Records one event; returns its id.
CREATE OR REPLACE FUNCTION toss_billing._event(
    subscription_id bigint,
    type text,
    from_status text,
    to_status text,
    reason text,
    occurred_at timestamptz,
    detail jsonb DEFAULT NULL,
    payment_id bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, payment_id, type, from_status,
                                     to_status, reason, detail)
    VALUES ($6, $1, (SELECT s.customer_id FROM toss_billing.subscriptions s WHERE s.id = $1), $8, $2, $3, $4, $5, $7)
    RETURNING id;
$$;

GRANT SELECT ON toss_billing.events TO toss_billing_operator, toss_billing_auditor;
