-- Billing key deletion, webhooks and reconciliation end to end, against the
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- emulator: toss_billing.toss_delete_billing_key() DELETEs the key at Toss
-- (a key Toss already removed counts as deleted) and moves the customer's
-- subscriptions to past_due; toss_billing.ingest_webhook() takes the
-- emulator's own deliveries and forged ones: a payment event is applied
-- only from the Payment fetched again from Toss, duplicates are ignored, and
-- BILLING_DELETED finds the key by its keyed hash, and a fetched Payment
-- that does not match its order is not applied; toss_billing.reconcile()
-- lists Toss's transactions, recovers ledger rows of this installation that
-- were lost (once), reports a lost payment under an order id it cannot tell
-- from another system's as foreign_payment, makes an order Toss approved
-- after answering with a decline paid, and reports an altered amount.  In a
-- database of its own, so that the runner and reconcile see only what this
-- test made.
\set SHOW_CONTEXT never
\getenv tbtest TB_TEST
\getenv emu_url EMULATOR_URL
CREATE DATABASE toss_live_hooks;
\c toss_live_hooks
SET TimeZone = 'Asia/Seoul';
CREATE EXTENSION toss_billing;
-- reconcile() lists every transaction of the merchant in its window, and
-- the emulator is shared with the earlier tests: Toss's window is to the
-- second, so this test's window starts a second after everything before it
SELECT pg_sleep(1.1);
SELECT now() AS window_start \gset

-- the subscriptions and events of the customers whose key starts with a prefix
CREATE FUNCTION pg_temp.subs(key_prefix text)
RETURNS TABLE (customer_key text, status text, period_number integer, next_charge_at_set boolean)
LANGUAGE sql AS $$
    SELECT c.customer_key, s.status, s.period_number, s.next_charge_at IS NOT NULL
      FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
     WHERE c.customer_key LIKE key_prefix || '%' ORDER BY s.id;
$$;
CREATE FUNCTION pg_temp.events(key_prefix text)
RETURNS TABLE (customer_key text, type text, from_status text, to_status text, reason text)
LANGUAGE sql AS $$
    SELECT c.customer_key, e.type, e.from_status, e.to_status, e.reason
      FROM toss_billing.events e JOIN toss_billing.subscriptions s ON s.id = e.subscription_id
      JOIN toss_billing.customers c ON c.id = s.customer_id
     WHERE c.customer_key LIKE key_prefix || '%' AND e.type <> 'created' ORDER BY e.id;
$$;
-- Basic auth of the test secret key, for calls made straight to Toss's API
SELECT 'Authorization: Basic ' || encode(convert_to('test_sk_regress0000000000000001:', 'UTF8'), 'base64') AS auth \gset

SELECT id AS plan FROM toss_billing.create_plan('웹훅 월간', 9900) \gset
SELECT count(*) FROM (SELECT toss_billing.create_customer(NULL, NULL, c)
                        FROM unnest(ARRAY['lw-del', 'lw-gone', 'lw-hook', 'lw-pay']) c) s;
-- lw-del's key needs escaping in a URL path
\set ak `$TB_TEST/emu authkey lw-del 9410001234567890 'lw92/del?key=%41..='`
SELECT status, card_number FROM toss_billing.toss_issue_billing_key('lw-del', :'ak');
\set ak `$TB_TEST/emu authkey lw-gone 4906251234123456 lw92_gone_key_0001=`
SELECT status, card_number FROM toss_billing.toss_issue_billing_key('lw-gone', :'ak');
\set ak `$TB_TEST/emu authkey lw-hook 9410001234567890 lw92_hook_key_0001=`
SELECT status, card_number FROM toss_billing.toss_issue_billing_key('lw-hook', :'ak');
\set ak `$TB_TEST/emu authkey lw-pay 9410001234567890`
SELECT status, card_number FROM toss_billing.toss_issue_billing_key('lw-pay', :'ak');
-- every key got its keyed hash at issuance
SELECT c.customer_key, bk.key_hash IS NOT NULL AS hashed,
       bk.key_hash = toss_billing._billing_key_hash(CASE c.customer_key WHEN 'lw-del' THEN 'lw92/del?key=%41..='
                                                                        ELSE format('lw92_%s_key_0001=', substr(c.customer_key, 4)) END)
           AS hash_of_forced_key
  FROM toss_billing.billing_keys bk JOIN toss_billing.customers c ON c.id = bk.customer_id ORDER BY bk.id;

