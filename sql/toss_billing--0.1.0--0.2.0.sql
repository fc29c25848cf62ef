\echo Use "ALTER EXTENSION toss_billing UPDATE" to load this file. \quit
-- toss_billing 0.1.0 -> 0.2.0: plans, subscriptions, billing periods, the test
-- clock, dunning, the events table, and the SQL half of the scheduled charge
-- runner (toss_billing._claim_due and toss_billing._record_outcomes, called by
-- the C procedure toss_billing.run_due).
--
-- Everything is schema-qualified.  Table definitions, indexes and defaults
-- spell operators as OPERATOR(pg_catalog.x); function bodies run with
-- an empty search_path, where an operator or function name can only resolve
-- in pg_catalog, and name every relation and function with its schema.
-- Nothing is granted to PUBLIC.  Times come from toss_billing.now() or
-- toss_billing.subscription_now(), never from now(), except the created_at /
-- updated_at bookkeeping columns.

-- ---------------------------------------------------------------- clocks

-- The database clock: no row means real time; one row freezes it.
CREATE TABLE toss_billing.clock (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    frozen_at  timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Test clocks: a subscription attached to one lives on its time alone.
CREATE TABLE toss_billing.test_clocks (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    now_at     timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- The billing clock: the frozen database clock if there is one, else now().
CREATE FUNCTION toss_billing.now()
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE((SELECT c.frozen_at FROM toss_billing.clock c), pg_catalog.now());
$$;

-- Freezes the database clock at a given time (or moves a frozen clock there).
CREATE FUNCTION toss_billing.freeze_clock("at" timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF freeze_clock.at IS NULL THEN
        RAISE EXCEPTION 'at must not be null' USING ERRCODE = '22004';
    END IF;
    INSERT INTO toss_billing.clock AS c (frozen_at) VALUES (freeze_clock.at)
    ON CONFLICT (singleton) DO UPDATE SET frozen_at = excluded.frozen_at, updated_at = pg_catalog.now();
    RETURN freeze_clock.at;
END;
$$;

-- Moves the frozen database clock forward.
CREATE FUNCTION toss_billing.advance_clock("by" interval)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_at timestamptz;
BEGIN
    IF advance_clock.by IS NULL THEN
        RAISE EXCEPTION 'by must not be null' USING ERRCODE = '22004';
    END IF;
    IF advance_clock.by < '0'::interval THEN
        RAISE EXCEPTION 'by must be a non-negative interval' USING ERRCODE = '22023',
            DETAIL = 'A clock only moves forward.';
    END IF;
    UPDATE toss_billing.clock c SET frozen_at = c.frozen_at + advance_clock.by, updated_at = pg_catalog.now()
    RETURNING c.frozen_at INTO v_at;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the database clock is not frozen' USING ERRCODE = '55000',
            HINT = 'Freeze it first with toss_billing.freeze_clock().';
    END IF;
    RETURN v_at;
END;
$$;

-- Lets the database clock follow real time again.
CREATE FUNCTION toss_billing.unfreeze_clock()
RETURNS timestamptz
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM toss_billing.clock;
    SELECT pg_catalog.now();
$$;

-- Creates a test clock standing at a given time; returns its id.
CREATE FUNCTION toss_billing.create_test_clock("at" timestamptz DEFAULT toss_billing.now())
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    IF create_test_clock.at IS NULL THEN
        RAISE EXCEPTION 'at must not be null' USING ERRCODE = '22004';
    END IF;
    INSERT INTO toss_billing.test_clocks (now_at) VALUES (create_test_clock.at) RETURNING id INTO v_id;
    RETURN v_id;
END;
$$;

-- Moves a test clock forward; returns its new time.
CREATE FUNCTION toss_billing.advance_test_clock(test_clock_id bigint, "by" interval)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_at timestamptz;
BEGIN
    IF advance_test_clock.by IS NULL THEN
        RAISE EXCEPTION 'by must not be null' USING ERRCODE = '22004';
    END IF;
    IF advance_test_clock.by < '0'::interval THEN
        RAISE EXCEPTION 'by must be a non-negative interval' USING ERRCODE = '22023',
            DETAIL = 'A clock only moves forward.';
    END IF;
    UPDATE toss_billing.test_clocks tc
       SET now_at = tc.now_at + advance_test_clock.by, updated_at = pg_catalog.now()
     WHERE tc.id = advance_test_clock.test_clock_id
    RETURNING tc.now_at INTO v_at;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'test clock % does not exist', advance_test_clock.test_clock_id USING ERRCODE = 'P0002';
    END IF;
    RETURN v_at;
END;
$$;

-- ---------------------------------------------------------------- periods

-- The start of period n of a schedule, computed from the anchor, never by
-- chaining: local time = anchor in the time zone, plus n * count units
-- (months and years clamp to the month's last day: Jan 31 -> Feb 28/29 ->
-- Mar 31; days and weeks keep the local wall-clock time across DST), back
-- to an absolute time in the same zone.  Period n is [start(n), start(n+1)).
CREATE FUNCTION toss_billing.period_start(
    anchor timestamptz,
    time_zone text,
    interval_unit text,
    interval_count integer,
    n integer)
RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_local timestamp := period_start.anchor AT TIME ZONE period_start.time_zone;
    v_units integer;
BEGIN
    IF period_start.interval_count < 1 THEN
        RAISE EXCEPTION 'interval_count must be at least 1' USING ERRCODE = '22023';
    END IF;
    v_units := period_start.n * period_start.interval_count;
    v_local := v_local + CASE period_start.interval_unit
        WHEN 'day' THEN pg_catalog.make_interval(days => v_units)
        WHEN 'week' THEN pg_catalog.make_interval(weeks => v_units)
        WHEN 'month' THEN pg_catalog.make_interval(months => v_units)
        WHEN 'year' THEN pg_catalog.make_interval(years => v_units)
    END;
    IF v_local IS NULL THEN
        RAISE EXCEPTION 'interval_unit "%" is not valid', period_start.interval_unit USING ERRCODE = '22023',
            DETAIL = 'An interval unit is day, week, month or year.';
    END IF;
    RETURN v_local AT TIME ZONE period_start.time_zone;
END;
$$;

-- The number (>= 0) of the period of a schedule that contains a given time;
-- 0 before the anchor.  Estimated by calendar arithmetic, then settled by
-- comparing with period_start.
CREATE FUNCTION toss_billing._period_at(
    anchor timestamptz,
    time_zone text,
    interval_unit text,
    interval_count integer,
    "at" timestamptz)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_from timestamp := _period_at.anchor AT TIME ZONE _period_at.time_zone;
    v_to timestamp := _period_at.at AT TIME ZONE _period_at.time_zone;
    v_n integer;
BEGIN
    IF _period_at.at < _period_at.anchor THEN
        RETURN 0;
    END IF;
    v_n := CASE _period_at.interval_unit
        WHEN 'day' THEN pg_catalog.floor(EXTRACT(epoch FROM v_to - v_from) / 86400 / _period_at.interval_count)
        WHEN 'week' THEN pg_catalog.floor(EXTRACT(epoch FROM v_to - v_from) / 604800 / _period_at.interval_count)
        WHEN 'month' THEN ((EXTRACT(year FROM v_to) - EXTRACT(year FROM v_from)) * 12
                           + EXTRACT(month FROM v_to) - EXTRACT(month FROM v_from))::integer / _period_at.interval_count
        WHEN 'year' THEN (EXTRACT(year FROM v_to) - EXTRACT(year FROM v_from))::integer / _period_at.interval_count
    END;
    v_n := GREATEST(v_n - 1, 0);
    WHILE toss_billing.period_start(_period_at.anchor, _period_at.time_zone, _period_at.interval_unit,
                                    _period_at.interval_count, v_n + 1) <= _period_at.at LOOP
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END;
$$;

-- Is this a time zone a subscription may use?  An IANA name PostgreSQL
-- knows (Asia/Seoul, America/New_York, UTC), or an abbreviation such as
-- KST; not a POSIX offset like 'UTC+9', which counts hours west of Greenwich.
CREATE FUNCTION toss_billing._valid_time_zone(time_zone text)
RETURNS boolean
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF _valid_time_zone.time_zone !~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$'
       OR (_valid_time_zone.time_zone ~ '[0-9]' AND _valid_time_zone.time_zone !~ '^Etc/GMT[+-][0-9]{1,2}$') THEN
        RETURN false;
    END IF;
    PERFORM pg_catalog.now() AT TIME ZONE _valid_time_zone.time_zone;
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END;
$$;

-- ---------------------------------------------------------------- plans

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
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Creates a plan: what a subscription on it is charged, and how often.
CREATE FUNCTION toss_billing.create_plan(
    name text,
    amount bigint,
    interval_unit text DEFAULT 'month',
    interval_count integer DEFAULT 1,
    trial_days integer DEFAULT 0)
RETURNS toss_billing.plans
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_plan toss_billing.plans;
BEGIN
    IF create_plan.name IS NULL OR create_plan.amount IS NULL OR create_plan.interval_unit IS NULL
       OR create_plan.interval_count IS NULL OR create_plan.trial_days IS NULL THEN
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
    IF create_plan.interval_unit <> ALL (ARRAY['day', 'week', 'month', 'year']) THEN
        RAISE EXCEPTION 'interval_unit "%" is not valid', create_plan.interval_unit USING ERRCODE = '22023',
            DETAIL = 'An interval unit is day, week, month or year.';
    END IF;
    IF create_plan.interval_count < 1 THEN
        RAISE EXCEPTION 'interval_count must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF create_plan.trial_days < 0 THEN
        RAISE EXCEPTION 'trial_days must not be negative' USING ERRCODE = '22023';
    END IF;
    INSERT INTO toss_billing.plans (name, amount, interval_unit, interval_count, trial_days)
    VALUES (create_plan.name, create_plan.amount, create_plan.interval_unit, create_plan.interval_count,
            create_plan.trial_days)
    RETURNING * INTO v_plan;
    RETURN v_plan;
END;
$$;

-- Archives a plan: it takes no new subscriptions or plan changes; the
-- subscriptions already on it keep renewing.
CREATE FUNCTION toss_billing.archive_plan(plan_id bigint)
RETURNS toss_billing.plans
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_plan toss_billing.plans;
BEGIN
    UPDATE toss_billing.plans p SET active = false WHERE p.id = archive_plan.plan_id RETURNING * INTO v_plan;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'plan % does not exist', archive_plan.plan_id USING ERRCODE = 'P0002';
    END IF;
    RETURN v_plan;
END;
$$;

-- ---------------------------------------------------------------- subscriptions

-- One row per subscription.  period_number is the open period: the next one
-- to be paid, [current_period_start, current_period_end).  A payment moves
-- it on to the following period, so current_period_start is also the time
-- the subscription is paid through.  Periods are computed from
-- billing_anchor, which is period anchor_period (re-based on a plan change
-- to another interval and on resume).
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
    CHECK (current_period_end OPERATOR(pg_catalog.>) current_period_start),
    CHECK ((pending_plan_id IS NULL AND pending_plan_period IS NULL)
           OR (pending_plan_id IS NOT NULL AND pending_plan_period IS NOT NULL)),
    CHECK (NOT cancel_at_period_end OR cancel_at IS NOT NULL),
    CHECK (status OPERATOR(pg_catalog.<>) 'canceled' OR canceled_at IS NOT NULL)
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

-- The ledger learns which subscription period an attempt pays.  At most one
-- live or successful attempt per subscription period: a second charge of a
-- period cannot even be recorded as an intent.  Failed attempts may be many.
ALTER TABLE toss_billing.payments
    ADD COLUMN subscription_id bigint REFERENCES toss_billing.subscriptions (id),
    ADD COLUMN period_number integer,
    ADD COLUMN attempt_number integer,
    ADD CONSTRAINT payments_subscription_period CHECK (
        (subscription_id IS NULL AND period_number IS NULL AND attempt_number IS NULL)
        OR (subscription_id IS NOT NULL AND period_number IS NOT NULL AND attempt_number IS NOT NULL
            AND period_number OPERATOR(pg_catalog.>=) 0 AND attempt_number OPERATOR(pg_catalog.>=) 1));
CREATE UNIQUE INDEX payments_one_per_period ON toss_billing.payments (subscription_id, period_number)
    WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'in_flight', 'unknown', 'done']);
CREATE INDEX payments_subscription ON toss_billing.payments (subscription_id, period_number, attempt_number)
    WHERE subscription_id IS NOT NULL;
CREATE INDEX payments_subscription_open ON toss_billing.payments (subscription_id)
    WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['pending', 'in_flight', 'unknown']);

