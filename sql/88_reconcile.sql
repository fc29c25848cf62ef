-- Reconciliation: _reconcile_items, the core of reconcile(), compares Toss's
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- transactions of a window (GET /v1/transactions items, built here as the
-- emulator lists them; an item may carry Toss's Payment, which reconcile()
-- fetches for what the items alone cannot settle) with the ledger: payments
-- Toss has that the ledger lacks are inserted as recovered when their order
-- id is this installation's (a subscription's settles its period, an
-- invoice's of its own settles the invoice; anything else under the
-- merchant is a foreign_payment, not revenue), an approval
-- whose verified Payment comes along makes a failed or unknown order paid,
-- disagreements are recorded once as discrepancies, running again adds
-- nothing, and what is consistent again is resolved.
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

-- A toss_charge order as toss_charge records it (_charge_intent, then
-- _record_outcomes of its attempt, as the C half calls them): done with
-- Toss's Payment of a given time, declined (failed, an ABORTED Payment) or
-- unknown (a timeout).  Returns the order's id.
CREATE FUNCTION pg_temp.charge_order(customer_key text, order_id text, amount bigint, outcome text,
                                     at timestamptz DEFAULT '2025-07-01 10:00+09')
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    i record;
BEGIN
    SELECT * INTO STRICT i
      FROM toss_billing._charge_intent($1, $3, '단건 결제', $2, NULL, NULL, 0, current_user, '65 seconds');
    IF i.action <> 'post' THEN
        RAISE EXCEPTION 'charge_order: % for %', i.action, $2;
    END IF;
    PERFORM toss_billing._record_outcomes(
        ARRAY[i.attempt_id], ARRAY[$4], ARRAY[CASE $4 WHEN 'done' THEN 200 WHEN 'failed' THEN 403 ELSE 0 END],
        ARRAY[CASE $4 WHEN 'failed' THEN 'card_declined' WHEN 'unknown' THEN 'outcome_unknown' END],
        ARRAY[NULL::text], ARRAY[CASE $4 WHEN 'unknown' THEN 'timeout after 65000 ms: Operation timed out' END],
        ARRAY[NULL::bytea],
        ARRAY[CASE $4 WHEN 'done' THEN pg_temp.payment_json(i.toss_order_id, '단건 결제', $3, $5)
                      WHEN 'failed' THEN pg_temp.payment_json(i.toss_order_id, '단건 결제', $3, $5,
                                                              'REJECT_CARD_PAYMENT', '한도초과 혹은 잔액부족으로 결제에 실패했습니다.') END],
        ARRAY[NULL::text], ARRAY[false]);
    RETURN i.payment_id;
END;
$$;
-- the items of several Payments, each item carrying its Payment or not
CREATE FUNCTION pg_temp.items(payments jsonb[], customer_keys text[], with_payment boolean[])
RETURNS jsonb
LANGUAGE sql AS $$
    SELECT COALESCE(jsonb_agg(CASE WHEN x.w THEN i.value || jsonb_build_object('payment', x.p) ELSE i.value END
                              ORDER BY x.n, i.n), '[]')
      FROM unnest(payments, customer_keys, with_payment) WITH ORDINALITY AS x(p, k, w, n),
           jsonb_array_elements(pg_temp.transactions_of(x.p, x.k)) WITH ORDINALITY AS i(value, n);
$$;
-- the order ids of this test: its toss_charge orders, the order ids of its
-- subscriptions, and the ones Toss lists that were made elsewhere
CREATE FUNCTION pg_temp.mine(order_id text)
RETURNS boolean
LANGUAGE sql AS $$
    SELECT $1 LIKE 'order-rec-%' OR $1 LIKE 'bad %' OR $1 = 'sub1-p0-a1-zzzzzzzz'
           OR $1 LIKE 'tb' || (SELECT order_tag FROM toss_billing.installation) || '-rec-%'
           OR EXISTS (SELECT FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
                       WHERE c.customer_key LIKE 'rec-%' AND $1 LIKE 'sub' || s.id || '-%');