-- each of the first three pays its first period
SELECT count(*) FROM (SELECT toss_billing.create_subscription(c, :plan)
                        FROM unnest(ARRAY['lw-del', 'lw-gone', 'lw-hook']) c) s;
CALL toss_billing.run_due() \gset
\echo claimed :claimed done :done failed :failed unknown :unknown
SELECT * FROM pg_temp.subs('lw-');

-- ---------------------------------------------------------------- toss_delete_billing_key

-- no answer from Toss, even to the retry: the key stays active
\set ignore `$TB_TEST/emu fault '{"match":{"method":"DELETE","pathPrefix":"/v1/billing/"},"fault":{"reset":true},"times":2}'`
\set VERBOSITY terse
SELECT toss_billing.toss_delete_billing_key('lw-del');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
SELECT status, deleted_at IS NULL AS not_deleted FROM toss_billing.billing_key_info WHERE customer_key = 'lw-del';
SELECT * FROM pg_temp.subs('lw-del');
-- called again (the first DELETE is reset, its retry answered): the key
-- is DELETEd at Toss and marked deleted; the subscription goes past_due
-- with nothing scheduled, and says why
\set ignore `$TB_TEST/emu fault '{"match":{"method":"DELETE","pathPrefix":"/v1/billing/"},"fault":{"reset":true},"times":1}'`
SELECT customer_key, status, deleted_at IS NOT NULL AS has_deleted_at, deleted_reason, card_number
  FROM toss_billing.toss_delete_billing_key('lw-del');
\set ignore `$TB_TEST/emu clear-faults`
\set log `curl -sf "$EMULATOR_URL/__emulator/requests?limit=2"`
SELECT 3 - r.n AS attempt, r.value->>'method' AS method, r.value->>'path' AS path, r.value->>'rawPath' AS raw_path,
       r.value->'status' AS status, r.value->>'outcome' AS outcome
  FROM jsonb_array_elements(:'log') WITH ORDINALITY AS r(value, n) ORDER BY attempt;
SELECT * FROM pg_temp.subs('lw-del');
SELECT * FROM pg_temp.events('lw-del');
-- Toss no longer charges the key
SELECT format('%s/v1/billing/lw92%%2Fdel%%3Fkey%%3D%%2541..%%3D', :'emu_url') AS url,
       '{"customerKey": "lw-del", "amount": 1000, "orderId": "lw92-after-delete", "orderName": "삭제 후 결제"}' AS body \gset
\set answer `curl -s -X POST -H :'auth' -H 'Content-Type: application/json' --data :'body' :'url'`
SELECT (:'answer'::jsonb)->>'code' AS code;
-- a second call: there is no active key left, and nothing is sent
\set before `$TB_TEST/emu last-request`
SELECT toss_billing.toss_delete_billing_key('lw-del');
\echo :LAST_ERROR_SQLSTATE
\set after `$TB_TEST/emu last-request`
SELECT :'before'::jsonb = :'after'::jsonb AS nothing_sent;
SELECT toss_billing.toss_charge('lw-del', 1000, '삭제 후 결제', 'lw92-after-delete');
SELECT toss_billing.toss_delete_billing_key('lw-nobody');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.toss_delete_billing_key('bad key!');
SELECT toss_billing.toss_delete_billing_key(NULL);
SELECT status, count(*) FROM toss_billing.billing_key_info WHERE customer_key = 'lw-del' GROUP BY status;

-- the card company removed lw-gone's key at Toss first: Toss answers
-- ALREADY_REMOVED_BILLING_KEY, which still counts as deleted
\set removed `curl -sf -X DELETE --data '{"reason": "카드 해지"}' $EMULATOR_URL/__emulator/billing-keys/lw92_gone_key_0001=`
SELECT (:'removed'::jsonb)->'deleted' AS deleted_at_toss, (:'removed'::jsonb)->'alreadyDeleted' AS already_deleted;
SELECT customer_key, status, deleted_at IS NOT NULL AS has_deleted_at, deleted_reason
  FROM toss_billing.toss_delete_billing_key('lw-gone');
\set req `$TB_TEST/emu last-request`
SELECT (:'req'::jsonb)->>'method' AS method, (:'req'::jsonb)->>'path' AS path, (:'req'::jsonb)->'status' AS status;
SELECT * FROM pg_temp.subs('lw-gone');
SELECT * FROM pg_temp.events('lw-gone');

