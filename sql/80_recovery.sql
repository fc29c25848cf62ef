-- Recovery: in-flight attempts whose caller is gone become unknown
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- (_mark_stale: written before the server started, by a process that
-- ended, or past the attempt's own deadline), unknown attempts are claimed
-- for the lookup by order id with a backoff (_claim_unknown, which also
-- says whether the very same request may be posted again: may_repost), and
-- their outcome, recorded with _record_outcomes on the same attempt,
-- settles the order and its subscription (unknown -> done pays the period,
-- unknown -> failed leaves the order owed and goes through dunning).  An
-- answer that does not match the order never pays it.  "Restart", "past
-- the deadline" and "the process is gone" are simulated by setting the
-- attempts' times and caller by hand.
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
SELECT toss_billing._mark_stale() >= 0 AS swept;
SELECT count(*) >= 0 AS backed_off FROM toss_billing._claim_unknown(10000);

SELECT id AS plan FROM toss_billing.create_plan('복구 요금제', 5900) \gset
SELECT pg_temp.customer(k) FROM unnest(ARRAY['rc-restart', 'rc-age', 'rc-gone', 'rc-live']) AS k;
SELECT toss_billing.freeze_clock('2025-03-01 09:00+09');
SELECT count(toss_billing.create_subscription(k, :plan))
  FROM unnest(ARRAY['rc-restart', 'rc-age', 'rc-gone', 'rc-live']) AS k;
SELECT * FROM pg_temp.run('none');
-- a toss_charge that was in flight when the server stopped (its first
-- half, _charge_intent, recorded the order and its attempt)
SELECT pg_temp.customer('rc-plain');
SELECT pg_temp.charging('rc-plain', 'order-rc-plain', 1000) AS plain_attempt \gset

-- every writer records itself on the attempt: this session wrote these
-- rows; each is its order's first attempt, due to be over (the call and
-- its lookup) by its deadline, twice the call timeout after it was written
SELECT count(*) AS attempts, count(DISTINCT a.payment_id) AS orders, bool_and(a.attempt_number = 1) AS first_attempts,
       bool_and(a.order_id = p.order_id) AS order_id, bool_and(p.state = 'in_flight') AS orders_in_flight,
       bool_and(a.caller_pid = pg_backend_pid()) AS this_pid,
       bool_and(a.caller_started_at = (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())) AS this_process,
       bool_and(a.deadline = a.created_at + interval '130 seconds') AS deadline
  FROM toss_billing.attempts a
  JOIN toss_billing.payments p ON p.id = a.payment_id
  JOIN toss_billing.customers c ON c.id = a.customer_id
 WHERE c.customer_key LIKE 'rc-%' AND a.state = 'in_flight';

-- the server restarted since rc-restart's and rc-plain's attempts were
-- written (their deadlines have not passed); rc-age's attempt is past its
-- deadline; rc-gone's process ended (its pid now names another process);
-- rc-live is in flight in this session, before its deadline
UPDATE toss_billing.attempts a SET created_at = pg_postmaster_start_time() - interval '1 minute',
                                   updated_at = pg_postmaster_start_time() - interval '1 minute'
  FROM toss_billing.customers c
 WHERE c.id = a.customer_id AND c.customer_key IN ('rc-restart', 'rc-plain') AND a.state = 'in_flight';
UPDATE toss_billing.attempts a SET deadline = now() - interval '1 second'
  FROM toss_billing.customers c WHERE c.id = a.customer_id AND c.customer_key = 'rc-age' AND a.state = 'in_flight';
UPDATE toss_billing.attempts a SET caller_started_at = '2000-01-01'
  FROM toss_billing.customers c WHERE c.id = a.customer_id AND c.customer_key = 'rc-gone' AND a.state = 'in_flight';

SELECT toss_billing._mark_stale() AS marked;
SELECT c.customer_key, a.state, a.failure_class, a.failure_message, a.resolve_attempts, a.next_resolve_at,
       p.state AS order_state, p.failure_message IS NOT DISTINCT FROM a.failure_message AS order_says_why
  FROM toss_billing.attempts a
  JOIN toss_billing.payments p ON p.id = a.payment_id
  JOIN toss_billing.customers c ON c.id = a.customer_id
 WHERE c.customer_key LIKE 'rc-%' ORDER BY c.customer_key;
