-- 30_plans_subscriptions: plans, subscriptions and the subscription API
-- (the state machine's transitions that need no charge).  Every change goes
-- through these functions, which record an event for it.

-- @data

CREATE TABLE toss_billing.plans (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text NOT NULL
                   CHECK (pg_catalog.char_length(name) OPERATOR(pg_catalog.>=) 1
                          AND pg_catalog.char_length(name) OPERATOR(pg_catalog.<=) 100
                          AND name OPERATOR(pg_catalog.!~) '[\x01-\x1f\x7f]'),
    amount         bigint NOT NULL CHECK (amount OPERATOR(pg_catalog.>=) 100),
    interval_unit  text NOT NULL DEFAULT 'month'
                   CHECK (interval_unit OPERATOR(pg_catalog.=) ANY (ARRAY['day', 'week', 'month', 'year'])),
    interval_count integer NOT NULL DEFAULT 1 CHECK (interval_count OPERATOR(pg_catalog.>=) 1),
    trial_days     integer NOT NULL DEFAULT 0 CHECK (trial_days OPERATOR(pg_catalog.>=) 0),
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    tax_free       boolean NOT NULL DEFAULT false
);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.plans', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.plans_id_seq', '');

-- One row per subscription.  period_number is the open period: the next one
-- to be paid, [current_period_start, current_period_end).  A payment moves
-- it on to the following period, so current_period_start is also the time
-- the subscription is paid through.  Periods are computed from
-- billing_anchor, which is period anchor_period (re-based on a plan change
-- to another interval and on resume).  quantity: the seats the plan's price
-- is multiplied by (set_quantity); pending_quantity / pending_amount (a new
-- price override, change_price) take effect from their period on, like
-- pending_plan_id.  deferred_until: the runner could not do what was due
-- for it (apply a transition, finalise the period's invoice: an alert says
-- why) and leaves it alone until then, on its clock (_defer_subscription);
-- a time past no longer matters.
CREATE TABLE toss_billing.subscriptions (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id          bigint NOT NULL REFERENCES toss_billing.customers (id),
    plan_id              bigint NOT NULL REFERENCES toss_billing.plans (id),
    amount_override      bigint CHECK (amount_override OPERATOR(pg_catalog.>=) 100),
    billing_anchor       timestamptz NOT NULL,
    anchor_period        integer NOT NULL DEFAULT 0 CHECK (anchor_period OPERATOR(pg_catalog.>=) 0),
    time_zone            text NOT NULL DEFAULT 'Asia/Seoul',
    status               text NOT NULL
                         CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['trialing', 'active', 'past_due', 'unpaid', 'canceled', 'paused'])),
    trial_end            timestamptz,
    period_number        integer NOT NULL DEFAULT 0 CHECK (period_number OPERATOR(pg_catalog.>=) 0),
    current_period_start timestamptz NOT NULL,
    current_period_end   timestamptz NOT NULL,
    next_charge_at       timestamptz,
    dunning_attempt      integer NOT NULL DEFAULT 0 CHECK (dunning_attempt OPERATOR(pg_catalog.>=) 0),
    dunning_started_at   timestamptz,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    cancel_at            timestamptz,
    canceled_at          timestamptz,
    paused_at            timestamptz,
    pending_plan_id      bigint REFERENCES toss_billing.plans (id),
    pending_plan_period  integer,
    test_clock_id        bigint REFERENCES toss_billing.test_clocks (id),
    metadata             jsonb,
    created_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    quantity             integer NOT NULL DEFAULT 1 CHECK (quantity OPERATOR(pg_catalog.>=) 1),
    pending_quantity     integer CHECK (pending_quantity OPERATOR(pg_catalog.>=) 1),
    pending_quantity_period integer,
    pending_amount       bigint CHECK (pending_amount OPERATOR(pg_catalog.>=) 100),
    pending_amount_period integer,
    deferred_until       timestamptz,
    CHECK (current_period_end OPERATOR(pg_catalog.>) current_period_start),
    CHECK ((pending_plan_id IS NULL AND pending_plan_period IS NULL)
           OR (pending_plan_id IS NOT NULL AND pending_plan_period IS NOT NULL)),
    CHECK (NOT cancel_at_period_end OR cancel_at IS NOT NULL),
    CHECK (status OPERATOR(pg_catalog.<>) 'canceled' OR canceled_at IS NOT NULL),
    CONSTRAINT subscriptions_pending_quantity_pair CHECK ((pending_quantity IS NULL) OPERATOR(pg_catalog.=) (pending_quantity_period IS NULL)),
    CONSTRAINT subscriptions_pending_amount_pair CHECK ((pending_amount IS NULL) OPERATOR(pg_catalog.=) (pending_amount_period IS NULL))
);
CREATE INDEX subscriptions_customer ON toss_billing.subscriptions (customer_id);
-- (next_charge_at, id) is exactly the claim order, so a claim reads only the
-- rows it takes even when thousands share one billing time (e.g. midnight).
CREATE INDEX subscriptions_next_charge ON toss_billing.subscriptions (next_charge_at, id)
    WHERE next_charge_at IS NOT NULL;
CREATE INDEX subscriptions_trial_end ON toss_billing.subscriptions (trial_end)
    WHERE status OPERATOR(pg_catalog.=) 'trialing';
CREATE INDEX subscriptions_cancel_at ON toss_billing.subscriptions (cancel_at)
    WHERE cancel_at_period_end;
CREATE INDEX subscriptions_pending_plan ON toss_billing.subscriptions (current_period_start)
    WHERE pending_plan_id IS NOT NULL;
-- a seat count or a price scheduled for a later period: what
-- _apply_transitions looks for on every claim, without reading them all
CREATE INDEX subscriptions_pending_terms ON toss_billing.subscriptions (current_period_start)
    WHERE pending_quantity_period IS NOT NULL OR pending_amount_period IS NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('toss_billing.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.subscriptions_id_seq', '');

-- @code

-- Creates a plan: what a subscription on it is charged (amount per seat),
-- and how often; tax_free: its plan lines are tax-free (면세), part of the
-- taxFreeAmount sent to Toss.
CREATE OR REPLACE FUNCTION toss_billing.create_plan(
    name text,
    amount bigint,
    interval_unit text DEFAULT 'month',
    interval_count integer DEFAULT 1,
    trial_days integer DEFAULT 0,
    tax_free boolean DEFAULT false)