-- ---------------------------------------------------------------- BILLING_DELETED

-- the card company removes lw-hook's key; Toss's webhook (the emulator's
-- delivery, with its transmission id) names the key, which is found by its
-- keyed hash and marked deleted with the webhook's reason
\set removed `curl -sf -X DELETE --data '{"reason": "카드 분실 신고"}' $EMULATOR_URL/__emulator/billing-keys/lw92_hook_key_0001=`
\set hooks `curl -sf "$EMULATOR_URL/__emulator/webhooks?eventType=BILLING_DELETED"`
SELECT w->'payload' AS hook_payload,
       jsonb_build_object('TossPayments-Webhook-Transmission-Id', w->>'transmissionId',
                          'tosspayments-webhook-transmission-retried-count', '0',
                          'Content-Type', 'application/json; charset=utf-8') AS hook_headers
  FROM jsonb_array_elements(:'hooks') w
 WHERE w->'payload'->'data'->>'billingKey' = 'lw92_hook_key_0001=' \gset
SELECT (:'hook_payload'::jsonb)->>'eventType' AS event_type, (:'hook_payload'::jsonb)->'data'->>'reason' AS reason;
SELECT bk.id AS hook_key FROM toss_billing.billing_keys bk JOIN toss_billing.customers c ON c.id = bk.customer_id
 WHERE c.customer_key = 'lw-hook' \gset
SELECT id AS hook_event, event_type, outcome = format('applied: billing key %s deleted (카드 분실 신고)', :hook_key) AS applied,
       processed_at IS NOT NULL AS processed, payload->'data' AS stored_data,
       headers->>'tosspayments-webhook-transmission-id' = (:'hook_headers'::jsonb)->>'TossPayments-Webhook-Transmission-Id' AS transmission_id,
       headers ? 'content-type' AS other_headers_kept
  FROM toss_billing.ingest_webhook(:'hook_payload', :'hook_headers') \gset
SELECT :'event_type' AS event_type, :'applied' AS applied, :'processed' AS processed, :'stored_data' AS stored_data,
       :'transmission_id' AS transmission_id, :'other_headers_kept' AS other_headers_kept;
SELECT status, deleted_at IS NOT NULL AS has_deleted_at, deleted_reason FROM toss_billing.billing_key_info WHERE id = :hook_key;
SELECT * FROM pg_temp.subs('lw-hook');
SELECT * FROM pg_temp.events('lw-hook');
-- Toss's retry of the delivery returns the stored row and does nothing else
SELECT id = :hook_event AS same_row, outcome = format('applied: billing key %s deleted (카드 분실 신고)', :hook_key) AS applied
  FROM toss_billing.ingest_webhook(:'hook_payload',
                                   (:'hook_headers'::jsonb) || '{"tosspayments-webhook-transmission-retried-count": "1"}');
SELECT count(*) AS stored FROM toss_billing.webhook_events;
SELECT count(*) AS events FROM pg_temp.events('lw-hook');
-- the webhook of lw-gone's removal comes after toss_delete_billing_key
SELECT w->'payload' AS gone_payload, jsonb_build_object('tosspayments-webhook-transmission-id', w->>'transmissionId') AS gone_headers
  FROM jsonb_array_elements(:'hooks') w
 WHERE w->'payload'->'data'->>'billingKey' = 'lw92_gone_key_0001=' \gset
SELECT regexp_replace(outcome, '[0-9]+', '#') AS outcome FROM toss_billing.ingest_webhook(:'gone_payload', :'gone_headers');
-- no billing key is stored in the clear
SELECT count(*) AS stored_in_clear FROM toss_billing.webhook_events
 WHERE payload::text LIKE '%lw92_%' OR dedupe_key LIKE '%lw92_%' OR headers::text LIKE '%lw92_%';

-- ---------------------------------------------------------------- PAYMENT_STATUS_CHANGED

SELECT status, total_amount, balance_amount FROM toss_billing.toss_charge('lw-pay', 8000, '웹훅 테스트', 'lw92-pay');
SELECT payment_key AS pay_key, format('%s/v1/payments/%s/cancel', :'emu_url', payment_key) AS cancel_url
  FROM toss_billing.payments WHERE order_id = 'lw92-pay' \gset
