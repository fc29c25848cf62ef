-- 97_health: is toss_billing working?  toss_billing.health() answers with
-- one row per check (ok, warn or fail, and a sentence saying what to do),
-- for monitoring: SELECT * FROM toss_billing.health() WHERE status <> 'ok'.
-- Alerts (events of type alert) are acknowledged here, so that health()
-- counts only the ones nobody has looked at.

-- @data

-- One row per alert event someone acknowledged.
CREATE TABLE toss_billing.alert_acks (
    event_id        bigint PRIMARY KEY REFERENCES toss_billing.events (id),
    customer_id     bigint REFERENCES toss_billing.customers (id),
    acknowledged_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    acknowledged_by name NOT NULL,
    note            text CHECK (pg_catalog.char_length(note) OPERATOR(pg_catalog.<=) 1000)
);
CREATE INDEX alert_acks_customer ON toss_billing.alert_acks (customer_id);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.alert_acks', '');

-- @code

-- Every alert event, acknowledged or not.
CREATE OR REPLACE VIEW toss_billing.alerts AS
SELECT e.id, e.occurred_at, e.created_at, e.subscription_id, c.customer_key, e.payment_id, e.from_status,
       e.to_status, e.reason, e.detail, k.event_id IS NOT NULL AS acknowledged, k.acknowledged_at,
       k.acknowledged_by, k.note
  FROM toss_billing.events e
  LEFT JOIN toss_billing.customers c ON c.id = e.customer_id
  LEFT JOIN toss_billing.alert_acks k ON k.event_id = e.id
 WHERE e.type = 'alert';

