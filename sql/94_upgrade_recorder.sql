-- The 0.3.0 -> 0.4.0 -> 0.5.0 upgrades of the outcome recorder's half.
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- 0.4.0: _record_outcomes, now called beside the same runner's claims (by
-- the outcome recorder), locks the subscriptions before the payments.
-- 0.5.0: it is keyed by attempt, and the ledger becomes orders and
-- attempts.  An upgraded database defines it exactly as a fresh install
-- does, with the same privileges, and a 0.4.0 ledger made by 0.4.0's own
-- functions migrates into orders and attempts: every row an order with one
-- attempt holding its Idempotency-Key, its obligation filled, its
-- attempt_number kept as the order's generation.
\set SHOW_CONTEXT never
\set regress_db :DBNAME
SELECT md5(pg_get_functiondef(p.oid)) AS fresh_def, proacl::text AS fresh_acl
  FROM pg_proc p
 WHERE p.oid = 'toss_billing._record_outcomes(bigint[],text[],integer[],text[],text[],text[],bytea[],jsonb[],text[],boolean[])'::regprocedure \gset
-- the subscriptions are locked before any attempt or order is touched
SELECT strpos(d, 'FROM toss_billing.subscriptions s') > 0
       AND strpos(d, 'FROM toss_billing.subscriptions s') < strpos(d, 'UPDATE toss_billing.attempts a')
       AND strpos(d, 'FROM toss_billing.subscriptions s') < strpos(d, 'UPDATE toss_billing.payments p')
       AS subscriptions_first
  FROM pg_get_functiondef('toss_billing._record_outcomes(bigint[],text[],integer[],text[],text[],text[],bytea[],jsonb[],text[],boolean[])'::regprocedure) d;

CREATE DATABASE tb_upgrade4;
\c tb_upgrade4
SET client_min_messages = warning;
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
CREATE EXTENSION toss_billing VERSION '0.3.0';
ALTER EXTENSION toss_billing UPDATE TO '0.4.0';
SELECT extversion FROM pg_extension WHERE extname = 'toss_billing';
-- 0.4.0's _record_outcomes (keyed by payment) locks the subscriptions first
SELECT strpos(d, 'FROM toss_billing.subscriptions s') > 0
       AND strpos(d, 'FROM toss_billing.subscriptions s') < strpos(d, 'UPDATE toss_billing.payments p')
       AS subscriptions_first
  FROM pg_get_functiondef('toss_billing._record_outcomes(bigint[],text[],integer[],text[],text[],text[],jsonb[])'::regprocedure) d;

-- A 0.4.0 ledger, made by 0.4.0's runner half: four subscriptions claimed;
-- up4-paid declined, then (a 0.4.0 retry: a new order id, attempt 2) paid;
-- up4-declined declined and past_due; up4-unknown unknown and looked up
-- once; up4-flight in flight during the upgrade.  Beside them a toss_charge
-- payment with a refund in flight, and a payment reconcile recovered.
SELECT toss_billing.freeze_clock('2025-09-01 00:00+09') IS NOT NULL AS frozen;
SELECT id AS plan FROM toss_billing.create_plan('업그레이드 요금제', 4900) \gset
INSERT INTO toss_billing.billing_keys (customer_id, status, encrypted_key, idempotency_key)
SELECT c.id, 'active', '\x00', 'key-' || c.customer_key
  FROM unnest(ARRAY['up4-paid', 'up4-declined', 'up4-unknown', 'up4-flight']) AS k,
       LATERAL toss_billing.create_customer(NULL, NULL, k) c;
SELECT c.customer_key, s.status
  FROM unnest(ARRAY['up4-paid', 'up4-declined', 'up4-unknown', 'up4-flight']) WITH ORDINALITY AS k(key, n),
       LATERAL toss_billing.create_subscription(k.key, :plan) s
  JOIN toss_billing.customers c ON c.id = s.customer_id
 ORDER BY k.n;
