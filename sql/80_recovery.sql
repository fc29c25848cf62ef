-- Recovery: in-flight attempts whose caller is gone become unknown
-- (_mark_stale), unknown attempts are claimed for the lookup by order id
-- with a backoff (_claim_unknown), and their outcome, recorded with
-- _record_outcomes, settles the subscription (unknown -> done pays the
-- period, unknown -> failed starts dunning).  "Restart", "age" and "the
-- process is gone" are simulated by setting the ledger's times and caller
-- by hand.
\set SHOW_CONTEXT never
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
\getenv tbtest TB_TEST
\set ECHO none
\set helpers :tbtest '/../../sql/include/subscription_helpers.psql'
\i :helpers
\set helpers :tbtest '/../../sql/include/toss_json_helpers.psql'
\i :helpers
\set ECHO all

-- what earlier tests left in flight or unknown is swept and backed off
-- first, so that what follows sees only this test's attempts
SELECT toss_billing._mark_stale('1 hour') >= 0 AS swept;
SELECT count(*) >= 0 AS backed_off FROM toss_billing._claim_unknown(10000);

SELECT id AS plan FROM toss_billing.create_plan('복구 요금제', 5900) \gset
SELECT pg_temp.customer(k) FROM unnest(ARRAY['rc-restart', 'rc-age', 'rc-gone', 'rc-live']) AS k;
SELECT toss_billing.freeze_clock('2025-03-01 09:00+09');
SELECT count(toss_billing.create_subscription(k, :plan))
  FROM unnest(ARRAY['rc-restart', 'rc-age', 'rc-gone', 'rc-live']) AS k;
SELECT * FROM pg_temp.run('none');
-- a toss_charge that was in flight when the server stopped
SELECT pg_temp.customer('rc-plain');
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by)
SELECT 'order-rc-plain', gen_random_uuid()::text, c.id, bk.id, bk.merchant, 'in_flight', '단건 결제', 1000, current_user
  FROM toss_billing.customers c JOIN toss_billing.billing_keys bk ON bk.customer_id = c.id AND bk.status = 'active'
 WHERE c.customer_key = 'rc-plain';

-- every writer records itself: this session wrote these rows
SELECT count(*) AS rows, bool_and(caller_pid = pg_backend_pid()) AS this_pid,
       bool_and(caller_started_at = (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())) AS this_process
  FROM toss_billing.payments WHERE state = 'in_flight';

-- the server restarted since rc-restart and rc-plain were written; rc-age
-- has had no outcome for 10 minutes; rc-gone's process ended (its pid now
-- names another process); rc-live is in flight in this session
UPDATE toss_billing.payments p SET created_at = pg_postmaster_start_time() - interval '1 minute',
                                   updated_at = pg_postmaster_start_time() - interval '1 minute'
  FROM toss_billing.customers c
 WHERE c.id = p.customer_id AND c.customer_key IN ('rc-restart', 'rc-plain') AND p.state = 'in_flight';
UPDATE toss_billing.payments p SET updated_at = now() - interval '10 minutes'
  FROM toss_billing.customers c WHERE c.id = p.customer_id AND c.customer_key = 'rc-age' AND p.state = 'in_flight';
UPDATE toss_billing.payments p SET caller_started_at = '2000-01-01'
  FROM toss_billing.customers c WHERE c.id = p.customer_id AND c.customer_key = 'rc-gone' AND p.state = 'in_flight';

SELECT toss_billing._mark_stale('5 minutes') AS marked;
SELECT c.customer_key, p.state, p.failure_class, p.failure_message, p.resolve_attempts, p.next_resolve_at
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key LIKE 'rc-%' ORDER BY c.customer_key;
-- a payment_unknown event for each subscription attempt, saying why
SELECT * FROM pg_temp.new_events() WHERE customer_key LIKE 'rc-%';
SELECT c.customer_key, e.detail->>'cause' AS cause, e.detail->>'period_number' AS period
  FROM toss_billing.events e JOIN toss_billing.subscriptions s ON s.id = e.subscription_id
  JOIN toss_billing.customers c ON c.id = s.customer_id
 WHERE e.type = 'payment_unknown' AND c.customer_key LIKE 'rc-%' ORDER BY e.id;
-- marking again finds nothing
SELECT toss_billing._mark_stale('5 minutes') AS marked_again;

-- nothing new is charged for a subscription while its attempt is unknown
SELECT toss_billing.advance_clock('1 hour');
SELECT * FROM pg_temp.run('none');

