-- 31_prices: what a plan charges beyond its fixed amount, and what takes
-- off it: metered components (toss_billing.plan_meters: a metric, a unit
-- price or tiers, an aggregation) and coupons (toss_billing.coupons and
-- their redemptions by subscriptions).  The invoices (32_invoices) price
-- usage and discounts with the functions here.
--
-- Rounding, everywhere in invoices: amounts are computed exactly (numeric)
-- and rounded once to the won, halves away from zero (pg_catalog.round on
-- numeric); see _won().

-- @data

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

-- @code

-- The one rounding rule of invoices: to the won, halves away from zero.
CREATE OR REPLACE FUNCTION toss_billing._won(amount numeric)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.round($1)::bigint;
$$;

-- The bounds of amounts.  _max_price: the most one unit of a charge may
-- cost, as a plan's amount, a subscription's own price or a one-off line
-- (10,000,000,000 KRW); a seat count is at most 100,000, so a plan line
-- stays far inside _max_invoice_amount.  _max_invoice_amount: the most any
-- line or total of an invoice may be, either way (1,000,000,000,000,000
-- KRW: exact in the JSON numbers Toss reads, which 2^63 is not).  Usage can
-- add up past it, so an invoice is composed with _invoice_amount.
CREATE OR REPLACE FUNCTION toss_billing._max_price()
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 10000000000::bigint;
$$;

CREATE OR REPLACE FUNCTION toss_billing._max_invoice_amount()
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 1000000000000000::bigint;
$$;

-- An amount of an invoice (exact: numeric), rounded to the won (_won), or a
-- clear error (22003) when it is beyond _max_invoice_amount either way:
-- what names the line or total ('the usage line "calls"'), hint says what
-- to correct.  An invoice that cannot be composed is never charged: the
-- runner defers its subscription (60_runner) and alerts with this error.
CREATE OR REPLACE FUNCTION toss_billing._invoice_amount(amount numeric, what text, subscription_id bigint,
                                                        hint text)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_won numeric := pg_catalog.round(_invoice_amount.amount);   -- _won's rule, numeric until it fits
BEGIN
    IF pg_catalog.abs(v_won) > toss_billing._max_invoice_amount() THEN
        RAISE EXCEPTION '% of subscription % would be % KRW, more than an invoice can hold', _invoice_amount.what,
                        _invoice_amount.subscription_id, v_won
            USING ERRCODE = '22003',
                  DETAIL = pg_catalog.format('An invoice''s lines and totals are at most %s KRW either way.',
                                             pg_catalog.to_char(toss_billing._max_invoice_amount(), 'FM9,999,999,999,999,999')),
                  HINT = COALESCE(_invoice_amount.hint, 'Lower what the invoice bills.');
    END IF;
    RETURN v_won;
END;
$$;

-- A usage line's quantity (exact: numeric, the sum of its records), or the
-- same kind of error as _invoice_amount's when it is beyond a bigint.
CREATE OR REPLACE FUNCTION toss_billing._usage_quantity(quantity numeric, metric text, subscription_id bigint,
                                                        hint text)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF _usage_quantity.quantity > 9223372036854775807 THEN
        RAISE EXCEPTION 'the usage of "%" of subscription % adds up to % units, more than an invoice line can hold',
                        _usage_quantity.metric, _usage_quantity.subscription_id, _usage_quantity.quantity
            USING ERRCODE = '22003',
                  DETAIL = 'A usage line counts at most 9,223,372,036,854,775,807 units.',
                  HINT = COALESCE(_usage_quantity.hint, 'Correct the usage records.');
    END IF;
    RETURN _usage_quantity.quantity;
END;
$$;

