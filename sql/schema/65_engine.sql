-- 65_engine: what the call engine and the call statistics show.  The engine
-- (engine.c) is a pool of long-lived background workers per database that
-- make the Toss calls of toss_charge, toss_issue_billing_key, toss_cancel
-- and toss_delete_billing_key; callers queue their calls in shared memory.
-- toss_billing.stats counts every call made to Toss (stats.c), by the
-- engine, run_due and the lookups of webhooks and reconcile.  Nothing here
-- is a table: the state lives in shared memory and is gone at a restart.

-- @code

-- Per kind of call, for this database: queued (waiting for an engine
-- worker), oldest_wait (how long the oldest of those has waited), running
-- (taken by a worker: intent, request or outcome), in_flight (a request of
-- it at Toss now).  Always one row per kind.
CREATE OR REPLACE FUNCTION toss_billing._engine_queue()
RETURNS TABLE(endpoint text, queued integer, oldest_wait interval, running integer, in_flight integer)
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_engine_queue_sql';

CREATE OR REPLACE VIEW toss_billing.engine_queue AS
    SELECT q.endpoint, q.queued, q.oldest_wait, q.running, q.in_flight
      FROM toss_billing._engine_queue() q;

-- The engine workers of this database: pid, state (starting, running),
-- since (registered or started), calls (taken, not finished), in_flight.
CREATE OR REPLACE FUNCTION toss_billing._engine_workers()
RETURNS TABLE(pid integer, state text, since timestamptz, calls integer, in_flight integer)
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_engine_workers_sql';

CREATE OR REPLACE VIEW toss_billing.engine_workers AS
    SELECT w.pid, w.state, w.since, w.calls, w.in_flight
      FROM toss_billing._engine_workers() w;

-- The engine's call slots over the whole server, shared by every database
-- (health's worker_queue check): in_use (queued, running, or holding a
-- result its caller has not read yet) and capacity (toss_billing.queue_depth).
-- Calls wait, in every database, while in_use is capacity.  One row; none
-- when toss_billing is not in shared_preload_libraries.
CREATE OR REPLACE FUNCTION toss_billing._engine_slots()
RETURNS TABLE(in_use integer, capacity integer)
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_engine_slots_sql';

-- Calls to Toss since the last reset, one row per endpoint (over all
-- databases of the server): in flight now, finished calls by outcome, and
-- their latency as a Prometheus histogram (upper bounds in seconds, +Inf
-- last; cumulative counts; sum; count), in the shape postgres_exporter's
-- custom queries read (usage LABEL for endpoint, GAUGE for in_flight,
-- COUNTER for the counts, HISTOGRAM for latency_seconds).
CREATE OR REPLACE FUNCTION toss_billing._stats()
RETURNS TABLE(endpoint text, in_flight bigint, calls bigint, ok bigint, client_error bigint, throttled bigint,
              server_error bigint, timeout bigint, not_sent bigint, connection_failure bigint, too_large bigint,
              interrupted bigint, latency_seconds double precision[], latency_seconds_bucket bigint[],
              latency_seconds_sum double precision, latency_seconds_count bigint, stats_reset timestamptz)
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_stats_sql';

CREATE OR REPLACE VIEW toss_billing.stats AS
    SELECT s.endpoint, s.in_flight, s.calls, s.ok, s.client_error, s.throttled, s.server_error, s.timeout,
           s.not_sent, s.connection_failure, s.too_large, s.interrupted, s.latency_seconds,
           s.latency_seconds_bucket, s.latency_seconds_sum, s.latency_seconds_count, s.stats_reset
      FROM toss_billing._stats() s;

-- Sets the counters of toss_billing.stats back to zero (calls in flight
-- stay counted); returns the new stats_reset.  The extension owner's.
CREATE OR REPLACE FUNCTION toss_billing.stats_reset()
RETURNS timestamptz
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_stats_reset_sql';

GRANT SELECT ON toss_billing.engine_queue, toss_billing.engine_workers, toss_billing.stats
    TO toss_billing_operator, toss_billing_auditor;
GRANT EXECUTE ON FUNCTION toss_billing._engine_queue(), toss_billing._engine_workers(), toss_billing._engine_slots(),
                          toss_billing._stats()
    TO toss_billing_operator, toss_billing_auditor;