$$;
-- an order id as shown: this installation's tag (and subscription id) as #
CREATE FUNCTION pg_temp.o(order_id text)
RETURNS text
LANGUAGE sql AS $$
    SELECT regexp_replace(regexp_replace($1, '^sub[0-9]+-(p[0-9]+-a[0-9]+)-' || i.order_tag || '$', 'sub#-\1'),
                          '^tb' || i.order_tag || '-', 'tb#-')
      FROM toss_billing.installation i;
$$;
-- the open discrepancies of this test
CREATE FUNCTION pg_temp.open()
RETURNS TABLE (kind text, order_id text, ledger_state text, toss_status text, ledger_amount bigint, toss_amount bigint)
LANGUAGE sql AS $$
    SELECT d.kind, pg_temp.o(d.order_id), d.ledger_state, d.toss_status, d.ledger_amount, d.toss_amount
      FROM toss_billing.open_discrepancies d
     WHERE pg_temp.mine(d.order_id)
     ORDER BY pg_temp.o(d.order_id), d.kind;
$$;

SELECT toss_billing.freeze_clock('2025-07-01 09:00+09');
SELECT pg_temp.customer('rec-one');
SELECT id AS plan FROM toss_billing.create_plan('대사 요금제', 6900) \gset
SELECT pg_temp.customer('rec-sub');
SELECT pg_temp.customer('rec-paid');
SELECT id AS paid_sub FROM toss_billing.create_subscription('rec-paid', :plan) \gset
SELECT * FROM pg_temp.run('done');
-- rec-sub's first period was charged, but the ledger lost the order (a
-- restore from an older backup): the subscription is still due
SELECT id AS sub FROM toss_billing.create_subscription('rec-sub', :plan) \gset
SELECT order_tag AS tag FROM toss_billing.installation \gset

-- the ledger
SELECT pg_temp.charge_order('rec-one', 'order-rec-ok', 5000, 'done', '2025-07-01 10:00+09') AS ok \gset
SELECT pg_temp.charge_order('rec-one', 'order-rec-amount', 5000, 'done', '2025-07-01 10:01+09') AS amount \gset
SELECT pg_temp.charge_order('rec-one', 'order-rec-cancel-missing', 3000, 'done', '2025-07-01 10:02+09') AS cancel_missing \gset
SELECT pg_temp.charge_order('rec-one', 'order-rec-cancel-amount', 3000, 'done', '2025-07-01 10:03+09') AS cancel_amount \gset
SELECT toss_billing._apply_payment_state(pg_temp.with_cancel(response, 1500, '부분 환불', 'txrd_rec_ca', '2025-07-01 10:30+09'))
  FROM toss_billing.payments WHERE id = :cancel_amount;
SELECT pg_temp.charge_order('rec-one', 'order-rec-gone', 4000, 'done', '2025-07-01 11:00+09') AS gone \gset
SELECT pg_temp.charge_order('rec-one', 'order-rec-fresh', 4000, 'done', '2025-07-01 11:30+09') AS fresh \gset
-- rows written an hour ago; order-rec-fresh was written just now (Toss may list it late)
UPDATE toss_billing.payments SET created_at = now() - interval '1 hour'
 WHERE id IN (:ok, :amount, :cancel_missing, :cancel_amount, :gone);
SELECT count(pg_temp.charge_order('rec-one', o, 2000, s)) AS orders
  FROM (VALUES (1, 'order-rec-failed', 'failed'), (2, 'order-rec-revived', 'failed'),
               (3, 'order-rec-unknown', 'unknown'), (4, 'order-rec-unknown-2', 'unknown')) AS v(n, o, s);
SELECT order_id, state, failure_class FROM toss_billing.payments WHERE order_id LIKE 'order-rec-%' ORDER BY id;

