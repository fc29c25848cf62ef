-- Operating it, against the emulator: the run log (run_due returns its row
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- id; a run and its recovery pass each get a row with their counts and
-- errors; an abandoned run is found interrupted; old rows are pruned;
-- reconcile logs its window), charge_subscription_now (the first charge at
-- sign-up, at once, exactly once, through the runner's own claim), the
-- successUrl loaded again (the same authKey returns the key already issued,
-- not TB004), the hint on billing_keys, alert acknowledgements, and
-- health() failing checks on purpose and passing after the fix (the key
-- files and pg_cron: TAP test 011_health).  In a database of its own, so
-- that the runner sees only this test's subscriptions.
\set SHOW_CONTEXT never
\getenv tbtest TB_TEST
CREATE DATABASE toss_ops;
\c toss_ops
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
CREATE EXTENSION toss_billing;
CREATE ROLE op97_clerk IN ROLE toss_billing_operator;
CREATE ROLE op97_audit IN ROLE toss_billing_auditor;
GRANT CREATE ON SCHEMA public TO op97_clerk;
SELECT id AS plan FROM toss_billing.create_plan('운영 월간', 9900) \gset
SELECT id AS trial_plan FROM toss_billing.create_plan('운영 체험', 9900, 'month', 1, 7) \gset
-- one health check
CREATE FUNCTION pg_temp.check(c text) RETURNS text LANGUAGE sql AS $$
    SELECT h.status || ': ' || regexp_replace(regexp_replace(h.message, '[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.+]+', 'T', 'g'),
                                              '\(run [0-9]+', '(run #', 'g')
      FROM toss_billing.health() h WHERE h.name = c;
$$;

-- ---------------------------------------------------------------- the reloaded success page

SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'op-reload');
\set ak `$TB_TEST/emu authkey op-reload`
SELECT id AS first_key, status, card_number FROM toss_billing.toss_issue_billing_key('op-reload', :'ak') \gset
SELECT :'status' AS status, :'card_number' AS card_number;
-- the same authKey again (refresh, back button, a double redirect): the key
-- already issued, nothing asked of Toss, no new row
SELECT id = :first_key AS same_key, status FROM toss_billing.toss_issue_billing_key('op-reload', :'ak');
SELECT id = :first_key AS same_key, status FROM toss_billing.toss_issue_billing_key('op-reload', :'ak');
SELECT count(*) AS key_rows FROM toss_billing.billing_key_info WHERE customer_key = 'op-reload';
-- the authKey's keyed hash is stored, readable by the owner only
SELECT auth_key_hash IS NOT NULL AS hashed, length(auth_key_hash) AS hash_bytes
  FROM toss_billing.billing_keys WHERE id = :first_key;
SELECT has_column_privilege('toss_billing_operator', 'toss_billing.billing_keys', 'auth_key_hash', 'SELECT') AS operator,
       has_column_privilege('toss_billing_auditor', 'toss_billing.billing_keys', 'auth_key_hash', 'SELECT') AS auditor;
-- another customer with that authKey is Toss's to answer: refused
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'op-other');
\set VERBOSITY terse
SELECT status FROM toss_billing.toss_issue_billing_key('op-other', :'ak');
\set VERBOSITY default
-- a new card: the reloaded old successUrl shows the old key, now replaced
\set ak2 `$TB_TEST/emu authkey op-reload 4906251234123456`
SELECT id <> :first_key AS new_key, status FROM toss_billing.toss_issue_billing_key('op-reload', :'ak2');
SELECT id = :first_key AS same_key, status FROM toss_billing.toss_issue_billing_key('op-reload', :'ak');

-- ---------------------------------------------------------------- the hint on billing_keys

SET ROLE op97_clerk;
SELECT * FROM toss_billing.billing_keys;
SELECT status FROM toss_billing.billing_key_info WHERE customer_key = 'op-reload' ORDER BY id;
RESET ROLE;
SET ROLE op97_audit;
SELECT encrypted_key FROM toss_billing.billing_keys;
RESET ROLE;