RETURNS toss_billing.plans
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_plan toss_billing.plans;
BEGIN
    IF create_plan.name IS NULL OR create_plan.amount IS NULL OR create_plan.interval_unit IS NULL
       OR create_plan.interval_count IS NULL OR create_plan.trial_days IS NULL OR create_plan.tax_free IS NULL THEN
        RAISE EXCEPTION 'plan arguments must not be null' USING ERRCODE = '22004';
    END IF;
    IF create_plan.name = '' THEN
        RAISE EXCEPTION 'name must not be empty' USING ERRCODE = '22023';
    END IF;
    IF pg_catalog.char_length(create_plan.name) > 100 THEN
        RAISE EXCEPTION 'name is longer than 100 characters' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('The plan name is the Toss order name, at most 100 characters; this one has %s.',
                                       pg_catalog.char_length(create_plan.name));
    END IF;
    IF create_plan.name ~ '[\x01-\x1f\x7f]' THEN
        RAISE EXCEPTION 'name contains a control character' USING ERRCODE = '22023';
    END IF;
    IF create_plan.amount < 100 THEN
        RAISE EXCEPTION 'amount is below the minimum of 100 KRW' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('Toss does not approve card payments under 100 KRW; the amount is %s KRW.',
                                       create_plan.amount);
    END IF;
    IF create_plan.amount > toss_billing._max_price() THEN
        RAISE EXCEPTION 'amount is above the maximum of % KRW',
            pg_catalog.to_char(toss_billing._max_price(), 'FM9,999,999,999,999') USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('A plan''s amount is what one seat costs for one period; the amount is %s KRW.',
                                       create_plan.amount);
    END IF;
    IF create_plan.interval_unit <> ALL (ARRAY['day', 'week', 'month', 'year']) THEN
        RAISE EXCEPTION 'interval_unit "%" is not valid', create_plan.interval_unit USING ERRCODE = '22023',
            DETAIL = 'An interval unit is day, week, month or year.';
    END IF;
    IF create_plan.interval_count NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'interval_count must be between 1 and 1000' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('The interval count is %s.', create_plan.interval_count);
    END IF;
    IF create_plan.trial_days NOT BETWEEN 0 AND 3650 THEN
        RAISE EXCEPTION 'trial_days must be between 0 and 3650' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('The trial is %s days.', create_plan.trial_days);
    END IF;
    INSERT INTO toss_billing.plans (name, amount, interval_unit, interval_count, trial_days, tax_free)
    VALUES (create_plan.name, create_plan.amount, create_plan.interval_unit, create_plan.interval_count,
            create_plan.trial_days, create_plan.tax_free)
    RETURNING * INTO v_plan;
    RETURN v_plan;
END;
$$;

-- Archives a plan: it takes no new subscriptions or plan changes; the
-- subscriptions already on it keep renewing.
CREATE OR REPLACE FUNCTION toss_billing.archive_plan(plan_id bigint)
RETURNS toss_billing.plans
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_plan toss_billing.plans;
BEGIN
    IF archive_plan.plan_id IS NULL THEN
        RAISE EXCEPTION 'plan_id must not be null' USING ERRCODE = '22004';
    END IF;
    UPDATE toss_billing.plans p SET active = false WHERE p.id = archive_plan.plan_id RETURNING * INTO v_plan;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'plan % does not exist', archive_plan.plan_id USING ERRCODE = 'P0002';
    END IF;
    RETURN v_plan;
END;
$$;

-- The current time of a subscription: its test clock's, else toss_billing.now().
CREATE OR REPLACE FUNCTION toss_billing.subscription_now(subscription_id bigint)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF subscription_now.subscription_id IS NULL THEN
        RAISE EXCEPTION 'subscription_id must not be null' USING ERRCODE = '22004';
    END IF;
    RETURN COALESCE((SELECT tc.now_at
                       FROM toss_billing.subscriptions s
                       JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
                      WHERE s.id = subscription_now.subscription_id),
                    toss_billing.now());
END;
$$;

-- Locks a subscription for a change; fails if it does not exist.
CREATE OR REPLACE FUNCTION toss_billing._lock_subscription(subscription_id bigint)
RETURNS toss_billing.subscriptions
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions;
BEGIN
    IF _lock_subscription.subscription_id IS NULL THEN
        RAISE EXCEPTION 'subscription_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = _lock_subscription.subscription_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription % does not exist', _lock_subscription.subscription_id USING ERRCODE = 'P0002';
    END IF;
    RETURN v_sub;
END;
$$;