-- a payment_unknown event for each subscription attempt, saying why
SELECT * FROM pg_temp.new_events() WHERE customer_key LIKE 'rc-%';
SELECT c.customer_key, e.detail->>'cause' AS cause, e.detail->>'period_number' AS period,
       e.detail->>'attempt_number' AS attempt
  FROM toss_billing.events e JOIN toss_billing.subscriptions s ON s.id = e.subscription_id
  JOIN toss_billing.customers c ON c.id = s.customer_id
 WHERE e.type = 'payment_unknown' AND c.customer_key LIKE 'rc-%' ORDER BY e.id;
-- marking again finds nothing
SELECT toss_billing._mark_stale() AS marked_again;
-- the toss_charge caller asking after its order is told to wait, not to
-- charge under another order id
SELECT toss_order_id, obligation, state, paid, attempts, failure_class, hold_reason, advice
  FROM toss_billing.order_status('order-rc-plain');

-- nothing new is charged for a subscription while its attempt is unknown
SELECT toss_billing.advance_clock('1 hour');
SELECT * FROM pg_temp.run('none');

-- the resolver claims unknown attempts, oldest first, with what the lookup
-- by order id (and a re-POST of the very same request, with the attempt's
-- own Idempotency-Key) needs; both are still owed as they were, so the
-- same request may be posted again if Toss has no record of it
BEGIN;
SELECT regexp_replace(u.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS order, u.customer_key, u.amount,
       u.tax_free_amount, u.order_name, u.customer_email, u.customer_name, u.merchant, u.encrypted_key, u.mid,
       u.payment_id = a.payment_id AS same_order, u.order_id = a.order_id AS same_order_id,
       u.idempotency_key = a.idempotency_key AS same_idempotency_key,
       u.billing_key_id = a.billing_key_id AS same_billing_key, u.created_at = a.created_at AS created_at,
       u.may_repost
  FROM toss_billing._claim_unknown(2) u JOIN toss_billing.attempts a ON a.id = u.attempt_id;
-- each claim counts a try and backs the attempt off: 1 minute after the first
SELECT c.customer_key, a.state, a.resolve_attempts, a.next_resolve_at - now() AS backoff
  FROM toss_billing.attempts a JOIN toss_billing.customers c ON c.id = a.customer_id
 WHERE c.customer_key LIKE 'rc-%' AND a.state = 'unknown' ORDER BY c.customer_key;
COMMIT;
SELECT u.customer_key, u.may_repost FROM toss_billing._claim_unknown(10) u ORDER BY u.attempt_id;
-- backed off: nothing is due now
SELECT count(*) AS claimable FROM toss_billing._claim_unknown(10);

-- when the backoff has passed they are due again, and wait longer each time
-- (1, 2, 4, ... minutes, at most an hour)
UPDATE toss_billing.attempts a SET next_resolve_at = now() - interval '1 second'
  FROM toss_billing.customers c WHERE c.id = a.customer_id AND c.customer_key LIKE 'rc-%' AND a.state = 'unknown';
UPDATE toss_billing.attempts a SET resolve_attempts = 9
  FROM toss_billing.customers c WHERE c.id = a.customer_id AND c.customer_key = 'rc-plain';
BEGIN;
SELECT u.customer_key FROM toss_billing._claim_unknown(10) u;
SELECT c.customer_key, a.resolve_attempts, a.next_resolve_at - now() AS backoff
  FROM toss_billing.attempts a JOIN toss_billing.customers c ON c.id = a.customer_id
 WHERE c.customer_key LIKE 'rc-%' AND a.state = 'unknown' ORDER BY c.customer_key;
COMMIT;

-- an attempt another runner holds is skipped, not waited for
UPDATE toss_billing.attempts a SET next_resolve_at = NULL
  FROM toss_billing.customers c WHERE c.id = a.customer_id AND c.customer_key LIKE 'rc-%' AND a.state = 'unknown';
CREATE EXTENSION dblink;
SELECT dblink_connect('other_runner', format('host=%s port=%s dbname=%s',
                                             split_part(current_setting('unix_socket_directories'), ',', 1),
                                             current_setting('port'), current_database()));
SELECT dblink_exec('other_runner', 'BEGIN');
SELECT * FROM dblink('other_runner', $$
    SELECT c.customer_key FROM toss_billing.attempts a JOIN toss_billing.customers c ON c.id = a.customer_id
     WHERE c.customer_key = 'rc-restart' AND a.state = 'unknown' FOR UPDATE OF a$$) AS t(locked text);
SET lock_timeout = '2s';
SELECT u.customer_key FROM toss_billing._claim_unknown(10) u ORDER BY u.customer_key;
RESET lock_timeout;
SELECT dblink_exec('other_runner', 'ROLLBACK');
SELECT dblink_disconnect('other_runner');
DROP EXTENSION dblink;
SELECT u.customer_key FROM toss_billing._claim_unknown(10) u;

-- a recovered payment (found by reconcile: its attempt has no billing key)
-- is never claimed
INSERT INTO toss_billing.payments (order_id, obligation, customer_id, billing_key_id, merchant, state, order_name,
                                   amount, requested_by, recovered)
VALUES ('order-rc-recovered', 'recovered:order-rc-recovered', NULL, NULL, 'default', 'unknown', '복구된 결제', 1000,
        current_user, true)
RETURNING id AS recovered_order \gset
INSERT INTO toss_billing.attempts (payment_id, attempt_number, order_id, idempotency_key, state, requested_by)
VALUES (:recovered_order, 1, 'order-rc-recovered', 'recovered:rc', 'unknown', current_user);
SELECT count(*) AS claimed FROM toss_billing._claim_unknown(10);
DELETE FROM toss_billing.attempts WHERE payment_id = :recovered_order;
DELETE FROM toss_billing.payments WHERE id = :recovered_order;
-- ... and only a recovered order may lack a billing key or a customer
\set VERBOSITY terse
INSERT INTO toss_billing.payments (order_id, obligation, customer_id, billing_key_id, merchant, state, order_name,
                                   amount, requested_by)
VALUES ('order-rc-nokey', 'charge:order-rc-nokey', NULL, NULL, 'default', 'done', '키 없음', 1000, current_user);
\set VERBOSITY default

-- the outcomes the resolver learns are recorded on the attempts it claimed
-- and settle the orders and subscriptions: rc-restart's lookup finds DONE
-- (paid); rc-plain's lookup finds nothing, so the same request is posted
-- again with the same Idempotency-Key and answered DONE (paid, still one
-- attempt); rc-age's lookup finds an ABORTED payment (declined: the order
-- stays owed, dunning); rc-gone's lookup finds nothing and its re-POST gets
-- PROVIDER_ERROR (transient: owed, retried); unknown -> unknown (still
-- unresolved) records no new event.  Responses are the raw bytes received.
SELECT array_agg(a.id ORDER BY c.customer_key) AS ids, array_agg(a.order_id ORDER BY c.customer_key) AS orders
  FROM toss_billing.attempts a JOIN toss_billing.customers c ON c.id = a.customer_id
 WHERE c.customer_key IN ('rc-age', 'rc-gone', 'rc-plain', 'rc-restart') AND a.state = 'unknown' \gset