-- Tiers as given to add_plan_meter, checked and made canonical: an array of
-- objects {up_to, unit_amount, flat_amount} with up_to strictly increasing
-- positive integers and the last one null.  Raises 22023 otherwise.
CREATE OR REPLACE FUNCTION toss_billing._canonical_tiers(tiers jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_out jsonb := '[]';
    v_prev bigint := 0;
    v_n integer;
    v_t jsonb;
    v_up bigint;
    v_unit numeric;
    v_flat bigint;
BEGIN
    IF pg_catalog.jsonb_typeof(_canonical_tiers.tiers) IS DISTINCT FROM 'array'
       OR pg_catalog.jsonb_array_length(_canonical_tiers.tiers) NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'tiers must be a JSON array of 1 to 100 tiers' USING ERRCODE = '22023',
            HINT = 'For example [{"up_to": 1000, "unit_amount": 0}, {"up_to": null, "unit_amount": 2}].';
    END IF;
    v_n := pg_catalog.jsonb_array_length(_canonical_tiers.tiers);
    FOR i IN 0 .. v_n - 1 LOOP
        v_t := _canonical_tiers.tiers -> i;
        IF pg_catalog.jsonb_typeof(v_t) IS DISTINCT FROM 'object'
           OR EXISTS (SELECT FROM pg_catalog.jsonb_object_keys(v_t) k
                       WHERE k <> ALL (ARRAY['up_to', 'unit_amount', 'flat_amount'])) THEN
            RAISE EXCEPTION 'tier % is not an object of up_to, unit_amount and flat_amount', i + 1
                USING ERRCODE = '22023';
        END IF;
        IF pg_catalog.jsonb_typeof(v_t->'up_to') = 'number' AND (v_t->>'up_to') ~ '^[0-9]{1,15}$' THEN
            v_up := (v_t->>'up_to')::bigint;
        ELSIF COALESCE(pg_catalog.jsonb_typeof(v_t->'up_to'), 'null') = 'null' THEN
            v_up := NULL;
        ELSE
            RAISE EXCEPTION 'tier %: up_to must be a whole number or null', i + 1 USING ERRCODE = '22023';
        END IF;
        IF (v_up IS NULL) <> (i = v_n - 1) THEN
            RAISE EXCEPTION 'tier %: only the last tier has no up_to, and it must have none', i + 1
                USING ERRCODE = '22023',
                      DETAIL = 'The last tier takes every unit above the previous tier''s up_to.';
        END IF;
        IF v_up IS NOT NULL AND v_up <= v_prev THEN
            RAISE EXCEPTION 'tier %: up_to must be larger than the previous tier''s', i + 1 USING ERRCODE = '22023';
        END IF;
        IF COALESCE(pg_catalog.jsonb_typeof(v_t->'unit_amount'), 'null') NOT IN ('number', 'null')
           OR COALESCE(pg_catalog.jsonb_typeof(v_t->'flat_amount'), 'null') NOT IN ('number', 'null') THEN
            RAISE EXCEPTION 'tier %: unit_amount and flat_amount must be numbers', i + 1 USING ERRCODE = '22023';
        END IF;
        v_unit := COALESCE((v_t->>'unit_amount')::numeric, 0);
        IF v_unit < 0 OR v_unit > 100000000 THEN
            RAISE EXCEPTION 'tier %: unit_amount must be between 0 and 100000000', i + 1 USING ERRCODE = '22023';
        END IF;
        IF (v_t->>'flat_amount') IS NOT NULL AND (v_t->>'flat_amount') !~ '^[0-9]{1,12}$' THEN
            RAISE EXCEPTION 'tier %: flat_amount must be a whole number of won, 0 or more', i + 1 USING ERRCODE = '22023';
        END IF;
        v_flat := COALESCE((v_t->>'flat_amount')::bigint, 0);
        v_out := v_out || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                              'up_to', v_up, 'unit_amount', v_unit, 'flat_amount', v_flat));
        v_prev := COALESCE(v_up, v_prev);
    END LOOP;
    RETURN v_out;
END;
$$;