CREATE TEMP TABLE claims AS SELECT * FROM toss_billing._claim_due(10);
SELECT customer_key, regexp_replace(order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS attempt FROM claims ORDER BY payment_id;
SELECT toss_billing._record_outcomes(
    array_agg(payment_id ORDER BY payment_id),
    array_agg(CASE WHEN customer_key = 'up4-unknown' THEN 'unknown' ELSE 'failed' END ORDER BY payment_id),
    array_agg(CASE WHEN customer_key = 'up4-unknown' THEN 0 ELSE 403 END ORDER BY payment_id),
    array_agg(CASE WHEN customer_key = 'up4-unknown' THEN 'outcome_unknown' ELSE 'card_declined' END ORDER BY payment_id),
    array_agg(CASE WHEN customer_key = 'up4-unknown' THEN NULL ELSE 'REJECT_CARD_PAYMENT' END ORDER BY payment_id),
    array_agg(CASE WHEN customer_key = 'up4-unknown' THEN 'timeout after 65000 ms' ELSE '한도초과 혹은 잔액부족' END
              ORDER BY payment_id),
    array_agg(CASE WHEN customer_key = 'up4-unknown' THEN NULL
                   ELSE jsonb_build_object('orderId', order_id, 'status', 'ABORTED', 'totalAmount', amount,
                                           'failure', jsonb_build_object('code', 'REJECT_CARD_PAYMENT'))
              END ORDER BY payment_id))
  FROM claims WHERE customer_key <> 'up4-flight';
SELECT id AS paid_sub FROM toss_billing.subscriptions
 WHERE customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'up4-paid') \gset
SELECT status FROM toss_billing.retry_subscription(:paid_sub);
CREATE TEMP TABLE retried AS SELECT * FROM toss_billing._claim_due(10);
SELECT customer_key, regexp_replace(order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS attempt FROM retried;
SELECT toss_billing._record_outcomes(ARRAY[payment_id], '{done}', '{200}', '{NULL}', '{NULL}', '{NULL}',
                                     ARRAY[jsonb_build_object('orderId', order_id, 'status', 'DONE',
                                                              'paymentKey', 'tbill_up4_paid', 'totalAmount', amount,
                                                              'balanceAmount', amount,
                                                              'approvedAt', '2025-09-01T00:00:01+09:00')])
  FROM retried;
SELECT count(*) AS looked_up FROM toss_billing._claim_unknown(10);
SELECT id AS customer FROM toss_billing.customers WHERE customer_key = 'up4-paid' \gset
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, toss_status, payment_key, total_amount,
                                   balance_amount, response)
SELECT 'order-up4-charge', 'idem-up4-charge', :customer, bk.id, 'default', 'done', '단건 결제', 9900, current_user,
       'DONE', 'tbill_up4_charge', 9900, 9900, '{"orderId": "order-up4-charge", "status": "DONE"}'
  FROM toss_billing.billing_keys bk WHERE bk.customer_id = :customer;
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, toss_status, payment_key, total_amount,
                                   balance_amount, recovered)
VALUES ('order-up4-console', 'recovered:TXUP4CONSOLE', NULL, NULL, 'default', 'done', '콘솔 결제', 1000, current_user,
        'DONE', 'tbill_up4_console', 1000, 1000, true);
SELECT payment_key, cancel_amount FROM toss_billing._cancel_intent('order-up4-charge', '업그레이드 중 환불', 900, 'up4');
SELECT c.customer_key, s.status, s.period_number, s.dunning_attempt
  FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id ORDER BY s.id;

-- what 0.4.0 holds, to compare with after the upgrade
CREATE TEMP TABLE before AS
SELECT p.id, p.order_id, p.idempotency_key, p.state, p.attempt_number, p.http_status, p.failure_class, p.failure_code,
       p.failure_message, p.response, p.requested_by, p.caller_pid, p.caller_started_at, p.resolve_attempts,
       p.next_resolve_at, p.created_at, p.updated_at, p.customer_id, p.billing_key_id, p.subscription_id,
       p.period_number
  FROM toss_billing.payments p;
