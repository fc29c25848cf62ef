-- The runner's contract: what _claim_due returns and records (an order for
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- the period and one in_flight attempt under it), what it skips, the unique
-- index that allows one live or paid order per obligation (a subscription
-- period), and how _record_outcomes completes the attempt and its order.
\set SHOW_CONTEXT never
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
\getenv tbtest TB_TEST
\set ECHO none
\set helpers :tbtest '/../../sql/include/subscription_helpers.psql'
\i :helpers
\set ECHO all

SELECT id AS plan FROM toss_billing.create_plan('클레임 요금제', 3900) \gset
SELECT pg_temp.customer('cl-one', '이클레임', 'claim@example.com');
SELECT toss_billing.freeze_clock('2024-09-01 00:00+09');
SELECT id AS one FROM toss_billing.create_subscription('cl-one', :plan) \gset

-- one claimed row: everything the Toss call needs, an in_flight order for
-- the period (generation 1) and an in_flight attempt under it (attempt 1),
-- which holds the Idempotency-Key and the deadline of the call and its lookup
CREATE TEMP TABLE claimed AS SELECT * FROM toss_billing._claim_due(10);
\x on
SELECT c.payment_id = p.id AS is_ledger_row, c.attempt_id = a.id AS is_attempt_row,
       c.order_id = format('sub%s-p0-a1-%s', :one, (SELECT order_tag FROM toss_billing.installation)) AS order_id_derived,
       c.order_id = p.order_id AND a.order_id = p.order_id AS attempt_posts_the_order_id,
       c.idempotency_key ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS idempotency_key_uuid,
       c.idempotency_key = a.idempotency_key AS idempotency_key_persisted,
       c.customer_key, c.amount, c.tax_free_amount, c.order_name, c.customer_email, c.customer_name,
       c.billing_key_id = (SELECT bk.id FROM toss_billing.billing_keys bk
                            WHERE bk.customer_id = p.customer_id AND bk.status = 'active') AS active_key,
       c.billing_key_id = a.billing_key_id AND c.billing_key_id = p.billing_key_id AS key_recorded,
       c.merchant, c.encrypted_key, c.mid, c.attempt_number,
       p.state, p.subscription_id = :one AS for_subscription, p.period_number, p.generation,
       p.obligation = format('subscription:%s:0', :one) AS obligation_is_period, p.hold_reason,
       p.requested_by = current_user AS requested_by_caller,
       a.state AS attempt_state, a.attempt_number AS attempt_row_number, a.customer_id = p.customer_id AS attempt_customer,
       a.deadline - a.created_at = interval '130 seconds' AS deadline_twice_call_timeout,
       a.caller_pid = pg_backend_pid() AS caller_recorded, a.requested_by = current_user AS attempt_requested_by_caller,
       a.resolve_attempts, a.next_resolve_at, a.http_status, a.response,
       (SELECT count(*) FROM toss_billing.attempts x WHERE x.payment_id = p.id) AS attempts_of_order
  FROM claimed c
  JOIN toss_billing.payments p ON p.id = c.payment_id
  JOIN toss_billing.attempts a ON a.id = c.attempt_id;
\x off

-- claiming again without an outcome claims nothing: the attempt is in flight
SELECT count(*) AS claimed FROM toss_billing._claim_due(10);
SELECT count(*) AS attempts FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
 WHERE p.subscription_id = :one;

-- the unique index: no second live order for the period (its obligation),
-- whatever its order id
SELECT payment_id AS first_order, attempt_id AS first_attempt FROM claimed \gset
\set VERBOSITY terse
INSERT INTO toss_billing.payments (order_id, obligation, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, subscription_id, period_number, generation)
SELECT 'another-order-id', obligation, customer_id, billing_key_id, merchant, 'pending',
       order_name, amount, requested_by, subscription_id, period_number, 2
  FROM toss_billing.payments WHERE id = :first_order;