-- ---------------------------------------------------------------- events

-- The durable record of everything that happens to a subscription.
-- occurred_at is the subscription's clock, created_at the real time.
CREATE TABLE toss_billing.events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    occurred_at     timestamptz NOT NULL,
    subscription_id bigint REFERENCES toss_billing.subscriptions (id),
    payment_id      bigint REFERENCES toss_billing.payments (id),
    type            text NOT NULL
                    CHECK (type OPERATOR(pg_catalog.=) ANY (ARRAY['created', 'status_changed', 'payment_succeeded',
                                                                   'payment_failed', 'payment_unknown', 'plan_change_scheduled',
                                                                   'plan_changed', 'cancel_scheduled', 'retry_scheduled', 'alert'])),
    from_status     text,
    to_status       text,
    reason          text,
    detail          jsonb
);
CREATE INDEX events_created_at ON toss_billing.events (created_at);
CREATE INDEX events_subscription ON toss_billing.events (subscription_id, id);

-- Every event is announced on channel toss_billing_events with a small
-- JSON payload; the table stays the durable record.
CREATE FUNCTION toss_billing._notify_events()
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
CREATE TRIGGER events_notify AFTER INSERT ON toss_billing.events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION toss_billing._notify_events();

-- Records one event; returns its id.
CREATE FUNCTION toss_billing._event(
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
    INSERT INTO toss_billing.events (occurred_at, subscription_id, payment_id, type, from_status, to_status,
                                     reason, detail)
    VALUES ($6, $1, $8, $2, $3, $4, $5, $7)
    RETURNING id;
$$;

-- ---------------------------------------------------------------- dunning policy

-- The dunning policy: one row.  retry_offsets[k] is when retry k follows
-- the first decline of the open period; after the last one the
-- subscription becomes final_status.  A transient failure is retried after
-- transient_retry.
CREATE TABLE toss_billing.dunning_policy (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    retry_offsets   interval[] NOT NULL DEFAULT '{1 day,3 days,5 days,7 days}',
    transient_retry interval NOT NULL DEFAULT '10 minutes'
                    CHECK (transient_retry OPERATOR(pg_catalog.>) '0'::interval),
    final_status    text NOT NULL DEFAULT 'unpaid'
                    CHECK (final_status OPERATOR(pg_catalog.=) ANY (ARRAY['unpaid', 'canceled'])),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Inserting a policy replaces the one there is, so that restoring a dump
-- (whose row arrives after CREATE EXTENSION made the default one) works.
CREATE FUNCTION toss_billing._dunning_policy_replace()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM toss_billing.dunning_policy;
    RETURN NEW;
END;
$$;
CREATE TRIGGER dunning_policy_replace BEFORE INSERT ON toss_billing.dunning_policy
    FOR EACH ROW EXECUTE FUNCTION toss_billing._dunning_policy_replace();
INSERT INTO toss_billing.dunning_policy DEFAULT VALUES;

-- Changes the dunning policy; a NULL argument keeps the current value.
CREATE FUNCTION toss_billing.set_dunning_policy(
    retry_offsets interval[] DEFAULT NULL,
    transient_retry interval DEFAULT NULL,
    final_status text DEFAULT NULL)
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
    UPDATE toss_billing.dunning_policy p
       SET retry_offsets = COALESCE(set_dunning_policy.retry_offsets, p.retry_offsets),
           transient_retry = COALESCE(set_dunning_policy.transient_retry, p.transient_retry),
           final_status = COALESCE(set_dunning_policy.final_status, p.final_status),
           updated_at = pg_catalog.now()
    RETURNING * INTO v_policy;
    RETURN v_policy;
END;
$$;

-- ---------------------------------------------------------------- subscription API

-- The current time of a subscription: its test clock's, else toss_billing.now().
CREATE FUNCTION toss_billing.subscription_now(subscription_id bigint)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE((SELECT tc.now_at
                       FROM toss_billing.subscriptions s
                       JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
                      WHERE s.id = $1),
                    toss_billing.now());
$$;

-- Locks a subscription for a change; fails if it does not exist.
CREATE FUNCTION toss_billing._lock_subscription(subscription_id bigint)
RETURNS toss_billing.subscriptions
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions;
BEGIN
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
CREATE FUNCTION toss_billing.create_subscription(
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
    IF pg_catalog.jsonb_typeof(create_subscription.metadata) <> 'object' THEN
        RAISE EXCEPTION 'metadata must be a JSON object' USING ERRCODE = '22023';
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
    RETURN v_sub;
END;
$$;

-- Changes the plan from the next period on: the open period if it has not
-- started yet (e.g. during a trial or once the current period is paid),
-- else the one after it.  Choosing the current plan withdraws a pending change.
CREATE FUNCTION toss_billing.change_plan(subscription_id bigint, plan_id bigint)
RETURNS toss_billing.subscriptions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions := toss_billing._lock_subscription(change_plan.subscription_id);
    v_plan toss_billing.plans;
    v_now timestamptz := toss_billing.subscription_now(v_sub.id);
    v_period integer;
BEGIN
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
        END IF;
        RETURN v_sub;
    END IF;
    IF NOT v_plan.active THEN
        RAISE EXCEPTION 'plan % is archived', v_plan.id USING ERRCODE = '55000',
            DETAIL = 'An archived plan takes no new subscriptions.';
    END IF;
    v_period := CASE WHEN v_sub.current_period_start > v_now THEN v_sub.period_number ELSE v_sub.period_number + 1 END;
    UPDATE toss_billing.subscriptions s
       SET pending_plan_id = v_plan.id, pending_plan_period = v_period, updated_at = pg_catalog.now()
     WHERE s.id = v_sub.id
    RETURNING * INTO v_sub;
    PERFORM toss_billing._event(v_sub.id, 'plan_change_scheduled', v_sub.status, v_sub.status,
                                'plan change scheduled for the next period', v_now,
                                pg_catalog.jsonb_build_object('from_plan_id', v_sub.plan_id, 'to_plan_id', v_plan.id,
                                                              'period_number', v_period));
    RETURN v_sub;
END;
$$;

-- Cancels a subscription at the end of the period it is paid through (the
-- default), or at once.  A paused subscription, or one whose period has
-- already ended, is canceled at once.
CREATE FUNCTION toss_billing.cancel_subscription(subscription_id bigint, at_period_end boolean DEFAULT true)
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
           pending_plan_id = NULL, pending_plan_period = NULL, updated_at = pg_catalog.now()
     WHERE s.id = v_sub.id
    RETURNING * INTO v_sub;
    PERFORM toss_billing._event(v_sub.id, 'status_changed', v_from, 'canceled', 'canceled by request', v_now);
    RETURN v_sub;
END;
$$;

-- Pauses a subscription: nothing is charged and no period ends until it is resumed.
CREATE FUNCTION toss_billing.pause_subscription(subscription_id bigint)
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
CREATE FUNCTION toss_billing.resume_subscription(subscription_id bigint)
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

-- Makes past_due and unpaid subscriptions due at once with a fresh dunning
-- schedule (unpaid ones become past_due again); returns how many.
CREATE FUNCTION toss_billing._retry_now(subscription_ids bigint[], reason text)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.now();
    v_count integer;
BEGIN
    WITH due AS (
        SELECT s.id, s.status AS from_status, COALESCE(tc.now_at, v_now) AS now_at
          FROM toss_billing.subscriptions s
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE s.id = ANY (_retry_now.subscription_ids)
           AND s.status = ANY (ARRAY['past_due', 'unpaid'])
         ORDER BY s.id
           FOR UPDATE OF s),
    changed AS (
        UPDATE toss_billing.subscriptions s
           SET status = 'past_due', next_charge_at = d.now_at, dunning_attempt = 0, dunning_started_at = NULL,
               updated_at = pg_catalog.now()
          FROM due d
         WHERE s.id = d.id
        RETURNING s.id, d.from_status, d.now_at),
    logged AS (
        INSERT INTO toss_billing.events (occurred_at, subscription_id, type, from_status, to_status, reason, detail)
        SELECT c.now_at, c.id, 'status_changed', c.from_status, 'past_due', _retry_now.reason, NULL
          FROM changed c WHERE c.from_status <> 'past_due'
        UNION ALL
        SELECT c.now_at, c.id, 'retry_scheduled', 'past_due', 'past_due', _retry_now.reason,
               pg_catalog.jsonb_build_object('next_charge_at', c.now_at)
          FROM changed c
        RETURNING id)
    SELECT pg_catalog.count(*) INTO v_count FROM changed;
    RETURN v_count;
END;
$$;

-- Called after a new billing key was issued for a customer: the customer's
-- past_due and unpaid subscriptions are retried at once.  Returns how many.
CREATE FUNCTION toss_billing.card_replaced(customer_key text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_customer_id bigint;
BEGIN
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
CREATE FUNCTION toss_billing.retry_subscription(subscription_id bigint)
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

-- ---------------------------------------------------------------- the runner's SQL half

-- Applies the transitions that are due without a charge, on each
-- subscription's clock: scheduled cancellations (first: a trial canceled at
-- its end is never charged), trial ends, and pending plan changes whose
-- period has started.  Only the given subscriptions (all when NULL); paused
-- and canceled ones, and rows locked by someone else, are skipped.
-- Returns the number of transitions.
CREATE FUNCTION toss_billing._apply_transitions(subscription_ids bigint[] DEFAULT NULL)
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
BEGIN
    WITH due AS (
        SELECT s.id, s.status AS from_status, s.cancel_at
          FROM toss_billing.subscriptions s
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE s.cancel_at_period_end
           AND s.status <> ALL (ARRAY['canceled', 'paused'])
           AND s.cancel_at <= v_horizon
           AND s.cancel_at <= COALESCE(tc.now_at, v_now)
           AND (v_ids IS NULL OR s.id = ANY (v_ids))
           FOR UPDATE OF s SKIP LOCKED),
    changed AS (
        UPDATE toss_billing.subscriptions s
           SET status = 'canceled', canceled_at = d.cancel_at, next_charge_at = NULL,
               pending_plan_id = NULL, pending_plan_period = NULL, updated_at = pg_catalog.now()
          FROM due d
         WHERE s.id = d.id
        RETURNING s.id, d.from_status, d.cancel_at)
    INSERT INTO toss_billing.events (occurred_at, subscription_id, type, from_status, to_status, reason)
    SELECT c.cancel_at, c.id, 'status_changed', c.from_status, 'canceled', 'canceled at period end'
      FROM changed c;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_total := v_total + v_count;

    WITH due AS (
        SELECT s.id, s.trial_end
          FROM toss_billing.subscriptions s
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE s.status = 'trialing'
           AND s.trial_end <= v_horizon
           AND s.trial_end <= COALESCE(tc.now_at, v_now)
           AND (v_ids IS NULL OR s.id = ANY (v_ids))
           FOR UPDATE OF s SKIP LOCKED),
    changed AS (
        UPDATE toss_billing.subscriptions s
           SET status = 'active', updated_at = pg_catalog.now()
          FROM due d
         WHERE s.id = d.id AND s.status = 'trialing'
        RETURNING s.id, d.trial_end)
    INSERT INTO toss_billing.events (occurred_at, subscription_id, type, from_status, to_status, reason)
    SELECT c.trial_end, c.id, 'status_changed', 'trialing', 'active', 'trial ended'
      FROM changed c;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    v_total := v_total + v_count;

    -- a plan with another interval re-bases the periods on the boundary
    WITH due AS (
        SELECT s.id, s.status, s.plan_id AS from_plan_id, s.pending_plan_id, s.period_number,
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
           AND (v_ids IS NULL OR s.id = ANY (v_ids))
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
    INSERT INTO toss_billing.events (occurred_at, subscription_id, type, from_status, to_status, reason, detail)
    SELECT c.current_period_start, c.id, 'plan_changed', c.status, c.status, 'plan change took effect',
           pg_catalog.jsonb_build_object('from_plan_id', c.from_plan_id, 'to_plan_id', c.pending_plan_id,
                                         'period_number', c.period_number, 'rebased', c.rebase)
      FROM changed c;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_total + v_count;
END;
$$;

-- Claims up to max_count due subscription periods for the runner.  First
-- applies the transitions that need no charge; then, for each due
-- subscription, earliest first (next_charge_at reached on its clock, trial
-- over, not paused, an active billing key, no attempt pending, in flight or
-- unknown, its open period not already paid), records ONE in_flight attempt
-- for its open period and returns what the Toss call needs.  Rows locked by
-- another runner are skipped, and the unique index on (subscription_id,
-- period_number) turns any race into "nothing claimed".  The caller commits
-- before calling Toss.
-- Subscription order ids end with this installation's random tag, so two
-- databases billing through one Toss merchant never produce the same order id
-- (and a lookup by order id never mistakes the other's payment for ours).
-- The row is made on first use, so a restored dump keeps its tag.
CREATE TABLE toss_billing.installation (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    order_tag text NOT NULL CHECK (order_tag OPERATOR(pg_catalog.~) '^[a-z0-9]{8}$')
);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.installation', '');

CREATE FUNCTION toss_billing._order_tag()
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tag text;
BEGIN
    SELECT i.order_tag INTO v_tag FROM toss_billing.installation i;
    IF v_tag IS NULL THEN
        INSERT INTO toss_billing.installation (order_tag)
        VALUES (pg_catalog.substr(pg_catalog.md5(pg_catalog.gen_random_uuid()::text), 1, 8))
        ON CONFLICT DO NOTHING;
        SELECT i.order_tag INTO v_tag FROM toss_billing.installation i;
    END IF;
    RETURN v_tag;
END;
$$;

CREATE FUNCTION toss_billing._claim_due(max_count integer)
RETURNS TABLE(payment_id bigint, order_id text, idempotency_key text, customer_key text, amount bigint,
              tax_free_amount bigint, order_name text, customer_email text, customer_name text,
              billing_key_id bigint, merchant text, encrypted_key bytea)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_limit integer := _claim_due.max_count;
    v_tag text := toss_billing._order_tag();
    v_now timestamptz;
    v_horizon timestamptz;
BEGIN
    IF v_limit IS NULL OR v_limit < 0 THEN
        RAISE EXCEPTION 'max_count must be a non-negative integer' USING ERRCODE = '22023';
    END IF;
    PERFORM toss_billing._apply_transitions(NULL);
    IF v_limit = 0 THEN
        RETURN;
    END IF;
    v_now := toss_billing.now();
    v_horizon := GREATEST(v_now, (SELECT pg_catalog.max(tc.now_at) FROM toss_billing.test_clocks tc));

    RETURN QUERY
    WITH due AS (
        SELECT s.id, s.customer_id, s.period_number,
               COALESCE(s.amount_override, pl.amount) AS amount, pl.name AS order_name
          FROM toss_billing.subscriptions s
          JOIN toss_billing.plans pl ON pl.id = s.plan_id
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE s.next_charge_at <= v_horizon
           AND s.next_charge_at <= COALESCE(tc.now_at, v_now)
           AND (s.status = ANY (ARRAY['active', 'past_due'])
                OR (s.status = 'trialing' AND s.trial_end <= COALESCE(tc.now_at, v_now)))
           AND EXISTS (SELECT FROM toss_billing.billing_keys bk
                        WHERE bk.customer_id = s.customer_id AND bk.status = 'active')
           -- OFFSET 0 keeps each check a per-row index probe: pulled up into an
           -- anti-join, the planner may materialize every open attempt and
           -- compare all pairs, which grows with the runner's concurrency.
           AND NOT EXISTS (SELECT FROM toss_billing.payments p
                            WHERE p.subscription_id = s.id
                              AND p.state = ANY (ARRAY['pending', 'in_flight', 'unknown'])
                           OFFSET 0)
           AND NOT EXISTS (SELECT FROM toss_billing.payments p
                            WHERE p.subscription_id = s.id AND p.period_number = s.period_number
                              AND p.state = 'done'
                           OFFSET 0)
         ORDER BY s.next_charge_at, s.id
         LIMIT v_limit
           FOR UPDATE OF s SKIP LOCKED),
    attempts AS (
        SELECT d.*,
               COALESCE((SELECT pg_catalog.max(p.attempt_number) FROM toss_billing.payments p
                          WHERE p.subscription_id = d.id AND p.period_number = d.period_number), 0) + 1
                   AS attempt_number
          FROM due d),
    claimed AS (
        INSERT INTO toss_billing.payments AS p
               (order_id, idempotency_key, customer_id, billing_key_id, merchant, state, order_name, amount,
                tax_free_amount, customer_email, customer_name, requested_by, subscription_id, period_number,
                attempt_number)
        SELECT pg_catalog.format('sub%s-p%s-a%s-%s', a.id, a.period_number, a.attempt_number, v_tag),
               pg_catalog.gen_random_uuid()::text, a.customer_id, bk.id, bk.merchant, 'in_flight', a.order_name,
               a.amount, 0, c.email, c.name, CURRENT_USER, a.id, a.period_number, a.attempt_number
          FROM attempts a
          JOIN toss_billing.customers c ON c.id = a.customer_id
          JOIN toss_billing.billing_keys bk ON bk.customer_id = a.customer_id AND bk.status = 'active'
        ON CONFLICT DO NOTHING
        RETURNING p.id, p.order_id, p.idempotency_key, p.customer_id, p.amount, p.tax_free_amount, p.order_name,
                  p.customer_email, p.customer_name, p.billing_key_id, p.merchant)
    SELECT cl.id, cl.order_id, cl.idempotency_key, c.customer_key, cl.amount, cl.tax_free_amount, cl.order_name,
           cl.customer_email, cl.customer_name, cl.billing_key_id, cl.merchant, bk.encrypted_key
      FROM claimed cl
      JOIN toss_billing.customers c ON c.id = cl.customer_id
      JOIN toss_billing.billing_keys bk ON bk.id = cl.billing_key_id
     ORDER BY cl.id;
END;
$$;

-- One recorded outcome, as _record_outcomes hands it to the steps that
-- settle subscriptions.
CREATE TYPE toss_billing._outcome AS (
    payment_id      bigint,
    subscription_id bigint,
    period_number   integer,
    attempt_number  integer,
    amount          bigint,
    from_state      text,
    state           text,
    failure_class   text,
    failure_code    text,
    failure_message text
);

-- Settles the subscriptions whose attempt succeeded: the open period is
-- paid, so the subscription moves on to the next period, due at its start
-- (at once when catching up), with dunning reset; trialing, past_due and
-- unpaid become active.  A payment for a paused subscription moves the
-- period on but leaves it paused; one for a canceled subscription, or for
-- a period that is not open, raises an alert.
CREATE FUNCTION toss_billing._settle_paid(outcomes toss_billing._outcome[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.now();
BEGIN
    WITH paid AS (
        SELECT DISTINCT ON (s.id) o.*, s.status AS from_status,
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
    INSERT INTO toss_billing.events (occurred_at, subscription_id, payment_id, type, from_status, to_status,
                                     reason, detail)
    SELECT e.occurred_at, e.subscription_id, e.payment_id, e.type, e.from_status, e.to_status, e.reason, e.detail
      FROM (
        SELECT st.now_at, st.subscription_id, st.payment_id, 'payment_succeeded', st.from_status, st.to_status,
               'payment succeeded',
               pg_catalog.jsonb_build_object('period_number', st.period_number, 'attempt_number', st.attempt_number,
                                             'amount', st.amount, 'next_charge_at', c.next_charge_at), 1 AS k
          FROM settled st LEFT JOIN changed c ON c.id = st.subscription_id
        UNION ALL
        SELECT st.now_at, st.subscription_id, st.payment_id, 'status_changed', st.from_status, st.to_status,
               'payment succeeded', NULL, 2
          FROM settled st WHERE st.to_status <> st.from_status
        UNION ALL
        SELECT st.now_at, st.subscription_id, st.payment_id, 'alert', st.from_status, st.to_status,
               CASE WHEN st.from_status = 'canceled' THEN 'payment succeeded for a canceled subscription'
                    ELSE 'payment succeeded for a period that is not open' END,
               pg_catalog.jsonb_build_object('period_number', st.period_number, 'amount', st.amount), 3
          FROM settled st WHERE NOT st.open
        ) AS e(occurred_at, subscription_id, payment_id, type, from_status, to_status, reason, detail, k)
     ORDER BY e.subscription_id, e.k;
END;
$$;

-- Settles the subscriptions whose attempt failed, by failure class:
-- transient -> retried after the policy's transient_retry (a new attempt);
-- card_declined, not_found -> the next dunning slot, counted from the
-- period's first decline, and past_due; after the last slot the policy's
-- final_status; anything else (configuration, invalid_request, ...) ->
-- charging stops (past_due, next_charge_at NULL) with an alert.  Failures
-- of paused or canceled subscriptions, or of a period that is not open,
-- are only recorded.
CREATE FUNCTION toss_billing._settle_failed(outcomes toss_billing._outcome[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := toss_billing.now();
    v_policy toss_billing.dunning_policy;
BEGIN
    SELECT * INTO STRICT v_policy FROM toss_billing.dunning_policy;
    WITH failed AS (
        SELECT DISTINCT ON (s.id) o.*, s.status AS from_status, s.dunning_attempt, s.dunning_started_at,
               s.next_charge_at, COALESCE(tc.now_at, v_now) AS now_at,
               CASE WHEN s.period_number <> o.period_number
                         OR s.status <> ALL (ARRAY['trialing', 'active', 'past_due']) THEN 'record'
                    WHEN o.failure_class = 'transient' THEN 'retry'
                    WHEN o.failure_class = ANY (ARRAY['card_declined', 'not_found']) THEN
                        CASE WHEN s.dunning_attempt < COALESCE(pg_catalog.cardinality(v_policy.retry_offsets), 0)
                             THEN 'dunning' ELSE 'final' END
                    ELSE 'stop' END AS action
          FROM unnest(_settle_failed.outcomes) o
          JOIN toss_billing.subscriptions s ON s.id = o.subscription_id
          LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
         WHERE o.state = 'failed'
         ORDER BY s.id, o.payment_id),
    settled AS (
        SELECT f.*,
               CASE f.action
                   WHEN 'record' THEN f.from_status
                   WHEN 'retry' THEN CASE WHEN f.from_status = 'trialing' THEN 'active' ELSE f.from_status END
                   WHEN 'final' THEN v_policy.final_status
                   ELSE 'past_due' END AS to_status,
               CASE f.action
                   WHEN 'record' THEN f.next_charge_at
                   WHEN 'retry' THEN f.now_at + v_policy.transient_retry
                   WHEN 'dunning' THEN COALESCE(f.dunning_started_at, f.now_at)
                                       + v_policy.retry_offsets[f.dunning_attempt + 1]
                   END AS retry_at,
               CASE WHEN f.action = ANY (ARRAY['dunning', 'final']) THEN f.dunning_attempt + 1
                    ELSE f.dunning_attempt END AS new_dunning_attempt,
               CASE WHEN f.action = ANY (ARRAY['dunning', 'final']) THEN COALESCE(f.dunning_started_at, f.now_at)
                    ELSE f.dunning_started_at END AS new_dunning_started_at
          FROM failed f),
    changed AS (
        UPDATE toss_billing.subscriptions s
           SET status = st.to_status, next_charge_at = st.retry_at, dunning_attempt = st.new_dunning_attempt,
               dunning_started_at = st.new_dunning_started_at,
               canceled_at = CASE WHEN st.to_status = 'canceled' THEN st.now_at ELSE s.canceled_at END,
               updated_at = pg_catalog.now()
          FROM settled st
         WHERE s.id = st.subscription_id AND st.action <> 'record'
        RETURNING s.id)
    INSERT INTO toss_billing.events (occurred_at, subscription_id, payment_id, type, from_status, to_status,
                                     reason, detail)
    SELECT e.occurred_at, e.subscription_id, e.payment_id, e.type, e.from_status, e.to_status, e.reason, e.detail
      FROM (
        SELECT st.now_at, st.subscription_id, st.payment_id, 'payment_failed', st.from_status, st.to_status,
               CASE st.action
                   WHEN 'retry' THEN 'transient failure, retry scheduled'
                   WHEN 'dunning' THEN 'declined, dunning retry scheduled'
                   WHEN 'final' THEN 'declined, dunning exhausted'
                   WHEN 'stop' THEN 'charging stopped'
                   ELSE 'payment failed' END,
               pg_catalog.jsonb_build_object('period_number', st.period_number, 'attempt_number', st.attempt_number,
                                             'failure_class', st.failure_class, 'failure_code', st.failure_code,
                                             'dunning_attempt', st.new_dunning_attempt,
                                             'next_charge_at', st.retry_at), 1 AS k
          FROM settled st
        UNION ALL
        SELECT st.now_at, st.subscription_id, st.payment_id, 'status_changed', st.from_status, st.to_status,
               CASE st.action WHEN 'final' THEN 'dunning exhausted'
                              WHEN 'stop' THEN 'charging stopped'
                              ELSE 'payment failed' END,
               NULL, 2
          FROM settled st WHERE st.to_status <> st.from_status
        UNION ALL
        SELECT st.now_at, st.subscription_id, st.payment_id, 'alert', st.from_status, st.to_status,
               pg_catalog.format('charging stopped (%s)', COALESCE(st.failure_class, 'unclassified failure')),
               pg_catalog.jsonb_build_object('failure_class', st.failure_class, 'failure_code', st.failure_code,
                                             'failure_message', st.failure_message,
                                             'hint', 'Fix the cause, then call toss_billing.retry_subscription().'),
               3
          FROM settled st WHERE st.action = 'stop'
        ) AS e(occurred_at, subscription_id, payment_id, type, from_status, to_status, reason, detail, k)
     ORDER BY e.subscription_id, e.k;
END;
$$;

-- Records the attempts whose outcome is unknown: the subscription stays
-- blocked (no new attempt while one is unknown) until the attempt is
-- resolved by looking the order up.
CREATE FUNCTION toss_billing._settle_unknown(outcomes toss_billing._outcome[])
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO toss_billing.events (occurred_at, subscription_id, payment_id, type, from_status, to_status,
                                     reason, detail)
    SELECT COALESCE(tc.now_at, toss_billing.now()), s.id, o.payment_id, 'payment_unknown', s.status, s.status,
           'outcome unknown, charging blocked until it is resolved',
           pg_catalog.jsonb_build_object('period_number', o.period_number, 'attempt_number', o.attempt_number,
                                         'failure_message', o.failure_message)
      FROM unnest($1) o
      JOIN toss_billing.subscriptions s ON s.id = o.subscription_id
      LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
     WHERE o.state = 'unknown' AND o.from_state <> 'unknown'
     ORDER BY s.id, o.payment_id;
$$;

-- Records the outcomes of claimed attempts (one array element per payment)
-- and settles their subscriptions.  The ledger row is completed exactly as
-- the single-charge path does (toss_store_charge_outcome): code and message
-- fall back to the Payment's failure object, Toss's fields are read from
-- the response.  Only attempts still pending, in flight or unknown are
-- touched, so recording an outcome twice changes nothing.
CREATE FUNCTION toss_billing._record_outcomes(
    payment_ids bigint[],
    states text[],
    http_statuses integer[],
    failure_classes text[],
    failure_codes text[],
    failure_messages text[],
    responses jsonb[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n integer := COALESCE(pg_catalog.cardinality(_record_outcomes.payment_ids), 0);
    v_outcomes toss_billing._outcome[];
    v_subscriptions bigint[];
BEGIN
    IF COALESCE(pg_catalog.cardinality(_record_outcomes.states), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.http_statuses), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.failure_classes), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.failure_codes), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.failure_messages), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.responses), 0) <> v_n THEN
        RAISE EXCEPTION 'the outcome arrays must all have the same length' USING ERRCODE = '22023';
    END IF;
    IF v_n = 0 THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM unnest(_record_outcomes.states) st
                WHERE st IS NULL OR st <> ALL (ARRAY['done', 'failed', 'unknown'])) THEN
        RAISE EXCEPTION 'an outcome state must be done, failed or unknown' USING ERRCODE = '22023';
    END IF;

    WITH given AS (
        SELECT *
          FROM unnest(_record_outcomes.payment_ids, _record_outcomes.states, _record_outcomes.http_statuses,
                      _record_outcomes.failure_classes, _record_outcomes.failure_codes,
                      _record_outcomes.failure_messages, _record_outcomes.responses)
               AS i(payment_id, state, http_status, failure_class, failure_code, failure_message, response)),
    still_open AS (
        SELECT p.id, p.state
          FROM toss_billing.payments p
         WHERE p.id = ANY (_record_outcomes.payment_ids)
           AND p.state = ANY (ARRAY['pending', 'in_flight', 'unknown'])
         ORDER BY p.id
           FOR UPDATE),
    recorded AS (
        UPDATE toss_billing.payments p
           SET state = i.state,
               http_status = NULLIF(i.http_status, 0),
               failure_class = i.failure_class,
               failure_code = COALESCE(i.failure_code, i.response->'failure'->>'code'),
               failure_message = COALESCE(i.failure_message, i.response->'failure'->>'message'),
               toss_status = i.response->>'status',
               payment_key = i.response->>'paymentKey',
               total_amount = (i.response->>'totalAmount')::bigint,
               balance_amount = (i.response->>'balanceAmount')::bigint,
               supplied_amount = (i.response->>'suppliedAmount')::bigint,
               vat = (i.response->>'vat')::bigint,
               requested_at = (i.response->>'requestedAt')::timestamptz,
               approved_at = (i.response->>'approvedAt')::timestamptz,
               response = i.response,
               updated_at = pg_catalog.now()
          FROM given i, still_open o
         WHERE p.id = i.payment_id AND o.id = i.payment_id
        RETURNING ROW(p.id, p.subscription_id, p.period_number, p.attempt_number, p.amount, o.state, p.state,
                      p.failure_class, p.failure_code, p.failure_message)::toss_billing._outcome AS outcome)
    SELECT pg_catalog.array_agg(r.outcome) INTO v_outcomes FROM recorded r;

    SELECT pg_catalog.array_agg(DISTINCT o.subscription_id) INTO v_subscriptions
      FROM unnest(v_outcomes) o WHERE o.subscription_id IS NOT NULL;
    IF v_subscriptions IS NULL THEN
        RETURN;
    END IF;
    PERFORM FROM toss_billing.subscriptions s WHERE s.id = ANY (v_subscriptions) ORDER BY s.id FOR UPDATE;
    PERFORM toss_billing._settle_paid(v_outcomes);
    PERFORM toss_billing._settle_failed(v_outcomes);
    PERFORM toss_billing._settle_unknown(v_outcomes);
    -- catching up: the period just opened may already have ended
    PERFORM toss_billing._apply_transitions(v_subscriptions);
END;
$$;

-- The runner: CALL toss_billing.run_due() claims due periods, calls Toss
-- for them concurrently (libcurl multi) and records the outcomes, committing
-- its own transactions, so it must be CALLed outside a transaction block.
-- The INOUT parameters only carry the summary back (a procedure's OUT
-- parameters cannot follow ones with defaults): claimed, done, failed,
-- unknown, throttled attempts and the elapsed milliseconds.
CREATE PROCEDURE toss_billing.run_due(
    max_charges integer DEFAULT 10000,
    time_budget interval DEFAULT '50 seconds',
    INOUT claimed bigint DEFAULT NULL,
    INOUT done bigint DEFAULT NULL,
    INOUT failed bigint DEFAULT NULL,
    INOUT unknown bigint DEFAULT NULL,
    INOUT throttled bigint DEFAULT NULL,
    INOUT elapsed_ms double precision DEFAULT NULL)
LANGUAGE c
AS 'MODULE_PATHNAME', 'toss_run_due';

-- Registers the runner with pg_cron as job toss_billing_run_due (replacing
-- an earlier schedule of that job); returns the job id.  The job's command
-- is just the CALL: it carries no secret.  pg_cron stays optional.
CREATE FUNCTION toss_billing.schedule(cron text DEFAULT '* * * * *')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.to_regnamespace('cron') IS NULL THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database' USING ERRCODE = '55000',
            HINT = 'Create the pg_cron extension in the database named by cron.database_name, or run CALL toss_billing.run_due() from any scheduler.';
    END IF;
    RETURN cron.schedule('toss_billing_run_due', schedule.cron, 'CALL toss_billing.run_due()');
END;
$$;

-- Removes the runner's pg_cron job; returns whether there was one.
CREATE FUNCTION toss_billing.unschedule()
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.to_regnamespace('cron') IS NULL THEN
        RETURN false;
    END IF;
    IF NOT EXISTS (SELECT FROM cron.job j WHERE j.jobname = 'toss_billing_run_due') THEN
        RETURN false;
    END IF;
    RETURN cron.unschedule('toss_billing_run_due');
END;
$$;

-- ---------------------------------------------------------------- dump, privileges

SELECT pg_catalog.pg_extension_config_dump('toss_billing.clock', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.test_clocks', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.plans', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.events', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.dunning_policy', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.test_clocks_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.plans_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.subscriptions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.events_id_seq', '');

REVOKE ALL ON ALL TABLES IN SCHEMA toss_billing FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA toss_billing FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA toss_billing FROM PUBLIC;
REVOKE ALL ON TYPE toss_billing._outcome FROM PUBLIC;

-- Operators manage plans and subscriptions through the functions (which
-- keep the state machine and the events table consistent) and read
-- everything; auditors read.  The runner's functions, the clocks and the
-- dunning policy stay with the extension owner.
GRANT EXECUTE ON FUNCTION toss_billing.now(),
                          toss_billing.subscription_now(bigint),
                          toss_billing.period_start(timestamptz, text, text, integer, integer)
    TO toss_billing_operator, toss_billing_auditor;
GRANT EXECUTE ON FUNCTION toss_billing.create_plan(text, bigint, text, integer, integer),
                          toss_billing.archive_plan(bigint),
                          toss_billing.create_subscription(text, bigint, timestamptz, text, bigint, jsonb, bigint),
                          toss_billing.change_plan(bigint, bigint),
                          toss_billing.cancel_subscription(bigint, boolean),
                          toss_billing.pause_subscription(bigint),
                          toss_billing.resume_subscription(bigint),
                          toss_billing.card_replaced(text),
                          toss_billing.retry_subscription(bigint)
    TO toss_billing_operator;
GRANT SELECT ON toss_billing.plans, toss_billing.subscriptions, toss_billing.events,
                toss_billing.dunning_policy, toss_billing.clock, toss_billing.test_clocks
    TO toss_billing_operator, toss_billing_auditor;