-- The price of a quantity of a meter, exactly (numeric, before rounding),
-- and how it was reached: one element per tier that has units.
CREATE OR REPLACE FUNCTION toss_billing._meter_price(meter_id bigint, quantity bigint,
                                                     OUT price numeric, OUT breakdown jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m toss_billing.plan_meters;
    v_from bigint := 0;
    v_units bigint;
    t jsonb;
BEGIN
    SELECT * INTO m FROM toss_billing.plan_meters pm WHERE pm.id = _meter_price.meter_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'meter % does not exist', _meter_price.meter_id USING ERRCODE = 'P0002';
    END IF;
    IF m.tiers IS NULL THEN
        price := _meter_price.quantity * m.unit_amount;
        breakdown := NULL;
        RETURN;
    END IF;
    price := 0;
    breakdown := '[]';
    IF m.tiers_mode = 'volume' THEN
        SELECT x.value INTO t FROM pg_catalog.jsonb_array_elements(m.tiers) WITH ORDINALITY AS x(value, n)
         WHERE (x.value->>'up_to') IS NULL OR (x.value->>'up_to')::bigint >= _meter_price.quantity
         ORDER BY x.n LIMIT 1;
        price := _meter_price.quantity * (t->>'unit_amount')::numeric
                 + CASE WHEN _meter_price.quantity > 0 THEN (t->>'flat_amount')::bigint ELSE 0 END;
        breakdown := pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                         'up_to', t->'up_to', 'units', _meter_price.quantity, 'unit_amount', t->'unit_amount',
                         'flat_amount', t->'flat_amount'));
        RETURN;
    END IF;
    FOR t IN SELECT x.value FROM pg_catalog.jsonb_array_elements(m.tiers) WITH ORDINALITY AS x(value, n) ORDER BY x.n LOOP
        EXIT WHEN v_from >= _meter_price.quantity;
        v_units := LEAST(_meter_price.quantity, COALESCE((t->>'up_to')::bigint, _meter_price.quantity)) - v_from;
        price := price + v_units * (t->>'unit_amount')::numeric + (t->>'flat_amount')::bigint;
        breakdown := breakdown || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                                      'up_to', t->'up_to', 'units', v_units, 'unit_amount', t->'unit_amount',
                                      'flat_amount', t->'flat_amount'));
        v_from := v_from + v_units;
    END LOOP;
END;
$$;

-- Adds a metered component to a plan (see plan_meters).  Every
-- subscription on the plan can record usage of the metric from then on.
CREATE OR REPLACE FUNCTION toss_billing.add_plan_meter(
    plan_id bigint,
    metric text,
    aggregation text DEFAULT 'sum',
    unit_amount numeric DEFAULT NULL,
    tiers jsonb DEFAULT NULL,
    tiers_mode text DEFAULT NULL,
    description text DEFAULT NULL,
    tax_free boolean DEFAULT false)