\echo :LAST_ERROR_SQLSTATE
-- failed (closed unpaid) orders of an obligation may be many
INSERT INTO toss_billing.payments (order_id, obligation, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, subscription_id, period_number, generation)
SELECT 'failed-order-' || n, obligation, customer_id, billing_key_id, merchant, 'failed',
       order_name, amount, requested_by, subscription_id, period_number, 10 + n
  FROM toss_billing.payments, generate_series(1, 2) AS n WHERE id = :first_order;
-- a subscription order names its period
INSERT INTO toss_billing.payments (order_id, obligation, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, subscription_id)
SELECT 'no-period-order', obligation, customer_id, billing_key_id, merchant, 'failed',
       order_name, amount, requested_by, subscription_id
  FROM toss_billing.payments WHERE id = :first_order;
\echo :LAST_ERROR_SQLSTATE
-- every order names its obligation
INSERT INTO toss_billing.payments (order_id, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, subscription_id, period_number)
SELECT 'no-obligation-order', customer_id, billing_key_id, merchant, 'failed',
       order_name, amount, requested_by, subscription_id, period_number
  FROM toss_billing.payments WHERE id = :first_order;
\echo :LAST_ERROR_SQLSTATE
-- an attempt's number is its order's alone, and its Idempotency-Key is never reused
INSERT INTO toss_billing.attempts (payment_id, customer_id, attempt_number, order_id, billing_key_id,
                                   idempotency_key, state, requested_by)
SELECT payment_id, customer_id, attempt_number, order_id, billing_key_id, gen_random_uuid()::text, 'failed',
       requested_by
  FROM toss_billing.attempts WHERE id = :first_attempt;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO toss_billing.attempts (payment_id, customer_id, attempt_number, order_id, billing_key_id,
                                   idempotency_key, state, requested_by)
SELECT payment_id, customer_id, 2, order_id, billing_key_id, idempotency_key, 'failed', requested_by
  FROM toss_billing.attempts WHERE id = :first_attempt;
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- the outcome, keyed by the attempt; recording it again changes nothing,
-- neither the attempt nor its order
SELECT toss_billing._record_outcomes(ARRAY[:first_attempt]::bigint[], '{done}', '{200}', '{NULL}', '{NULL}', '{NULL}',
                                     ARRAY[convert_to(pg_temp.payment_json(order_id, order_name, amount, '2024-09-01 00:00:02+09')::text, 'UTF8')],
                                     ARRAY[pg_temp.payment_json(order_id, order_name, amount, '2024-09-01 00:00:02+09')],
                                     '{NULL}', '{false}')
  FROM toss_billing.payments WHERE id = :first_order;
SELECT period_number, next_charge_at, updated_at AS first_update FROM toss_billing.subscriptions WHERE id = :one \gset
SELECT count(*) AS events FROM toss_billing.events WHERE subscription_id = :one \gset
SELECT updated_at AS attempt_update FROM toss_billing.attempts WHERE id = :first_attempt \gset
SELECT toss_billing._record_outcomes(ARRAY[:first_attempt]::bigint[], '{failed}', '{403}', '{card_declined}',
                                     '{REJECT_CARD_COMPANY}', '{거절}', '{NULL}', '{NULL}', '{NULL}', '{false}');
SELECT state, failure_code, toss_status, hold_reason FROM toss_billing.payments WHERE id = :first_order;
SELECT state, http_status, failure_code, updated_at = :'attempt_update' AS attempt_unchanged,
       convert_from(response, 'UTF8')::jsonb->>'status' AS response_status
  FROM toss_billing.attempts WHERE id = :first_attempt;
SELECT period_number = :period_number AS period_unchanged, next_charge_at = :'next_charge_at' AS next_charge_unchanged,
       (SELECT count(*) FROM toss_billing.events WHERE subscription_id = :one) = :events AS no_new_events
  FROM toss_billing.subscriptions WHERE id = :one;

