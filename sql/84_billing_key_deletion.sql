-- Billing key deletion: _delete_intent finds the customer's active key (the
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- one toss_delete_billing_key DELETEs at Toss); _billing_key_deleted marks a
-- key deleted and, when the customer is left without an active key, moves
-- its active and past_due subscriptions to past_due with nothing scheduled,
-- with an event that says why.  card_replaced() after a new key makes them
-- due again.  Marking a key deleted twice changes nothing.
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

SELECT toss_billing.freeze_clock('2025-05-01 10:00+09');
SELECT id AS plan FROM toss_billing.create_plan('삭제 요금제', 7900) \gset
SELECT id AS trial_plan FROM toss_billing.create_plan('삭제 체험 요금제', 7900, trial_days => 14) \gset
SELECT pg_temp.customer('bk-one');
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'bk-nokey');

-- which key: the customer's active one, or a clear error
SELECT pg_temp.error_of($$SELECT toss_billing._delete_intent('bk-nobody')$$);
SELECT toss_billing._delete_intent('bk-nokey');
SELECT toss_billing._delete_intent(NULL);
SELECT d.billing_key_id = bk.id AS active_key, d.merchant, d.encrypted_key
  FROM toss_billing._delete_intent('bk-one') d
  JOIN toss_billing.billing_keys bk ON bk.status = 'active'
  JOIN toss_billing.customers c ON c.id = bk.customer_id AND c.customer_key = 'bk-one';

-- bk-one's subscriptions: paid (the next period starts in a month), past
-- due (a decline), trialing, paused and canceled
SELECT id AS paid FROM toss_billing.create_subscription('bk-one', :plan) \gset
SELECT * FROM pg_temp.run('done');
SELECT id AS declined FROM toss_billing.create_subscription('bk-one', :plan) \gset
SELECT * FROM pg_temp.run('declined');
SELECT id AS trialing FROM toss_billing.create_subscription('bk-one', :trial_plan) \gset
-- (0.5.0: the trial converts to paid only with the customer's consent)
SELECT (toss_billing.record_consent(:trialing, r.id, toss_billing.now(), 'signup', '{}')).counts
  FROM toss_billing.consent_requirements r WHERE r.subscription_id = :trialing;
SELECT status FROM toss_billing.pause_subscription((toss_billing.create_subscription('bk-one', :plan)).id);
SELECT status FROM toss_billing.cancel_subscription((toss_billing.create_subscription('bk-one', :plan)).id, false);
SELECT * FROM pg_temp.subs('bk-one');
SELECT count(*) FROM pg_temp.new_events();

-- the card company deleted the key
SELECT billing_key_id AS key FROM toss_billing._delete_intent('bk-one') \gset
SELECT toss_billing._billing_key_deleted(:key, '카드 유효기간 만료 (card expired)');
SELECT status, deleted_at IS NOT NULL AS has_deleted_at, deleted_reason
  FROM toss_billing.billing_key_info WHERE id = :key;
SELECT * FROM pg_temp.subs('bk-one');
SELECT * FROM pg_temp.new_events();
SELECT e.detail->>'deleted_reason' AS deleted_reason, e.detail->>'next_charge_at_was' AS next_charge_at_was,
       e.detail->>'hint' AS hint
  FROM toss_billing.events e WHERE e.type = 'billing_key_deleted' AND e.subscription_id = :paid;

-- again: nothing changes
SELECT max(updated_at) AS last_update FROM toss_billing.subscriptions
 WHERE customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'bk-one') \gset
SELECT toss_billing._billing_key_deleted(:key, 'deleted again');
SELECT deleted_reason FROM toss_billing.billing_keys WHERE id = :key;
SELECT max(updated_at) = :'last_update' AS unchanged FROM toss_billing.subscriptions
 WHERE customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'bk-one');
SELECT count(*) AS new_events FROM pg_temp.new_events();

-- nothing is charged without a key, not even when the trial ends
SELECT toss_billing.advance_clock('15 days');
SELECT * FROM pg_temp.run('done');
SELECT toss_billing._delete_intent('bk-one');
SELECT toss_billing.card_replaced('bk-one');

-- the declined period stays owed under its order while there is no key:
-- the order is pending, its attempt made with the key now deleted
SELECT p.state, p.generation, bk.status AS order_key, count(a.*) AS attempts
  FROM toss_billing.payments p JOIN toss_billing.billing_keys bk ON bk.id = p.billing_key_id
  LEFT JOIN toss_billing.attempts a ON a.payment_id = p.id
 WHERE p.subscription_id = :declined GROUP BY p.id, bk.status;