-- 3,000 KRW are refunded straight through Toss's API: the ledger does not know
\set answer `curl -sf -X POST -H :'auth' -H 'Content-Type: application/json' --data '{"cancelReason": "콘솔 환불", "cancelAmount": 3000}' :'cancel_url'`
SELECT (:'answer'::jsonb)->>'status' AS status, (:'answer'::jsonb)->'balanceAmount' AS balance_at_toss,
       (:'answer'::jsonb)->>'lastTransactionKey' AS console_tx \gset
SELECT :'status' AS status, :'balance_at_toss' AS balance_at_toss;
SELECT toss_status, balance_amount FROM toss_billing.payments WHERE order_id = 'lw92-pay';
SELECT count(*) AS cancels FROM toss_billing.cancels;

-- a forged payload: the right payment, but a full cancel that never
-- happened; the Payment is fetched from Toss and only that is applied
SELECT id AS forged_event, outcome
  FROM toss_billing.ingest_webhook(
      jsonb_build_object('eventType', 'PAYMENT_STATUS_CHANGED', 'createdAt', '2026-01-02T14:46:59.653000',
                         'data', jsonb_build_object('paymentKey', :'pay_key', 'orderId', 'lw92-pay', 'status', 'CANCELED',
                                                    'totalAmount', 8000, 'balanceAmount', 0,
                                                    'cancels', jsonb_build_array(jsonb_build_object(
                                                        'transactionKey', 'forged00000000000000000000000001',
                                                        'cancelAmount', 8000, 'cancelReason', '위조',
                                                        'canceledAt', '2026-01-02T14:46:59+09:00',
                                                        'refundableAmount', 0, 'cancelStatus', 'DONE')))),
      '{"tosspayments-webhook-transmission-id": "lw92-forged-0001"}') \gset
SELECT :'outcome' AS outcome;
\set req `$TB_TEST/emu last-request`
SELECT (:'req'::jsonb)->>'method' AS method, (:'req'::jsonb)->>'path' = '/v1/payments/' || :'pay_key' AS fetched_the_payment;
SELECT state, toss_status, total_amount, balance_amount, response->>'status' AS response_status
  FROM toss_billing.payments WHERE order_id = 'lw92-pay';
SELECT state, idempotency_key IS NULL AS made_outside, requested_by, canceled_amount, reason,
       transaction_key = :'console_tx' AS toss_transaction_key
  FROM toss_billing.cancels;
SELECT count(*) AS forged_cancels FROM toss_billing.cancels WHERE transaction_key LIKE 'forged%';
-- forged amounts change nothing either: a DONE with another amount
SELECT outcome
  FROM toss_billing.ingest_webhook(
      jsonb_build_object('eventType', 'PAYMENT_STATUS_CHANGED', 'createdAt', '2026-01-02T14:47:00.000000',
                         'data', jsonb_build_object('paymentKey', :'pay_key', 'orderId', 'lw92-pay', 'status', 'DONE',
                                                    'totalAmount', 80000, 'balanceAmount', 80000)));
SELECT toss_status, total_amount, balance_amount FROM toss_billing.payments WHERE order_id = 'lw92-pay';
-- a payment Toss does not have is rejected, even under a real order id
SELECT outcome FROM toss_billing.ingest_webhook(
    '{"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2026-01-02T14:47:01.000000",
      "data": {"paymentKey": "tbill_forged_0000000001", "orderId": "lw92-forged-order", "status": "DONE", "totalAmount": 1000}}');
SELECT outcome FROM toss_billing.ingest_webhook(
    '{"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2026-01-02T14:47:02.000000",
      "data": {"paymentKey": "tbill_forged_0000000002", "orderId": "lw92-pay", "status": "CANCELED", "balanceAmount": 0}}');
SELECT toss_status, balance_amount FROM toss_billing.payments WHERE order_id = 'lw92-pay';
SELECT count(*) AS open_discrepancies FROM toss_billing.open_discrepancies;
-- a payload that names only the order id: the ledger's payment key is fetched
SELECT outcome FROM toss_billing.ingest_webhook(
    '{"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2026-01-02T14:47:03.000000",
      "data": {"orderId": "lw92-pay", "status": "CANCELED"}}');