-- a paid order also holds its period: a second paid order cannot be recorded
\set VERBOSITY terse
INSERT INTO toss_billing.payments (order_id, obligation, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, subscription_id, period_number, generation)
SELECT 'second-success', obligation, customer_id, billing_key_id, merchant, 'in_flight',
       order_name, amount, requested_by, subscription_id, period_number, 3
  FROM toss_billing.payments WHERE id = :first_order;
\set VERBOSITY default

-- a race the snapshot did not see (another runner's success for the open
-- period) is absorbed by the index: nothing claimed, no error
SELECT pg_temp.customer('cl-race');
SELECT id AS race FROM toss_billing.create_subscription('cl-race', :plan) \gset
INSERT INTO toss_billing.payments (order_id, obligation, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, subscription_id, period_number, generation)
SELECT 'raced-' || s.id, format('subscription:%s:0', s.id), s.customer_id, bk.id, bk.merchant, 'done', '클레임 요금제',
       3900, current_user, s.id, 0, 1
  FROM toss_billing.subscriptions s JOIN toss_billing.billing_keys bk ON bk.customer_id = s.customer_id AND bk.status = 'active'
 WHERE s.id = :race;
SELECT count(*) AS claimed FROM toss_billing._claim_due(10);
SELECT count(*) AS race_orders, (SELECT count(*) FROM toss_billing.attempts a
                                  JOIN toss_billing.payments p ON p.id = a.payment_id
                                 WHERE p.subscription_id = :race) AS race_attempts
  FROM toss_billing.payments WHERE subscription_id = :race;
SELECT status FROM toss_billing.cancel_subscription(:race, false);

-- what is not claimed: a customer without an active key, a paused or a
-- canceled subscription, one whose attempt is unknown; and max_count holds
SELECT pg_temp.customer(k) FROM unnest(ARRAY['cl-nokey', 'cl-paused', 'cl-canceled', 'cl-unknown', 'cl-a', 'cl-b', 'cl-c']) AS k;
UPDATE toss_billing.billing_keys SET status = 'deleted'
 WHERE customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'cl-nokey');
SELECT id AS unknown FROM toss_billing.create_subscription('cl-unknown', :plan) \gset
SELECT * FROM pg_temp.run('unknown');
SELECT count(*) FROM toss_billing.create_subscription('cl-nokey', :plan);
SELECT status FROM toss_billing.pause_subscription((toss_billing.create_subscription('cl-paused', :plan)).id);
SELECT status FROM toss_billing.cancel_subscription((toss_billing.create_subscription('cl-canceled', :plan)).id, false);
SELECT count(*) FROM toss_billing.create_subscription('cl-a', :plan, '2024-09-01 00:00:03+09');
SELECT count(*) FROM toss_billing.create_subscription('cl-b', :plan, '2024-09-01 00:00:01+09');
SELECT count(*) FROM toss_billing.create_subscription('cl-c', :plan, '2024-09-01 00:00:02+09');
SELECT toss_billing.advance_clock('1 minute');
-- the earliest due first
SELECT * FROM pg_temp.run('none', 2);
SELECT * FROM pg_temp.run('none', 2);
SELECT * FROM pg_temp.run('none', 2);
SELECT customer_key, p.state, a.state AS attempt_state, a.attempt_number
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
  JOIN toss_billing.attempts a ON a.payment_id = p.id
 WHERE customer_key LIKE 'cl-%' AND p.state IN ('in_flight', 'unknown') ORDER BY customer_key;

-- _record_outcomes completes the attempts and their orders exactly as a
-- single charge does: given code and message win over the Payment's failure
-- object, HTTP 0 is no status, Toss's fields come from the verified
-- Payment, the attempt keeps the raw answer as received
SELECT array_agg(a.id ORDER BY c.customer_key) AS ids, array_agg(p.order_id ORDER BY c.customer_key) AS orders
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
  JOIN toss_billing.attempts a ON a.payment_id = p.id AND a.state = 'in_flight'
 WHERE c.customer_key IN ('cl-a', 'cl-b', 'cl-c') AND p.state = 'in_flight' \gset
