-- Orders and attempts through the runner (CALL toss_billing.run_due())
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- against the emulator's hostile answers (issue 11).  Each block failed on
-- 0.4.0: transient errors and ghosts retried under a new order id, one bad
-- row stopped the whole batch, recovery re-posted what was no longer owed,
-- billing-key-gone answers were dunned, and reuse of an ABORTED order id was
-- assumed.  In a database of its own, so the runner sees only these rows.
\set SHOW_CONTEXT never
CREATE DATABASE toss_orders;
\c toss_orders
SET TimeZone = 'Asia/Seoul';
SET client_min_messages = warning;
CREATE EXTENSION toss_billing;
SELECT toss_billing.freeze_clock('2026-05-31 10:00+09');
SELECT id AS plan FROM toss_billing.create_plan('주문 월간', 9900) \gset

CREATE FUNCTION pg_temp.orders(customer_prefix text)
RETURNS TABLE (customer_key text, "order" text, state text, generation integer, held boolean, attempts text)
LANGUAGE sql AS $$
    SELECT c.customer_key, regexp_replace(p.order_id, '^sub[0-9]+-|-[a-z0-9]{8}$', '', 'g'), p.state, p.generation,
           p.hold_reason IS NOT NULL,
           (SELECT string_agg(a.attempt_number || ':' || a.state || COALESCE(':' || a.failure_code, ''), ' '
                              ORDER BY a.attempt_number)
              FROM toss_billing.attempts a WHERE a.payment_id = p.id)
      FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id
     WHERE c.customer_key LIKE customer_prefix || '%' ORDER BY p.id;
$$;
CREATE FUNCTION pg_temp.subs(customer_prefix text)
RETURNS TABLE (customer_key text, status text, period_number integer, next_charge_at timestamptz, dunning integer)
LANGUAGE sql AS $$
    SELECT c.customer_key, s.status, s.period_number, s.next_charge_at, s.dunning_attempt
      FROM toss_billing.subscriptions s JOIN toss_billing.customers c ON c.id = s.customer_id
     WHERE c.customer_key LIKE customer_prefix || '%' ORDER BY s.id;
$$;
CREATE FUNCTION pg_temp.events(customer_prefix text)
RETURNS TABLE (customer_key text, type text, to_status text, reason text)
LANGUAGE sql AS $$
    SELECT c.customer_key, e.type, e.to_status, e.reason
      FROM toss_billing.events e JOIN toss_billing.customers c ON c.id = e.customer_id
     WHERE c.customer_key LIKE customer_prefix || '%' AND e.type <> 'created' ORDER BY e.id;
$$;
-- the emulator's approved charges per subscription period, by order id
CREATE TEMP TABLE emu (ledger jsonb);
CREATE FUNCTION pg_temp.charges_at_toss(customer_prefix text)
RETURNS TABLE (customer_key text, period integer, charges bigint)
LANGUAGE sql AS $$
    SELECT c.customer_key, p.period_number, sum(COALESCE((e.ledger->'doneByOrderId'->>p.order_id)::integer, 0))
      FROM toss_billing.payments p JOIN toss_billing.customers c ON c.id = p.customer_id, pg_temp.emu e
     WHERE c.customer_key LIKE customer_prefix || '%'
     GROUP BY 1, 2 ORDER BY 1, 2;
$$;

SELECT count(toss_billing.create_customer(NULL, NULL, k))
  FROM unnest(ARRAY['ro-ghost', 'ro-lag', 'ro-lie', 'ro-nokey', 'ro-sealed', 'ro-good', 'ro-gone', 'ro-cancel',
                    'ro-replaced']) k;
\set ak `$TB_TEST/emu authkey ro-ghost`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-ghost', :'ak');
\set ak `$TB_TEST/emu authkey ro-lag`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-lag', :'ak');
\set ak `$TB_TEST/emu authkey ro-lie`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-lie', :'ak');
\set ak `$TB_TEST/emu authkey ro-nokey`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-nokey', :'ak');
\set ak `$TB_TEST/emu authkey ro-sealed`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-sealed', :'ak');
\set ak `$TB_TEST/emu authkey ro-good`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-good', :'ak');
\set ak `$TB_TEST/emu authkey ro-gone`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-gone', :'ak');
\set ak `$TB_TEST/emu authkey ro-cancel`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-cancel', :'ak');
\set ak `$TB_TEST/emu authkey ro-replaced`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-replaced', :'ak');