-- what Toss lists for 2025-07-01
SELECT pg_temp.items(
    ARRAY[pg_temp.with_cancel(ok.response, 1000, '부분 환불', 'txrd_rec_ok', '2025-07-01 12:00+09'),   -- ok, and a cancel the ledger lacks
          pg_temp.payment_json('order-rec-amount', '단건 결제', 5500, '2025-07-01 10:01+09'),          -- approved another amount
          pg_temp.payment_json('order-rec-failed', '단건 결제', 2000, '2025-07-01 10:04+09'),          -- ledger: failed
          pg_temp.payment_json('order-rec-revived', '단건 결제', 2000, '2025-07-01 10:04+09'),         -- ledger: failed (Payment attached)
          pg_temp.payment_json('order-rec-unknown', '단건 결제', 2000, '2025-07-01 10:05+09'),         -- ledger: unknown (Payment attached)
          pg_temp.payment_json('order-rec-unknown-2', '단건 결제', 2000, '2025-07-01 10:06+09'),       -- ledger: unknown
          pg_temp.with_cancel(cm.response, 1000, '부분 환불', 'txrd_rec_cm', '2025-07-01 12:01+09'),    -- a cancel the ledger lacks
          pg_temp.with_cancel(pg_temp.payment_json('order-rec-cancel-amount', '단건 결제', 3000, '2025-07-01 10:03+09'),
                              1000, '부분 환불', 'txrd_rec_ca', '2025-07-01 10:30+09'),                 -- the ledger's cancel, of another amount
          pg_temp.with_cancel(pg_temp.payment_json(format('tb%s-rec-lost', :'tag'), '단건 결제', 8000, '2025-07-01 13:00+09'),
                              2000, '고객 요청', 'txrd_rec_lost', '2025-07-01 13:30+09'),               -- ours, not in the ledger
          pg_temp.payment_json(format('tb%s-rec-stranger', :'tag'), '단건 결제', 1200, '2025-07-01 13:10+09'), -- ours, not in the ledger, unknown customer
          pg_temp.payment_json('order-rec-stranger', '단건 결제', 1200, '2025-07-01 13:11+09'),        -- not ours (no tag), not in the ledger (*)
          pg_temp.payment_json(format('sub%s-p0-a1-%s', :sub, :'tag'), '대사 요금제', 6900, '2025-07-01 09:00+09'),      -- a subscription period the ledger lost
          pg_temp.payment_json(format('sub%s-p0-a7-%s', :paid_sub, :'tag'), '대사 요금제', 6900, '2025-07-01 09:05+09'), -- a second charge of a paid period
          pg_temp.payment_json('sub1-p0-a1-zzzzzzzz', '다른 설치', 1000, '2025-07-01 13:20+09'),        -- another installation's (*)
          pg_temp.payment_json(format('tb%s-rec-unverified', :'tag'), '단건 결제', 1500, '2025-07-01 13:25+09')
              || '{"type": "NORMAL"}',                                                                  -- ours, but its Payment does not verify
          pg_temp.payment_json('bad order id!', '잘못된 주문', 1000, '2025-07-01 13:30+09')],          -- an order id the ledger cannot hold
    ARRAY['rec-one', 'rec-one', 'rec-one', 'rec-one', 'rec-one', 'rec-one', 'rec-one', 'rec-one', 'rec-one', 'rec-nobody',
          'rec-one', NULL, 'rec-paid', 'rec-other', 'rec-one', 'rec-one'],
    ARRAY[true, false, false, true, true, false, false, false, true, false, false, false, false, false, true, false]) AS items
  FROM toss_billing.payments ok, toss_billing.payments cm
 WHERE ok.id = :ok AND cm.id = :cancel_missing \gset
-- (*) 0.4.0 recovered every approval the ledger lacked; 0.5.0 recovers only
-- order ids of this installation (its tag) and reports the others as
-- foreign_payment
-- a cancel of a payment the ledger lacks, whose approval was before the window
SELECT (:'items'::jsonb) || jsonb_build_array(jsonb_build_object(
           'mId', 'tvivarepublica', 'transactionKey', 'txrd_rec_orphan', 'paymentKey', 'tbill_rec_orphan',
           'orderId', 'order-rec-orphan', 'method', '카드', 'customerKey', 'rec-one', 'useEscrow', false,
           'receiptUrl', NULL, 'status', 'CANCELED', 'transactionAt', '2025-07-01T14:00:00+09:00', 'currency', 'KRW',
           'amount', 3000)) AS items \gset
SELECT count(*) AS items, count(*) FILTER (WHERE i->>'status' = 'DONE') AS approvals,
       count(*) FILTER (WHERE i ? 'payment') AS with_payment
  FROM jsonb_array_elements(:'items') i;