\set req `$TB_TEST/emu last-request`
SELECT (:'req'::jsonb)->>'method' AS method, (:'req'::jsonb)->>'path' = '/v1/payments/' || :'pay_key' AS fetched_the_payment;
-- the Payment fetched names another merchant (the emulator alters the
-- lookup's answer): it is not applied; an unverified_answer discrepancy
-- records it for a person, who settles it
\set ignore `$TB_TEST/emu fault '{"match":{"method":"GET","pathPrefix":"/v1/payments/"},"fault":{"mismatch":"mId"},"times":1}'`
SELECT outcome FROM toss_billing.ingest_webhook(
    '{"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2026-01-02T14:47:04.000000",
      "data": {"orderId": "lw92-pay", "status": "CANCELED"}}');
\set ignore `$TB_TEST/emu clear-faults`
SELECT p.toss_status, p.balance_amount, p.response->>'mId' = bk.mid AS payment_of_the_merchant
  FROM toss_billing.payments p JOIN toss_billing.billing_keys bk ON bk.id = p.billing_key_id
 WHERE p.order_id = 'lw92-pay';
SELECT id AS unverified, kind, order_id, ledger_state, toss_status, ledger_amount, detail->>'why' AS why
  FROM toss_billing.open_discrepancies \gset
SELECT :'kind' AS kind, :'order_id' AS order_id, :'ledger_state' AS ledger_state, :'toss_status' AS toss_status,
       :'ledger_amount' AS ledger_amount, :'why' AS why;
SELECT kind, resolved_at IS NOT NULL AS resolved
  FROM toss_billing.resolve_discrepancy(:unverified, 'looked up at toss: the answer was altered on the way');

-- Toss's own delivery of the cancel, taken in by an operator's receiver
\set hooks `curl -sf "$EMULATOR_URL/__emulator/webhooks?eventType=PAYMENT_STATUS_CHANGED"`
SELECT w->'payload' AS pay_payload,
       jsonb_build_object('tosspayments-webhook-transmission-id', w->>'transmissionId',
                          'tosspayments-webhook-transmission-retried-count', '0') AS pay_headers
  FROM jsonb_array_elements(:'hooks') w
 WHERE w->'payload'->'data'->>'orderId' = 'lw92-pay' \gset
SELECT (:'pay_payload'::jsonb)->'data'->>'status' AS status, (:'pay_payload'::jsonb)->'data'->'balanceAmount' AS balance;
SELECT count(*) AS stored_before FROM toss_billing.webhook_events \gset
CREATE ROLE lw92_clerk;
GRANT toss_billing_operator TO lw92_clerk;
SET ROLE lw92_clerk;
-- Toss cannot be asked (a 500 on the lookup): nothing is kept, the receiver
-- answers non-2xx and Toss delivers it again
\set ignore `$TB_TEST/emu fault '{"match":{"method":"GET","pathPrefix":"/v1/payments/"},"fault":{"code":"FAILED_INTERNAL_SYSTEM_PROCESSING"},"times":1}'`
SELECT toss_billing.ingest_webhook(:'pay_payload', :'pay_headers');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) - :stored_before AS stored FROM toss_billing.webhook_events;
-- delivered again: applied (nothing new to record); its retry, or the same
-- event without the header, is a duplicate
SELECT id AS toss_event, outcome
  FROM toss_billing.ingest_webhook(:'pay_payload', :'pay_headers') \gset
SELECT :'outcome' AS outcome;
SELECT id = :toss_event AS same_row, outcome
  FROM toss_billing.ingest_webhook(:'pay_payload', (:'pay_headers'::jsonb) || '{"tosspayments-webhook-transmission-retried-count": "1"}');
SELECT id AS unheaded_event FROM toss_billing.ingest_webhook(:'pay_payload') \gset
SELECT id = :unheaded_event AS same_row FROM toss_billing.ingest_webhook(:'pay_payload', '{}');
SELECT count(*) - :stored_before AS stored FROM toss_billing.webhook_events;
SELECT count(*) AS cancels, sum(canceled_amount) AS refunded FROM toss_billing.cancels;
RESET ROLE;

-- ---------------------------------------------------------------- reconcile

-- two charges under toss_charge's own order ids (this installation's
-- tb<tag>-<uuid>) whose ledger rows -- orders, attempts and cancels -- are
-- lost (one was partly refunded), one under an order id the caller chose
-- that is lost too, and one whose amount will be altered
SELECT order_id AS lost_order, status, total_amount FROM toss_billing.toss_charge('lw-pay', 7000, '대사 테스트') \gset
SELECT :'status' AS status, :total_amount AS total_amount,
       :'lost_order' ~ ('^tb' || order_tag || '-[0-9a-f-]{36}$') AS order_id_of_this_installation
  FROM toss_billing.installation;