SELECT pg_temp.payment_json((:'orders'::text[])[1], '복구 요금제', 5900, '2025-03-01 09:00:01+09',
                            'REJECT_CARD_PAYMENT', '한도초과 혹은 잔액부족으로 결제에 실패했습니다.') AS age_pay,
       '{"code":"PROVIDER_ERROR","message":"일시적인 오류가 발생했습니다."}' AS gone_error,
       pg_temp.payment_json('order-rc-plain', '단건 결제', 1000, '2025-03-01 08:59:59+09') AS plain_pay,
       pg_temp.payment_json((:'orders'::text[])[4], '복구 요금제', 5900, '2025-03-01 09:00:01+09') AS restart_pay \gset
SELECT toss_billing._record_outcomes(
    :'ids', '{failed,failed,done,done}', '{200,400,200,200}', '{card_declined,transient,NULL,NULL}',
    '{NULL,PROVIDER_ERROR,NULL,NULL}', '{NULL,"일시적인 오류가 발생했습니다.",NULL,NULL}',
    ARRAY[convert_to(:'age_pay', 'UTF8'), convert_to(:'gone_error', 'UTF8'), convert_to(:'plain_pay', 'UTF8'),
          convert_to(:'restart_pay', 'UTF8')],
    ARRAY[:'age_pay', NULL, :'plain_pay', :'restart_pay']::jsonb[], '{NULL,NULL,NULL,NULL}', '{f,f,f,f}');