-- the resolver claims unknown attempts, oldest first, with what the lookup
-- (and a re-POST with the same Idempotency-Key) needs
BEGIN;
SELECT regexp_replace(u.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS attempt, u.customer_key, u.amount,
       u.tax_free_amount, u.order_name, u.customer_email, u.customer_name, u.merchant, u.encrypted_key,
       u.idempotency_key = p.idempotency_key AS same_idempotency_key,
       u.billing_key_id = p.billing_key_id AS same_billing_key, u.created_at = p.created_at AS created_at
  FROM toss_billing._claim_unknown(2) u JOIN toss_billing.payments p ON p.id = u.payment_id;
-- each claim counts an attempt and backs the row off: 1 minute after the first
SELECT c.customer_key, p.state, p.resolve_attempts, p.next_resolve_at - now() AS backoff
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key LIKE 'rc-%' AND p.state = 'unknown' ORDER BY c.customer_key;
COMMIT;
SELECT u.customer_key FROM toss_billing._claim_unknown(10) u ORDER BY u.payment_id;
-- backed off: nothing is due now
SELECT count(*) AS claimable FROM toss_billing._claim_unknown(10);

-- when the backoff has passed they are due again, and wait longer each time
-- (1, 2, 4, ... minutes, at most an hour)
UPDATE toss_billing.payments SET next_resolve_at = now() - interval '1 second'
 WHERE state = 'unknown' AND order_id IN (SELECT p.order_id FROM toss_billing.payments p
                                           JOIN toss_billing.customers c ON c.id = p.customer_id
                                          WHERE c.customer_key LIKE 'rc-%');
UPDATE toss_billing.payments p SET resolve_attempts = 9
  FROM toss_billing.customers c WHERE c.id = p.customer_id AND c.customer_key = 'rc-plain';
BEGIN;
SELECT u.customer_key FROM toss_billing._claim_unknown(10) u;
SELECT c.customer_key, p.resolve_attempts, p.next_resolve_at - now() AS backoff
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key LIKE 'rc-%' AND p.state = 'unknown' ORDER BY c.customer_key;
COMMIT;

-- a row another runner holds is skipped, not waited for
UPDATE toss_billing.payments SET next_resolve_at = NULL
 WHERE state = 'unknown' AND order_id IN (SELECT p.order_id FROM toss_billing.payments p
                                           JOIN toss_billing.customers c ON c.id = p.customer_id
                                          WHERE c.customer_key LIKE 'rc-%');
CREATE EXTENSION dblink;
SELECT dblink_connect('other_runner', format('host=%s port=%s dbname=%s',
                                             split_part(current_setting('unix_socket_directories'), ',', 1),
                                             current_setting('port'), current_database()));
SELECT dblink_exec('other_runner', 'BEGIN');
SELECT * FROM dblink('other_runner', $$
    SELECT c.customer_key FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
     WHERE c.customer_key = 'rc-restart' AND p.state = 'unknown' FOR UPDATE OF p$$) AS t(locked text);
SET lock_timeout = '2s';
SELECT u.customer_key FROM toss_billing._claim_unknown(10) u ORDER BY u.customer_key;
RESET lock_timeout;
SELECT dblink_exec('other_runner', 'ROLLBACK');
SELECT dblink_disconnect('other_runner');
DROP EXTENSION dblink;
SELECT u.customer_key FROM toss_billing._claim_unknown(10) u;

-- a recovered payment (found by reconcile, no billing key) is never claimed
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, recovered)
VALUES ('order-rc-recovered', 'recovered:rc', NULL, NULL, 'default', 'unknown', '복구된 결제', 1000, current_user, true);
SELECT count(*) AS claimed FROM toss_billing._claim_unknown(10);
DELETE FROM toss_billing.payments WHERE order_id = 'order-rc-recovered';
-- ... and only a recovered row may lack a billing key or a customer
\set VERBOSITY terse
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by)
VALUES ('order-rc-nokey', 'rc-nokey', NULL, NULL, 'default', 'done', '키 없음', 1000, current_user);
\set VERBOSITY default

-- the outcomes the resolver learns settle the subscriptions:
-- unknown -> done pays the period, unknown -> failed goes through dunning,
-- unknown -> unknown (still unresolved) records no new event
SELECT array_agg(p.id ORDER BY c.customer_key) AS ids, array_agg(p.order_id ORDER BY c.customer_key) AS orders
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key IN ('rc-age', 'rc-gone', 'rc-plain', 'rc-restart') AND p.state = 'unknown' \gset
SELECT toss_billing._record_outcomes(
    :'ids', '{failed,failed,done,done}', '{403,400,200,200}', '{card_declined,transient,NULL,NULL}',
    '{REJECT_CARD_PAYMENT,PROVIDER_ERROR,NULL,NULL}', '{NULL,"일시적인 오류가 발생했습니다.",NULL,NULL}',
    ARRAY[pg_temp.payment_json((:'orders'::text[])[1], '복구 요금제', 5900, '2025-03-01 09:00:01+09',
                               'REJECT_CARD_PAYMENT', '한도초과 혹은 잔액부족으로 결제에 실패했습니다.'),
          NULL,
          pg_temp.payment_json('order-rc-plain', '단건 결제', 1000, '2025-03-01 08:59:59+09'),
          pg_temp.payment_json((:'orders'::text[])[4], '복구 요금제', 5900, '2025-03-01 09:00:01+09')]);