-- a new card: card_replaced makes them due again -- the declined period at
-- once, the paid one when its period starts, not early
SELECT pg_temp.new_card('bk-one');
SELECT toss_billing.card_replaced('bk-one');
SELECT * FROM pg_temp.subs('bk-one');
SELECT * FROM pg_temp.run('done');
-- changed in 0.5.0: the declined period is charged again under the SAME
-- order (same order id, generation 1) with a second attempt, made with the
-- new key and a new Idempotency-Key (0.4.0 made a new order id); the order
-- now names the new key
SELECT a.attempt_number, a.state, a.order_id = p.order_id AS same_order_id, p.generation, bk.status AS key_status,
       a.billing_key_id = p.billing_key_id AS order_key
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
  JOIN toss_billing.billing_keys bk ON bk.id = a.billing_key_id
 WHERE p.subscription_id = :declined ORDER BY a.attempt_number;
SELECT count(DISTINCT p.id) AS orders, count(DISTINCT a.idempotency_key) AS idempotency_keys, max(p.state) AS state
  FROM toss_billing.payments p JOIN toss_billing.attempts a ON a.payment_id = p.id
 WHERE p.subscription_id = :declined AND p.period_number = 0;
SELECT toss_billing.advance_clock('15 days');
SELECT * FROM pg_temp.run('done');
SELECT toss_billing.advance_clock('1 day');
SELECT * FROM pg_temp.run('done');
SELECT * FROM pg_temp.subs('bk-one');

-- deleting a key that is not the active one leaves the subscriptions alone
SELECT count(*) >= 0 AS events_seen FROM pg_temp.new_events();
SELECT pg_temp.new_card('bk-one');
SELECT id AS old_key FROM toss_billing.billing_keys
 WHERE customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'bk-one') AND status = 'replaced'
 ORDER BY id DESC LIMIT 1 \gset
SELECT toss_billing._billing_key_deleted(:old_key, 'replaced card removed');
SELECT status FROM toss_billing.billing_keys WHERE id = :old_key;
SELECT count(*) AS new_events FROM pg_temp.new_events();
SELECT status, count(*) FROM pg_temp.subs('bk-one') GROUP BY status ORDER BY status;

-- a key deleted while a charge made with it is unknown: the resolver
-- still looks the order up, but if Toss has no record of it the request is
-- not posted again with the deleted key (may_repost false); closed as not
-- sent, the period stays owed and nothing is charged until a new card
SELECT pg_temp.customer('bk-two');
SELECT id AS two FROM toss_billing.create_subscription('bk-two', :plan) \gset
SELECT * FROM pg_temp.run('unknown');
SELECT toss_billing._billing_key_deleted(bk.id, 'deleted while a charge was unknown')
  FROM toss_billing.billing_keys bk JOIN toss_billing.customers c ON c.id = bk.customer_id
 WHERE c.customer_key = 'bk-two' AND bk.status = 'active';
SELECT u.customer_key, u.may_repost, bk.status AS key_status
  FROM toss_billing._claim_unknown(1000) u JOIN toss_billing.billing_keys bk ON bk.id = u.billing_key_id
 WHERE u.customer_key = 'bk-two';
SELECT a.id AS two_attempt FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
 WHERE p.subscription_id = :two \gset
SELECT pg_temp.outcome(:two_attempt, 'failed', 404, 'transient', 'NOT_FOUND_AT_TOSS',
                       'Toss has no record of this attempt, and its order is not owed as it was (period, subscription or billing key changed): it is not posted again.');
SELECT p.state, p.failure_code FROM toss_billing.payments p WHERE p.subscription_id = :two;
SELECT status, period FROM pg_temp.subs('bk-two');
SELECT toss_billing.advance_clock('1 day');
SELECT * FROM pg_temp.run('done');
-- with a new card the same order is charged, with the new key
SELECT pg_temp.new_card('bk-two');
SELECT toss_billing.card_replaced('bk-two');
SELECT * FROM pg_temp.run('done');
SELECT a.attempt_number, a.state, a.order_id = p.order_id AS same_order_id, bk.status AS key_status
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
  JOIN toss_billing.billing_keys bk ON bk.id = a.billing_key_id
 WHERE p.subscription_id = :two ORDER BY a.attempt_number;
SELECT status, period FROM pg_temp.subs('bk-two');

-- bad calls
SELECT toss_billing._billing_key_deleted(NULL, 'x');
SELECT toss_billing._billing_key_deleted(-1, 'x');

SELECT pg_temp.cleanup('bk-');