-- the live attempt's own caller could not settle it: unknown, once
SELECT a.id AS live_attempt FROM toss_billing.attempts a
 WHERE a.customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'rc-live') \gset
SELECT pg_temp.outcome(:live_attempt, 'unknown', 0, 'outcome_unknown', NULL,
                       'timeout after 65000 ms; the lookup by order id gave timeout after 65000 ms');
SELECT pg_temp.outcome(:live_attempt, 'unknown', 0, 'outcome_unknown', NULL,
                       'the lookup by order id gave timeout after 65000 ms');
SELECT c.customer_key, p.state, p.toss_status, p.failure_class, p.failure_code, p.total_amount, p.approved_at,
       p.generation, p.hold_reason
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key LIKE 'rc-%' ORDER BY c.customer_key;
SELECT c.customer_key, a.attempt_number, a.state, a.http_status, a.failure_class, a.failure_code,
       convert_from(a.response, 'UTF8')::jsonb->>'status' AS response_status,
       convert_from(a.response, 'UTF8')::jsonb->>'code' AS response_code, a.resolve_attempts
  FROM toss_billing.attempts a JOIN toss_billing.customers c ON c.id = a.customer_id
 WHERE c.customer_key LIKE 'rc-%' ORDER BY c.customer_key, a.attempt_number;
SELECT * FROM pg_temp.subs('rc-');
SELECT * FROM pg_temp.new_events() WHERE customer_key LIKE 'rc-%';
SELECT toss_order_id, state, paid, amount, toss_status, attempts, advice FROM toss_billing.order_status('order-rc-plain');

-- recording them again changes nothing: attempts already done or failed
-- are not touched, nor is a paid order
SELECT max(a.updated_at) AS last_attempt_update, max(p.updated_at) AS last_order_update
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id WHERE a.id = ANY (:'ids') \gset
SELECT toss_billing._record_outcomes(:'ids', '{done,done,failed,failed}', '{200,200,403,403}',
                                     '{NULL,NULL,card_declined,card_declined}', '{NULL,NULL,X,X}',
                                     '{NULL,NULL,NULL,NULL}', '{NULL,NULL,NULL,NULL}',
                                     ARRAY[pg_temp.payment_json((:'orders'::text[])[1], '복구 요금제', 5900, '2025-03-01 09:00:01+09'),
                                           pg_temp.payment_json((:'orders'::text[])[2], '복구 요금제', 5900, '2025-03-01 09:00:01+09'),
                                           NULL, NULL],
                                     '{NULL,NULL,NULL,NULL}', '{f,f,f,f}');
SELECT max(a.updated_at) = :'last_attempt_update' AS attempts_unchanged,
       max(p.updated_at) = :'last_order_update' AS orders_unchanged,
       count(*) FILTER (WHERE p.state = 'done') AS paid
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id WHERE a.id = ANY (:'ids');
SELECT count(*) AS new_events FROM pg_temp.new_events();

-- the subscriptions move on: the transient failure is retried after 10
-- minutes; the live attempt still blocks its subscription.  Changed in
-- 0.5.0: the retry re-posts the SAME order (same order id, generation 1)
-- under a new attempt with a new Idempotency-Key -- Toss itself then
-- refuses to approve the order twice -- where 0.4.0 made a new order id.
SELECT toss_billing.advance_clock('10 minutes');
SELECT * FROM pg_temp.run('done');
SELECT count(DISTINCT a.payment_id) AS orders, count(*) AS attempts, count(DISTINCT a.order_id) AS order_ids,
       count(DISTINCT a.idempotency_key) AS idempotency_keys, max(p.generation) AS generation,
       string_agg(a.state, ',' ORDER BY a.attempt_number) AS attempt_states, max(p.state) AS order_state
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
 WHERE p.subscription_id = (SELECT s.id FROM toss_billing.subscriptions s JOIN toss_billing.customers c
                             ON c.id = s.customer_id WHERE c.customer_key = 'rc-gone') AND p.period_number = 0;