SELECT count(*) >= 0 AS events_seen FROM pg_temp.new_events();

SELECT * FROM toss_billing._reconcile_items(:'items', '2025-07-01 00:00+09', '2025-07-02 00:00+09');
SELECT * FROM pg_temp.open();

-- recovered payments: done, flagged, no billing key, and one attempt whose
-- answer is Toss's transaction item; the customer by Toss's customerKey
-- when it is one of ours
SELECT pg_temp.o(p.order_id) AS order_id, p.state, p.recovered, c.customer_key, p.billing_key_id, p.order_name,
       p.amount, p.toss_status, p.balance_amount, p.approved_at, p.subscription_id IS NOT NULL AS linked,
       regexp_replace(p.obligation, '[0-9]+|' || :'tag', '#', 'g') AS obligation
  FROM toss_billing.payments p LEFT JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE p.recovered AND pg_temp.mine(p.order_id) ORDER BY p.id;
SELECT pg_temp.o(p.order_id) AS order_id, a.attempt_number, a.state, a.billing_key_id,
       a.idempotency_key LIKE 'recovered:%' AS idempotency_key, a.customer_id IS NOT DISTINCT FROM p.customer_id AS customer,
       (convert_from(a.response, 'UTF8')::jsonb)->>'orderId' = p.order_id
           AND (convert_from(a.response, 'UTF8')::jsonb)->>'status' = 'DONE' AS response_is_the_approval
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
 WHERE p.recovered AND pg_temp.mine(p.order_id) ORDER BY a.id;
-- what is not ours, or whose Payment does not verify, is not revenue of this ledger
SELECT count(*) AS not_recorded FROM toss_billing.payments
 WHERE order_id IN ('order-rec-stranger', 'sub1-p0-a1-zzzzzzzz', format('tb%s-rec-unverified', :'tag'));
SELECT kind, pg_temp.o(order_id) AS order_id, detail->>'customer_key' AS customer_key,
       (detail->>'customer_id')::bigint = (SELECT id FROM toss_billing.customers WHERE customer_key = 'rec-one') AS customer,
       detail->>'why' AS why
  FROM toss_billing.open_discrepancies
 WHERE kind = ANY (ARRAY['foreign_payment', 'unverified_answer']) AND pg_temp.mine(order_id) ORDER BY id;
-- the Payment's cancels came with it; the cancel the ledger lacked is recorded
SELECT pg_temp.o(p.order_id) AS order_id, c.transaction_key, c.canceled_amount,
       c.idempotency_key IS NULL AS outside_toss_billing, cu.customer_key
  FROM toss_billing.cancels c JOIN toss_billing.payments p ON p.id = c.payment_id
  LEFT JOIN toss_billing.customers cu ON cu.id = c.customer_id
 WHERE p.order_id IN (format('tb%s-rec-lost', :'tag'), 'order-rec-ok') ORDER BY c.id;
-- the unknown order, and the failed one, whose Payment came along are done
-- (0.4.0 left the failed one failed with a state_mismatch discrepancy; a
-- verified Payment now proves it paid); the ones without stay as they were
SELECT p.order_id, p.state, p.toss_status, a.state AS attempt_state
  FROM toss_billing.payments p JOIN toss_billing.attempts a ON a.payment_id = p.id
 WHERE p.order_id IN ('order-rec-unknown', 'order-rec-unknown-2', 'order-rec-failed', 'order-rec-revived')
 ORDER BY p.order_id;
SELECT p.order_id, e.type, e.subscription_id, c.customer_key, e.reason, e.detail->>'ledger_state' AS ledger_state
  FROM toss_billing.events e JOIN toss_billing.payments p ON p.id = e.payment_id
  JOIN toss_billing.customers c ON c.id = e.customer_id
 WHERE p.order_id = 'order-rec-revived' ORDER BY e.id;
-- the lost subscription period is paid; the second charge of a paid period is an alert
SELECT * FROM pg_temp.subs('rec-');
SELECT * FROM pg_temp.new_events();