-- ---------------------------------------------------------------- charge_subscription_now

SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'op-now');
\set ak `$TB_TEST/emu authkey op-now`
SELECT status FROM toss_billing.toss_issue_billing_key('op-now', :'ak');
-- before any run: fine while nothing is subscribed, failing once something is
SELECT pg_temp.check('runner');
SET ROLE op97_clerk;
SELECT id AS now_sub FROM toss_billing.create_subscription('op-now', :plan) \gset
SELECT pg_temp.check('runner');
-- the first charge at sign-up, at once: the period is paid and moves on
SELECT status, total_amount, order_id ~ ('^sub' || :now_sub || '-p0-a1-') AS period_order
  FROM toss_billing.charge_subscription_now(:now_sub);
SELECT status, period_number, paid_through > toss_billing.now() AS paid_ahead, amount_due
  FROM toss_billing.subscription_info WHERE id = :now_sub;
-- again (the success page reloaded): the same payment, nothing charged again
SELECT status, order_id ~ ('^sub' || :now_sub || '-p0-a1-') AS same_order FROM toss_billing.charge_subscription_now(:now_sub);
RESET ROLE;
SELECT order_id AS now_order FROM toss_billing.payments WHERE subscription_id = :now_sub \gset
\set done_count `$TB_TEST/emu done-count :now_order`
SELECT :done_count AS charged_at_toss;
SELECT a.requested_by, p.requested_by = current_user AS order_by_the_owner
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id WHERE p.subscription_id = :now_sub;
-- the runner finds nothing due for it
CALL toss_billing.run_due() \gset
SELECT :claimed AS claimed, :done AS done;
-- refused, nothing recorded: bad input, a trial, a paused one, no card
SELECT count(*) AS attempts_before FROM toss_billing.attempts \gset
\set VERBOSITY terse
SELECT toss_billing.charge_subscription_now(NULL);
SELECT toss_billing.charge_subscription_now(-1);
SELECT id AS trial_sub FROM toss_billing.create_subscription('op-now', :trial_plan) \gset
SELECT toss_billing.charge_subscription_now(:trial_sub);
SELECT id AS paused_sub FROM toss_billing.pause_subscription((toss_billing.create_subscription('op-now', :plan)).id) \gset
SELECT toss_billing.charge_subscription_now(:paused_sub);
SELECT id AS nocard_sub FROM toss_billing.create_subscription('op-other', :plan) \gset
SELECT toss_billing.charge_subscription_now(:nocard_sub);
\set VERBOSITY default
SELECT count(*) = :attempts_before AS nothing_recorded FROM toss_billing.attempts;
-- a declined card: the runner's dunning, as for any decline
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'op-declined');
\set ak `$TB_TEST/emu authkey op-declined 4111111111110002`
SELECT status FROM toss_billing.toss_issue_billing_key('op-declined', :'ak');
SELECT id AS declined_sub FROM toss_billing.create_subscription('op-declined', :plan) \gset
\set VERBOSITY terse
SELECT toss_billing.charge_subscription_now(:declined_sub);
\set VERBOSITY default
SELECT status, failed_attempts, last_failure_code, next_charge_at > toss_billing.now() AS retry_scheduled
  FROM toss_billing.subscription_info WHERE id = :declined_sub;
SELECT (toss_billing.cancel_subscription(id, false)).status
  FROM toss_billing.subscriptions WHERE status <> 'canceled' AND id <> :now_sub ORDER BY id;

-- ---------------------------------------------------------------- the run log