-- a new order id only once Toss confirmed the old one unpaid AND refused
-- it again (new in 0.5.0): rc-age's dunning retry re-posts its declined
-- order; Toss answers DUPLICATED_ORDER_ID and the lookup shows only the
-- ABORTED payment (reuse refused).  The order is closed and its next
-- generation (a new order id) is made and charged at once.
SELECT toss_billing.advance_clock('23 hours 50 minutes');
SELECT c.attempt_id AS age_retry, c.attempt_number, c.order_id = (:'orders'::text[])[1] AS same_order_id
  FROM toss_billing._claim_due(10) c WHERE c.customer_key LIKE 'rc-%' \gset
SELECT :attempt_number AS attempt_number, :'same_order_id' AS same_order_id;
SELECT pg_temp.outcome(:age_retry, 'failed', 400, 'transient', 'DUPLICATED_ORDER_ID',
                       'toss refuses to take this order id again and holds no approved payment under it',
                       pg_temp.payment_json((:'orders'::text[])[1], '복구 요금제', 5900, '2025-03-01 09:00:01+09',
                                            'REJECT_CARD_PAYMENT', '한도초과 혹은 잔액부족으로 결제에 실패했습니다.'),
                       NULL, true);
SELECT regexp_replace(p.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS order, p.generation, p.state,
       p.failure_code, p.failure_message,
       (SELECT count(*) FROM toss_billing.attempts a WHERE a.payment_id = p.id) AS attempts
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key = 'rc-age' ORDER BY p.generation;
SELECT * FROM pg_temp.new_events() WHERE customer_key LIKE 'rc-%';
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('rc-age');

-- a lookup that finds nothing lets the same request be posted again only
-- while the order is owed as it was (may_repost): not after the card was
-- replaced (the attempt's key is no longer the active one), nor after the
-- Idempotency-Key's 15 days.  Toss has no record of it, so it is closed as
-- not sent (failed, transient) and the order stays owed: the next attempt
-- posts the same order id, with the new card and a new Idempotency-Key.
SELECT pg_temp.customer(k) FROM unnest(ARRAY['rc-newcard', 'rc-window']) AS k;
SELECT count(toss_billing.create_subscription('rc-newcard', :plan));
SELECT * FROM pg_temp.run('unknown');
SELECT pg_temp.charging('rc-window', 'order-rc-window', 1000) AS window_attempt \gset
SELECT pg_temp.outcome(:window_attempt, 'unknown', 0, 'outcome_unknown', NULL, 'timeout after 65000 ms');
UPDATE toss_billing.attempts SET created_at = now() - interval '15 days' WHERE id = :window_attempt;
SELECT pg_temp.new_card('rc-newcard');
SELECT u.customer_key, u.may_repost FROM toss_billing._claim_unknown(10) u ORDER BY u.customer_key;
SELECT a.id AS newcard_attempt FROM toss_billing.attempts a
  JOIN toss_billing.customers c ON c.id = a.customer_id WHERE c.customer_key = 'rc-newcard' \gset
SELECT pg_temp.outcome(:newcard_attempt, 'failed', 404, 'transient', 'NOT_FOUND_AT_TOSS',
                       'Toss has no record of this attempt, and its order is not owed as it was (period, subscription or billing key changed): it is not posted again.');
SELECT pg_temp.outcome(:window_attempt, 'failed', 404, 'transient', 'NOT_FOUND_AT_TOSS',
                       'Toss has no record of this attempt after its 15-day idempotency window; nothing was charged by it.');
SELECT c.customer_key, p.state, p.failure_code, p.generation FROM toss_billing.payments p
  JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key IN ('rc-newcard', 'rc-window') ORDER BY c.customer_key;
SELECT toss_order_id, state, paid, attempts, advice FROM toss_billing.order_status('order-rc-window');
SELECT toss_billing.advance_clock('10 minutes');
SELECT * FROM pg_temp.run('done');
SELECT a.attempt_number, a.state, a.order_id = p.order_id AS same_order_id, bk.status AS key_status
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
  JOIN toss_billing.billing_keys bk ON bk.id = a.billing_key_id
  JOIN toss_billing.customers c ON c.id = a.customer_id
 WHERE c.customer_key = 'rc-newcard' ORDER BY a.attempt_number;
-- the toss_charge caller retries with the same order id: a new attempt of it
SELECT pg_temp.charged('rc-window', 'order-rc-window', 1000, '2025-03-02 10:10+09') = p.id AS same_order
  FROM toss_billing.payments p WHERE p.order_id = 'order-rc-window';
SELECT toss_order_id, state, paid, attempts FROM toss_billing.order_status('order-rc-window');

-- answers are verified: a lookup's Payment that does not match the order
-- (another orderId, another totalAmount, another merchant's mId) never pays
-- it.  The C side judges it unverified and records the attempt unknown with
-- a hold: the order is held (nothing is posted for it again automatically,
-- so may_repost is false), an unverified_answer discrepancy is opened and
-- the subscription gets an alert; the lookups go on.
SELECT pg_temp.customer(k) FROM unnest(ARRAY['rc-lie-amount', 'rc-lie-order', 'rc-lie-mid']) AS k;
UPDATE toss_billing.billing_keys bk SET mid = 'tvivarepublica'
  FROM toss_billing.customers c WHERE c.id = bk.customer_id AND c.customer_key LIKE 'rc-lie-%' AND bk.status = 'active';
SELECT count(toss_billing.create_subscription('rc-lie-amount', :plan));
SELECT * FROM pg_temp.run('unknown');
SELECT pg_temp.charging('rc-lie-order', 'order-rc-lie-order', 1000) AS lie_order,
       pg_temp.charging('rc-lie-mid', 'order-rc-lie-mid', 1000) AS lie_mid \gset
SELECT pg_temp.outcome(:lie_order, 'unknown', 0, 'outcome_unknown', NULL, 'timeout after 65000 ms');
SELECT pg_temp.outcome(:lie_mid, 'unknown', 0, 'outcome_unknown', NULL, 'timeout after 65000 ms');
SELECT a.id AS lie_amount, a.order_id AS lie_amount_order FROM toss_billing.attempts a
  JOIN toss_billing.customers c ON c.id = a.customer_id WHERE c.customer_key = 'rc-lie-amount' \gset
SELECT pg_temp.payment_json(:'lie_amount_order', '복구 요금제', 59000, '2025-03-02 10:10+09') AS pay_amount,
       pg_temp.payment_json('order-rc-someone-else', '단건 결제', 1000, '2025-03-02 10:10+09') AS pay_order,
       pg_temp.payment_json('order-rc-lie-mid', '단건 결제', 1000, '2025-03-02 10:10+09')
       || '{"mId": "another_mid"}' AS pay_mid \gset
-- what the predicate says of each
SELECT toss_billing._verify_payment(:'pay_amount', :'lie_amount_order', 5900, 'tvivarepublica') AS amount,
       toss_billing._verify_payment(:'pay_order', 'order-rc-lie-order', 1000, 'tvivarepublica') AS order_id,
       toss_billing._verify_payment(:'pay_mid', 'order-rc-lie-mid', 1000, 'tvivarepublica') AS mid,
       toss_billing._verify_payment(pg_temp.payment_json('order-rc-lie-mid', '단건 결제', 1000, '2025-03-02 10:10+09'),
                                    'order-rc-lie-mid', 1000, 'tvivarepublica') AS matching;
SELECT toss_billing._record_outcomes(
    ARRAY[:lie_amount, :lie_order, :lie_mid]::bigint[], '{unknown,unknown,unknown}', '{200,200,200}',
    '{outcome_unknown,outcome_unknown,outcome_unknown}', '{NULL,NULL,NULL}',
    ARRAY['toss''s answer does not match the order: ' || toss_billing._verify_payment(:'pay_amount', :'lie_amount_order', 5900, 'tvivarepublica'),
          'toss''s answer does not match the order: ' || toss_billing._verify_payment(:'pay_order', 'order-rc-lie-order', 1000, 'tvivarepublica'),
          'toss''s answer does not match the order: ' || toss_billing._verify_payment(:'pay_mid', 'order-rc-lie-mid', 1000, 'tvivarepublica')],
    ARRAY[convert_to(:'pay_amount', 'UTF8'), convert_to(:'pay_order', 'UTF8'), convert_to(:'pay_mid', 'UTF8')],
    '{NULL,NULL,NULL}',
    ARRAY[toss_billing._verify_payment(:'pay_amount', :'lie_amount_order', 5900, 'tvivarepublica'),
          toss_billing._verify_payment(:'pay_order', 'order-rc-lie-order', 1000, 'tvivarepublica'),
          toss_billing._verify_payment(:'pay_mid', 'order-rc-lie-mid', 1000, 'tvivarepublica')],
    '{f,f,f}');
SELECT c.customer_key, p.state, p.toss_status, p.payment_key, p.total_amount, p.hold_reason, a.state AS attempt_state
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
  JOIN toss_billing.attempts a ON a.payment_id = p.id
 WHERE c.customer_key LIKE 'rc-lie-%' ORDER BY c.customer_key;
SELECT c.customer_key, d.ledger_state, d.ledger_amount, d.detail->>'why' AS why,
       (d.detail->>'attempt_id')::bigint = a.id AS attempt
  FROM toss_billing.open_discrepancies d
  JOIN toss_billing.payments p ON p.order_id = d.order_id
  JOIN toss_billing.attempts a ON a.payment_id = p.id
  JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE d.kind = 'unverified_answer' AND c.customer_key LIKE 'rc-lie-%' ORDER BY d.id;
SELECT * FROM pg_temp.new_events() WHERE customer_key LIKE 'rc-%';
SELECT state, paid, hold_reason IS NOT NULL AS held, advice FROM toss_billing.order_status('order-rc-lie-order');
-- held: looked up again, but never posted again automatically
UPDATE toss_billing.attempts a SET next_resolve_at = NULL
  FROM toss_billing.customers c WHERE c.id = a.customer_id AND c.customer_key LIKE 'rc-lie-%';
SELECT u.customer_key, u.may_repost FROM toss_billing._claim_unknown(10) u ORDER BY u.customer_key;
-- nothing is charged for the held subscription
SELECT toss_billing.advance_clock('1 hour');
SELECT * FROM pg_temp.run('done');

-- the same lies handed to _record_outcomes as DONE, as if their caller had
-- not verified them, must not pay the orders either: they stay unknown and
-- held.  (Run in a transaction that is rolled back, so that what follows
-- does not depend on it.)
BEGIN;
SELECT toss_billing._record_outcomes(
    ARRAY[:lie_amount, :lie_order, :lie_mid]::bigint[], '{done,done,done}', '{200,200,200}', '{NULL,NULL,NULL}',
    '{NULL,NULL,NULL}', '{NULL,NULL,NULL}', '{NULL,NULL,NULL}',
    ARRAY[:'pay_amount', :'pay_order', :'pay_mid']::jsonb[], '{NULL,NULL,NULL}', '{f,f,f}');
SELECT c.customer_key, p.state, p.total_amount, p.hold_reason IS NOT NULL AS held
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key LIKE 'rc-lie-%' ORDER BY c.customer_key;
ROLLBACK;
-- ... nor the same lies arriving as Toss's Payment (a webhook's fetch,
-- reconcile): a conflict, the order stays as it was
SELECT toss_billing._apply_payment_state(:'pay_mid') AS mid_applied;
SELECT regexp_replace(toss_billing._apply_payment_state(:'pay_amount'), 'sub[0-9]+-(p[0-9]+-a[0-9]+)-[a-z0-9]{8}', '\1')
    AS amount_applied;
SELECT c.customer_key, p.state, p.total_amount, p.hold_reason IS NOT NULL AS held
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key LIKE 'rc-lie-%' ORDER BY c.customer_key;
SELECT count(*) AS discrepancies FROM toss_billing.open_discrepancies d
  JOIN toss_billing.payments p ON p.order_id = d.order_id JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key LIKE 'rc-lie-%';

-- the lookups go on: a later answer that does match settles a held order
-- (the lookup's Payment recorded on the attempt, or Toss's Payment applied)
-- and lifts its hold; the discrepancies stay open for a person to resolve
SELECT pg_temp.outcome(:lie_amount, 'done', 200, NULL, NULL, NULL,
                       pg_temp.payment_json(:'lie_amount_order', '복구 요금제', 5900, '2025-03-02 10:10+09'));
SELECT pg_temp.outcome(:lie_order, 'done', 200, NULL, NULL, NULL,
                       pg_temp.payment_json('order-rc-lie-order', '단건 결제', 1000, '2025-03-02 10:10+09'));
SELECT toss_billing._apply_payment_state(pg_temp.payment_json('order-rc-lie-mid', '단건 결제', 1000, '2025-03-02 10:10+09'))
    AS mid_applied;
SELECT c.customer_key, p.state, p.total_amount, p.hold_reason, a.state AS attempt_state
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
  JOIN toss_billing.attempts a ON a.payment_id = p.id
 WHERE c.customer_key LIKE 'rc-lie-%' ORDER BY c.customer_key;
SELECT * FROM pg_temp.new_events() WHERE customer_key LIKE 'rc-%';
SELECT count(toss_billing.resolve_discrepancy(d.id, 'test: answered again, matching')) AS resolved
  FROM toss_billing.open_discrepancies d
  JOIN toss_billing.payments p ON p.order_id = d.order_id JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key LIKE 'rc-lie-%';

-- a process that really ended: another session records a toss_charge in
-- flight (as a toss_charge worker would) and disconnects
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
SELECT doomed_attempt, doomed_pid FROM dblink('doomed', $$
    SELECT attempt_id, pg_backend_pid()
      FROM toss_billing._charge_intent('rc-doomed', 1000, '단건 결제', 'order-rc-doomed', NULL, NULL, 0, current_user,
                                       '65 seconds')$$) AS t(doomed_attempt bigint, doomed_pid integer) \gset
SELECT caller_pid = :doomed_pid AS caller_recorded, caller_pid <> pg_backend_pid() AS another_process, state
  FROM toss_billing.attempts WHERE id = :doomed_attempt;
SELECT toss_billing._mark_stale() AS marked_while_alive;
SELECT dblink_disconnect('doomed');
DROP EXTENSION dblink;
SELECT pg_temp.wait_gone(:doomed_pid) AS process_ended;
SELECT toss_billing._mark_stale() AS marked;
SELECT a.state, a.failure_message, p.state AS order_state
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id WHERE a.id = :doomed_attempt;
SELECT pg_temp.outcome(:doomed_attempt, 'done', 200, NULL, NULL, NULL,
                       pg_temp.payment_json('order-rc-doomed', '단건 결제', 1000, '2025-03-01 10:00+09'));
SELECT state, toss_status FROM toss_billing.payments WHERE order_id = 'order-rc-doomed';

-- bad calls (the age after which an attempt is stale is no argument any
-- more: each attempt carries its own deadline, see rc-live above)
SELECT toss_billing._claim_unknown(-1);
SELECT toss_billing._claim_unknown(NULL);
SELECT count(*) FROM toss_billing._claim_unknown(0);
SELECT toss_billing._record_outcomes(ARRAY[:live_attempt]::bigint[], '{failed}', '{400}', '{transient}', '{PROVIDER_ERROR}',
                                     '{NULL}', '{NULL}', '{NULL}', '{NULL}', '{f,f}');
SELECT toss_billing._record_outcomes(ARRAY[:live_attempt]::bigint[], '{canceled}', '{400}', '{transient}', '{PROVIDER_ERROR}',
                                     '{NULL}', '{NULL}', '{NULL}', '{NULL}', '{f}');

-- leave nothing unknown behind: the live attempt's lookup finally settles
-- it (Toss had no record of it; its re-POST got PROVIDER_ERROR)
SELECT pg_temp.outcome(:live_attempt, 'failed', 400, 'transient', 'PROVIDER_ERROR', NULL);
SELECT count(*) AS left_open FROM toss_billing.attempts a JOIN toss_billing.customers c ON c.id = a.customer_id
 WHERE c.customer_key LIKE 'rc-%' AND a.state = ANY (ARRAY['in_flight', 'unknown']);
SELECT pg_temp.cleanup('rc-');
