-- The runner's contract: what _claim_due returns and records, what it
-- skips, the unique index that allows one live or successful attempt per
-- subscription period, and how _record_outcomes completes the ledger.
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

-- one claimed row: everything the Toss call needs, and an in_flight ledger row
CREATE TEMP TABLE claimed AS SELECT * FROM toss_billing._claim_due(10);
\x on
SELECT c.payment_id = p.id AS is_ledger_row, c.order_id = format('sub%s-p0-a1-%s', :one, (SELECT order_tag FROM toss_billing.installation)) AS order_id_derived,
       c.idempotency_key ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS idempotency_key_uuid,
       c.idempotency_key = p.idempotency_key AS idempotency_key_persisted,
       c.customer_key, c.amount, c.tax_free_amount, c.order_name, c.customer_email, c.customer_name,
       c.billing_key_id = (SELECT bk.id FROM toss_billing.billing_keys bk
                            WHERE bk.customer_id = p.customer_id AND bk.status = 'active') AS active_key,
       c.merchant, c.encrypted_key,
       p.state, p.subscription_id = :one AS for_subscription, p.period_number, p.attempt_number,
       p.requested_by = current_user AS requested_by_caller
  FROM claimed c
  JOIN toss_billing.payments p ON p.id = c.payment_id;
\x off

-- claiming again without an outcome claims nothing: the attempt is in flight
SELECT count(*) AS claimed FROM toss_billing._claim_due(10);

-- the unique index: no second live attempt for the period, whatever its order id
SELECT id AS first_attempt FROM toss_billing.payments WHERE subscription_id = :one \gset
\set VERBOSITY terse
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, subscription_id, period_number, attempt_number)
SELECT 'another-order-id', gen_random_uuid()::text, customer_id, billing_key_id, merchant, 'pending',
       order_name, amount, requested_by, subscription_id, period_number, 2
  FROM toss_billing.payments WHERE id = :first_attempt;
\echo :LAST_ERROR_SQLSTATE
-- failed attempts may be many
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, subscription_id, period_number, attempt_number)
SELECT 'failed-order-' || n, gen_random_uuid()::text, customer_id, billing_key_id, merchant, 'failed',
       order_name, amount, requested_by, subscription_id, period_number, 10 + n
  FROM toss_billing.payments, generate_series(1, 2) AS n WHERE id = :first_attempt;
-- a subscription attempt names its period and attempt
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, subscription_id)
SELECT 'no-period-order', gen_random_uuid()::text, customer_id, billing_key_id, merchant, 'failed',
       order_name, amount, requested_by, subscription_id
  FROM toss_billing.payments WHERE id = :first_attempt;
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- the outcome; recording it again changes nothing
SELECT toss_billing._record_outcomes(ARRAY[:first_attempt]::bigint[], '{done}', '{200}', '{NULL}', '{NULL}', '{NULL}',
                                     ARRAY[pg_temp.payment_json(order_id, order_name, amount, '2024-09-01 00:00:02+09')])
  FROM toss_billing.payments WHERE id = :first_attempt;
SELECT period_number, next_charge_at, updated_at AS first_update FROM toss_billing.subscriptions WHERE id = :one \gset
SELECT count(*) AS events FROM toss_billing.events WHERE subscription_id = :one \gset
SELECT toss_billing._record_outcomes(ARRAY[:first_attempt]::bigint[], '{failed}', '{403}', '{card_declined}',
                                     '{REJECT_CARD_COMPANY}', '{거절}', '{NULL}');
SELECT state, failure_code, toss_status FROM toss_billing.payments WHERE id = :first_attempt;
SELECT period_number = :period_number AS period_unchanged, next_charge_at = :'next_charge_at' AS next_charge_unchanged,
       (SELECT count(*) FROM toss_billing.events WHERE subscription_id = :one) = :events AS no_new_events
  FROM toss_billing.subscriptions WHERE id = :one;

-- a done attempt also holds its period: a second success cannot be recorded
\set VERBOSITY terse
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, subscription_id, period_number, attempt_number)
SELECT 'second-success', gen_random_uuid()::text, customer_id, billing_key_id, merchant, 'in_flight',
       order_name, amount, requested_by, subscription_id, period_number, 3
  FROM toss_billing.payments WHERE id = :first_attempt;
\set VERBOSITY default

-- a race the snapshot did not see (another runner's success for the open
-- period) is absorbed by the index: nothing claimed, no error
SELECT pg_temp.customer('cl-race');
SELECT id AS race FROM toss_billing.create_subscription('cl-race', :plan) \gset
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by, subscription_id, period_number, attempt_number)
SELECT 'raced-' || s.id, gen_random_uuid()::text, s.customer_id, bk.id, bk.merchant, 'done', '클레임 요금제', 3900,
       current_user, s.id, 0, 1
  FROM toss_billing.subscriptions s JOIN toss_billing.billing_keys bk ON bk.customer_id = s.customer_id AND bk.status = 'active'
 WHERE s.id = :race;