SELECT id AS s_ghost FROM toss_billing.create_subscription('ro-ghost', :plan) \gset
SELECT id AS s_lag FROM toss_billing.create_subscription('ro-lag', :plan) \gset
SELECT id AS s_lie FROM toss_billing.create_subscription('ro-lie', :plan) \gset
SELECT id AS s_nokey FROM toss_billing.create_subscription('ro-nokey', :plan) \gset
SELECT id AS s_sealed FROM toss_billing.create_subscription('ro-sealed', :plan) \gset
SELECT id AS s_good FROM toss_billing.create_subscription('ro-good', :plan) \gset
SELECT id AS s_gone FROM toss_billing.create_subscription('ro-gone', :plan) \gset
SELECT id AS s_cancel FROM toss_billing.create_subscription('ro-cancel', :plan) \gset
SELECT id AS s_replaced FROM toss_billing.create_subscription('ro-replaced', :plan) \gset

-- the hostile answers, one per customer:
--   ro-ghost     Toss charges and answers PROVIDER_ERROR
--   ro-lag       the answer is lost and the payment stays invisible to lookups for 3 s
--   ro-lie       a DONE answer for 10,900 KRW instead of 9,900
--   ro-gone      Toss says the billing key was removed
--   ro-cancel    the connection breaks (nothing charged); the subscription is cancelled before recovery
--   ro-replaced  the connection breaks (nothing charged); the card is replaced before recovery
--   ro-nokey     its billing key's merchant has no secret key (a line missing from the key file)
--   ro-sealed    its sealed billing key does not decrypt (it is another row's)
\set f '{"match":{"method":"POST","orderIdPrefix":"sub' :s_ghost '-"},"fault":{"ghost":true,"code":"PROVIDER_ERROR"},"times":1}'
\set ignore `$TB_TEST/emu fault :'f'`
\set f '{"match":{"method":"POST","orderIdPrefix":"sub' :s_lag '-"},"fault":{"lostResponse":true,"lookupLagMs":3000},"times":1}'
\set ignore `$TB_TEST/emu fault :'f'`
\set f '{"match":{"method":"POST","orderIdPrefix":"sub' :s_lie '-"},"fault":{"mismatch":"totalAmount"},"times":1}'
\set ignore `$TB_TEST/emu fault :'f'`
\set f '{"match":{"method":"POST","orderIdPrefix":"sub' :s_gone '-"},"fault":{"code":"ALREADY_REMOVED_BILLING_KEY"}}'
\set ignore `$TB_TEST/emu fault :'f'`
\set f '{"match":{"method":"POST","orderIdPrefix":"sub' :s_cancel '-"},"fault":{"reset":true},"times":1}'
\set ignore `$TB_TEST/emu fault :'f'`
\set f '{"match":{"method":"GET","orderIdPrefix":"sub' :s_cancel '-"},"fault":{"reset":true},"times":1}'
\set ignore `$TB_TEST/emu fault :'f'`
\set f '{"match":{"method":"POST","orderIdPrefix":"sub' :s_replaced '-"},"fault":{"reset":true},"times":1}'
\set ignore `$TB_TEST/emu fault :'f'`
\set f '{"match":{"method":"GET","orderIdPrefix":"sub' :s_replaced '-"},"fault":{"reset":true},"times":1}'
\set ignore `$TB_TEST/emu fault :'f'`
UPDATE toss_billing.billing_keys bk SET merchant = 'no-such-merchant'
  FROM toss_billing.customers c WHERE c.id = bk.customer_id AND c.customer_key = 'ro-nokey';
UPDATE toss_billing.billing_keys bk
   SET encrypted_key = (SELECT x.encrypted_key FROM toss_billing.billing_keys x JOIN toss_billing.customers xc
                          ON xc.id = x.customer_id WHERE xc.customer_key = 'ro-good')
  FROM toss_billing.customers c WHERE c.id = bk.customer_id AND c.customer_key = 'ro-sealed';

-- the first run: the bad rows fail alone and every other row is charged
CALL toss_billing.run_due() \gset
SELECT :claimed AS claimed, :done AS done, :failed AS failed, :unknown AS unknown;
SELECT * FROM pg_temp.orders('ro-');
SELECT customer_key, status, dunning FROM pg_temp.subs('ro-');
SELECT * FROM pg_temp.events('ro-') WHERE type = 'alert' OR customer_key IN ('ro-gone', 'ro-nokey', 'ro-sealed');
-- the key Toss says is gone is marked deleted, as the webhook would
SELECT c.customer_key, bk.status FROM toss_billing.billing_keys bk JOIN toss_billing.customers c ON c.id = bk.customer_id
 WHERE c.customer_key = 'ro-gone';

-- before recovery: one subscription is cancelled, another gets a new card
SELECT status FROM toss_billing.cancel_subscription(:s_cancel, false);
\set ak `$TB_TEST/emu authkey ro-replaced 4906251234123456`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-replaced', :'ak');
SELECT toss_billing.card_replaced('ro-replaced');

-- ten minutes on, past the lookup lag: the transient retry re-posts the
-- ghost's order id (Toss refuses it as paid; its lookup finds the charge);
-- the lost answer is found; the lie is looked up, never posted again (the
-- lookup is honest, so it settles as the charge Toss really made, and its
-- discrepancy stays open); the unknown attempts that Toss never received
-- are closed as not sent, as their orders are no longer owed as they were
-- (a cancelled subscription; a replaced card)
SELECT pg_sleep(3.2);
SELECT toss_billing.advance_clock('10 minutes') IS NOT NULL AS later;
SELECT toss_billing.resolve_unknown_now() >= 0 AS lookups_now;
CALL toss_billing.run_due() \gset
SELECT * FROM pg_temp.orders('ro-');
SELECT customer_key, status, dunning FROM pg_temp.subs('ro-');
SELECT p.order_id ~ ('^sub' || :s_lie || '-') AS lie_order, p.hold_reason
  FROM toss_billing.payments p WHERE p.hold_reason IS NOT NULL;
SELECT kind, ledger_state FROM toss_billing.open_discrepancies ORDER BY id;

-- at Toss: every period was charged at most once; the ghost, the lost
-- answer and the lie each exactly once (the lie's charge is real, at the
-- amount asked); nothing for the cancelled subscription
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
INSERT INTO emu VALUES (:'ledger');
SELECT * FROM pg_temp.charges_at_toss('ro-');
-- requests for the lie's order id: posted once, only looked up since
\set reqs `curl -sf "$EMULATOR_URL/__emulator/requests?limit=500"`
SELECT r->>'method' AS method, count(*) AS requests
  FROM jsonb_array_elements(:'reqs'::jsonb) r
 WHERE COALESCE(r->'body'->>'orderId', r->>'path') LIKE
       '%' || (SELECT order_id FROM toss_billing.payments WHERE subscription_id = :s_lie)
 GROUP BY 1 ORDER BY 1;
\set ignore `$TB_TEST/emu clear-faults`
-- the replaced card's period is retried on the transient schedule, with the
-- new card and under the same order id; the cancelled one's is not
SELECT toss_billing.advance_clock('10 minutes') IS NOT NULL AS later;
CALL toss_billing.run_due() \gset
SELECT * FROM pg_temp.orders('ro-replaced');
SELECT * FROM pg_temp.orders('ro-cancel');
SELECT a.billing_key_id <> (SELECT x.billing_key_id FROM toss_billing.attempts x WHERE x.payment_id = a.payment_id
                             AND x.attempt_number = 1) AS new_card
  FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
 WHERE p.subscription_id = :s_replaced AND a.attempt_number = 2;

-- ABORTED order ids, under both behaviours Toss might have.  A declined
-- charge leaves an ABORTED payment under its order id; after the card is
-- replaced the period is retried under the same order id.  Where Toss takes
-- an ABORTED order id again, that attempt is charged; where it refuses it
-- (DUPLICATED_ORDER_ID) and its lookup confirms ABORTED, the next generation
-- (a new order id for the same period) is made and charged.  Either way the
-- period is charged exactly once.
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'ro-abort-reuse');
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'ro-abort-refuse');
\set ak `$TB_TEST/emu authkey ro-abort-reuse 4111111111110002`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-abort-reuse', :'ak');
\set ak `$TB_TEST/emu authkey ro-abort-refuse 4111111111110002`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-abort-refuse', :'ak');
SELECT id AS s_reuse FROM toss_billing.create_subscription('ro-abort-reuse', :plan) \gset
SELECT id AS s_refuse FROM toss_billing.create_subscription('ro-abort-refuse', :plan) \gset
CALL toss_billing.run_due() \gset
SELECT :claimed AS claimed, :failed AS declined;
\set ak `$TB_TEST/emu authkey ro-abort-reuse 4906251234123456`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-abort-reuse', :'ak');
\set ak `$TB_TEST/emu authkey ro-abort-refuse 4906251234123456`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-abort-refuse', :'ak');
-- Toss takes an ABORTED order id again (the emulator's default)
\set ignore `curl -sf -X POST -H 'Content-Type: application/json' -d '{"abortedOrderIdReuse":true}' $EMULATOR_URL/__emulator/config`
SELECT count(*) AS pending FROM toss_billing.payments WHERE subscription_id = :s_reuse AND state = 'pending';
SELECT toss_billing.card_replaced('ro-abort-reuse');
CALL toss_billing.run_due() \gset
SELECT "order", state, generation, attempts FROM pg_temp.orders('ro-abort-reuse');
-- Toss refuses it
\set ignore `curl -sf -X POST -H 'Content-Type: application/json' -d '{"abortedOrderIdReuse":false}' $EMULATOR_URL/__emulator/config`
SELECT toss_billing.card_replaced('ro-abort-refuse');
CALL toss_billing.run_due() \gset
CALL toss_billing.run_due() \gset
SELECT "order", state, generation, attempts FROM pg_temp.orders('ro-abort-refuse');
SELECT count(*) AS live_orders_of_the_period, count(DISTINCT obligation) AS obligations
  FROM toss_billing.payments WHERE subscription_id = :s_refuse AND state <> 'failed';
\set ignore `curl -sf -X POST -H 'Content-Type: application/json' -d '{"abortedOrderIdReuse":true}' $EMULATOR_URL/__emulator/config`
\set ledger `curl -sf $EMULATOR_URL/__emulator/ledger`
TRUNCATE emu; INSERT INTO emu VALUES (:'ledger');
SELECT * FROM pg_temp.charges_at_toss('ro-abort');
SELECT customer_key, status FROM pg_temp.subs('ro-abort');

-- The runner's own statements never resolve a name through the caller's
-- search_path (issue 9): a session whose search_path finds pg_temp first
-- plants domains named like the types the runner's SQL casts to, whose
-- checks trip a wire; the runner records its outcomes in this very backend.
CREATE TEMP TABLE tripped (what text);
CREATE FUNCTION pg_temp.tripwire(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pg_temp.tripped VALUES (what);
    RETURN true;
END;
$$;
CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (pg_temp.tripwire('jsonb'));
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.tripwire('text'));
CREATE DOMAIN pg_temp.bigint AS pg_catalog.int8 CHECK (pg_temp.tripwire('bigint'));
CREATE DOMAIN pg_temp.bytea AS pg_catalog.bytea CHECK (pg_temp.tripwire('bytea'));
CREATE DOMAIN pg_temp.interval AS pg_catalog.interval CHECK (pg_temp.tripwire('interval'));
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'ro-path');
\set ak `$TB_TEST/emu authkey ro-path`
SELECT status FROM toss_billing.toss_issue_billing_key('ro-path', :'ak');
SELECT id AS s_path FROM toss_billing.create_subscription('ro-path', :plan) \gset
SET toss_billing.outcome_recorder = off;
SET search_path = pg_temp;
CALL toss_billing.run_due() \gset
RESET search_path;
RESET toss_billing.outcome_recorder;
SELECT :claimed AS claimed, :done AS done;
SELECT count(*) AS tripwires_run FROM pg_temp.tripped;
SELECT "order", state FROM pg_temp.orders('ro-path');

\c toss_regress
DROP DATABASE toss_orders;