SELECT toss_billing._record_outcomes(
    :'ids', '{done,failed,failed}', '{200,403,0}', '{NULL,card_declined,transient}',
    '{NULL,INVALID_CARD_EXPIRATION,CONNECTION_FAILED}', '{NULL,NULL,"could not connect to server"}',
    ARRAY[convert_to('{"status": "DONE", "raw": "cl-a"}', 'UTF8'), convert_to('{"status": "ABORTED", "raw": "cl-b"}', 'UTF8'),
          NULL],
    ARRAY[pg_temp.payment_json((:'orders'::text[])[1], '클레임 요금제', 3900, '2024-09-01 00:01+09'),
          pg_temp.payment_json((:'orders'::text[])[2], '클레임 요금제', 3900, '2024-09-01 00:01+09',
                               'REJECT_CARD_COMPANY', '카드사 응답 메시지'),
          NULL],
    '{NULL,NULL,NULL}', '{false,false,false}');
SELECT c.customer_key, a.attempt_number, a.state, a.http_status, a.failure_class, a.failure_code, a.failure_message,
       convert_from(a.response, 'UTF8') AS raw_response
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
  JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key IN ('cl-a', 'cl-b', 'cl-c') ORDER BY c.customer_key, a.id;
-- Changed in 0.5.0: a declined or transiently failed subscription order is
-- not closed (failed) and replaced by a new order id; it stays owed
-- (pending) under its order id for the next attempt.  Only a paid order
-- takes the Payment's payment key and amounts.
SELECT c.customer_key, p.state, p.generation, p.http_status, p.failure_class, p.failure_code, p.failure_message,
       p.toss_status, p.payment_key IS NOT NULL AS has_payment_key, p.total_amount, p.balance_amount,
       p.supplied_amount, p.vat, p.requested_at, p.approved_at, p.response IS NOT NULL AS has_response
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key IN ('cl-a', 'cl-b', 'cl-c') ORDER BY c.customer_key;
SELECT * FROM pg_temp.subs('cl-');

-- Changed in 0.5.0: the retry of a declined period re-posts the SAME order
-- id under a new attempt (attempt 2, a new Idempotency-Key), not a new
-- order id; the order is paid by it and stays generation 1
SELECT id AS cl_b FROM toss_billing.subscriptions
 WHERE customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'cl-b') \gset
SELECT status, next_charge_at FROM toss_billing.retry_subscription(:cl_b);
SELECT * FROM pg_temp.run('done');
SELECT p.order_id = (:'orders'::text[])[2] AS same_order_id, p.state, p.generation, p.toss_status,
       (SELECT count(*) FROM toss_billing.payments x WHERE x.subscription_id = :cl_b) AS orders_of_subscription,
       (SELECT array_agg(a.state ORDER BY a.attempt_number) FROM toss_billing.attempts a WHERE a.payment_id = p.id) AS attempts,
       (SELECT count(DISTINCT a.idempotency_key) FROM toss_billing.attempts a WHERE a.payment_id = p.id) AS idempotency_keys,
       (SELECT bool_and(a.order_id = p.order_id) FROM toss_billing.attempts a WHERE a.payment_id = p.id) AS all_post_the_order_id
  FROM toss_billing.payments p WHERE p.subscription_id = :cl_b AND p.period_number = 0;
SELECT toss_order_id = (:'orders'::text[])[2] AS same_order_id, obligation = format('subscription:%s:0', :cl_b) AS obligation,
       state, paid, attempts, advice
  FROM toss_billing.order_status((:'orders'::text[])[2]);
SELECT * FROM pg_temp.subs('cl-b');

-- New in 0.5.0: Toss refusing to take an order id again (DUPLICATED_ORDER_ID,
-- and its lookup finds only a failed payment: reuse_refused) closes the
-- order and makes the next generation of it, a new order id for the same
-- obligation, which is charged at once
SELECT pg_temp.customer('cl-reuse');
SELECT id AS reuse FROM toss_billing.create_subscription('cl-reuse', :plan, '2024-09-01 00:00+09') \gset
-- (claimed with a caller's call timeout of 5 seconds: the attempt's
-- deadline is twice that)
CREATE TEMP TABLE reuse_claim AS SELECT * FROM toss_billing._claim_due(10, '5 seconds');
SELECT c.customer_key, c.attempt_number, a.deadline - a.created_at AS deadline_after
  FROM reuse_claim c JOIN toss_billing.attempts a ON a.id = c.attempt_id;