-- Subscribes a customer to a plan.  The first period starts at the anchor
-- (after the plan's trial, if any), in the subscription's time zone; an
-- anchor in the past starts with the period that contains the present, so
-- nothing before it is charged.  The first charge is due at the start of
-- that period; a customer without a billing key is charged once one is issued.
CREATE OR REPLACE FUNCTION toss_billing.create_subscription(
    customer_key text,
    plan_id bigint,
    anchor timestamptz DEFAULT toss_billing.now(),
    time_zone text DEFAULT 'Asia/Seoul',
    amount_override bigint DEFAULT NULL,
    metadata jsonb DEFAULT NULL,
    test_clock_id bigint DEFAULT NULL)
RETURNS toss_billing.subscriptions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_customer_id bigint;
    v_plan toss_billing.plans;
    v_now timestamptz;
    v_start timestamptz;
    v_trial_end timestamptz;
    v_anchor timestamptz;
    v_n integer;
    v_sub toss_billing.subscriptions;
BEGIN
    IF create_subscription.customer_key IS NULL OR create_subscription.plan_id IS NULL
       OR create_subscription.time_zone IS NULL THEN
        RAISE EXCEPTION 'customer_key, plan_id and time_zone must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT c.id INTO v_customer_id FROM toss_billing.customers c
     WHERE c.customer_key = create_subscription.customer_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown customer "%"', create_subscription.customer_key USING ERRCODE = 'P0002',
            DETAIL = 'No row of toss_billing.customers has this customer_key.',
            HINT = 'Create the customer with toss_billing.create_customer() first.';
    END IF;
    SELECT * INTO v_plan FROM toss_billing.plans p WHERE p.id = create_subscription.plan_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'plan % does not exist', create_subscription.plan_id USING ERRCODE = 'P0002';
    END IF;
    IF NOT v_plan.active THEN
        RAISE EXCEPTION 'plan % is archived', v_plan.id USING ERRCODE = '55000',
            DETAIL = 'An archived plan takes no new subscriptions.';
    END IF;
    IF NOT toss_billing._valid_time_zone(create_subscription.time_zone) THEN
        RAISE EXCEPTION 'time zone "%" is not valid', create_subscription.time_zone USING ERRCODE = '22023',
            DETAIL = 'Use an IANA time zone name such as Asia/Seoul or America/New_York; POSIX offsets such as UTC+9 are refused.';
    END IF;
    IF create_subscription.amount_override < 100 THEN
        RAISE EXCEPTION 'amount_override is below the minimum of 100 KRW' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('Toss does not approve card payments under 100 KRW; the amount is %s KRW.',
                                       create_subscription.amount_override);
    END IF;
    IF create_subscription.amount_override > toss_billing._max_price() THEN
        RAISE EXCEPTION 'amount_override is above the maximum of % KRW',
            pg_catalog.to_char(toss_billing._max_price(), 'FM9,999,999,999,999') USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('The amount is what one seat costs for one period; it is %s KRW.',
                                       create_subscription.amount_override);
    END IF;
    IF pg_catalog.jsonb_typeof(create_subscription.metadata) <> 'object' THEN
        RAISE EXCEPTION 'metadata must be a JSON object' USING ERRCODE = '22023';
    END IF;
    IF NOT pg_catalog.isfinite(create_subscription.anchor) THEN
        RAISE EXCEPTION 'anchor must be a finite time' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('Billing periods cannot be counted from %s.', create_subscription.anchor),
            HINT = 'Pass the time the first period starts, or NULL for the subscription''s clock.';
    END IF;
    IF create_subscription.test_clock_id IS NULL THEN
        v_now := toss_billing.now();
    ELSE
        SELECT tc.now_at INTO v_now FROM toss_billing.test_clocks tc WHERE tc.id = create_subscription.test_clock_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'test clock % does not exist', create_subscription.test_clock_id USING ERRCODE = 'P0002';
        END IF;
    END IF;

    v_start := COALESCE(create_subscription.anchor, v_now);
    v_anchor := v_start;
    IF v_plan.trial_days > 0 THEN
        v_trial_end := toss_billing.period_start(v_start, create_subscription.time_zone, 'day', v_plan.trial_days, 1);
        v_anchor := v_trial_end;
    END IF;
    v_n := toss_billing._period_at(v_anchor, create_subscription.time_zone, v_plan.interval_unit,
                                   v_plan.interval_count, v_now);

    INSERT INTO toss_billing.subscriptions (customer_id, plan_id, amount_override, billing_anchor, time_zone,
                                            status, trial_end, period_number, current_period_start,
                                            current_period_end, next_charge_at, test_clock_id, metadata)
    VALUES (v_customer_id, v_plan.id, create_subscription.amount_override, v_anchor, create_subscription.time_zone,
            CASE WHEN v_trial_end > v_now THEN 'trialing' ELSE 'active' END, v_trial_end, v_n,
            toss_billing.period_start(v_anchor, create_subscription.time_zone, v_plan.interval_unit,
                                      v_plan.interval_count, v_n),
            toss_billing.period_start(v_anchor, create_subscription.time_zone, v_plan.interval_unit,
                                      v_plan.interval_count, v_n + 1),
            toss_billing.period_start(v_anchor, create_subscription.time_zone, v_plan.interval_unit,
                                      v_plan.interval_count, v_n),
            create_subscription.test_clock_id, create_subscription.metadata)
    RETURNING * INTO v_sub;

    PERFORM toss_billing._event(v_sub.id, 'created', NULL, v_sub.status, 'subscription created', v_now,
                                pg_catalog.jsonb_build_object('plan_id', v_sub.plan_id, 'period_number', v_sub.period_number,
                                                              'next_charge_at', v_sub.next_charge_at,
                                                              'trial_end', v_sub.trial_end));
    -- a trial converts to paid: the consent rule's first requirement
    PERFORM toss_billing._review_consent(v_sub.id);
    RETURN v_sub;
END;
$$;

-- The period a change "from the next period on" takes effect in: the open
-- period if it has not started yet (e.g. during a trial or once the current
-- period is paid), else the one after it.
CREATE OR REPLACE FUNCTION toss_billing._change_period(sub toss_billing.subscriptions, now_at timestamptz)
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN ($1).current_period_start OPERATOR(pg_catalog.>) $2 THEN ($1).period_number
                ELSE ($1).period_number OPERATOR(pg_catalog.+) 1 END;
$$;

-- Changes the plan.  proration NULL (the default, as in 0.4.0): from the
-- next period on (see _change_period); choosing the current plan withdraws
-- a pending change.  proration 'immediate', 'next_period' or 'none': now,
-- within the current period (same interval only): the unused time of the
-- old plan is credited and the remaining time of the new one charged, at
-- once on an invoice of its own (immediate), on the next invoice
-- (next_period), or not at all (none).  See 32_invoices (_change_now).
CREATE OR REPLACE FUNCTION toss_billing.change_plan(subscription_id bigint, plan_id bigint, proration text DEFAULT NULL)
RETURNS toss_billing.subscriptions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions := toss_billing._lock_subscription(change_plan.subscription_id);
    v_plan toss_billing.plans;
    v_now timestamptz := toss_billing.subscription_now(v_sub.id);
    v_period integer;
    v_from bigint := v_sub.plan_id;
    v_invoice bigint;
BEGIN
    IF change_plan.plan_id IS NULL THEN
        RAISE EXCEPTION 'plan_id must not be null' USING ERRCODE = '22004';
    END IF;
    IF change_plan.proration <> ALL (ARRAY['immediate', 'next_period', 'none']) THEN
        RAISE EXCEPTION 'proration "%" is not valid', change_plan.proration USING ERRCODE = '22023',
            DETAIL = 'proration is immediate, next_period or none (a change now), or NULL (from the next period on).';
    END IF;
    IF v_sub.status = 'canceled' THEN
        RAISE EXCEPTION 'subscription % is canceled', v_sub.id USING ERRCODE = '55000';
    END IF;
    SELECT * INTO v_plan FROM toss_billing.plans p WHERE p.id = change_plan.plan_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'plan % does not exist', change_plan.plan_id USING ERRCODE = 'P0002';
    END IF;
    IF v_plan.id = v_sub.plan_id THEN
        IF v_sub.pending_plan_id IS NOT NULL THEN
            UPDATE toss_billing.subscriptions s
               SET pending_plan_id = NULL, pending_plan_period = NULL, updated_at = pg_catalog.now()
             WHERE s.id = v_sub.id
            RETURNING * INTO v_sub;
            PERFORM toss_billing._event(v_sub.id, 'plan_change_scheduled', v_sub.status, v_sub.status,
                                        'pending plan change withdrawn', v_now,
                                        pg_catalog.jsonb_build_object('to_plan_id', v_plan.id));
            PERFORM toss_billing._review_consent(v_sub.id);
        END IF;
        RETURN v_sub;
    END IF;
    IF NOT v_plan.active THEN
        RAISE EXCEPTION 'plan % is archived', v_plan.id USING ERRCODE = '55000',
            DETAIL = 'An archived plan takes no new subscriptions.';
    END IF;
    IF change_plan.proration IS NOT NULL THEN
        v_invoice := toss_billing._change_now(v_sub, v_plan.id, v_sub.quantity, change_plan.proration);
        SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = v_sub.id;
        PERFORM toss_billing._event(v_sub.id, 'plan_changed', v_sub.status, v_sub.status,
                                    'plan changed now (proration ' || change_plan.proration || ')', v_now,
                                    pg_catalog.jsonb_build_object('from_plan_id', v_from, 'to_plan_id', v_plan.id,
                                                                  'proration', change_plan.proration,
                                                                  'invoice_id', v_invoice));
        PERFORM toss_billing._review_consent(v_sub.id);
        RETURN v_sub;
    END IF;
    v_period := toss_billing._change_period(v_sub, v_now);
    UPDATE toss_billing.subscriptions s
       SET pending_plan_id = v_plan.id, pending_plan_period = v_period, updated_at = pg_catalog.now()
     WHERE s.id = v_sub.id
    RETURNING * INTO v_sub;
    PERFORM toss_billing._event(v_sub.id, 'plan_change_scheduled', v_sub.status, v_sub.status,
                                'plan change scheduled for the next period', v_now,
                                pg_catalog.jsonb_build_object('from_plan_id', v_sub.plan_id, 'to_plan_id', v_plan.id,
                                                              'period_number', v_period));
    PERFORM toss_billing._review_consent(v_sub.id);
    RETURN v_sub;
END;
$$;

-- Changes the quantity (seats) the plan's price is multiplied by.
-- proration as for change_plan; NULL (the default) means: an increase now,
-- prorated on the next invoice (next_period); a decrease from the next
-- period on.  The same quantity withdraws a pending change.  A quantity is
-- the customer's own choice: it never needs the consent of the price rule,
-- but a requirement for a price increase is restated at the quantity the
-- next invoice will charge (34_consent, _review_consent).
CREATE OR REPLACE FUNCTION toss_billing.set_quantity(subscription_id bigint, quantity integer, proration text DEFAULT NULL)
RETURNS toss_billing.subscriptions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions := toss_billing._lock_subscription(set_quantity.subscription_id);
    v_now timestamptz := toss_billing.subscription_now(v_sub.id);
    v_mode text;
    v_period integer;
    v_from integer := v_sub.quantity;
    v_invoice bigint;
BEGIN
    IF set_quantity.quantity IS NULL THEN
        RAISE EXCEPTION 'quantity must not be null' USING ERRCODE = '22004';
    END IF;
    IF set_quantity.quantity NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'quantity must be between 1 and 100000' USING ERRCODE = '22023';
    END IF;
    IF set_quantity.proration <> ALL (ARRAY['immediate', 'next_period', 'none']) THEN
        RAISE EXCEPTION 'proration "%" is not valid', set_quantity.proration USING ERRCODE = '22023',
            DETAIL = 'proration is immediate, next_period or none (a change now), or NULL (the default rule).';
    END IF;
    IF v_sub.status = 'canceled' THEN
        RAISE EXCEPTION 'subscription % is canceled', v_sub.id USING ERRCODE = '55000';
    END IF;
    IF set_quantity.quantity = v_sub.quantity THEN
        IF v_sub.pending_quantity IS NOT NULL THEN
            UPDATE toss_billing.subscriptions s
               SET pending_quantity = NULL, pending_quantity_period = NULL, updated_at = pg_catalog.now()
             WHERE s.id = v_sub.id
            RETURNING * INTO v_sub;
            PERFORM toss_billing._event(v_sub.id, 'quantity_change_scheduled', v_sub.status, v_sub.status,
                                        'pending quantity change withdrawn', v_now,
                                        pg_catalog.jsonb_build_object('quantity', v_sub.quantity));
            PERFORM toss_billing._review_consent(v_sub.id);
        END IF;
        RETURN v_sub;
    END IF;
    v_mode := COALESCE(set_quantity.proration,
                       CASE WHEN set_quantity.quantity > v_sub.quantity THEN 'next_period' END);
    IF v_mode IS NOT NULL THEN
        v_invoice := toss_billing._change_now(v_sub, v_sub.plan_id, set_quantity.quantity, v_mode);
        SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = v_sub.id;
        PERFORM toss_billing._event(v_sub.id, 'quantity_changed', v_sub.status, v_sub.status,
                                    'quantity changed now (proration ' || v_mode || ')', v_now,
                                    pg_catalog.jsonb_build_object('from_quantity', v_from, 'to_quantity', v_sub.quantity,
                                                                  'proration', v_mode, 'invoice_id', v_invoice));
        PERFORM toss_billing._review_consent(v_sub.id);
        RETURN v_sub;
    END IF;
    v_period := toss_billing._change_period(v_sub, v_now);
    UPDATE toss_billing.subscriptions s
       SET pending_quantity = set_quantity.quantity, pending_quantity_period = v_period, updated_at = pg_catalog.now()
     WHERE s.id = v_sub.id
    RETURNING * INTO v_sub;
    PERFORM toss_billing._event(v_sub.id, 'quantity_change_scheduled', v_sub.status, v_sub.status,
                                'quantity change scheduled for the next period', v_now,
                                pg_catalog.jsonb_build_object('from_quantity', v_from, 'to_quantity', set_quantity.quantity,
                                                              'period_number', v_period));
    PERFORM toss_billing._review_consent(v_sub.id);
    RETURN v_sub;
END;
$$;

-- Changes a subscription's price (its per-seat amount, which overrides the
-- plan's) from the first period that starts at or after effective_at
-- (default: the next period, see _change_period).  An increase makes a
-- consent requirement (34_consent).  Returns the subscription.
CREATE OR REPLACE FUNCTION toss_billing.change_price(subscription_id bigint, amount bigint,
                                                     effective_at timestamptz DEFAULT NULL)
RETURNS toss_billing.subscriptions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions := toss_billing._lock_subscription(change_price.subscription_id);
    v_now timestamptz := toss_billing.subscription_now(v_sub.id);
    v_plan toss_billing.plans;
    v_period integer;
    v_start timestamptz;
BEGIN
    IF change_price.amount IS NULL THEN
        RAISE EXCEPTION 'amount must not be null' USING ERRCODE = '22004';
    END IF;
    IF change_price.amount < 100 THEN
        RAISE EXCEPTION 'amount is below the minimum of 100 KRW' USING ERRCODE = '22023';
    END IF;
    IF change_price.amount > toss_billing._max_price() THEN
        RAISE EXCEPTION 'amount is above the maximum of % KRW',
            pg_catalog.to_char(toss_billing._max_price(), 'FM9,999,999,999,999') USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('The amount is what one seat costs for one period; it is %s KRW.',
                                       change_price.amount);
    END IF;
    IF NOT pg_catalog.isfinite(change_price.effective_at) THEN
        RAISE EXCEPTION 'effective_at must be a finite time' USING ERRCODE = '22023';
    END IF;
    IF change_price.effective_at > v_now + interval '10 years' THEN
        RAISE EXCEPTION 'effective_at is more than 10 years away' USING ERRCODE = '22023';
    END IF;
    IF v_sub.status = 'canceled' THEN
        RAISE EXCEPTION 'subscription % is canceled', v_sub.id USING ERRCODE = '55000';
    END IF;
    SELECT * INTO v_plan FROM toss_billing.plans p WHERE p.id = COALESCE(v_sub.pending_plan_id, v_sub.plan_id);
    v_period := toss_billing._change_period(v_sub, v_now);
    IF change_price.effective_at IS NOT NULL THEN
        LOOP
            v_start := CASE WHEN v_period = v_sub.period_number THEN v_sub.current_period_start
                            WHEN v_period = v_sub.period_number + 1 THEN v_sub.current_period_end
                            ELSE toss_billing.period_start(v_sub.billing_anchor, v_sub.time_zone, v_plan.interval_unit,
                                                           v_plan.interval_count, v_period - v_sub.anchor_period) END;
            EXIT WHEN v_start >= change_price.effective_at;
            v_period := v_period + 1;
        END LOOP;
    END IF;
    UPDATE toss_billing.subscriptions s
       SET pending_amount = change_price.amount, pending_amount_period = v_period, updated_at = pg_catalog.now()
     WHERE s.id = v_sub.id
    RETURNING * INTO v_sub;
    PERFORM toss_billing._event(v_sub.id, 'price_change_scheduled', v_sub.status, v_sub.status,
                                'price change scheduled', v_now,
                                pg_catalog.jsonb_build_object('amount', change_price.amount, 'period_number', v_period));
    PERFORM toss_billing._review_consent(v_sub.id);
    RETURN v_sub;
END;
$$;

-- Cancels a subscription at the end of the period it is paid through (the
-- default), or at once.  A paused subscription, or one whose period has
-- already ended, is canceled at once.
CREATE OR REPLACE FUNCTION toss_billing.cancel_subscription(subscription_id bigint, at_period_end boolean DEFAULT true)
RETURNS toss_billing.subscriptions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions := toss_billing._lock_subscription(cancel_subscription.subscription_id);
    v_now timestamptz := toss_billing.subscription_now(v_sub.id);
    v_from text := v_sub.status;
    v_at timestamptz;
BEGIN
    IF v_sub.status = 'canceled' THEN
        RAISE EXCEPTION 'subscription % is already canceled', v_sub.id USING ERRCODE = '55000';
    END IF;
    -- the end of the paid time, or of the open period once it has started
    v_at := CASE WHEN v_sub.current_period_start > v_now THEN v_sub.current_period_start
                 ELSE v_sub.current_period_end END;
    IF COALESCE(cancel_subscription.at_period_end, true) AND v_sub.status <> 'paused' AND v_at > v_now THEN
        IF NOT v_sub.cancel_at_period_end THEN
            UPDATE toss_billing.subscriptions s
               SET cancel_at_period_end = true, cancel_at = v_at, updated_at = pg_catalog.now()
             WHERE s.id = v_sub.id
            RETURNING * INTO v_sub;
            PERFORM toss_billing._event(v_sub.id, 'cancel_scheduled', v_from, v_from, 'cancel at period end requested',
                                        v_now, pg_catalog.jsonb_build_object('cancel_at', v_at));
        END IF;
        RETURN v_sub;
    END IF;
    UPDATE toss_billing.subscriptions s
       SET status = 'canceled', canceled_at = v_now, next_charge_at = NULL,
           pending_plan_id = NULL, pending_plan_period = NULL, pending_quantity = NULL, pending_quantity_period = NULL,
           pending_amount = NULL, pending_amount_period = NULL, updated_at = pg_catalog.now()
     WHERE s.id = v_sub.id
    RETURNING * INTO v_sub;
    -- the open period's order is owed no more
    UPDATE toss_billing.payments p
       SET state = 'failed', failure_message = 'the subscription was canceled', updated_at = pg_catalog.now()
     WHERE p.subscription_id = v_sub.id AND p.state = 'pending';
    PERFORM toss_billing._event(v_sub.id, 'status_changed', v_from, 'canceled', 'canceled by request', v_now);
    -- its open invoice is void; what it still owes goes on its final invoice
    PERFORM toss_billing._close_invoices(ARRAY[v_sub.id], 'the subscription was canceled');
    RETURN v_sub;
END;
$$;

-- Pauses a subscription: nothing is charged and no period ends until it is resumed.
CREATE OR REPLACE FUNCTION toss_billing.pause_subscription(subscription_id bigint)
RETURNS toss_billing.subscriptions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions := toss_billing._lock_subscription(pause_subscription.subscription_id);
    v_now timestamptz := toss_billing.subscription_now(v_sub.id);
    v_from text := v_sub.status;
BEGIN
    IF v_sub.status = ANY (ARRAY['paused', 'canceled']) THEN
        RAISE EXCEPTION 'subscription % is %', v_sub.id, v_sub.status USING ERRCODE = '55000',
            DETAIL = 'Only a trialing, active, past_due or unpaid subscription can be paused.';
    END IF;
    UPDATE toss_billing.subscriptions s
       SET status = 'paused', paused_at = v_now, next_charge_at = NULL, updated_at = pg_catalog.now()
     WHERE s.id = v_sub.id
    RETURNING * INTO v_sub;
    PERFORM toss_billing._event(v_sub.id, 'status_changed', v_from, 'paused', 'paused by request', v_now);
    RETURN v_sub;
END;
$$;

-- Resumes a paused subscription.  If the time it was paid through has
-- passed, a fresh period starts now and is charged at once (the paused time
-- is not billed); otherwise the next charge stays at the end of the paid
-- time.  Dunning starts over.
CREATE OR REPLACE FUNCTION toss_billing.resume_subscription(subscription_id bigint)
RETURNS toss_billing.subscriptions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions := toss_billing._lock_subscription(resume_subscription.subscription_id);
    v_now timestamptz := toss_billing.subscription_now(v_sub.id);
    v_plan toss_billing.plans;
    v_fresh boolean;
BEGIN
    IF v_sub.status <> 'paused' THEN
        RAISE EXCEPTION 'subscription % is not paused', v_sub.id USING ERRCODE = '55000';
    END IF;
    SELECT * INTO v_plan FROM toss_billing.plans p WHERE p.id = v_sub.plan_id;
    v_fresh := v_sub.current_period_start <= v_now;
    UPDATE toss_billing.subscriptions s
       SET status = CASE WHEN s.trial_end > v_now THEN 'trialing' ELSE 'active' END,
           billing_anchor = CASE WHEN v_fresh THEN v_now ELSE s.billing_anchor END,
           anchor_period = CASE WHEN v_fresh THEN s.period_number ELSE s.anchor_period END,
           current_period_start = CASE WHEN v_fresh THEN v_now ELSE s.current_period_start END,
           current_period_end = CASE WHEN v_fresh
                                     THEN toss_billing.period_start(v_now, s.time_zone, v_plan.interval_unit,
                                                                    v_plan.interval_count, 1)
                                     ELSE s.current_period_end END,
           next_charge_at = CASE WHEN v_fresh THEN v_now ELSE s.current_period_start END,
           dunning_attempt = 0, dunning_started_at = NULL, paused_at = NULL, updated_at = pg_catalog.now()
     WHERE s.id = v_sub.id
    RETURNING * INTO v_sub;
    PERFORM toss_billing._event(v_sub.id, 'status_changed', 'paused', v_sub.status, 'resumed by request', v_now,
                                pg_catalog.jsonb_build_object('fresh_period', v_fresh,
                                                              'next_charge_at', v_sub.next_charge_at));
    PERFORM toss_billing._apply_transitions(ARRAY[v_sub.id]);
    SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = v_sub.id;
    RETURN v_sub;
END;
$$;

-- Makes past_due and unpaid subscriptions due again with a fresh dunning
-- schedule (unpaid ones become past_due again); returns how many.  An open
-- period that has not started yet (a subscription that went past_due
-- because its billing key was deleted) is charged at its start, not early.
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
        RETURNING s.id, s.customer_id, d.from_status, d.now_at, d.charge_at),
    logged AS (
        INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, type, from_status, to_status, reason,
                                         detail)
        SELECT c.now_at, c.id, c.customer_id, 'status_changed', c.from_status, 'past_due', _retry_now.reason, NULL
          FROM changed c WHERE c.from_status <> 'past_due'
        UNION ALL
        SELECT c.now_at, c.id, c.customer_id, 'retry_scheduled', 'past_due', 'past_due', _retry_now.reason,
               pg_catalog.jsonb_build_object('next_charge_at', c.charge_at)
          FROM changed c
        RETURNING id)
    SELECT pg_catalog.count(*) INTO v_count FROM changed;
    RETURN v_count;