RETURNS toss_billing.plan_meters
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_meter toss_billing.plan_meters;
BEGIN
    IF add_plan_meter.plan_id IS NULL OR add_plan_meter.metric IS NULL OR add_plan_meter.aggregation IS NULL
       OR add_plan_meter.tax_free IS NULL THEN
        RAISE EXCEPTION 'plan_id, metric, aggregation and tax_free must not be null' USING ERRCODE = '22004';
    END IF;
    IF NOT EXISTS (SELECT FROM toss_billing.plans p WHERE p.id = add_plan_meter.plan_id) THEN
        RAISE EXCEPTION 'plan % does not exist', add_plan_meter.plan_id USING ERRCODE = 'P0002';
    END IF;
    IF add_plan_meter.metric !~ '^[a-z][a-z0-9_.:-]{0,62}$' THEN
        RAISE EXCEPTION 'metric "%" is not a valid metric name', add_plan_meter.metric USING ERRCODE = '22023',
            DETAIL = 'A metric name is 1 to 63 characters: a lower-case letter, then lower-case letters, digits, _ . : or -.';
    END IF;
    IF add_plan_meter.aggregation <> ALL (ARRAY['sum', 'max', 'last']) THEN
        RAISE EXCEPTION 'aggregation "%" is not valid', add_plan_meter.aggregation USING ERRCODE = '22023',
            DETAIL = 'An aggregation is sum, max or last.';
    END IF;
    IF (add_plan_meter.unit_amount IS NULL) = (add_plan_meter.tiers IS NULL) THEN
        RAISE EXCEPTION 'give either unit_amount or tiers' USING ERRCODE = '22023',
            DETAIL = 'A meter is priced per unit or by tiers, not both.';
    END IF;
    IF add_plan_meter.unit_amount < 0 OR add_plan_meter.unit_amount > 100000000 THEN
        RAISE EXCEPTION 'unit_amount must be between 0 and 100000000' USING ERRCODE = '22023';
    END IF;
    IF add_plan_meter.tiers IS NULL AND add_plan_meter.tiers_mode IS NOT NULL THEN
        RAISE EXCEPTION 'tiers_mode needs tiers' USING ERRCODE = '22023';
    END IF;
    IF add_plan_meter.tiers_mode <> ALL (ARRAY['graduated', 'volume']) THEN
        RAISE EXCEPTION 'tiers_mode "%" is not valid', add_plan_meter.tiers_mode USING ERRCODE = '22023',
            DETAIL = 'Tiers are graduated (each unit at its tier''s price) or volume (all units at one tier''s price).';
    END IF;
    IF pg_catalog.char_length(add_plan_meter.description) > 200 OR add_plan_meter.description ~ '[\x01-\x1f\x7f]' THEN
        RAISE EXCEPTION 'description must be at most 200 characters without control characters' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT FROM toss_billing.plan_meters pm
                WHERE pm.plan_id = add_plan_meter.plan_id AND pm.metric = add_plan_meter.metric) THEN
        RAISE EXCEPTION 'plan % already meters "%"', add_plan_meter.plan_id, add_plan_meter.metric
            USING ERRCODE = '23505';
    END IF;
    INSERT INTO toss_billing.plan_meters (plan_id, metric, description, aggregation, unit_amount, tiers, tiers_mode,
                                          tax_free)
    VALUES (add_plan_meter.plan_id, add_plan_meter.metric, COALESCE(add_plan_meter.description, add_plan_meter.metric),
            add_plan_meter.aggregation, add_plan_meter.unit_amount,
            CASE WHEN add_plan_meter.tiers IS NOT NULL THEN toss_billing._canonical_tiers(add_plan_meter.tiers) END,
            CASE WHEN add_plan_meter.tiers IS NOT NULL THEN COALESCE(add_plan_meter.tiers_mode, 'graduated') END,
            add_plan_meter.tax_free)
    RETURNING * INTO v_meter;
    RETURN v_meter;
END;
$$;

-- Creates a coupon (see toss_billing.coupons).
CREATE OR REPLACE FUNCTION toss_billing.create_coupon(
    code text,
    percent_off numeric DEFAULT NULL,
    amount_off bigint DEFAULT NULL,
    duration text DEFAULT 'once',
    duration_periods integer DEFAULT NULL,
    max_redemptions integer DEFAULT NULL,
    expires_at timestamptz DEFAULT NULL)
