-- Dunning: what each failure class does to a subscription, the retry
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- schedule and its final status, replacing the card, the alert on a
-- configuration error, and the NOTIFY that announces every event.  Each
-- subscription lives on its own test clock, starting 2024-07-01 10:00 in Seoul.
\set SHOW_CONTEXT never
SET TimeZone = 'Asia/Seoul';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';
\getenv tbtest TB_TEST
\set ECHO none
\set helpers :tbtest '/../../sql/include/subscription_helpers.psql'
\i :helpers
\set ECHO all

SELECT id AS plan FROM toss_billing.create_plan('던닝 요금제', 9900) \gset
SELECT retry_offsets, transient_retry, final_status FROM toss_billing.dunning_policy;

-- a subscription of a new customer on a new test clock
CREATE FUNCTION pg_temp.subscribe(customer_key text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT pg_temp.customer(customer_key);
    SELECT s.id FROM toss_billing.create_subscription(
        customer_key, (SELECT id FROM toss_billing.plans WHERE name = '던닝 요금제'), NULL,
        test_clock_id => toss_billing.create_test_clock('2024-07-01 10:00+09')) s;
$$;
CREATE FUNCTION pg_temp.advance(subscription_id bigint, by interval) RETURNS timestamptz
LANGUAGE sql AS $$
    SELECT toss_billing.advance_test_clock(s.test_clock_id, by) FROM toss_billing.subscriptions s WHERE s.id = subscription_id;
$$;

-- card declined: retries 1, 3, 5 and 7 days after the first decline, then unpaid
SELECT pg_temp.subscribe('dn-declined') AS declined \gset
SELECT * FROM pg_temp.run('declined');
SELECT * FROM pg_temp.subs('dn-declined');
SELECT pg_temp.advance(:declined, '23:59');
SELECT * FROM pg_temp.run('declined');
SELECT pg_temp.advance(:declined, '00:01');
SELECT * FROM pg_temp.run('declined');
SELECT * FROM pg_temp.subs('dn-declined');
SELECT pg_temp.advance(:declined, '2 days');
SELECT * FROM pg_temp.run('declined');
SELECT * FROM pg_temp.subs('dn-declined');
SELECT pg_temp.advance(:declined, '2 days');
SELECT * FROM pg_temp.run('declined');
SELECT * FROM pg_temp.subs('dn-declined');
SELECT pg_temp.advance(:declined, '2 days');
SELECT * FROM pg_temp.run('declined');
SELECT * FROM pg_temp.subs('dn-declined');
SELECT pg_temp.advance(:declined, '3 days');
SELECT * FROM pg_temp.run('declined');
-- the ledger: one order, still owed (pending) after five declined attempts
-- under its order id; code and message came from the ABORTED Payment's
-- failure object
SELECT regexp_replace(order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS "order", state, toss_status, http_status, failure_class,
       failure_code, failure_message, approved_at
  FROM toss_billing.payments WHERE subscription_id = :declined ORDER BY id;
SELECT a.attempt_number, a.state, a.http_status, a.failure_class, a.failure_code, a.failure_message
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
 WHERE p.subscription_id = :declined ORDER BY a.id;
SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events();
SELECT detail FROM toss_billing.events WHERE subscription_id = :declined AND type = 'payment_failed' ORDER BY id;

-- replacing the card retries the open period at once, with a fresh schedule
UPDATE toss_billing.billing_keys SET status = 'deleted'
 WHERE customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'dn-declined') AND status = 'active';
SELECT toss_billing.card_replaced('dn-declined');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.card_replaced('dn-nobody');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.new_card('dn-declined');
SELECT toss_billing.card_replaced('dn-declined') AS retried;
SELECT * FROM pg_temp.subs('dn-declined');
SELECT * FROM pg_temp.run('declined');
SELECT * FROM pg_temp.subs('dn-declined');
SELECT toss_billing.card_replaced('dn-declined') AS retried;
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('dn-declined');
SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events();
-- an active subscription is not touched by a new card
SELECT toss_billing.card_replaced('dn-declined') AS retried;

-- transient: retried after ten minutes, the wait doubling with each further
-- transient failure, as a new attempt under the SAME order id (Toss saw no
-- charge; a new order id would risk two); the status does not change
SELECT pg_temp.subscribe('dn-transient') AS transient \gset
SELECT * FROM pg_temp.run('transient');
SELECT * FROM pg_temp.subs('dn-transient');
SELECT pg_temp.advance(:transient, '5 minutes');
SELECT * FROM pg_temp.run('transient');
SELECT pg_temp.advance(:transient, '5 minutes');
SELECT * FROM pg_temp.run('transient');
SELECT * FROM pg_temp.subs('dn-transient');
SELECT pg_temp.advance(:transient, '10 minutes');
SELECT * FROM pg_temp.run('done');
SELECT pg_temp.advance(:transient, '10 minutes');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('dn-transient');
SELECT regexp_replace(order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g') AS "order", state, generation, toss_status
  FROM toss_billing.payments WHERE subscription_id = :transient ORDER BY id;
SELECT a.attempt_number, a.state, a.http_status, a.failure_class, a.failure_code, a.failure_message
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
 WHERE p.subscription_id = :transient ORDER BY a.id;
SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events();

-- transient failures that persist: once more than transient_limit (3) of them,
-- order goes on the dunning schedule (past_due, a day later)
SELECT transient_limit FROM toss_billing.dunning_policy;
SELECT pg_temp.subscribe('dn-transient-limit') AS transient_limit \gset
SELECT * FROM pg_temp.run('transient');
SELECT pg_temp.advance(:transient_limit, '10 minutes');
SELECT * FROM pg_temp.run('transient');
SELECT pg_temp.advance(:transient_limit, '20 minutes');
SELECT * FROM pg_temp.run('transient');
SELECT * FROM pg_temp.subs('dn-transient-limit');
SELECT pg_temp.advance(:transient_limit, '40 minutes');
SELECT * FROM pg_temp.run('transient');
SELECT * FROM pg_temp.subs('dn-transient-limit');
SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events();

-- not found (the billing key is gone at Toss): dunning, like a decline
SELECT pg_temp.subscribe('dn-not-found') AS not_found \gset
SELECT * FROM pg_temp.run('not_found');
SELECT * FROM pg_temp.subs('dn-not-found');

-- configuration error: charging stops (past_due, nothing scheduled) and an
-- alert is recorded.  Every event is also announced on toss_billing_events.
SELECT pg_temp.subscribe('dn-config') AS config \gset
LISTEN toss_billing_events;
\set notifications :tbtest '/../../notifications.txt'
\o :notifications
SELECT * FROM pg_temp.run('configuration');
\o
UNLISTEN toss_billing_events;
\set notes `cat "$TB_TEST/../../notifications.txt"`
SELECT p->>'type' AS type, p->>'status' AS status, (p->>'event_id')::bigint = e.id AS is_event,
       (p->>'subscription_id')::bigint = :config AS for_subscription,
       (p->>'payment_id')::bigint = e.payment_id AS for_payment,
       (SELECT array_agg(k ORDER BY k) FROM json_object_keys(p) AS k) AS keys
  FROM regexp_matches(:'notes', 'Asynchronous notification "toss_billing_events" with payload "([^\n]*)" received from server process', 'g') AS m,
       LATERAL (SELECT m[1]::json AS p) AS n
  LEFT JOIN toss_billing.events e ON e.id = (p->>'event_id')::bigint;
SELECT * FROM pg_temp.subs('dn-config');
SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events();
SELECT detail FROM toss_billing.events WHERE subscription_id = :config AND type = 'alert';
SELECT pg_temp.advance(:config, '10 days');
SELECT * FROM pg_temp.run('done');
-- once the configuration is fixed, the operator retries it
SELECT status, next_charge_at FROM toss_billing.retry_subscription(:config);
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('dn-config');
SELECT pg_temp.error_of(format('SELECT toss_billing.retry_subscription(%s)', :config));

-- invalid request: stops the same way; a new card also retries it
SELECT pg_temp.subscribe('dn-invalid') AS invalid \gset
SELECT * FROM pg_temp.run('invalid_request');
SELECT * FROM pg_temp.subs('dn-invalid');
SELECT pg_temp.new_card('dn-invalid');
SELECT toss_billing.card_replaced('dn-invalid') AS retried;
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('dn-invalid');
SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events();

-- an unknown outcome resolved later as a decline enters dunning then
SELECT pg_temp.subscribe('dn-unknown') AS unknown \gset
SELECT * FROM pg_temp.run('unknown');
SELECT * FROM pg_temp.subs('dn-unknown');
SELECT pg_temp.advance(:unknown, '1 hour');
SELECT toss_billing._record_outcomes(ARRAY[a.id], '{failed}', '{403}', '{card_declined}', '{REJECT_CARD_COMPANY}',
                                     '{"카드사에서 거절했습니다."}', '{NULL}', '{NULL}', '{NULL}', '{false}')
  FROM toss_billing.payments p JOIN toss_billing.attempts a ON a.payment_id = p.id AND a.state = 'unknown'
 WHERE p.subscription_id = :unknown AND p.state = 'unknown';
SELECT * FROM pg_temp.subs('dn-unknown');
SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events();

-- the policy: a final status of canceled, and a shorter schedule
SELECT retry_offsets, transient_retry, final_status
  FROM toss_billing.set_dunning_policy(retry_offsets => '{1 hour}', final_status => 'canceled');
SELECT pg_temp.subscribe('dn-cancel') AS cancel \gset
SELECT * FROM pg_temp.run('declined');
SELECT pg_temp.advance(:cancel, '1 hour');
SELECT * FROM pg_temp.run('declined');
SELECT status, canceled_at, next_charge_at, dunning_attempt FROM toss_billing.subscriptions WHERE id = :cancel;
SELECT customer_key, occurred_at, type, from_status, to_status, reason FROM pg_temp.new_events();
-- an empty schedule: the first decline is final
SELECT retry_offsets, final_status FROM toss_billing.set_dunning_policy('{}', final_status => 'unpaid');
SELECT pg_temp.subscribe('dn-no-retry') AS no_retry \gset
SELECT * FROM pg_temp.run('declined');
SELECT * FROM pg_temp.subs('dn-no-retry');
SELECT toss_billing.set_dunning_policy('{1 day,1 day}');
SELECT toss_billing.set_dunning_policy('{0 days}');
SELECT toss_billing.set_dunning_policy('{1 day,NULL}');
SELECT toss_billing.set_dunning_policy('{{1 day},{2 days}}');
SELECT toss_billing.set_dunning_policy(transient_retry => '-1 minute');
SELECT toss_billing.set_dunning_policy(final_status => 'paused');
\echo :LAST_ERROR_SQLSTATE
SELECT retry_offsets, transient_retry, final_status
  FROM toss_billing.set_dunning_policy('{1 day,3 days,5 days,7 days}', '10 minutes', 'unpaid');

SELECT pg_temp.cleanup('dn-');
