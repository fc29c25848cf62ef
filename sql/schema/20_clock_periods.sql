-- 20_clock_periods: the billing clock (real time, a frozen database clock,
-- or a subscription's test clock) and the arithmetic of billing periods.
-- Everything in the subscription layer reads the time from toss_billing.now()
-- or toss_billing.subscription_now(), never from now(), except the
-- created_at / updated_at bookkeeping columns.

-- @data

-- The database clock: no row means real time; one row freezes it.
CREATE TABLE toss_billing.clock (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    frozen_at  timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.clock', '');

-- Test clocks: a subscription attached to one lives on its time alone.
CREATE TABLE toss_billing.test_clocks (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    now_at     timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.test_clocks', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.test_clocks_id_seq', '');

-- @code

-- The billing clock: the frozen database clock if there is one, else now().
CREATE OR REPLACE FUNCTION toss_billing.now()
RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN COALESCE((SELECT c.frozen_at FROM toss_billing.clock c), pg_catalog.now());
END;
$$;

-- Freezes the database clock at a given time (or moves a frozen clock there).
CREATE OR REPLACE FUNCTION toss_billing.freeze_clock("at" timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF freeze_clock.at IS NULL THEN
        RAISE EXCEPTION 'at must not be null' USING ERRCODE = '22004';
    END IF;
    IF NOT pg_catalog.isfinite(freeze_clock.at) THEN
        RAISE EXCEPTION 'at must be a finite time' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('%s is not a point in time a clock can stand at.', freeze_clock.at);
    END IF;
    INSERT INTO toss_billing.clock AS c (frozen_at) VALUES (freeze_clock.at)
    ON CONFLICT (singleton) DO UPDATE SET frozen_at = excluded.frozen_at, updated_at = pg_catalog.now();
    RETURN freeze_clock.at;
END;
$$;

-- Moves the frozen database clock forward.
CREATE OR REPLACE FUNCTION toss_billing.advance_clock("by" interval)
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
CREATE OR REPLACE FUNCTION toss_billing.unfreeze_clock()
RETURNS timestamptz
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM toss_billing.clock;
    SELECT pg_catalog.now();
$$;

-- Creates a test clock standing at a given time; returns its id.
CREATE OR REPLACE FUNCTION toss_billing.create_test_clock("at" timestamptz DEFAULT toss_billing.now())
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
    IF NOT pg_catalog.isfinite(create_test_clock.at) THEN
        RAISE EXCEPTION 'at must be a finite time' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('%s is not a point in time a clock can stand at.', create_test_clock.at);
    END IF;
    INSERT INTO toss_billing.test_clocks (now_at) VALUES (create_test_clock.at) RETURNING id INTO v_id;
    RETURN v_id;
END;
$$;

-- Moves a test clock forward; returns its new time.
CREATE OR REPLACE FUNCTION toss_billing.advance_test_clock(test_clock_id bigint, "by" interval)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_at timestamptz;
BEGIN
    IF advance_test_clock.test_clock_id IS NULL OR advance_test_clock.by IS NULL THEN
        RAISE EXCEPTION 'test_clock_id and by must not be null' USING ERRCODE = '22004';
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

-- The start of period n of a schedule, computed from the anchor, never by
-- chaining: local time = anchor in the time zone, plus n * count units
-- (months and years clamp to the month's last day: Jan 31 -> Feb 28/29 ->
-- Mar 31; days and weeks keep the local wall-clock time across DST), back
-- to an absolute time in the same zone.  Period n is [start(n), start(n+1)).
CREATE OR REPLACE FUNCTION toss_billing.period_start(
    anchor timestamptz,
    time_zone text,
    interval_unit text,
    interval_count integer,
    n integer)
RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_local timestamp;
    v_units integer;
BEGIN
    IF period_start.anchor IS NULL OR period_start.time_zone IS NULL OR period_start.interval_unit IS NULL
       OR period_start.interval_count IS NULL OR period_start.n IS NULL THEN
        RAISE EXCEPTION 'period_start arguments must not be null' USING ERRCODE = '22004';
    END IF;
    IF NOT pg_catalog.isfinite(period_start.anchor) THEN
        RAISE EXCEPTION 'anchor must be a finite time' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('Periods cannot be counted from %s.', period_start.anchor);
    END IF;
    v_local := period_start.anchor AT TIME ZONE period_start.time_zone;
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
CREATE OR REPLACE FUNCTION toss_billing._period_at(
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
    IF NOT pg_catalog.isfinite(_period_at.anchor) OR NOT pg_catalog.isfinite(_period_at.at) THEN
        RAISE EXCEPTION 'billing periods need finite times' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('The anchor is %s and the time %s.', _period_at.anchor, _period_at.at);
    END IF;
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
CREATE OR REPLACE FUNCTION toss_billing._valid_time_zone(time_zone text)
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

GRANT EXECUTE ON FUNCTION toss_billing.now(),
                          toss_billing.period_start(timestamptz, text, text, integer, integer)
    TO toss_billing_operator, toss_billing_auditor;
GRANT SELECT ON toss_billing.clock, toss_billing.test_clocks TO toss_billing_operator, toss_billing_auditor;