SELECT order_id AS lost_refunded_order FROM toss_billing.toss_charge('lw-pay', 6000, '대사 테스트') \gset
SELECT status, balance_amount FROM toss_billing.toss_cancel(:'lost_refunded_order', '부분 환불', 2500);
SELECT status, total_amount FROM toss_billing.toss_charge('lw-pay', 4000, '대사 테스트', 'lw92-lost-theirs');
SELECT status, total_amount FROM toss_billing.toss_charge('lw-pay', 3000, '대사 테스트', 'lw92-amount');
-- and a charge Toss made but answered with a decline (the emulator's ghost
-- fault): the caller is told it was declined, the ledger has it failed
\set ignore `$TB_TEST/emu fault '{"match":{"method":"POST","pathPrefix":"/v1/billing/"},"fault":{"ghost":true,"code":"REJECT_CARD_PAYMENT"},"times":1}'`
SELECT toss_billing.toss_charge('lw-pay', 5000, '대사 테스트', 'lw92-ghost');
\echo :LAST_ERROR_SQLSTATE
\set ignore `$TB_TEST/emu clear-faults`
SELECT state, failure_class, failure_code, payment_key IS NULL AS no_payment_key
  FROM toss_billing.payments WHERE order_id = 'lw92-ghost';
\set charged `$TB_TEST/emu done-count lw92-ghost`
SELECT :charged AS charged_at_toss;

SELECT payment_key AS lost_key FROM toss_billing.payments WHERE order_id = :'lost_order' \gset
SELECT count(*) AS ledger_rows FROM toss_billing.payments;
CREATE TEMP TABLE lost AS
SELECT id FROM toss_billing.payments WHERE order_id IN (:'lost_order', :'lost_refunded_order', 'lw92-lost-theirs');
DELETE FROM toss_billing.cancels WHERE payment_id IN (SELECT id FROM lost);
DELETE FROM toss_billing.attempts WHERE payment_id IN (SELECT id FROM lost);
DELETE FROM toss_billing.payments WHERE id IN (SELECT id FROM lost);
SELECT count(*) AS ledger_rows FROM toss_billing.payments;

SELECT now() + interval '1 minute' AS window_end \gset
SELECT * FROM toss_billing.reconcile(:'window_start', :'window_end');
-- the two of this installation are recovered
SELECT CASE p.order_id WHEN :'lost_order' THEN 'lost' WHEN :'lost_refunded_order' THEN 'lost, refunded' END AS lost,
       p.state, p.recovered, c.customer_key, p.billing_key_id, p.order_name, p.amount, p.toss_status,
       p.total_amount, p.balance_amount, p.payment_key = (p.response->>'paymentKey') AS payment_key,
       p.approved_at IS NOT NULL AS has_approved_at, p.obligation = 'charge:' || p.order_id AS obligation,
       p.requested_by = session_user AS by_me
  FROM toss_billing.payments p LEFT JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE p.recovered ORDER BY p.amount DESC;
SELECT CASE p.order_id WHEN :'lost_order' THEN 'lost' WHEN :'lost_refunded_order' THEN 'lost, refunded' END AS lost,
       a.attempt_number, a.state, a.idempotency_key LIKE 'recovered:%' AS recovered_key,
       a.customer_id = p.customer_id AS customer, a.requested_by = session_user AS by_me
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
 WHERE p.recovered ORDER BY p.amount DESC;
SELECT payment_key = :'lost_key' AS same_payment_key FROM toss_billing.payments WHERE order_id = :'lost_order';
-- the refund of the lost payment came with its Payment
SELECT c.state, c.canceled_amount, c.reason, c.idempotency_key IS NULL AS made_outside,
       c.customer_id = p.customer_id AS customer
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
 WHERE p.order_id = :'lost_refunded_order';
-- the one under the caller's order id cannot be told from a payment made
-- by another system under the merchant: it is not recorded as revenue, a
-- foreign_payment discrepancy names it (0.4.0 recovered it)
SELECT count(*) AS recorded FROM toss_billing.payments WHERE order_id = 'lw92-lost-theirs';
SELECT kind, order_id, ledger_state, toss_status, toss_amount, payment_key IS NOT NULL AS has_payment_key,
       detail->>'customer_key' AS customer_key
  FROM toss_billing.open_discrepancies ORDER BY id;