END;
$$;

-- Called after a new billing key was issued for a customer: the customer's
-- past_due and unpaid subscriptions are retried at once.  Returns how many.
CREATE OR REPLACE FUNCTION toss_billing.card_replaced(customer_key text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_customer_id bigint;
BEGIN
    IF card_replaced.customer_key IS NULL THEN
        RAISE EXCEPTION 'customer_key must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT c.id INTO v_customer_id FROM toss_billing.customers c WHERE c.customer_key = card_replaced.customer_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown customer "%"', card_replaced.customer_key USING ERRCODE = 'P0002',
            DETAIL = 'No row of toss_billing.customers has this customer_key.';
    END IF;
    IF NOT EXISTS (SELECT FROM toss_billing.billing_keys bk
                    WHERE bk.customer_id = v_customer_id AND bk.status = 'active') THEN
        RAISE EXCEPTION 'customer "%" has no active billing key', card_replaced.customer_key USING ERRCODE = '55000',
            HINT = 'Issue a billing key with toss_billing.toss_issue_billing_key() first.';
    END IF;
    RETURN toss_billing._retry_now(ARRAY(SELECT s.id FROM toss_billing.subscriptions s
                                          WHERE s.customer_id = v_customer_id),
                                   'card replaced');
END;
$$;

-- Retries a past_due or unpaid subscription at once, e.g. after fixing the
-- configuration error that stopped its charges.
CREATE OR REPLACE FUNCTION toss_billing.retry_subscription(subscription_id bigint)
RETURNS toss_billing.subscriptions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions := toss_billing._lock_subscription(retry_subscription.subscription_id);
BEGIN
    IF v_sub.status <> ALL (ARRAY['past_due', 'unpaid']) THEN
        RAISE EXCEPTION 'subscription % is %', v_sub.id, v_sub.status USING ERRCODE = '55000',
            DETAIL = 'Only a past_due or unpaid subscription can be retried.';
    END IF;
    PERFORM toss_billing._retry_now(ARRAY[v_sub.id], 'retry requested');
    SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = v_sub.id;
    RETURN v_sub;
END;
$$;

-- Applies the transitions that are due without a charge, on each
-- subscription's clock: scheduled cancellations (first: a trial canceled at
-- its end is never charged), trial ends, and pending plan changes whose
-- period has started.  Only the given subscriptions (all when NULL, but
-- those deferred: deferred_until ahead); paused and canceled ones, and rows
-- locked by someone else, are skipped.  Returns the number of transitions.
CREATE OR REPLACE FUNCTION toss_billing._apply_transitions(subscription_ids bigint[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.now();
    -- no subscription's clock is later than this: bounds the index scans
    v_horizon timestamptz := GREATEST(v_now, (SELECT pg_catalog.max(tc.now_at) FROM toss_billing.test_clocks tc));
    v_ids bigint[] := _apply_transitions.subscription_ids;
    v_count integer;
    v_total integer := 0;
    v_canceled bigint[];
BEGIN
    WITH due AS (
        SELECT s.id, s.status AS from_status, s.cancel_at
          FROM toss_billing.subscriptions s
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE s.cancel_at_period_end
           AND s.status <> ALL (ARRAY['canceled', 'paused'])
           AND s.cancel_at <= v_horizon
           AND s.cancel_at <= COALESCE(tc.now_at, v_now)
           AND (s.id = ANY (v_ids)
                OR (v_ids IS NULL AND (s.deferred_until IS NULL OR s.deferred_until <= COALESCE(tc.now_at, v_now))))
           FOR UPDATE OF s SKIP LOCKED),
    changed AS (
        UPDATE toss_billing.subscriptions s
           SET status = 'canceled', canceled_at = d.cancel_at, next_charge_at = NULL,
               pending_plan_id = NULL, pending_plan_period = NULL, pending_quantity = NULL,
               pending_quantity_period = NULL, pending_amount = NULL, pending_amount_period = NULL,
               updated_at = pg_catalog.now()
          FROM due d
         WHERE s.id = d.id
        RETURNING s.id, s.customer_id, d.from_status, d.cancel_at),
    voided AS (
        -- the open period's order is owed no more
        UPDATE toss_billing.payments p
           SET state = 'failed', failure_message = 'the subscription was canceled at the end of its period',
               updated_at = pg_catalog.now()
          FROM changed c
         WHERE p.subscription_id = c.id AND p.state = 'pending'
        RETURNING p.id),
    logged AS (
        INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, type, from_status, to_status, reason)
        SELECT c.cancel_at, c.id, c.customer_id, 'status_changed', c.from_status, 'canceled', 'canceled at period end'
          FROM changed c
        RETURNING 1)
    SELECT pg_catalog.array_agg(c.id ORDER BY c.id) INTO v_canceled FROM changed c;
    v_count := COALESCE(pg_catalog.cardinality(v_canceled), 0);
    v_total := v_total + v_count;
    IF v_count > 0 THEN
        -- their open invoices are void; what they still owe goes on final invoices
        PERFORM toss_billing._close_invoices(v_canceled, 'the subscription was canceled at the end of its period');
    END IF;

    WITH due AS (
        SELECT s.id, s.trial_end
          FROM toss_billing.subscriptions s
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE s.status = 'trialing'
           AND s.trial_end <= v_horizon
           AND s.trial_end <= COALESCE(tc.now_at, v_now)
           AND (s.id = ANY (v_ids)
                OR (v_ids IS NULL AND (s.deferred_until IS NULL OR s.deferred_until <= COALESCE(tc.now_at, v_now))))
           FOR UPDATE OF s SKIP LOCKED),
    changed AS (
        UPDATE toss_billing.subscriptions s
           SET status = 'active', updated_at = pg_catalog.now()
          FROM due d
         WHERE s.id = d.id AND s.status = 'trialing'
        RETURNING s.id, s.customer_id, d.trial_end)
    INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, type, from_status, to_status, reason)
    SELECT c.trial_end, c.id, c.customer_id, 'status_changed', 'trialing', 'active', 'trial ended'
      FROM changed c;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_total := v_total + v_count;

    -- a plan with another interval re-bases the periods on the boundary
    WITH due AS (
        SELECT s.id, s.customer_id, s.status, s.plan_id AS from_plan_id, s.pending_plan_id, s.period_number,
               s.current_period_start, s.time_zone, np.interval_unit, np.interval_count,
               (np.interval_unit, np.interval_count) IS DISTINCT FROM (op.interval_unit, op.interval_count) AS rebase
          FROM toss_billing.subscriptions s
          JOIN toss_billing.plans op ON op.id = s.plan_id
          JOIN toss_billing.plans np ON np.id = s.pending_plan_id
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE s.pending_plan_id IS NOT NULL
           AND s.period_number >= s.pending_plan_period
           AND s.status <> ALL (ARRAY['canceled', 'paused'])
           AND s.current_period_start <= v_horizon
           AND s.current_period_start <= COALESCE(tc.now_at, v_now)
           AND (s.id = ANY (v_ids)
                OR (v_ids IS NULL AND (s.deferred_until IS NULL OR s.deferred_until <= COALESCE(tc.now_at, v_now))))
           FOR UPDATE OF s SKIP LOCKED),
    changed AS (
        UPDATE toss_billing.subscriptions s
           SET plan_id = d.pending_plan_id, pending_plan_id = NULL, pending_plan_period = NULL,
               billing_anchor = CASE WHEN d.rebase THEN d.current_period_start ELSE s.billing_anchor END,
               anchor_period = CASE WHEN d.rebase THEN d.period_number ELSE s.anchor_period END,
               current_period_end = CASE WHEN d.rebase
                                         THEN toss_billing.period_start(d.current_period_start, d.time_zone,
                                                                        d.interval_unit, d.interval_count, 1)
                                         ELSE s.current_period_end END,
               updated_at = pg_catalog.now()
          FROM due d
         WHERE s.id = d.id
        RETURNING d.*)
    INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, type, from_status, to_status, reason,
                                     detail)
    SELECT c.current_period_start, c.id, c.customer_id, 'plan_changed', c.status, c.status, 'plan change took effect',
           pg_catalog.jsonb_build_object('from_plan_id', c.from_plan_id, 'to_plan_id', c.pending_plan_id,
                                         'period_number', c.period_number, 'rebased', c.rebase)
      FROM changed c;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_total := v_total + v_count;

    -- pending quantity and price changes whose period has started
    WITH due AS (
        SELECT s.id, s.customer_id, s.status, s.period_number, s.current_period_start, s.quantity, s.amount_override,
               s.pending_quantity_period <= s.period_number AS quantity_due,
               s.pending_amount_period <= s.period_number AS amount_due
          FROM toss_billing.subscriptions s
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE (s.pending_quantity_period IS NOT NULL OR s.pending_amount_period IS NOT NULL)
           AND (s.pending_quantity_period <= s.period_number OR s.pending_amount_period <= s.period_number)
           AND s.status <> ALL (ARRAY['canceled', 'paused'])
           AND s.current_period_start <= v_horizon
           AND s.current_period_start <= COALESCE(tc.now_at, v_now)
           AND (s.id = ANY (v_ids)
                OR (v_ids IS NULL AND (s.deferred_until IS NULL OR s.deferred_until <= COALESCE(tc.now_at, v_now))))
           FOR UPDATE OF s SKIP LOCKED),
    changed AS (
        UPDATE toss_billing.subscriptions s
           SET quantity = CASE WHEN d.quantity_due THEN s.pending_quantity ELSE s.quantity END,
               pending_quantity = CASE WHEN d.quantity_due THEN NULL ELSE s.pending_quantity END,
               pending_quantity_period = CASE WHEN d.quantity_due THEN NULL ELSE s.pending_quantity_period END,
               amount_override = CASE WHEN d.amount_due THEN s.pending_amount ELSE s.amount_override END,
               pending_amount = CASE WHEN d.amount_due THEN NULL ELSE s.pending_amount END,
               pending_amount_period = CASE WHEN d.amount_due THEN NULL ELSE s.pending_amount_period END,
               updated_at = pg_catalog.now()
          FROM due d
         WHERE s.id = d.id
        RETURNING d.*, s.quantity AS new_quantity, s.amount_override AS new_amount)
    INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, type, from_status, to_status, reason,
                                     detail)
    SELECT c.current_period_start, c.id, c.customer_id, e.type, c.status, c.status, e.reason, e.detail
      FROM changed c,
           LATERAL (VALUES ('quantity_changed', 'quantity change took effect', c.quantity_due,
                            pg_catalog.jsonb_build_object('from_quantity', c.quantity, 'to_quantity', c.new_quantity,
                                                          'period_number', c.period_number)),
                           ('price_changed', 'price change took effect', c.amount_due,
                            pg_catalog.jsonb_build_object('from_amount', c.amount_override, 'to_amount', c.new_amount,
                                                          'period_number', c.period_number))) AS e(type, reason, due, detail)
     WHERE e.due
     ORDER BY c.id, e.type DESC;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_total + v_count;