-- the live attempt's own caller could not settle it: unknown, once
SELECT id AS live_attempt FROM toss_billing.payments p
 WHERE p.customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'rc-live') \gset
SELECT toss_billing._record_outcomes(ARRAY[:live_attempt]::bigint[], '{unknown}', '{0}', '{outcome_unknown}', '{NULL}',
                                     '{"timeout after 65000 ms; the lookup by order id gave timeout after 65000 ms"}', '{NULL}');
SELECT toss_billing._record_outcomes(ARRAY[:live_attempt]::bigint[], '{unknown}', '{0}', '{outcome_unknown}', '{NULL}',
                                     '{"the lookup by order id gave timeout after 65000 ms"}', '{NULL}');
SELECT c.customer_key, p.state, p.toss_status, p.failure_class, p.failure_code, p.total_amount, p.approved_at
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key LIKE 'rc-%' ORDER BY c.customer_key;
SELECT * FROM pg_temp.subs('rc-');
SELECT * FROM pg_temp.new_events() WHERE customer_key LIKE 'rc-%';

-- recording them again changes nothing
SELECT max(updated_at) AS last_update FROM toss_billing.payments WHERE id = ANY (:'ids') \gset
SELECT toss_billing._record_outcomes(:'ids', '{done,done,failed,failed}', '{200,200,403,403}', '{NULL,NULL,card_declined,card_declined}',
                                     '{NULL,NULL,X,X}', '{NULL,NULL,NULL,NULL}', '{NULL,NULL,NULL,NULL}');
SELECT max(updated_at) = :'last_update' AS unchanged FROM toss_billing.payments WHERE id = ANY (:'ids');
SELECT count(*) AS new_events FROM pg_temp.new_events();

-- the subscriptions move on: the transient failure is retried with a new
-- attempt after 10 minutes; the live attempt still blocks its subscription
SELECT toss_billing.advance_clock('10 minutes');
SELECT * FROM pg_temp.run('done');

-- a process that really ended: another session writes an in-flight row
-- (as run_due or a toss_charge worker would) and disconnects
SELECT pg_temp.customer('rc-doomed');
CREATE FUNCTION pg_temp.wait_gone(pid integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..1000 LOOP
        PERFORM pg_stat_clear_snapshot();
        IF NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.pid = wait_gone.pid) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN false;
END;
$$;
CREATE EXTENSION dblink;
SELECT dblink_connect('doomed', format('host=%s port=%s dbname=%s',
                                       split_part(current_setting('unix_socket_directories'), ',', 1),
                                       current_setting('port'), current_database()));
SELECT caller_pid AS doomed_pid, caller_pid <> pg_backend_pid() AS another_process FROM dblink('doomed', $$
    INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                       order_name, amount, requested_by)
    SELECT 'order-rc-doomed', gen_random_uuid()::text, c.id, bk.id, bk.merchant, 'in_flight', '단건 결제', 1000, current_user
      FROM toss_billing.customers c JOIN toss_billing.billing_keys bk ON bk.customer_id = c.id AND bk.status = 'active'
     WHERE c.customer_key = 'rc-doomed'
    RETURNING caller_pid$$) AS t(caller_pid integer) \gset
SELECT :'another_process' AS another_process;
SELECT toss_billing._mark_stale('1 hour') AS marked_while_alive;
SELECT dblink_disconnect('doomed');
DROP EXTENSION dblink;
SELECT pg_temp.wait_gone(:doomed_pid) AS process_ended;
SELECT toss_billing._mark_stale('1 hour') AS marked;
SELECT state, failure_message FROM toss_billing.payments WHERE order_id = 'order-rc-doomed';
SELECT toss_billing._record_outcomes(ARRAY[id], '{done}', '{200}', '{NULL}', '{NULL}', '{NULL}',
                                     ARRAY[pg_temp.payment_json('order-rc-doomed', '단건 결제', 1000, '2025-03-01 10:00+09')])
  FROM toss_billing.payments WHERE order_id = 'order-rc-doomed';
SELECT state, toss_status FROM toss_billing.payments WHERE order_id = 'order-rc-doomed';

-- bad calls
SELECT toss_billing._mark_stale(NULL);
SELECT toss_billing._mark_stale('-1 minute');
SELECT toss_billing._mark_stale('0');
SELECT toss_billing._claim_unknown(-1);
SELECT toss_billing._claim_unknown(NULL);
SELECT count(*) FROM toss_billing._claim_unknown(0);

SELECT toss_billing._record_outcomes(ARRAY[:live_attempt]::bigint[], '{failed}', '{400}', '{transient}', '{PROVIDER_ERROR}',
                                     '{NULL}', '{NULL}');
SELECT pg_temp.cleanup('rc-');