-- Acknowledges alerts by event id (acknowledged ones stay as they were);
-- returns how many it acknowledged.  All of them:
--   SELECT toss_billing.acknowledge_alerts(ARRAY(SELECT id FROM toss_billing.alerts WHERE NOT acknowledged));
CREATE OR REPLACE FUNCTION toss_billing.acknowledge_alerts(event_ids bigint[], note text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_bad text;
    v_count integer;
BEGIN
    IF acknowledge_alerts.event_ids IS NULL THEN
        RAISE EXCEPTION 'event_ids must not be null' USING ERRCODE = '22004',
            HINT = 'Pass the ids of toss_billing.alerts to acknowledge.';
    END IF;
    IF pg_catalog.char_length(acknowledge_alerts.note) > 1000 THEN
        RAISE EXCEPTION 'note is longer than 1000 characters' USING ERRCODE = '22023';
    END IF;
    SELECT pg_catalog.string_agg(COALESCE(i.id::text, 'NULL'), ', ' ORDER BY i.id)
      INTO v_bad
      FROM unnest(acknowledge_alerts.event_ids) AS i(id)
     WHERE NOT EXISTS (SELECT FROM toss_billing.events e WHERE e.id = i.id AND e.type = 'alert');
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'not an alert: %', pg_catalog.left(v_bad, 200) USING ERRCODE = '22023',
            DETAIL = 'Only events of type alert (toss_billing.alerts) are acknowledged.';
    END IF;
    INSERT INTO toss_billing.alert_acks (event_id, customer_id, acknowledged_by, note)
    SELECT e.id, e.customer_id, SESSION_USER, acknowledge_alerts.note
      FROM toss_billing.events e
     WHERE e.id = ANY (acknowledge_alerts.event_ids) AND e.type = 'alert'
     ORDER BY e.id
    ON CONFLICT (event_id) DO NOTHING;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- Whether the root key is loaded in this backend (C: health.c): NULL, or why not.
CREATE OR REPLACE FUNCTION toss_billing._root_key_problem()
RETURNS text
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_root_key_problem';

-- Whether a merchant's secret key can be read now (C: health.c): NULL, or
-- why not.  Never the key, a line of the file or its path.
CREATE OR REPLACE FUNCTION toss_billing._secret_key_problem(merchant text)
RETURNS text
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_secret_key_problem_sql';

-- The interval a cron schedule fires at, for the simple schedules
-- toss_billing.schedule() is given ('* * * * *', '*/N * * * *',
-- 'N seconds'); NULL for anything else.
CREATE OR REPLACE FUNCTION toss_billing._cron_interval(schedule text)
RETURNS interval
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN $1 OPERATOR(pg_catalog.~) '^\s*\*\s+\*\s+\*\s+\*\s+\*\s*$' THEN interval '1 minute'
        WHEN $1 OPERATOR(pg_catalog.~) '^\s*\*/[0-9]{1,2}\s+\*\s+\*\s+\*\s+\*\s*$'
            THEN pg_catalog.make_interval(mins => (pg_catalog.substring($1, '\*/([0-9]{1,2})'))::integer)
        WHEN $1 OPERATOR(pg_catalog.~) '^\s*[0-9]{1,2}\s+seconds?\s*$'
            THEN pg_catalog.make_interval(secs => (pg_catalog.substring($1, '([0-9]{1,2})'))::integer)
    END;
$$;

-- The worker_queue check of health(): this database's calls in the engine's
-- queue (engine_queue: queued and running summed, the oldest wait) against
-- the engine's call slots, which are the whole server's (_engine_slots).
-- fail: every slot is taken, whichever databases took them (callers here
-- wait too), or there is no engine (toss_billing not in
-- shared_preload_libraries: every call is refused); warn: the oldest queued
-- call waited longer than wait_after.
CREATE OR REPLACE FUNCTION toss_billing._queue_check(wait_after interval)
RETURNS TABLE(status text, message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_queued bigint;
    v_running bigint;
    v_wait interval;
    v_in_use integer;
    v_capacity integer;
BEGIN
    IF _queue_check.wait_after IS NULL THEN
        RAISE EXCEPTION 'wait_after must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT e.in_use, e.capacity INTO v_in_use, v_capacity FROM toss_billing._engine_slots() e;
    IF NOT FOUND THEN
        status := 'fail';
        message := 'there is no call engine: toss_billing is not in shared_preload_libraries, so every Toss call is refused';
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT COALESCE(pg_catalog.sum(q.queued), 0), COALESCE(pg_catalog.sum(q.running), 0), pg_catalog.max(q.oldest_wait)
      INTO v_queued, v_running, v_wait
      FROM toss_billing.engine_queue q;
    IF v_in_use >= v_capacity THEN
        status := 'fail';
        message := pg_catalog.format('the server''s call queue is full: all %s slots are taken, %s of them by this database''s calls (%s queued, %s running); callers wait',
                                     v_capacity, v_queued + v_running, v_queued, v_running);
    ELSIF v_wait > _queue_check.wait_after THEN
        status := 'warn';
        message := pg_catalog.format('%s calls queued and %s running (toss_billing.engine_queue), the oldest waiting %s; %s of the server''s %s call slots taken',
                                     v_queued, v_running, v_wait, v_in_use, v_capacity);
    ELSE
        status := 'ok';
        message := pg_catalog.format('%s calls queued and %s running (toss_billing.engine_queue); %s of the server''s %s call slots taken',
                                     v_queued, v_running, v_in_use, v_capacity);
    END IF;
    RETURN NEXT;
END;
$$;

-- One row per check: name, status (ok, warn, fail) and a sentence.
--   root_key       the root key is loaded in this server
--   secret_keys    the secret key of every merchant with an active billing
--                  key (or 'default' when there is none) can be read
--   pg_cron        the job toss_billing_run_due exists, is active, and its
--                  last run succeeded (warn: more than one of its last five
--                  failed)
--   runner         run_due ran within runner_late_after (default: three
--                  times the job's schedule, at least 5 minutes), and its
--                  last run neither was interrupted nor had errors
--   unknown        no attempt or cancel has been unknown longer than
--                  unknown_after
--   discrepancies  open discrepancies (a duplicate charge fails), and
--                  whether the ledger was ever reconciled
--   alerts         alerts nobody acknowledged
--   worker_queue   the call engine's queue against the server's call
--                  slots (_queue_check)
-- A check that cannot run fails with its error; the others still run.
CREATE OR REPLACE FUNCTION toss_billing.health(unknown_after interval DEFAULT '15 minutes',
                                               runner_late_after interval DEFAULT NULL,
                                               queue_wait_after interval DEFAULT '5 seconds')
RETURNS TABLE(name text, status text, message text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_unknown_after interval := COALESCE(health.unknown_after, '15 minutes');
    v_queue_wait interval := COALESCE(health.queue_wait_after, '5 seconds');
    v_late interval := health.runner_late_after;
    v_problem text;
    v_list text;
    v_n bigint;
    v_m bigint;
    v_at timestamptz;
    v_job record;
    v_run record;
    v_status text;
    v_cron boolean := pg_catalog.to_regnamespace('cron') IS NOT NULL;
BEGIN
    IF v_unknown_after <= '0'::interval OR v_queue_wait <= '0'::interval OR v_late <= '0'::interval THEN
        RAISE EXCEPTION 'thresholds must be positive intervals' USING ERRCODE = '22023';
    END IF;

    -- root key
    BEGIN
        v_problem := toss_billing._root_key_problem();
        name := 'root_key';
        status := CASE WHEN v_problem IS NULL THEN 'ok' ELSE 'fail' END;
        message := COALESCE('the root key is not loaded, so no billing key can be stored or used: ' || v_problem
                            || ' Fix toss_billing.root_key_file and restart the server.',
                            'the root key is loaded');
        RETURN NEXT;
    EXCEPTION WHEN OTHERS THEN
        name := 'root_key'; status := 'fail'; message := 'the check failed: ' || SQLERRM; RETURN NEXT;
    END;

    -- secret keys of the merchants in use
    BEGIN
        SELECT pg_catalog.string_agg(pg_catalog.format('merchant %s: %s', m.merchant, m.problem), '; ' ORDER BY m.merchant)
                   FILTER (WHERE m.problem IS NOT NULL),
               pg_catalog.count(*)
          INTO v_list, v_n
          FROM (SELECT u.merchant, toss_billing._secret_key_problem(u.merchant) AS problem
                  FROM (SELECT DISTINCT bk.merchant FROM toss_billing.billing_keys bk WHERE bk.status = 'active'
                        UNION
                        SELECT 'default' WHERE NOT EXISTS (SELECT FROM toss_billing.billing_keys bk
                                                            WHERE bk.status = 'active')) u) m;
        name := 'secret_keys';
        status := CASE WHEN v_list IS NULL THEN 'ok' ELSE 'fail' END;
        message := CASE WHEN v_list IS NULL
                        THEN pg_catalog.format('the secret key of every merchant in use can be read (%s merchants)', v_n)
                        ELSE 'no call can be made for ' || v_list
                             || ' Fix the file named by toss_billing.secret_key_file and reload.' END;
        RETURN NEXT;
    EXCEPTION WHEN OTHERS THEN
        name := 'secret_keys'; status := 'fail'; message := 'the check failed: ' || SQLERRM; RETURN NEXT;
    END;

    -- pg_cron
    BEGIN
        name := 'pg_cron';
        IF NOT v_cron THEN
            SELECT pg_catalog.max(r.started_at) INTO v_at FROM toss_billing.run_log r WHERE r.kind = 'run_due';
            IF v_at > pg_catalog.now() - COALESCE(v_late, '5 minutes') THEN
                status := 'ok';
                message := pg_catalog.format('pg_cron is not installed in this database; run_due is called by another scheduler (last run at %s)', v_at);
            ELSE
                status := 'warn';
                message := 'pg_cron is not installed in this database: something else must CALL toss_billing.run_due() every minute (or install pg_cron and run SELECT toss_billing.schedule())';
            END IF;
        ELSE
            SELECT j.jobid, j.schedule, j.active INTO v_job
              FROM cron.job j
             WHERE j.jobname = 'toss_billing_run_due' AND j.database = pg_catalog.current_database()
             ORDER BY j.jobid DESC LIMIT 1;
            IF NOT FOUND THEN
                status := 'fail';
                message := 'there is no pg_cron job toss_billing_run_due for this database: nothing charges due subscriptions. Run SELECT toss_billing.schedule().';
            ELSIF NOT v_job.active THEN
                status := 'fail';
                message := pg_catalog.format('the pg_cron job toss_billing_run_due (%s) is inactive: UPDATE cron.job or run SELECT toss_billing.schedule() again', v_job.jobid);
            ELSE
                v_late := COALESCE(v_late, GREATEST(interval '5 minutes', 3 * toss_billing._cron_interval(v_job.schedule)));
                SELECT pg_catalog.count(*) FILTER (WHERE d.status = 'failed'), pg_catalog.count(*),
                       (pg_catalog.array_agg(d.status ORDER BY d.start_time DESC NULLS LAST, d.runid DESC))[1],
                       (pg_catalog.array_agg(d.return_message ORDER BY d.start_time DESC NULLS LAST, d.runid DESC)
                            FILTER (WHERE d.status = 'failed'))[1]
                  INTO v_m, v_n, v_status, v_list
                  FROM (SELECT x.* FROM cron.job_run_details x WHERE x.jobid = v_job.jobid
                         ORDER BY x.start_time DESC NULLS LAST, x.runid DESC LIMIT 5) d;
                IF v_n = 0 THEN
                    status := 'ok';
                    message := pg_catalog.format('the pg_cron job toss_billing_run_due (%s, %s) is scheduled and has not run yet',
                                                 v_job.jobid, v_job.schedule);
                ELSIF v_status = 'failed' THEN
                    status := 'fail';
                    message := pg_catalog.format('the last run of the pg_cron job toss_billing_run_due failed: %s',
                                                 pg_catalog.left(COALESCE(v_list, 'no message'), 500));
                ELSIF v_m > 1 THEN
                    status := 'warn';
                    message := pg_catalog.format('%s of the last %s runs of the pg_cron job toss_billing_run_due failed, the last one succeeded (latest failure: %s)',
                                                 v_m, v_n, pg_catalog.left(COALESCE(v_list, 'no message'), 500));
                ELSE
                    status := 'ok';
                    message := pg_catalog.format('the pg_cron job toss_billing_run_due (%s, %s) is scheduled and its last run succeeded (%s of the last %s failed)',
                                                 v_job.jobid, v_job.schedule, v_m, v_n);
                END IF;
            END IF;
        END IF;
        RETURN NEXT;
    EXCEPTION WHEN OTHERS THEN
        name := 'pg_cron'; status := 'fail'; message := 'the check failed: ' || SQLERRM; RETURN NEXT;
    END;

    -- the runner
    BEGIN
        name := 'runner';
        v_late := COALESCE(v_late, interval '5 minutes');
        SELECT r.* INTO v_run FROM toss_billing.run_log r WHERE r.kind = 'run_due' ORDER BY r.id DESC LIMIT 1;
        IF NOT FOUND THEN
            IF EXISTS (SELECT FROM toss_billing.subscriptions s WHERE s.status <> 'canceled') THEN
                status := 'fail';
                message := 'run_due has never run (or not within the run log''s retention): nothing charges due subscriptions';
            ELSE
                status := 'ok';
                message := 'run_due has not run yet, and there is no subscription to charge';
            END IF;
        ELSIF v_run.started_at < pg_catalog.now() - v_late THEN
            status := 'fail';
            message := pg_catalog.format('run_due last ran at %s, more than %s ago: due subscriptions are not being charged',
                                         v_run.started_at, v_late);
        ELSIF v_run.outcome = 'interrupted' THEN
            status := 'warn';
            message := pg_catalog.format('the last run_due (run %s, started at %s) was interrupted before it recorded its end: see the server log or cron.job_run_details',
                                         v_run.id, v_run.started_at);
        ELSIF v_run.errors > 0 THEN
            status := 'warn';
            message := pg_catalog.format('the last run_due (run %s) had %s errors on this side (configuration failures or outcomes parked as unknown): see toss_billing.runs and the attempts of its subscriptions',
                                         v_run.id, v_run.errors);
        ELSE
            status := 'ok';
            message := pg_catalog.format('run_due ran at %s (run %s, %s)', v_run.started_at, v_run.id,
                                         COALESCE(v_run.outcome, 'running'));
        END IF;
        RETURN NEXT;
    EXCEPTION WHEN OTHERS THEN
        name := 'runner'; status := 'fail'; message := 'the check failed: ' || SQLERRM; RETURN NEXT;
    END;

    -- attempts and cancels unknown for too long
    BEGIN
        name := 'unknown';
        SELECT pg_catalog.count(*), pg_catalog.min(a.created_at) INTO v_n, v_at
          FROM toss_billing.attempts a
         WHERE a.state = 'unknown' AND a.created_at < pg_catalog.now() - v_unknown_after;
        SELECT pg_catalog.count(*) INTO v_m
          FROM toss_billing.cancels c
         WHERE c.state = 'unknown' AND c.created_at < pg_catalog.now() - v_unknown_after;
        IF v_n + v_m > 0 THEN
            status := 'fail';
            message := pg_catalog.format('%s attempts and %s cancels have been unknown for longer than %s (the oldest since %s): Toss cannot be reached or does not answer; see toss_billing.order_status() and the troubleshooting notes, and call toss_billing.resolve_unknown_now() once Toss is back',
                                         v_n, v_m, v_unknown_after, COALESCE(v_at::text, 'a cancel'));
        ELSE
            SELECT pg_catalog.count(*) INTO v_n FROM toss_billing.attempts a WHERE a.state = 'unknown';
            status := 'ok';
            message := pg_catalog.format('no attempt or cancel has been unknown for longer than %s (%s unknown now)',
                                         v_unknown_after, v_n);
        END IF;
        RETURN NEXT;
    EXCEPTION WHEN OTHERS THEN
        name := 'unknown'; status := 'fail'; message := 'the check failed: ' || SQLERRM; RETURN NEXT;
    END;

    -- discrepancies, and whether there was ever a reconcile to find them
    BEGIN
        name := 'discrepancies';
        SELECT pg_catalog.count(*), pg_catalog.string_agg(DISTINCT d.kind, ', ') INTO v_n, v_list
          FROM toss_billing.discrepancies d WHERE d.resolved_at IS NULL;
        SELECT pg_catalog.max(r.finished_at) INTO v_at
          FROM toss_billing.run_log r WHERE r.kind = 'reconcile' AND r.outcome = 'finished';
        IF v_n > 0 THEN
            status := CASE WHEN EXISTS (SELECT FROM toss_billing.discrepancies d
                                         WHERE d.resolved_at IS NULL AND d.kind = 'duplicate_charge')
                           THEN 'fail' ELSE 'warn' END;
            message := pg_catalog.format('%s open discrepancies (%s): see toss_billing.open_discrepancies', v_n, v_list);
        ELSIF v_at IS NULL AND EXISTS (SELECT FROM toss_billing.payments p WHERE p.state = 'done') THEN
            status := 'warn';
            message := '0 open discrepancies, but the ledger has never been reconciled (toss_billing.reconcile_coverage): schedule toss_billing.reconcile()';
        ELSE
            status := 'ok';
            message := CASE WHEN v_at IS NULL THEN '0 open discrepancies; nothing to reconcile yet'
                            ELSE pg_catalog.format('0 open discrepancies; last reconcile at %s', v_at) END;
        END IF;
        RETURN NEXT;
    EXCEPTION WHEN OTHERS THEN
        name := 'discrepancies'; status := 'fail'; message := 'the check failed: ' || SQLERRM; RETURN NEXT;
    END;

    -- alerts nobody acknowledged
    BEGIN
        name := 'alerts';
        SELECT pg_catalog.count(*), pg_catalog.min(e.occurred_at),
               (pg_catalog.array_agg(e.reason ORDER BY e.id DESC))[1]
          INTO v_n, v_at, v_list
          FROM toss_billing.events e
         WHERE e.type = 'alert' AND NOT EXISTS (SELECT FROM toss_billing.alert_acks k WHERE k.event_id = e.id);
        IF v_n > 0 THEN
            status := 'warn';
            message := pg_catalog.format('%s unacknowledged alerts since %s (latest: %s): see toss_billing.alerts, then toss_billing.acknowledge_alerts()',
                                         v_n, v_at, v_list);
        ELSE
            status := 'ok';
            message := 'no unacknowledged alert';
        END IF;
        RETURN NEXT;
    EXCEPTION WHEN OTHERS THEN
        name := 'alerts'; status := 'fail'; message := 'the check failed: ' || SQLERRM; RETURN NEXT;
    END;

    -- the call engine's queue
    BEGIN
        name := 'worker_queue';
        SELECT q.status, q.message INTO status, message FROM toss_billing._queue_check(v_queue_wait) q;
        RETURN NEXT;
    EXCEPTION WHEN OTHERS THEN
        name := 'worker_queue'; status := 'fail'; message := 'the check failed: ' || SQLERRM; RETURN NEXT;
    END;
END;
$$;

GRANT SELECT ON toss_billing.alerts TO toss_billing_operator, toss_billing_auditor;
GRANT EXECUTE ON FUNCTION toss_billing.health(interval, interval, interval),
                          toss_billing.acknowledge_alerts(bigint[], text)
    TO toss_billing_operator;