SELECT toss_billing._record_outcomes(ARRAY[attempt_id], '{failed}', '{400}', '{transient}', '{DUPLICATED_ORDER_ID}',
                                     '{NULL}', '{NULL}',
                                     ARRAY[pg_temp.payment_json(order_id, order_name, amount, '2024-09-01 00:01+09',
                                                                'REJECT_CARD_PAYMENT', '한도초과 혹은 잔액부족으로 결제에 실패했습니다.')],
                                     '{NULL}', '{true}')
  FROM reuse_claim;
SELECT regexp_replace(p.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS order_id, p.generation, p.state,
       p.obligation = format('subscription:%s:0', :reuse) AS same_obligation, p.failure_code, p.failure_message,
       (SELECT array_agg(a.state ORDER BY a.id) FROM toss_billing.attempts a WHERE a.payment_id = p.id) AS attempts
  FROM toss_billing.payments p WHERE p.subscription_id = :reuse ORDER BY p.id;
SELECT * FROM pg_temp.subs('cl-reuse');
SELECT customer_key, type, reason FROM pg_temp.new_events() WHERE customer_key = 'cl-reuse';
SELECT * FROM pg_temp.run('done');
SELECT generation, state FROM toss_billing.payments WHERE subscription_id = :reuse ORDER BY id;

-- New in 0.5.0: an answer that could not be verified (holds) records the
-- attempt and its order unknown with the reason, never paid: a discrepancy
-- unverified_answer and an alert say so, and the period is not claimed again
SELECT pg_temp.customer('cl-held');
SELECT id AS held FROM toss_billing.create_subscription('cl-held', :plan, '2024-09-01 00:00+09') \gset
CREATE TEMP TABLE held_claim AS SELECT * FROM toss_billing._claim_due(10);
SELECT customer_key, attempt_number FROM held_claim;
SELECT toss_billing._record_outcomes(ARRAY[attempt_id], '{unknown}', '{200}', '{outcome_unknown}', '{NULL}',
                                     '{"the answer did not match the order"}', ARRAY[convert_to('{"orderId": "someone-else"}', 'UTF8')],
                                     '{NULL}', '{"orderId someone-else is not the order''s"}', '{false}')
  FROM held_claim;
SELECT p.state, p.hold_reason, p.toss_status, p.payment_key, a.state AS attempt_state,
       convert_from(a.response, 'UTF8') AS raw_response
  FROM toss_billing.payments p JOIN toss_billing.attempts a ON a.payment_id = p.id WHERE p.subscription_id = :held;
SELECT kind, ledger_state, ledger_amount, detail->>'why' AS why
  FROM toss_billing.open_discrepancies WHERE order_id = (SELECT order_id FROM held_claim);
SELECT customer_key, type, reason FROM pg_temp.new_events() WHERE customer_key = 'cl-held';
SELECT state, paid, hold_reason, advice FROM toss_billing.order_status((SELECT order_id FROM held_claim));
SELECT count(*) AS claimed FROM toss_billing._claim_due(10);
-- (cleared for the tests that follow: the subscription is canceled, the
-- attempt's lookup found nothing, the discrepancy is resolved)
SELECT status FROM toss_billing.cancel_subscription(:held, false);
SELECT toss_billing._record_outcomes(ARRAY[attempt_id], '{failed}', '{404}', '{transient}', '{NOT_FOUND_AT_TOSS}',
                                     '{"no record at toss"}', '{NULL}', '{NULL}', '{NULL}', '{false}')
  FROM held_claim;
SELECT p.state, a.state AS attempt_state
  FROM toss_billing.payments p JOIN toss_billing.attempts a ON a.payment_id = p.id WHERE p.subscription_id = :held;
SELECT resolved_at IS NOT NULL AS resolved FROM toss_billing.resolve_discrepancy(
    (SELECT id FROM toss_billing.open_discrepancies WHERE order_id = (SELECT order_id FROM held_claim)), 'test');

-- an order that belongs to no subscription (a toss_charge, obligation
-- charge:<order id>) is completed too
SELECT action, attempt_id AS manual, payment_id AS manual_order
  FROM toss_billing._charge_intent('cl-one', 1000, '단건 결제', 'order-claims-manual', NULL, NULL, 0, current_user,
                                   '65 seconds') \gset
SELECT :'action' AS action;
SELECT toss_billing._record_outcomes(ARRAY[:manual]::bigint[], '{done}', '{200}', '{NULL}', '{NULL}', '{NULL}', '{NULL}',
                                     ARRAY[pg_temp.payment_json('order-claims-manual', '단건 결제', 1000, '2024-09-01 00:01+09')],
                                     '{NULL}', '{false}');
SELECT p.state, p.toss_status, p.total_amount, p.obligation, p.subscription_id, p.generation, a.state AS attempt_state
  FROM toss_billing.payments p JOIN toss_billing.attempts a ON a.payment_id = p.id WHERE a.id = :manual;

-- a success that arrives after its period has ended applies what was due
-- at the end: the pending plan change, or the cancel at period end
SELECT pg_temp.customer('cl-late-plan'), pg_temp.customer('cl-late-cancel');
SELECT id AS late_plan FROM toss_billing.create_subscription('cl-late-plan', :plan, '2024-08-01 00:00+09') \gset
SELECT id AS late_cancel FROM toss_billing.create_subscription('cl-late-cancel', :plan, '2024-08-01 00:00+09') \gset
SELECT * FROM pg_temp.run('none');
SELECT pending_plan_period FROM toss_billing.change_plan(:late_plan, (toss_billing.create_plan('클레임 플러스', 5900)).id);
SELECT cancel_at FROM toss_billing.cancel_subscription(:late_cancel);
SELECT toss_billing.advance_clock('31 days');
SELECT toss_billing._record_outcomes(array_agg(a.id), array_agg('done'::text), array_agg(200), array_agg(NULL::text),
                                     array_agg(NULL::text), array_agg(NULL::text), array_agg(NULL::bytea),
                                     array_agg(pg_temp.payment_json(p.order_id, p.order_name, p.amount, '2024-09-01 00:01+09')),
                                     array_agg(NULL::text), array_agg(false))
  FROM toss_billing.payments p JOIN toss_billing.attempts a ON a.payment_id = p.id AND a.state = 'in_flight'
 WHERE p.subscription_id IN (:late_plan, :late_cancel) AND p.state = 'in_flight';
SELECT * FROM pg_temp.subs('cl-late');
SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events()
 WHERE customer_key LIKE 'cl-late%';

-- bad calls
SELECT toss_billing._claim_due(-1);
SELECT toss_billing._claim_due(NULL);
SELECT count(*) FROM toss_billing._claim_due(0);
SELECT toss_billing._record_outcomes('{1,2}', '{done}', '{200}', '{NULL}', '{NULL}', '{NULL}', '{NULL}', '{NULL}',
                                     '{NULL}', '{false}');
SELECT toss_billing._record_outcomes('{1}', '{done}', '{200}', '{NULL}', '{NULL}', '{NULL}', '{NULL}', '{NULL}',
                                     '{NULL}', '{false,false}');
SELECT toss_billing._record_outcomes(ARRAY[:manual]::bigint[], '{in_flight}', '{200}', '{NULL}', '{NULL}', '{NULL}',
                                     '{NULL}', '{NULL}', '{NULL}', '{false}');
SELECT toss_billing._record_outcomes('{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}');
SELECT toss_billing._record_outcomes(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

SELECT pg_temp.cleanup('cl-');