RETURNS toss_billing.coupons
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_coupon toss_billing.coupons;
BEGIN
    IF create_coupon.code IS NULL OR create_coupon.duration IS NULL THEN
        RAISE EXCEPTION 'code and duration must not be null' USING ERRCODE = '22004';
    END IF;
    IF create_coupon.code !~ '^[A-Za-z0-9_-]{1,64}$' THEN
        RAISE EXCEPTION 'code "%" is not a valid coupon code', create_coupon.code USING ERRCODE = '22023',
            DETAIL = 'A coupon code is 1 to 64 letters, digits, _ or -.';
    END IF;
    IF (create_coupon.percent_off IS NULL) = (create_coupon.amount_off IS NULL) THEN
        RAISE EXCEPTION 'give either percent_off or amount_off' USING ERRCODE = '22023';
    END IF;
    IF create_coupon.percent_off <= 0 OR create_coupon.percent_off > 100 THEN
        RAISE EXCEPTION 'percent_off must be more than 0 and at most 100' USING ERRCODE = '22023';
    END IF;
    IF create_coupon.amount_off <= 0 THEN
        RAISE EXCEPTION 'amount_off must be a positive number of won' USING ERRCODE = '22023';
    END IF;
    IF create_coupon.duration <> ALL (ARRAY['once', 'repeating', 'forever']) THEN
        RAISE EXCEPTION 'duration "%" is not valid', create_coupon.duration USING ERRCODE = '22023',
            DETAIL = 'A duration is once, repeating (with duration_periods) or forever.';
    END IF;
    IF (create_coupon.duration = 'repeating') <> (create_coupon.duration_periods IS NOT NULL) THEN
        RAISE EXCEPTION 'duration_periods goes with duration repeating, and only with it' USING ERRCODE = '22023';
    END IF;
    IF create_coupon.duration_periods NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'duration_periods must be between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    IF create_coupon.max_redemptions < 1 THEN
        RAISE EXCEPTION 'max_redemptions must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF NOT pg_catalog.isfinite(create_coupon.expires_at) THEN
        RAISE EXCEPTION 'expires_at must be a finite time' USING ERRCODE = '22023',
            HINT = 'Pass NULL for a coupon that never expires.';
    END IF;
    IF EXISTS (SELECT FROM toss_billing.coupons c WHERE c.code = create_coupon.code) THEN
        RAISE EXCEPTION 'coupon "%" already exists', create_coupon.code USING ERRCODE = '23505';
    END IF;
    INSERT INTO toss_billing.coupons (code, percent_off, amount_off, duration, duration_periods, max_redemptions,
                                      expires_at)
    VALUES (create_coupon.code, create_coupon.percent_off, create_coupon.amount_off, create_coupon.duration,
            create_coupon.duration_periods, create_coupon.max_redemptions, create_coupon.expires_at)
    RETURNING * INTO v_coupon;
    RETURN v_coupon;
END;
$$;

-- What a coupon takes off an amount (0 when the amount is not positive):
-- percent_off rounded by _won, amount_off at most the amount.  Never more
-- than the amount, so a discount never takes a total below 0.
CREATE OR REPLACE FUNCTION toss_billing._coupon_discount(coupon_id bigint, amount bigint)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN COALESCE((SELECT CASE WHEN $2 OPERATOR(pg_catalog.<=) 0 THEN 0
                                 WHEN c.percent_off IS NOT NULL
                                 THEN LEAST(toss_billing._won($2 OPERATOR(pg_catalog.*) c.percent_off
                                                              OPERATOR(pg_catalog./) 100), $2)
                                 ELSE LEAST(c.amount_off, $2) END
                       FROM toss_billing.coupons c WHERE c.id OPERATOR(pg_catalog.=) $1), 0);
END;
$$;

-- The coupon that discounts a subscription's next period invoice: its
-- active redemption's, if that still has periods left; else NULL.  ahead:
-- for the period invoice that many after the next one (each invoice before
-- it uses up one of the coupon's periods).
CREATE OR REPLACE FUNCTION toss_billing._coupon_for_next(subscription_id bigint, ahead integer DEFAULT 0)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT c.id
      FROM toss_billing.coupon_redemptions r
      JOIN toss_billing.coupons c ON c.id OPERATOR(pg_catalog.=) r.coupon_id
     WHERE r.subscription_id OPERATOR(pg_catalog.=) $1 AND r.status OPERATOR(pg_catalog.=) 'active'
       AND (c.duration OPERATOR(pg_catalog.=) 'forever'
            OR r.periods_applied::bigint OPERATOR(pg_catalog.+) COALESCE($2, 0) OPERATOR(pg_catalog.<)
               CASE WHEN c.duration OPERATOR(pg_catalog.=) 'once' THEN 1 ELSE c.duration_periods END)
     LIMIT 1);
END;
$$;

-- A subscription redeems a coupon: it discounts the next period invoices
-- (see coupons.duration), replacing the coupon the subscription had.
-- Redeeming the coupon the subscription already has changes nothing;
-- redemptions are counted once each, under any concurrency (the coupon's row
-- is locked while its count is checked and raised).
CREATE OR REPLACE FUNCTION toss_billing.apply_coupon(subscription_id bigint, code text)
RETURNS toss_billing.coupon_redemptions
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions;
    v_coupon toss_billing.coupons;
    v_now timestamptz;
    v_r toss_billing.coupon_redemptions;