-- running again adds nothing
SELECT * FROM toss_billing._reconcile_items(:'items', '2025-07-01 00:00+09', '2025-07-02 00:00+09');
SELECT count(*) AS new_events FROM pg_temp.new_events();
SELECT count(*) AS open FROM pg_temp.open();

-- what is settled meanwhile is resolved by the next run: the runner
-- resolves the other unknown attempt, a webhook brings the missing cancel
SELECT toss_billing._record_outcomes(ARRAY[a.id], '{done}', '{200}', '{NULL}', '{NULL}', '{NULL}', '{NULL}',
                                     ARRAY[pg_temp.payment_json('order-rec-unknown-2', '단건 결제', 2000, '2025-07-01 10:06+09')],
                                     '{NULL}', '{false}')
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
 WHERE p.order_id = 'order-rec-unknown-2' AND a.state = 'unknown';
SELECT toss_billing._apply_payment_state(pg_temp.with_cancel(response, 1000, '부분 환불', 'txrd_rec_cm', '2025-07-01 12:01+09'))
  FROM toss_billing.payments WHERE id = :cancel_missing;
SELECT * FROM toss_billing._reconcile_items(:'items', '2025-07-01 00:00+09', '2025-07-02 00:00+09');
SELECT d.kind, d.order_id, d.detail->>'resolved_by' AS resolved_by
  FROM toss_billing.discrepancies d
 WHERE d.resolved_at IS NOT NULL AND d.order_id LIKE 'order-rec-%' ORDER BY d.id;
SELECT * FROM pg_temp.open();

-- a window decides only about what it covers: Toss lists nothing between
-- 10:59 and 11:02, so order-rec-gone is still missing there; the others
-- are not looked at
SELECT * FROM toss_billing._reconcile_items('[]', '2025-07-01 10:59+09', '2025-07-01 11:02+09');
SELECT count(*) AS open FROM pg_temp.open();
-- a window with nothing in it
SELECT * FROM toss_billing._reconcile_items(NULL, '2020-01-01 00:00+09', '2020-01-02 00:00+09');

-- an operator settles one by hand; doing it twice changes nothing
SELECT id AS duplicate FROM toss_billing.discrepancies
 WHERE kind = 'duplicate_charge' AND resolved_at IS NULL AND pg_temp.mine(order_id) \gset
SELECT kind, resolved_at IS NOT NULL AS resolved, detail->>'note' AS note, detail->>'resolved_by' = session_user AS by_me
  FROM toss_billing.resolve_discrepancy(:duplicate, '두 번째 결제를 환불함');
SELECT resolved_at IS NOT NULL AS resolved, detail->>'note' AS note
  FROM toss_billing.resolve_discrepancy(:duplicate, 'again');
SELECT toss_billing.resolve_discrepancy(-1);

-- bad calls
SELECT * FROM toss_billing._reconcile_items('{}', '2025-07-01', '2025-07-02');
SELECT * FROM toss_billing._reconcile_items('[]', '2025-07-02', '2025-07-01');
SELECT * FROM toss_billing._reconcile_items('[]', NULL, '2025-07-01');
SELECT * FROM toss_billing.reconcile('2025-07-02', '2025-07-01');
SELECT * FROM toss_billing.reconcile('2025-07-01', NULL);
SELECT * FROM toss_billing.reconcile('2025-07-01', '2025-07-02', NULL);