-- the order Toss approved after answering with a decline is paid now: its
-- verified Payment came with the approval; the attempt that made the charge
-- is done, and an alert carries the customer
SELECT state, toss_status, total_amount, failure_class, payment_key IS NOT NULL AS has_payment_key
  FROM toss_billing.payments WHERE order_id = 'lw92-ghost';
SELECT a.attempt_number, a.state, a.failure_code
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id WHERE p.order_id = 'lw92-ghost';
SELECT e.type, c.customer_key, e.reason
  FROM toss_billing.events e JOIN toss_billing.payments p ON p.id = e.payment_id
  JOIN toss_billing.customers c ON c.id = e.customer_id
 WHERE p.order_id = 'lw92-ghost';
-- a recovered row has no billing key: the resolver never claims it, and it
-- can be refunded like any other
SELECT status, balance_amount FROM toss_billing.toss_cancel(:'lost_order', '복구된 결제 환불', 1000);

-- running it again (here by an operator) recovers nothing and opens nothing
SELECT count(*) AS ledger_rows, count(*) FILTER (WHERE recovered) AS recovered FROM toss_billing.payments \gset
SELECT now() + interval '1 minute' AS window_end \gset
SET ROLE lw92_clerk;
SELECT * FROM toss_billing.reconcile(:'window_start', :'window_end');
RESET ROLE;
SELECT count(*) = :ledger_rows AS no_new_rows, count(*) FILTER (WHERE recovered) AS recovered FROM toss_billing.payments;
SELECT count(*) AS open_discrepancies FROM toss_billing.open_discrepancies;

-- an altered amount is reported, once
UPDATE toss_billing.payments SET amount = 3500, total_amount = 3500 WHERE order_id = 'lw92-amount';
SELECT * FROM toss_billing.reconcile(:'window_start', :'window_end');
SELECT kind, order_id, ledger_state, toss_status, ledger_amount, toss_amount,
       payment_key = (SELECT p.payment_key FROM toss_billing.payments p WHERE p.order_id = d.order_id) AS payment_key,
       detail->>'requested_amount' AS requested_amount
  FROM toss_billing.open_discrepancies d ORDER BY id;
SELECT * FROM toss_billing.reconcile(:'window_start', :'window_end');
SELECT count(*) AS open_discrepancies FROM toss_billing.open_discrepancies;
-- once the ledger is right again, the next run resolves it
UPDATE toss_billing.payments SET amount = 3000, total_amount = 3000 WHERE order_id = 'lw92-amount';
SELECT * FROM toss_billing.reconcile(:'window_start', :'window_end');
SELECT kind, order_id, resolved_at IS NOT NULL AS resolved,
       CASE detail->>'resolved_by' WHEN session_user THEN '(me)' ELSE detail->>'resolved_by' END AS resolved_by
  FROM toss_billing.discrepancies ORDER BY id;

-- the ledger and Toss agree on every payment of this test
\set payments `curl -sf $EMULATOR_URL/__emulator/payments`
SELECT CASE p.order_id WHEN :'lost_order' THEN 'lost' WHEN :'lost_refunded_order' THEN 'lost, refunded'
            ELSE regexp_replace(p.order_id, '^sub[0-9]+-(p[0-9]+-a[0-9]+)-[a-z0-9]{8}$', 'sub#-\1') END AS order_id,
       p.state, p.toss_status, p.balance_amount, t->>'status' AS status_at_toss, (t->>'balanceAmount')::bigint AS balance_at_toss,
       (SELECT count(*) FROM toss_billing.cancels c WHERE c.payment_id = p.id AND c.state = 'done') AS cancels,
       (t->>'cancels')::integer AS cancels_at_toss
  FROM toss_billing.payments p
  LEFT JOIN jsonb_array_elements(:'payments') t ON t->>'orderId' = p.order_id AND t->>'paymentKey' = p.payment_key
 ORDER BY p.id;
-- every event and every cancel carries its customer
SELECT count(*) AS events, count(*) FILTER (WHERE e.customer_id = COALESCE(s.customer_id, p.customer_id)) AS with_the_customer
  FROM toss_billing.events e
  LEFT JOIN toss_billing.subscriptions s ON s.id = e.subscription_id
  LEFT JOIN toss_billing.payments p ON p.id = e.payment_id;
SELECT count(*) AS cancels, count(*) FILTER (WHERE c.customer_id = p.customer_id) AS with_the_customer
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id;

\c toss_regress
DROP DATABASE toss_live_hooks;
DROP ROLE lw92_clerk;
