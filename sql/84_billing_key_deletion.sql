-- Billing key deletion: _delete_intent finds the customer's active key (the
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

-- a new card: card_replaced makes them due again -- the declined period at
-- once, the paid one when its period starts, not early
SELECT pg_temp.new_card('bk-one');
SELECT toss_billing.card_replaced('bk-one');
SELECT * FROM pg_temp.subs('bk-one');
SELECT * FROM pg_temp.run('done');
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

-- bad calls
SELECT toss_billing._billing_key_deleted(NULL, 'x');
SELECT toss_billing._billing_key_deleted(-1, 'x');

SELECT pg_temp.cleanup('bk-');