END;
$$;

-- The runner's transitions (_claim_due): every one that is due, together;
-- if that fails, each subscription's alone (_each_alone), and one that fails
-- is deferred with an alert while the others go on.  The
-- subscriptions tried alone are a superset of those due (each call applies
-- only what is due); this runs only when the statement for all failed.
CREATE OR REPLACE FUNCTION toss_billing._apply_due_transitions()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.now();
    v_horizon timestamptz := GREATEST(v_now, (SELECT pg_catalog.max(tc.now_at) FROM toss_billing.test_clocks tc));
BEGIN
    BEGIN
        RETURN toss_billing._apply_transitions(NULL);
    EXCEPTION WHEN OTHERS THEN
        NULL;   -- one of them cannot be applied: each alone below
    END;
    RETURN toss_billing._each_alone('_apply_transitions', ARRAY(
        SELECT s.id
          FROM toss_billing.subscriptions s
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE s.status <> ALL (ARRAY['canceled', 'paused'])
           AND (s.deferred_until IS NULL OR s.deferred_until <= COALESCE(tc.now_at, v_now))
           AND ((s.cancel_at_period_end AND s.cancel_at <= v_horizon)
                OR (s.status = 'trialing' AND s.trial_end <= v_horizon)
                OR ((s.pending_plan_id IS NOT NULL OR s.pending_quantity_period IS NOT NULL
                     OR s.pending_amount_period IS NOT NULL)
                    AND s.current_period_start <= v_horizon))
         ORDER BY s.id), 'a due transition could not be applied');