-- a run: its row id comes back; the run and its recovery pass are logged
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'op-run');
\set ak `$TB_TEST/emu authkey op-run`
SELECT status FROM toss_billing.toss_issue_billing_key('op-run', :'ak');
SELECT id AS run_sub FROM toss_billing.create_subscription('op-run', :plan) \gset
CALL toss_billing.run_due() \gset
SELECT :claimed AS claimed, :done AS done, :failed AS failed, :run_id > 0 AS has_run_id;
SELECT kind, parent_id = :run_id AS child, status, claimed, done, failed, unknown, throttled, errors,
       run_by = current_user AS by_me, finished_at >= started_at AS ordered, max_charges, time_budget
  FROM toss_billing.runs WHERE id = :run_id OR parent_id = :run_id ORDER BY id;
SELECT pg_temp.check('runner');
-- a run that failed for a reason on this side counts it as an error: a
-- billing key of a merchant whose secret key is missing
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'op-nokey');
INSERT INTO toss_billing.billing_keys (customer_id, merchant, status, encrypted_key, idempotency_key)
SELECT id, 'nosuchmerchant', 'active', '\x00', 'op-nokey-1' FROM toss_billing.customers WHERE customer_key = 'op-nokey';
SELECT pg_temp.check('secret_keys');
SELECT id AS nokey_sub FROM toss_billing.create_subscription('op-nokey', :plan) \gset
CALL toss_billing.run_due() \gset
SELECT kind, status, claimed, done, failed, errors FROM toss_billing.runs WHERE id = :run_id;
SELECT pg_temp.check('runner');
SELECT pg_temp.check('alerts');
-- the fix: the key's merchant is gone, the alert acknowledged
UPDATE toss_billing.billing_keys SET status = 'deleted' WHERE idempotency_key = 'op-nokey-1';
SELECT (toss_billing.cancel_subscription(:nokey_sub, false)).status;
SELECT pg_temp.check('secret_keys');
SET ROLE op97_clerk;
SELECT reason, acknowledged FROM toss_billing.alerts ORDER BY id;
SELECT toss_billing.acknowledge_alerts(ARRAY(SELECT id FROM toss_billing.alerts WHERE NOT acknowledged), 'fixed: key removed');
SELECT toss_billing.acknowledge_alerts(ARRAY(SELECT id FROM toss_billing.alerts), 'again');
SELECT acknowledged, acknowledged_by = session_user AS by_me, note FROM toss_billing.alerts ORDER BY id;
\set VERBOSITY terse
SELECT toss_billing.acknowledge_alerts(ARRAY[(SELECT max(id) FROM toss_billing.events WHERE type <> 'alert')]);
SELECT toss_billing.acknowledge_alerts(NULL);
\set VERBOSITY default
RESET ROLE;
SELECT pg_temp.check('alerts');
-- a run whose CALL ended without its end recorded (an error, a cancel) is
-- found interrupted by the next run; the runner's check warns
SELECT toss_billing._run_started('run_due') AS abandoned \gset
CALL toss_billing.run_due() \gset
SELECT id = :abandoned AS abandoned, status, finished_at IS NULL AS no_end FROM toss_billing.runs
 WHERE id IN (:abandoned, :run_id) ORDER BY id;
SELECT toss_billing._run_started('run_due') AS abandoned \gset
SELECT toss_billing._close_abandoned_runs() AS closed;
SELECT pg_temp.check('runner');
-- late: the last run started longer ago than the threshold
UPDATE toss_billing.run_log SET started_at = started_at - interval '1 hour';
SELECT pg_temp.check('runner');
SELECT status FROM toss_billing.health(runner_late_after => '2 hours') WHERE name = 'runner';
SELECT toss_billing.health(runner_late_after => '-1 hour');
-- kept for toss_billing.run_log_retention (an hour here): older rows go
SET toss_billing.run_log_retention = '1h';
SHOW toss_billing.run_log_retention;
SELECT count(*) > 0 AS old_rows FROM toss_billing.run_log WHERE started_at < now() - interval '1 hour';
CALL toss_billing.run_due() \gset
SELECT count(*) AS old_rows FROM toss_billing.run_log WHERE started_at < now() - interval '1 hour';
SELECT pg_temp.check('runner');
RESET toss_billing.run_log_retention;
SET ROLE op97_clerk;
SET toss_billing.run_log_retention = '1d';
RESET ROLE;
-- reconcile logs the window it compared (with merchant other, where Toss has nothing)
SELECT checked, recovered, discrepancies FROM toss_billing.reconcile(now() - interval '10 minutes', now(), 'other');
SELECT kind, status, checked, recovered, discrepancies, merchant, window_to - window_from AS window_length
  FROM toss_billing.runs WHERE kind = 'reconcile';
