-- 93_runs: the run log.  One row per CALL run_due(), per recovery pass (the
-- part of a run_due before it claims new work: stale attempts marked
-- unknown, unknown attempts and cancels resolved) and per reconcile, with
-- what each did.  run_due writes its rows from C (runlog.c) at its start
-- and end, committing each; reconcile writes its row in SQL, in its
-- caller's transaction (a reconcile rolled back leaves no row, as it leaves
-- no discrepancy).  Rows are kept for toss_billing.run_log_retention; the
-- view toss_billing.runs is what auditors read.

-- @data

-- outcome: NULL while the run is going on; 'finished' when it recorded its
-- end; 'interrupted' when a later run found it without an end and its
-- process gone or busy with something else (an error, a cancel, a crash).
-- first_attempt_id: the newest attempt id when the run started, so that the
-- run's own attempts are found by an index range, not a scan.
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

-- @code

-- How long runs are kept (toss_billing.run_log_retention, in seconds).
CREATE OR REPLACE FUNCTION toss_billing._run_log_retention()
RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.make_interval(secs => COALESCE((SELECT s.setting::double precision FROM pg_catalog.pg_settings s
                                                       WHERE s.name OPERATOR(pg_catalog.=) 'toss_billing.run_log_retention'),
                                                     7776000));
$$;

-- Runs that never recorded their end although their process is gone, or
-- is idle or running a statement that began after the run did (the CALL
-- ended by an error or a cancel), become interrupted.  Returns how many.
CREATE OR REPLACE FUNCTION toss_billing._close_abandoned_runs()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM pg_catalog.pg_stat_clear_snapshot();
    WITH alive AS MATERIALIZED (
        SELECT a.pid, a.backend_start, a.state, a.query_start FROM pg_catalog.pg_stat_get_activity(NULL) a),
    abandoned AS (
        SELECT r.id
          FROM toss_billing.run_log r
         WHERE r.outcome IS NULL
           AND r.kind <> 'reconcile'
           AND NOT EXISTS (SELECT FROM alive x
                            WHERE x.pid = r.pid AND x.backend_start IS NOT DISTINCT FROM r.backend_start
                              AND x.state = 'active' AND x.query_start <= r.started_at)
         ORDER BY r.id
           FOR UPDATE OF r SKIP LOCKED)
    UPDATE toss_billing.run_log r
       SET outcome = 'interrupted', finished_at = NULL
      FROM abandoned a
     WHERE r.id = a.id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- Deletes runs older than the retention, a bounded batch at a time.
CREATE OR REPLACE FUNCTION toss_billing._prune_runs()
RETURNS integer
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH old AS (
        SELECT r.id FROM toss_billing.run_log r
         WHERE r.started_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) toss_billing._run_log_retention())
         ORDER BY r.started_at
         LIMIT 10000),
    gone AS (
        DELETE FROM toss_billing.run_log r USING old WHERE r.id OPERATOR(pg_catalog.=) old.id RETURNING 1)
    SELECT pg_catalog.count(*)::integer FROM gone;
$$;