-- an invoice charged under orders of its own (here an upgrade's proration,
-- charged at once) whose orders the ledger lost is recovered as a period
-- is: inv<id>-a<k>-<tag> is this installation's; an approval of another
-- amount than the invoice's amount_due is recorded as ours but settles
-- nothing (amount_mismatch); one of its amount pays the invoice
-- (payment_recovered, invoice_paid); another approval of the paid invoice
-- is a second charge (duplicate_charge, an alert); another installation's
-- inv order id is a foreign_payment.  An amount_mismatch of a recovered
-- payment (an invoice's, or a period's) stays open: the ledger row agrees
-- with Toss, but Toss approved what the obligation does not charge
SELECT id AS plus FROM toss_billing.create_plan('대사 플러스', 13800) \gset
SELECT pg_temp.customer('rec-inv');
SELECT toss_billing.freeze_clock('2025-07-03 09:00+09');
SELECT id AS inv_sub FROM toss_billing.create_subscription('rec-inv', :plan) \gset
SELECT customer_key, attempt, amount, state FROM pg_temp.run('done');
SELECT toss_billing.advance_clock('15 days');
SELECT plan_id = :plus AS upgraded FROM toss_billing.change_plan(:inv_sub, :plus, proration => 'immediate');
SELECT id AS inv, amount_due AS inv_due FROM toss_billing.invoices WHERE subscription_id = :inv_sub AND kind = 'proration' \gset
SELECT kind, status, subtotal, amount_due FROM toss_billing.invoices WHERE id = :inv;
SELECT count(*) >= 0 AS events_seen FROM pg_temp.new_events();
SELECT pg_temp.items(
    ARRAY[pg_temp.payment_json(format('inv%s-a1-%s', :inv, :'tag'), '대사 플러스 (change)', :inv_due + 100, '2025-07-18 10:00+09'),
          pg_temp.payment_json(format('inv%s-a2-%s', :inv, :'tag'), '대사 플러스 (change)', :inv_due, '2025-07-18 10:01+09'),
          pg_temp.payment_json(format('inv%s-a3-%s', :inv, :'tag'), '대사 플러스 (change)', :inv_due, '2025-07-18 10:02+09'),
          pg_temp.payment_json('inv1-a1-zzzzzzzz', '다른 설치', 1000, '2025-07-18 10:03+09'),
          pg_temp.payment_json(format('sub%s-p1-a1-%s', :inv_sub, :'tag'), '대사 플러스', 5000, '2025-07-18 10:04+09')],
    ARRAY['rec-inv', 'rec-inv', 'rec-inv', 'rec-inv', 'rec-inv'], ARRAY[true, true, false, false, true]) AS inv_items \gset
SELECT * FROM toss_billing._reconcile_items(:'inv_items', '2025-07-18 00:00+09', '2025-07-19 00:00+09');
SELECT regexp_replace(p.order_id, '^(inv|sub)[0-9]+-((p[0-9]+-)?a[0-9]+)-' || :'tag' || '$', '\1#-\2') AS order_id, p.state, p.recovered,
       c.customer_key, p.amount, p.invoice_id = :inv AS pays_the_invoice, p.generation,
       regexp_replace(p.obligation, '[0-9]+|' || :'tag', '#', 'g') AS obligation
  FROM toss_billing.payments p LEFT JOIN toss_billing.customers c ON c.id = p.customer_id
 WHERE p.order_id LIKE format('inv%s-%%', :inv) OR p.order_id LIKE format('sub%s-p1-%%', :inv_sub) ORDER BY p.id;
SELECT d.kind, regexp_replace(d.order_id, '^(inv|sub)[0-9]+-((p[0-9]+-)?a[0-9]+)-' || :'tag' || '$', '\1#-\2') AS order_id,
       d.ledger_amount, d.toss_amount,
       (d.detail->>'invoice_id')::bigint = :inv AS invoice, (d.detail->>'subscription_id')::bigint = :inv_sub AS subscription,
       d.detail->>'hint' AS hint
  FROM toss_billing.open_discrepancies d
 WHERE d.order_id LIKE format('inv%s-%%', :inv) OR d.order_id = 'inv1-a1-zzzzzzzz'
    OR d.order_id LIKE format('sub%s-%%', :inv_sub)
 ORDER BY d.id;
SELECT status, amount_paid = :inv_due AS paid_in_full, next_attempt_at FROM toss_billing.invoices WHERE id = :inv;
SELECT * FROM pg_temp.new_events();
-- running again adds nothing
SELECT * FROM toss_billing._reconcile_items(:'inv_items', '2025-07-18 00:00+09', '2025-07-19 00:00+09');
SELECT count(*) AS new_events FROM pg_temp.new_events();
SELECT kind, count(*) AS still_open FROM toss_billing.open_discrepancies
 WHERE order_id LIKE format('inv%s-%%', :inv) OR order_id LIKE format('sub%s-%%', :inv_sub)
 GROUP BY kind ORDER BY kind;

SELECT pg_temp.cleanup('rec-');