BEGIN
    IF apply_coupon.subscription_id IS NULL OR apply_coupon.code IS NULL THEN
        RAISE EXCEPTION 'subscription_id and code must not be null' USING ERRCODE = '22004';
    END IF;
    v_sub := toss_billing._lock_subscription(apply_coupon.subscription_id);
    v_now := toss_billing.subscription_now(v_sub.id);
    IF v_sub.status = 'canceled' THEN
        RAISE EXCEPTION 'subscription % is canceled', v_sub.id USING ERRCODE = '55000';
    END IF;
    SELECT * INTO v_coupon FROM toss_billing.coupons c WHERE c.code = apply_coupon.code;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'coupon "%" does not exist', apply_coupon.code USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO v_r FROM toss_billing.coupon_redemptions r
     WHERE r.coupon_id = v_coupon.id AND r.subscription_id = v_sub.id;
    IF FOUND THEN
        IF v_r.status = 'active' THEN
            RETURN v_r;
        END IF;
        RAISE EXCEPTION 'subscription % has already redeemed coupon "%"', v_sub.id, v_coupon.code
            USING ERRCODE = '55000', DETAIL = 'A subscription redeems a coupon once.';
    END IF;
    IF v_coupon.expires_at <= v_now THEN
        RAISE EXCEPTION 'coupon "%" has expired', v_coupon.code USING ERRCODE = '55000',
            DETAIL = pg_catalog.format('It could be redeemed until %s.', v_coupon.expires_at);
    END IF;
    -- the count: the row lock makes concurrent redemptions wait, and the
    -- condition is checked again on the row they then see
    UPDATE toss_billing.coupons c SET times_redeemed = c.times_redeemed + 1
     WHERE c.id = v_coupon.id AND (c.max_redemptions IS NULL OR c.times_redeemed < c.max_redemptions)
    RETURNING * INTO v_coupon;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'coupon "%" has been redeemed its maximum number of times', apply_coupon.code
            USING ERRCODE = '55000';
    END IF;
    UPDATE toss_billing.coupon_redemptions r SET status = 'replaced', ended_at = v_now
     WHERE r.subscription_id = v_sub.id AND r.status = 'active';
    INSERT INTO toss_billing.coupon_redemptions (coupon_id, subscription_id, customer_id, redeemed_at)
    VALUES (v_coupon.id, v_sub.id, v_sub.customer_id, v_now)
    RETURNING * INTO v_r;
    PERFORM toss_billing._event(v_sub.id, 'coupon_applied', v_sub.status, v_sub.status, 'coupon redeemed', v_now,
                                pg_catalog.jsonb_build_object('coupon', v_coupon.code, 'redemption_id', v_r.id));
    PERFORM toss_billing._review_consent(v_sub.id);
    RETURN v_r;
END;
$$;

-- Ends a subscription's active coupon; returns whether there was one.
-- (Removing a discount raises the recurring amount: see the consent rule.)
CREATE OR REPLACE FUNCTION toss_billing.remove_coupon(subscription_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub toss_billing.subscriptions := toss_billing._lock_subscription(remove_coupon.subscription_id);
    v_now timestamptz := toss_billing.subscription_now(v_sub.id);
BEGIN
    UPDATE toss_billing.coupon_redemptions r SET status = 'ended', ended_at = v_now
     WHERE r.subscription_id = v_sub.id AND r.status = 'active';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM toss_billing._review_consent(v_sub.id);
    RETURN true;
END;
$$;

GRANT EXECUTE ON FUNCTION toss_billing.add_plan_meter(bigint, text, text, numeric, jsonb, text, text, boolean),
                          toss_billing.create_coupon(text, numeric, bigint, text, integer, integer, timestamptz),
                          toss_billing.apply_coupon(bigint, text),
                          toss_billing.remove_coupon(bigint)
    TO toss_billing_operator;
GRANT SELECT ON toss_billing.plan_meters, toss_billing.coupons, toss_billing.coupon_redemptions
    TO toss_billing_operator, toss_billing_auditor;