END;
$$;

-- The runner's fallback when a step it runs for all due subscriptions at
-- once failed: the step (a function of toss_billing taking the
-- subscriptions to do, returning how many things it did) for each of them
-- alone, in a subtransaction of its own; one that fails is deferred with an
-- alert of this reason (_defer_subscription) and the others go on.
-- Returns the total the step returned.
CREATE OR REPLACE FUNCTION toss_billing._each_alone(step text, subscription_ids bigint[], reason text)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_call text := pg_catalog.format('SELECT toss_billing.%I($1)', _each_alone.step);
    v_total integer := 0;
    v_done integer;
    v_id bigint;
BEGIN
    FOREACH v_id IN ARRAY COALESCE(_each_alone.subscription_ids, '{}') LOOP
        BEGIN
            EXECUTE v_call INTO v_done USING ARRAY[v_id];
            v_total := v_total + COALESCE(v_done, 0);
        EXCEPTION WHEN OTHERS THEN
            PERFORM toss_billing._defer_subscription(v_id, _each_alone.reason, SQLSTATE, SQLERRM);
        END;
    END LOOP;
    RETURN v_total;
END;
$$;

-- The runner could not do what was due for a subscription (the error rolled
-- back): an alert (the reason, the error, the open period, when it is tried
-- again), and deferred_until set on the subscription's clock, which keeps
-- the runner from applying its transitions, finalising its invoice or
-- charging it until then: 10 minutes after the first failure of that kind
-- in the open period, doubling with each one recorded before, at most a
-- day.  charge_subscription_now does not wait for it.
CREATE OR REPLACE FUNCTION toss_billing._defer_subscription(subscription_id bigint, reason text, err_code text,
                                                             err_message text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.subscription_now(_defer_subscription.subscription_id);
    v_period integer;
    v_before integer;
    v_until timestamptz;
BEGIN
    SELECT s.period_number INTO v_period
      FROM toss_billing.subscriptions s WHERE s.id = _defer_subscription.subscription_id;
    SELECT pg_catalog.count(*)::integer INTO v_before
      FROM toss_billing.events e
     WHERE e.subscription_id = _defer_subscription.subscription_id AND e.type = 'alert'
       AND e.reason = _defer_subscription.reason
       AND e.detail->>'period_number' = v_period::text;
    v_until := v_now + LEAST(interval '10 minutes' * pg_catalog.power(2, LEAST(v_before, 8)), interval '1 day');
    UPDATE toss_billing.subscriptions s
       SET deferred_until = v_until, updated_at = pg_catalog.now()
     WHERE s.id = _defer_subscription.subscription_id;
    PERFORM toss_billing._event(_defer_subscription.subscription_id, 'alert', NULL, NULL,
                                _defer_subscription.reason, v_now,
                                pg_catalog.jsonb_build_object('sqlstate', _defer_subscription.err_code,
                                                              'error', _defer_subscription.err_message,
                                                              'period_number', v_period,
                                                              'retry_at', v_until));
END;
$$;

GRANT EXECUTE ON FUNCTION toss_billing.subscription_now(bigint) TO toss_billing_operator, toss_billing_auditor;
GRANT EXECUTE ON FUNCTION toss_billing.create_plan(text, bigint, text, integer, integer, boolean),
                          toss_billing.archive_plan(bigint),
                          toss_billing.create_subscription(text, bigint, timestamptz, text, bigint, jsonb, bigint),
                          toss_billing.change_plan(bigint, bigint, text),
                          toss_billing.set_quantity(bigint, integer, text),
                          toss_billing.change_price(bigint, bigint, timestamptz),
                          toss_billing.cancel_subscription(bigint, boolean),
                          toss_billing.pause_subscription(bigint),
                          toss_billing.resume_subscription(bigint),
                          toss_billing.card_replaced(text),
                          toss_billing.retry_subscription(bigint)
    TO toss_billing_operator;
GRANT SELECT ON toss_billing.plans, toss_billing.subscriptions TO toss_billing_operator, toss_billing_auditor;