SET ROLE op97_audit;
SELECT kind, count(*) FROM toss_billing.runs GROUP BY kind ORDER BY kind;
RESET ROLE;

-- ---------------------------------------------------------------- health, check by check

-- unknown for too long: fails, and passes once resolved
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'op-unknown');
INSERT INTO toss_billing.billing_keys (customer_id, merchant, status, encrypted_key, idempotency_key)
SELECT id, 'default', 'active', '\x00', 'op-unknown-1' FROM toss_billing.customers WHERE customer_key = 'op-unknown';
SELECT attempt_id AS stuck FROM toss_billing._charge_intent('op-unknown', 1000, '단건', 'op-unknown-order', NULL, NULL, 0,
                                                          current_user, '65 seconds') \gset
SELECT toss_billing._park_outcome(:stuck, 'a test');
UPDATE toss_billing.attempts SET created_at = now() - interval '1 hour' WHERE id = :stuck;
SELECT pg_temp.check('unknown');
SELECT status FROM toss_billing.health(unknown_after => '2 hours') WHERE name = 'unknown';
UPDATE toss_billing.attempts SET state = 'failed' WHERE id = :stuck;
UPDATE toss_billing.payments SET state = 'failed' WHERE order_id = 'op-unknown-order';
SELECT pg_temp.check('unknown');
-- discrepancies: a foreign payment warns; resolved, and reconciled: ok
SELECT toss_billing._open_discrepancy('foreign_payment', 'op-foreign-1', NULL, NULL, 'DONE', NULL, 5000, '{}');
SELECT pg_temp.check('discrepancies');
SELECT toss_billing._open_discrepancy('duplicate_charge', 'op-dup-1', NULL, 'done', 'DONE', 5000, 5000, '{}');
SELECT pg_temp.check('discrepancies');
SELECT count(toss_billing.resolve_discrepancy(id)) FROM toss_billing.open_discrepancies;
SELECT pg_temp.check('discrepancies');
-- the engine's queue: nothing queued, none of the server's slots taken
-- (TAP 011 fills the slots from another database, makes a call wait for a
-- worker, and runs a server without the engine)
SELECT pg_temp.check('worker_queue');
SELECT * FROM toss_billing._queue_check(NULL);
-- pg_cron is not installed in this database; run_due ran a moment ago
SELECT pg_temp.check('pg_cron');
SELECT name, status FROM toss_billing.health();
-- monitoring's one query
SELECT * FROM toss_billing.health() WHERE status <> 'ok';
-- an operator may run it; an auditor may not
SET ROLE op97_clerk;
SELECT count(*) AS checks FROM toss_billing.health();
RESET ROLE;

-- ---------------------------------------------------------------- the extension

-- what \dx+ lists includes the operating objects; the settings and versions
SELECT pg_describe_object(classid, objid, 0) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'toss_billing')
   AND pg_describe_object(classid, objid, 0) ~ '(runs|run_log|health|settings|version|subscription_info|alerts|charge_subscription_now)'
 ORDER BY 1;
-- (api_url's default is the real API: shown only as an https URL, so that
-- no test names the real host)
SELECT name, unit,
       CASE WHEN name = 'toss_billing.api_url' AND default_value LIKE 'https://%' THEN '(an https url)'
            ELSE default_value END AS default_value,
       context
  FROM toss_billing.settings ORDER BY name;
SELECT sql_version, matching FROM toss_billing.version();

\c toss_regress
DROP DATABASE toss_ops;
DROP ROLE op97_clerk, op97_audit;