SELECT count(*) AS claimed FROM toss_billing._claim_due(10);
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
SELECT customer_key, state FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE customer_key LIKE 'cl-%' AND state IN ('in_flight', 'unknown') ORDER BY customer_key;

-- _record_outcomes completes the ledger exactly as a single charge does:
-- given code and message win over the Payment's failure object, HTTP 0 is
-- no status, Toss's fields come from the response
SELECT array_agg(p.id ORDER BY c.customer_key) AS ids, array_agg(p.order_id ORDER BY c.customer_key) AS orders
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key IN ('cl-a', 'cl-b', 'cl-c') AND p.state = 'in_flight' \gset
SELECT toss_billing._record_outcomes(
    :'ids', '{done,failed,failed}', '{200,403,0}', '{NULL,card_declined,transient}',
    '{NULL,INVALID_CARD_EXPIRATION,CONNECTION_FAILED}', '{NULL,NULL,"could not connect to server"}',
    ARRAY[pg_temp.payment_json((:'orders'::text[])[1], '클레임 요금제', 3900, '2024-09-01 00:01+09'),
          pg_temp.payment_json((:'orders'::text[])[2], '클레임 요금제', 3900, '2024-09-01 00:01+09',
                               'REJECT_CARD_COMPANY', '카드사 응답 메시지'),
          NULL]);
SELECT c.customer_key, p.state, p.http_status, p.failure_class, p.failure_code, p.failure_message, p.toss_status,
       p.payment_key IS NOT NULL AS has_payment_key, p.total_amount, p.balance_amount, p.supplied_amount, p.vat,
       p.requested_at, p.approved_at, p.response IS NOT NULL AS has_response
  FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE c.customer_key IN ('cl-a', 'cl-b', 'cl-c') ORDER BY c.customer_key;
SELECT * FROM pg_temp.subs('cl-');

-- a payment that belongs to no subscription (a toss_charge) is completed too
INSERT INTO toss_billing.payments (order_id, idempotency_key, customer_id, billing_key_id, merchant, state,
                                   order_name, amount, requested_by)
SELECT 'order-claims-manual', gen_random_uuid()::text, customer_id, billing_key_id, merchant, 'in_flight',
       '단건 결제', 1000, current_user
  FROM toss_billing.payments WHERE id = :first_attempt
RETURNING id AS manual \gset
SELECT toss_billing._record_outcomes(ARRAY[:manual]::bigint[], '{done}', '{200}', '{NULL}', '{NULL}', '{NULL}',
                                     ARRAY[pg_temp.payment_json('order-claims-manual', '단건 결제', 1000, '2024-09-01 00:01+09')]);
SELECT state, toss_status, total_amount FROM toss_billing.payments WHERE id = :manual;

-- a success that arrives after its period has ended applies what was due
-- at the end: the pending plan change, or the cancel at period end
SELECT pg_temp.customer('cl-late-plan'), pg_temp.customer('cl-late-cancel');
SELECT id AS late_plan FROM toss_billing.create_subscription('cl-late-plan', :plan, '2024-08-01 00:00+09') \gset
SELECT id AS late_cancel FROM toss_billing.create_subscription('cl-late-cancel', :plan, '2024-08-01 00:00+09') \gset
SELECT * FROM pg_temp.run('none');
SELECT pending_plan_period FROM toss_billing.change_plan(:late_plan, (toss_billing.create_plan('클레임 플러스', 5900)).id);
SELECT cancel_at FROM toss_billing.cancel_subscription(:late_cancel);
SELECT toss_billing.advance_clock('31 days');
SELECT toss_billing._record_outcomes(array_agg(p.id), array_agg('done'::text), array_agg(200), array_agg(NULL::text),
                                     array_agg(NULL::text), array_agg(NULL::text),
                                     array_agg(pg_temp.payment_json(p.order_id, p.order_name, p.amount, '2024-09-01 00:01+09')))
  FROM toss_billing.payments p WHERE p.subscription_id IN (:late_plan, :late_cancel) AND p.state = 'in_flight';
SELECT * FROM pg_temp.subs('cl-late');
SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events()
 WHERE customer_key LIKE 'cl-late%';

-- bad calls
SELECT toss_billing._claim_due(-1);
SELECT toss_billing._claim_due(NULL);
SELECT count(*) FROM toss_billing._claim_due(0);
SELECT toss_billing._record_outcomes('{1,2}', '{done}', '{200}', '{NULL}', '{NULL}', '{NULL}', '{NULL}');
SELECT toss_billing._record_outcomes(ARRAY[:manual]::bigint[], '{in_flight}', '{200}', '{NULL}', '{NULL}', '{NULL}', '{NULL}');
SELECT toss_billing._record_outcomes('{}', '{}', '{}', '{}', '{}', '{}', '{}');
SELECT toss_billing._record_outcomes(NULL, NULL, NULL, NULL, NULL, NULL, NULL);

SELECT pg_temp.cleanup('cl-');