SELECT order_id ~ '^sub' AS subscription, state, attempt_number, resolve_attempts, next_resolve_at IS NOT NULL AS backing_off,
       caller_pid IS NOT NULL AS names_caller
  FROM before ORDER BY id;

ALTER EXTENSION toss_billing UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'toss_billing';
SELECT md5(pg_get_functiondef(p.oid)) = :'fresh_def' AS same_definition,
       proacl::text = :'fresh_acl' AS same_privileges
  FROM pg_proc p
 WHERE p.oid = 'toss_billing._record_outcomes(bigint[],text[],integer[],text[],text[],text[],bytea[],jsonb[],text[],boolean[])'::regprocedure;
-- the payment-keyed recorder is gone
SELECT to_regprocedure('toss_billing._record_outcomes(bigint[],text[],integer[],text[],text[],text[],jsonb[])') AS old_recorder;

-- the payments are orders now: the attempt columns moved out, generation
-- and obligation came in
SELECT attname FROM pg_attribute
 WHERE attrelid = 'toss_billing.payments'::regclass AND NOT attisdropped
   AND attname IN ('idempotency_key', 'attempt_number', 'resolve_attempts', 'next_resolve_at', 'caller_pid',
                   'caller_started_at', 'generation', 'obligation', 'hold_reason')
 ORDER BY 1;