-- A run begins (run_due and its recovery pass, from C): closes runs that
-- were abandoned, prunes old ones, and records this one; returns its id.
-- params: what the run was asked (run_due: max_charges, time_budget_ms).
CREATE OR REPLACE FUNCTION toss_billing._run_started(kind text, parent_id bigint DEFAULT NULL, params jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    IF _run_started.kind IS NULL THEN
        RAISE EXCEPTION 'kind must not be null' USING ERRCODE = '22004';
    END IF;
    IF _run_started.kind <> ALL (ARRAY['run_due', 'recovery']) THEN
        RAISE EXCEPTION 'kind "%" is not a kind of run the runner records', _run_started.kind USING ERRCODE = '22023',
            DETAIL = 'The runner records run_due and recovery; reconcile records its own row.';
    END IF;
    IF _run_started.kind = 'run_due' THEN
        PERFORM toss_billing._close_abandoned_runs();
        PERFORM toss_billing._prune_runs();
    END IF;
    INSERT INTO toss_billing.run_log (kind, parent_id, started_at, run_by, pid, backend_start, params, first_attempt_id)
    VALUES (_run_started.kind, _run_started.parent_id, pg_catalog.clock_timestamp(), CURRENT_USER,
            pg_catalog.pg_backend_pid(), toss_billing._backend_start(), _run_started.params,
            (SELECT COALESCE(pg_catalog.max(a.id), 0) FROM toss_billing.attempts a))
    RETURNING id INTO v_id;
    RETURN v_id;
END;
$$;

-- A run ends, with its counts.  errors: the run's own attempts that failed
-- for a reason on this side (class configuration: a secret key or billing
-- key that could not be read, credentials Toss refused), and outcomes that
-- could not be recorded and were parked as unknown.
CREATE OR REPLACE FUNCTION toss_billing._run_finished(run_id bigint, claimed bigint, done bigint, failed bigint,
                                                       unknown bigint, throttled bigint, elapsed_ms double precision)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_run toss_billing.run_log;
BEGIN
    IF _run_finished.run_id IS NULL THEN
        RAISE EXCEPTION 'run_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO v_run FROM toss_billing.run_log r WHERE r.id = _run_finished.run_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % is not in the run log', _run_finished.run_id USING ERRCODE = 'P0002';
    END IF;
    UPDATE toss_billing.run_log r
       SET finished_at = pg_catalog.clock_timestamp(), outcome = 'finished',
           claimed = _run_finished.claimed, done = _run_finished.done, failed = _run_finished.failed,
           unknown = _run_finished.unknown, throttled = _run_finished.throttled,
           elapsed_ms = _run_finished.elapsed_ms,
           errors = (SELECT pg_catalog.count(*) FROM toss_billing.attempts a
                      WHERE a.id > v_run.first_attempt_id AND a.caller_pid = v_run.pid
                        AND a.created_at >= v_run.started_at
                        AND (a.failure_class = 'configuration'
                             OR (a.state = 'unknown' AND a.failure_message LIKE 'the outcome could not be recorded%')))
     WHERE r.id = v_run.id;
END;
$$;

-- A reconcile of a window was done (called by _reconcile_items, the core
-- of every reconcile, in its transaction): one finished row, started when
-- the caller's statement did.
CREATE OR REPLACE FUNCTION toss_billing._run_reconciled(from_at timestamptz, to_at timestamptz, merchant text,
                                                         items integer, checked integer, recovered integer,
                                                         discrepancies integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    PERFORM toss_billing._prune_runs();
    INSERT INTO toss_billing.run_log (kind, started_at, finished_at, outcome, run_by, pid, backend_start, params,
                                      checked, recovered, discrepancies, elapsed_ms)
    VALUES ('reconcile', pg_catalog.statement_timestamp(), pg_catalog.clock_timestamp(), 'finished', SESSION_USER,
            pg_catalog.pg_backend_pid(), toss_billing._backend_start(),
            pg_catalog.jsonb_build_object('from_at', _run_reconciled.from_at, 'to_at', _run_reconciled.to_at,
                                          'merchant', _run_reconciled.merchant, 'items', _run_reconciled.items),
            _run_reconciled.checked, _run_reconciled.recovered, _run_reconciled.discrepancies,
            EXTRACT(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.statement_timestamp()) * 1000)
    RETURNING id INTO v_id;
    RETURN v_id;
END;
$$;

-- The run log as auditors read it.  status: running, finished or
-- interrupted (see run_log.outcome).  For run_due the counts are those
-- CALL run_due() returns (its recovery pass included); a recovery row
-- counts the unknown attempts it resolved (claimed) and their outcomes.
CREATE OR REPLACE VIEW toss_billing.runs AS
SELECT r.id, r.kind, r.parent_id, COALESCE(r.outcome, 'running') AS status, r.started_at, r.finished_at,
       r.finished_at OPERATOR(pg_catalog.-) r.started_at AS duration, r.run_by,
       r.claimed, r.done, r.failed, r.unknown, r.throttled, r.errors,
       r.checked, r.recovered, r.discrepancies,
       (r.params OPERATOR(pg_catalog.->>) 'from_at')::timestamptz AS window_from,
       (r.params OPERATOR(pg_catalog.->>) 'to_at')::timestamptz AS window_to,
       r.params OPERATOR(pg_catalog.->>) 'merchant' AS merchant,
       (r.params OPERATOR(pg_catalog.->>) 'max_charges')::integer AS max_charges,
       pg_catalog.make_interval(secs => (r.params OPERATOR(pg_catalog.->>) 'time_budget_ms')::double precision
                                        OPERATOR(pg_catalog./) 1000) AS time_budget,
       r.elapsed_ms, r.pid
  FROM toss_billing.run_log r;

GRANT SELECT ON toss_billing.runs TO toss_billing_operator, toss_billing_auditor;