-- every row is an order: its obligation (the subscription period; the
-- caller's order id; a recovered payment's own), generation = the old
-- attempt_number (1 where there was none), state and money unchanged
SELECT regexp_replace(p.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS order_id,
       regexp_replace(p.obligation, '[0-9]+', '#') AS obligation,
       p.obligation = CASE WHEN b.subscription_id IS NOT NULL THEN format('subscription:%s:%s', b.subscription_id, b.period_number)
                           WHEN p.recovered THEN 'recovered:' || p.order_id
                           ELSE 'charge:' || p.order_id END AS obligation_right,
       p.generation, p.generation = COALESCE(b.attempt_number, 1) AS generation_copied,
       p.state, p.state = b.state AS state_kept, p.hold_reason, p.toss_status, p.total_amount, p.recovered
  FROM toss_billing.payments p JOIN before b ON b.id = p.id
 ORDER BY p.id;
-- the second order of up4-paid's period is its paid one; the first stays failed
SELECT p.generation, p.state FROM toss_billing.payments p WHERE p.subscription_id = :paid_sub ORDER BY p.id;
-- one attempt per order: attempt 1 under the order's id, with the
-- order's Idempotency-Key, its outcome, its caller and lookups
SELECT regexp_replace(a.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS order_id, a.attempt_number, a.state,
       a.idempotency_key = b.idempotency_key AS same_idempotency_key,
       a.order_id = b.order_id AS same_order_id,
       a.customer_id IS NOT DISTINCT FROM b.customer_id AND a.billing_key_id IS NOT DISTINCT FROM b.billing_key_id
           AS same_customer_and_key,
       (a.http_status, a.failure_class, a.failure_code, a.failure_message)
           IS NOT DISTINCT FROM (b.http_status, b.failure_class, b.failure_code, b.failure_message) AS same_failure,
       a.response IS NOT DISTINCT FROM convert_to(b.response::text, 'UTF8') AS response_as_bytes,
       (a.requested_by, a.caller_pid, a.caller_started_at) IS NOT DISTINCT FROM (b.requested_by, b.caller_pid, b.caller_started_at)
           AS same_caller,
       a.resolve_attempts, a.next_resolve_at IS NOT DISTINCT FROM b.next_resolve_at AS same_next_resolve_at,
       a.created_at = b.created_at AS same_created_at,
       CASE WHEN a.deadline IS NULL THEN NULL ELSE a.deadline - b.updated_at END AS deadline_after_update
  FROM toss_billing.attempts a JOIN before b ON b.id = a.payment_id
 ORDER BY a.id;
SELECT (SELECT count(*) FROM toss_billing.attempts) AS attempts, (SELECT count(*) FROM before) AS old_rows,
       (SELECT count(DISTINCT payment_id) FROM toss_billing.attempts) AS orders_with_attempts;
-- the refund in flight and the events name their customer; the refund has a deadline
SELECT c.state, c.customer_id = :customer AS customer_filled, c.deadline - c.updated_at AS deadline_after_update
  FROM toss_billing.cancels c;
SELECT count(*) FILTER (WHERE customer_id IS NULL) AS events_without_customer,
       count(*) FILTER (WHERE customer_id = (SELECT s.customer_id FROM toss_billing.subscriptions s
                                               WHERE s.id = e.subscription_id)) AS events_of_their_customer
  FROM toss_billing.events e;
SELECT transient_limit FROM toss_billing.dunning_policy;

-- and 0.5.0 works on the migrated ledger: the orders are found by order id,
SELECT state, paid, attempts, advice FROM toss_billing.order_status('order-up4-charge');
SELECT o.state, o.paid, o.generation_order, o.attempts, o.advice
  FROM (SELECT s.*, regexp_replace(s.toss_order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS generation_order
          FROM toss_billing.payments p, LATERAL toss_billing.order_status(p.order_id) s
         WHERE p.subscription_id = :paid_sub AND p.generation = 2) o;
-- the attempt in flight during the upgrade is completed by the new recorder
-- and settles its subscription,
SELECT a.id AS flight_attempt, p.order_id AS flight_order, p.amount AS flight_amount
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
  JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key = 'up4-flight' \gset
SELECT toss_billing._record_outcomes(ARRAY[:flight_attempt]::bigint[], '{done}', '{200}', '{NULL}', '{NULL}', '{NULL}',
                                     '{NULL}',
                                     ARRAY[jsonb_build_object('orderId', :'flight_order', 'status', 'DONE', 'type', 'BILLING', 'currency', 'KRW', 'mId', 'tvivarepublica',
                                                              'paymentKey', 'tbill_up4_flight',
                                                              'totalAmount', :flight_amount,
                                                              'balanceAmount', :flight_amount,
                                                              'approvedAt', '2025-09-01T00:00:01+09:00')],
                                     '{NULL}', '{false}');
SELECT a.state, p.state AS order_state, s.status, s.period_number
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
  JOIN toss_billing.subscriptions s ON s.id = p.subscription_id
 WHERE a.id = :flight_attempt;
-- the unknown attempt keeps its back-off, and is then looked up with its
-- own Idempotency-Key (which may be posted again: the period is still owed),
SELECT count(*) AS due_now FROM toss_billing._claim_unknown(10);
SELECT toss_billing.resolve_unknown_now() AS made_due;
SELECT u.customer_key, u.idempotency_key = b.idempotency_key AS old_idempotency_key, u.may_repost
  FROM toss_billing._claim_unknown(10) u JOIN before b ON b.id = u.payment_id;
-- and a period whose 0.4.0 order was declined is charged again under the
-- next generation's order id (the old order is closed)
SELECT id AS declined_sub FROM toss_billing.subscriptions
 WHERE customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'up4-declined') \gset
SELECT status FROM toss_billing.retry_subscription(:declined_sub);
CREATE TEMP TABLE reclaimed AS SELECT * FROM toss_billing._claim_due(10);
SELECT c.customer_key, regexp_replace(c.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS order_id, c.attempt_number,
       p.generation, p.state, p.obligation = format('subscription:%s:0', :declined_sub) AS same_obligation,
       c.idempotency_key <> ALL (SELECT idempotency_key FROM before) AS new_idempotency_key
  FROM reclaimed c JOIN toss_billing.payments p ON p.id = c.payment_id;
SELECT generation, state FROM toss_billing.payments WHERE subscription_id = :declined_sub ORDER BY id;

\c :regress_db
DROP DATABASE tb_upgrade4;
