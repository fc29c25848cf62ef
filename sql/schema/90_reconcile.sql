-- 90_reconcile: comparing the ledger with Toss's transactions, the
-- discrepancies found, and the payments recovered from Toss.

-- @data

-- What reconcile (or a webhook) found where the ledger and Toss disagree.
-- At most one open row per (order_id, kind): running again adds nothing.
CREATE TABLE toss_billing.discrepancies (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detected_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    kind          text NOT NULL
                  CONSTRAINT discrepancies_kind_check
                  CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['missing_in_ledger', 'state_mismatch', 'amount_mismatch',
                                                                'payment_key_mismatch', 'missing_at_toss', 'cancel_missing',
                                                                'cancel_amount_mismatch', 'duplicate_charge',
                                                                'unverified_answer', 'foreign_payment'])),
    order_id      text NOT NULL,
    payment_key   text,
    ledger_state  text,
    toss_status   text,
    ledger_amount bigint,
    toss_amount   bigint,
    detail        jsonb,
    resolved_at   timestamptz
);
CREATE UNIQUE INDEX discrepancies_one_open ON toss_billing.discrepancies (order_id, kind)
    WHERE resolved_at IS NULL;
CREATE INDEX discrepancies_detected_at ON toss_billing.discrepancies (detected_at);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.discrepancies', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.discrepancies_id_seq', '');

-- @code

CREATE OR REPLACE VIEW toss_billing.open_discrepancies AS
SELECT d.id, d.detected_at, d.kind, d.order_id, d.payment_key, d.ledger_state, d.toss_status,
       d.ledger_amount, d.toss_amount, d.detail
  FROM toss_billing.discrepancies d
 WHERE d.resolved_at IS NULL;

-- Opens a discrepancy unless one of that kind is already open for the
-- order; returns whether it opened one.
CREATE OR REPLACE FUNCTION toss_billing._open_discrepancy(
    kind text,
    order_id text,
    payment_key text,
    ledger_state text,
    toss_status text,
    ledger_amount bigint,
    toss_amount bigint,
    detail jsonb)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO toss_billing.discrepancies AS d (kind, order_id, payment_key, ledger_state, toss_status, ledger_amount,
                                                 toss_amount, detail)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (order_id, kind) WHERE resolved_at IS NULL DO NOTHING;
    RETURN FOUND;
END;
$$;

-- GET /v1/transactions over a window, every page: one item per approval and
-- one per cancel.
CREATE OR REPLACE FUNCTION toss_billing._toss_transactions(start_at timestamptz, end_at timestamptz, merchant text DEFAULT 'default')
RETURNS SETOF jsonb
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_transactions';

-- Inserts a payment Toss approved that the ledger lacks (state done,
-- recovered, no billing key), from a transaction item and, when the item
-- carries it (key "payment"), Toss's Payment.  The customer is the one
-- with Toss's customerKey, else NULL.  An order id of this installation's
-- obligations links the row to what it pays and settles it as the runner's
-- outcome would have:
--   sub<id>-p<n>-a<k>-<tag>  a subscription period: payment_recovered, then
--                            what payment_succeeded does (the period paid,
--                            its invoice paid)
--   inv<id>-a<k>-<tag>       an invoice charged under orders of its own (a
--                            proration, one-off items, a final invoice):
--                            payment_recovered, then the invoice paid
--                            (invoice_paid)
-- -- only if the amount is what the obligation charges (the period's or
-- the invoice's amount_due; else amount_mismatch) and no other order of the
-- obligation is live or paid (else duplicate_charge and an alert): then the
-- row is recorded as ours but not linked.  tb<tag>-... (toss_charge's own
-- order ids) is recorded as a charge.  Returns the new row's id, or NULL
-- when it cannot be stored (a missing_in_ledger discrepancy says why).
CREATE OR REPLACE FUNCTION toss_billing._recover_payment(item jsonb, merchant text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_pay jsonb := CASE WHEN pg_catalog.jsonb_typeof(_recover_payment.item->'payment') = 'object'
                        THEN _recover_payment.item->'payment' END;
    v_order text := _recover_payment.item->>'orderId';
    v_key text := _recover_payment.item->>'paymentKey';
    v_amount bigint := COALESCE(toss_billing._json_int(v_pay->'totalAmount'),
                                pg_catalog.abs(toss_billing._json_int(_recover_payment.item->'amount')));
    v_tag text := toss_billing._order_tag();
    v_customer bigint;
    v_m text[];
    v_mi text[];
    v_sub toss_billing.subscriptions;
    v_inv toss_billing.invoices;
    v_linked boolean := false;
    v_obligation text;
    v_generation integer;
    v_duplicate bigint;
    v_order_name text;
    v_price bigint;
    v_invoice bigint;
    v_verdict text;
    v_outcome toss_billing._outcome;
    v_id bigint;
BEGIN
    IF v_order IS NULL OR v_order !~ '^[A-Za-z0-9_-]{6,64}$' OR v_amount IS NULL OR v_amount < 100 THEN
        PERFORM toss_billing._open_discrepancy('missing_in_ledger', COALESCE(v_order, '(none)'), v_key, NULL,
                                               _recover_payment.item->>'status', NULL, v_amount,
                                               pg_catalog.jsonb_build_object(
                                                   'transaction_key', _recover_payment.item->>'transactionKey',
                                                   'customer_key', _recover_payment.item->>'customerKey',
                                                   'why', 'the order id or amount cannot be stored in the ledger'));
        RETURN NULL;
    END IF;
    SELECT c.id INTO v_customer FROM toss_billing.customers c
     WHERE c.customer_key = _recover_payment.item->>'customerKey';

    -- whose money is it?  This installation's order ids end with its tag
    -- (subscription periods: sub<id>-p<n>-a<k>-<tag>; invoices of their own:
    -- inv<id>-a<k>-<tag>; toss_charge's default: tb<tag>-<uuid>).  Anything
    -- else under the merchant was made by another database or at Toss
    -- directly: not revenue of this ledger.
    v_m := pg_catalog.regexp_match(v_order, '^sub([0-9]{1,18})-p([0-9]{1,9})-a([0-9]{1,9})-([a-z0-9]{8})$');
    IF v_m[4] IS DISTINCT FROM v_tag THEN
        v_m := NULL;
    END IF;
    v_mi := pg_catalog.regexp_match(v_order, '^inv([0-9]{1,18})-a([0-9]{1,9})-([a-z0-9]{8})$');
    IF v_mi[3] IS DISTINCT FROM v_tag THEN
        v_mi := NULL;
    END IF;
    IF v_m IS NULL AND v_mi IS NULL AND NOT pg_catalog.starts_with(v_order, 'tb' || v_tag || '-') THEN
        PERFORM toss_billing._open_discrepancy('foreign_payment', v_order, v_key, NULL,
                                               _recover_payment.item->>'status', NULL, v_amount,
                                               pg_catalog.jsonb_build_object(
                                                   'transaction_key', _recover_payment.item->>'transactionKey',
                                                   'customer_key', _recover_payment.item->>'customerKey',
                                                   'customer_id', v_customer,
                                                   'hint', 'Toss holds a payment under this merchant that this installation did not make (another database, or Toss''s console). It is not recorded as revenue here.'));
        RETURN NULL;
    END IF;
    IF v_pay IS NOT NULL THEN
        -- the Payment must answer the transaction Toss listed: its order
        -- id, its amount and its merchant
        v_verdict := toss_billing._verify_payment(v_pay, v_order,
                                                  COALESCE(pg_catalog.abs(toss_billing._json_int(_recover_payment.item->'amount')),
                                                           v_amount),
                                                  _recover_payment.item->>'mId');
        IF v_verdict <> 'approved' THEN
            PERFORM toss_billing._open_discrepancy('unverified_answer', v_order, v_key, NULL,
                                                   _recover_payment.item->>'status', NULL, v_amount,
                                                   pg_catalog.jsonb_build_object(
                                                       'transaction_key', _recover_payment.item->>'transactionKey',
                                                       'source', 'reconcile', 'why', v_verdict));
            RETURN NULL;
        END IF;
    END IF;

    IF v_m IS NOT NULL THEN
        SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = v_m[1]::bigint FOR UPDATE;
        IF FOUND AND (v_customer IS NULL OR v_customer = v_sub.customer_id) THEN
            v_customer := v_sub.customer_id;
            v_linked := true;
            v_obligation := pg_catalog.format('subscription:%s:%s', v_sub.id, v_m[2]);
            v_generation := v_m[3]::integer;
            SELECT pl.name, COALESCE(v_sub.amount_override, pl.amount) * v_sub.quantity INTO v_order_name, v_price
              FROM toss_billing.plans pl WHERE pl.id = v_sub.plan_id;
            -- the period's price is its invoice's amount, once it is finalised
            SELECT i.id INTO v_invoice
              FROM toss_billing.invoices i
             WHERE i.subscription_id = v_sub.id AND i.kind = 'period' AND i.period_number = v_m[2]::integer
               AND i.status <> 'draft';
            IF v_invoice IS NOT NULL THEN
                SELECT i.amount_due INTO v_price FROM toss_billing.invoices i WHERE i.id = v_invoice;
            END IF;
            -- it pays the period only if it is the period's price: anything
            -- else is recorded as ours but settles nothing
            IF v_price IS DISTINCT FROM v_amount THEN
                v_linked := false;
                PERFORM toss_billing._open_discrepancy('amount_mismatch', v_order, v_key, NULL,
                                                       _recover_payment.item->>'status', v_price, v_amount,
                                                       pg_catalog.jsonb_build_object(
                                                           'transaction_key', _recover_payment.item->>'transactionKey',
                                                           'subscription_id', v_sub.id, 'period_number', v_m[2]::integer,
                                                           'source', 'reconcile',
                                                           'hint', 'Toss approved another amount than the subscription''s price under the period''s order id; it is recorded, but the period is not settled by it.'));
            END IF;
        END IF;
    ELSIF v_mi IS NOT NULL THEN
        -- an invoice of its own: the invoice is what the order settles, so it
        -- is locked, as _record_outcomes locks it for its orders' outcomes
        SELECT * INTO v_inv FROM toss_billing.invoices i WHERE i.id = v_mi[1]::bigint FOR UPDATE;
        IF FOUND AND v_inv.kind <> 'period' AND (v_customer IS NULL OR v_customer = v_inv.customer_id) THEN
            SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = v_inv.subscription_id;
            v_customer := v_inv.customer_id;
            v_linked := true;
            v_obligation := 'invoice:' || v_inv.id;
            v_generation := v_mi[2]::integer;
            v_order_name := v_inv.description;
            v_invoice := v_inv.id;
            -- it pays the invoice only if it is what the invoice charges
            IF v_inv.amount_due IS DISTINCT FROM v_amount THEN
                v_linked := false;
                PERFORM toss_billing._open_discrepancy('amount_mismatch', v_order, v_key, NULL,
                                                       _recover_payment.item->>'status', v_inv.amount_due, v_amount,
                                                       pg_catalog.jsonb_build_object(
                                                           'transaction_key', _recover_payment.item->>'transactionKey',
                                                           'subscription_id', v_sub.id, 'invoice_id', v_inv.id,
                                                           'invoice_status', v_inv.status, 'source', 'reconcile',
                                                           'hint', 'Toss approved another amount than the invoice''s amount due under the invoice''s order id; it is recorded, but the invoice is not settled by it.'));
            END IF;
        END IF;
    END IF;
    IF v_obligation IS NOT NULL THEN
        -- another order of the obligation live or paid: this is a second charge
        SELECT p.id INTO v_duplicate FROM toss_billing.payments p
         WHERE p.obligation = v_obligation
           AND p.state = ANY (ARRAY['pending', 'in_flight', 'unknown', 'done'])
         LIMIT 1;
        IF FOUND THEN
            v_linked := false;
        END IF;
    END IF;

    INSERT INTO toss_billing.payments AS p
           (order_id, obligation, customer_id, billing_key_id, merchant, state, order_name, amount,
            toss_status, payment_key, total_amount, balance_amount, supplied_amount, vat, requested_at, approved_at,
            response, requested_by, recovered, subscription_id, period_number, generation, invoice_id)
    VALUES (v_order,
            CASE WHEN v_linked THEN v_obligation
                 WHEN v_m IS NULL AND v_mi IS NULL THEN 'charge:' || v_order
                 ELSE 'recovered:' || v_order END,
            v_customer, NULL, _recover_payment.merchant, 'done',
            pg_catalog.left(COALESCE(NULLIF(v_pay->>'orderName', ''), v_order_name, 'recovered from toss transactions'), 100),
            v_amount, COALESCE(v_pay->>'status', _recover_payment.item->>'status'), v_key, v_amount,
            COALESCE(toss_billing._json_int(v_pay->'balanceAmount'), v_amount),
            toss_billing._json_int(v_pay->'suppliedAmount'), toss_billing._json_int(v_pay->'vat'),
            toss_billing._json_time(v_pay->'requestedAt'),
            COALESCE(toss_billing._json_time(v_pay->'approvedAt'), toss_billing._json_time(_recover_payment.item->'transactionAt')),
            v_pay, SESSION_USER, true,
            CASE WHEN v_linked AND v_m IS NOT NULL THEN v_sub.id END,
            CASE WHEN v_linked AND v_m IS NOT NULL THEN v_m[2]::integer END,
            CASE WHEN v_linked THEN v_generation ELSE 1 END, CASE WHEN v_linked THEN v_invoice END)
    ON CONFLICT DO NOTHING
    RETURNING p.id INTO v_id;
    IF v_id IS NULL THEN
        RETURN NULL;
    END IF;
    -- the POST that made it, as far as the ledger can tell: Toss's
    -- transaction item (with its customerKey) is its answer
    INSERT INTO toss_billing.attempts (payment_id, customer_id, attempt_number, order_id, idempotency_key, state,
                                       response, requested_by)
    VALUES (v_id, v_customer, 1, v_order,
            'recovered:' || COALESCE(_recover_payment.item->>'transactionKey', pg_catalog.gen_random_uuid()::text),
            'done', pg_catalog.convert_to(_recover_payment.item::text, 'UTF8'), SESSION_USER);
    IF v_pay IS NOT NULL THEN
        PERFORM toss_billing._sync_cancels(v_id, v_pay);
    END IF;

    IF v_linked THEN
        PERFORM toss_billing._event(v_sub.id, 'payment_recovered', v_sub.status, v_sub.status,
                                    'payment found at toss, missing from the ledger',
                                    toss_billing.subscription_now(v_sub.id),
                                    CASE WHEN v_m IS NOT NULL
                                         THEN pg_catalog.jsonb_build_object('period_number', v_m[2]::integer,
                                                                            'attempt_number', v_generation)
                                         ELSE pg_catalog.jsonb_build_object('invoice_id', v_invoice,
                                                                            'attempt_number', v_generation) END
                                    || pg_catalog.jsonb_build_object('amount', v_amount,
                                                                     'transaction_key', _recover_payment.item->>'transactionKey'),
                                    v_id);
        -- what the runner's outcome of the order does (_record_outcomes)
        v_outcome := ROW(NULL, v_id, CASE WHEN v_m IS NOT NULL THEN v_sub.id END,
                         CASE WHEN v_m IS NOT NULL THEN v_m[2]::integer END, 1, v_amount,
                         'missing', 'done', NULL, NULL, NULL, NULL, false)::toss_billing._outcome;
        IF v_m IS NOT NULL THEN
            PERFORM toss_billing._settle_paid(ARRAY[v_outcome]);
        END IF;
        PERFORM toss_billing._settle_invoices(ARRAY[v_outcome]);
        IF v_m IS NOT NULL THEN
            PERFORM toss_billing._apply_transitions(ARRAY[v_sub.id]);
        END IF;
    ELSIF v_duplicate IS NOT NULL THEN
        PERFORM toss_billing._open_discrepancy('duplicate_charge', v_order, v_key, 'done', _recover_payment.item->>'status',
                                               v_amount, v_amount,
                                               pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                                                                             'subscription_id', v_sub.id,
                                                                             'period_number', v_m[2]::integer,
                                                                             'invoice_id', v_inv.id,
                                                                             'other_payment_id', v_duplicate,
                                                                             'hint', CASE WHEN v_m IS NOT NULL
                                                                                 THEN 'The period was charged twice; refund one of them with toss_billing.toss_cancel().'
                                                                                 ELSE 'The invoice was charged twice; refund one of them with toss_billing.toss_cancel().' END)));
        PERFORM toss_billing._event(v_sub.id, 'alert', v_sub.status, v_sub.status,
                                    CASE WHEN v_m IS NOT NULL THEN 'a second payment for a period was found at toss'
                                         ELSE 'a second payment for an invoice was found at toss' END,
                                    toss_billing.subscription_now(v_sub.id),
                                    pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                                        'period_number', v_m[2]::integer, 'invoice_id', v_inv.id, 'order_id', v_order,
                                        'other_payment_id', v_duplicate, 'amount', v_amount)),
                                    v_id);
    END IF;
    RETURN v_id;
END;
$$;

-- GET /v1/transactions items as rows: an approval has status DONE, a
-- cancel CANCELED or PARTIAL_CANCELED (the payment's status after it);
-- amounts are taken as positive.
CREATE OR REPLACE FUNCTION toss_billing._transaction_items(items jsonb)
RETURNS TABLE(n bigint, item jsonb, order_id text, payment_key text, transaction_key text, status text,
              amount bigint, is_approval boolean, is_cancel boolean)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x.n, x.value, x.value->>'orderId', x.value->>'paymentKey', x.value->>'transactionKey', x.value->>'status',
           pg_catalog.abs(toss_billing._json_int(x.value->'amount')),
           x.value->>'status' = 'DONE', x.value->>'status' = ANY (ARRAY['CANCELED', 'PARTIAL_CANCELED'])
      FROM pg_catalog.jsonb_array_elements($1) WITH ORDINALITY AS x(value, n)
     WHERE pg_catalog.jsonb_typeof(x.value) = 'object';
$$;

-- The core of reconcile: compares Toss's transactions of a window (items:
-- a JSON array of GET /v1/transactions items; an item may carry Toss's
-- Payment under the key "payment") with the ledger of a merchant.
--   approval (status DONE) the ledger lacks -> inserted, recovered
--   approval of an unknown attempt, with its Payment -> resolved (done)
--   approval of a failed or unknown attempt -> state_mismatch
--   approval of another amount / payment key -> amount_mismatch / payment_key_mismatch
--   cancel (CANCELED, PARTIAL_CANCELED) the ledger lacks -> recorded from
--     its Payment if the item carries it, else cancel_missing;
--     of another amount -> cancel_amount_mismatch; of a payment the
--     ledger lacks -> missing_in_ledger
--   done payment of the window the list lacks -> missing_at_toss (not
--     for payments approved in the last minute, which Toss may list late,
--     nor within a second of the window's ends)
-- At most one open discrepancy per (order id, kind); an open one whose
-- evidence this run looked at again and found consistent is resolved.
-- Returns the orders checked, the payments recovered and the discrepancies
-- opened by this run.
CREATE OR REPLACE FUNCTION toss_billing._reconcile_items(items jsonb, from_at timestamptz, to_at timestamptz,
                                              merchant text DEFAULT 'default')
RETURNS TABLE(checked integer, recovered integer, discrepancies integer)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_items jsonb := COALESCE(_reconcile_items.items, '[]'::jsonb);
    v_merchant text := _reconcile_items.merchant;
    v_recovered integer := 0;
    v_opened integer := 0;
    v_before bigint;
    v_found text[] := '{}';           -- order_id || E'\n' || kind of what this run detected
    v_item_orders text[];
    v_approval_orders text[];
    v_cancel_keys text[];
    v_window_orders text[];
    r record;
    v_p toss_billing.payments;
    v_c toss_billing.cancels;
BEGIN
    IF _reconcile_items.from_at IS NULL OR _reconcile_items.to_at IS NULL OR v_merchant IS NULL THEN
        RAISE EXCEPTION 'from_at, to_at and merchant must not be null' USING ERRCODE = '22004';
    END IF;
    IF _reconcile_items.to_at <= _reconcile_items.from_at THEN
        RAISE EXCEPTION 'to_at must be later than from_at' USING ERRCODE = '22023';
    END IF;
    IF pg_catalog.jsonb_typeof(v_items) <> 'array' THEN
        RAISE EXCEPTION 'items must be a JSON array' USING ERRCODE = '22023';
    END IF;
    -- one reconciliation at a time
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('toss_billing.reconcile'));

    -- approvals the ledger lacks, in the order Toss made them
    FOR r IN SELECT q.* FROM (SELECT DISTINCT ON (i.order_id) i.*
                                FROM toss_billing._transaction_items(v_items) i
                               WHERE i.is_approval
                                 AND NOT EXISTS (SELECT FROM toss_billing.payments p WHERE p.order_id = i.order_id)
                               ORDER BY i.order_id, i.n) q
              ORDER BY q.item->>'transactionAt', q.n
    LOOP
        -- what _recover_payment opens (foreign_payment, missing_in_ledger,
        -- unverified_answer, amount_mismatch, duplicate_charge) is this run's too
        v_before := COALESCE((SELECT pg_catalog.max(d.id) FROM toss_billing.discrepancies d), 0);
        IF toss_billing._recover_payment(r.item, v_merchant) IS NOT NULL THEN
            v_recovered := v_recovered + 1;
        ELSIF NOT EXISTS (SELECT FROM toss_billing.payments p WHERE p.order_id = r.order_id) THEN
            v_found := v_found || (COALESCE(r.order_id, '(none)') || E'\n' || 'missing_in_ledger');
        END IF;
        v_opened := v_opened + (SELECT pg_catalog.count(*) FROM toss_billing.discrepancies d
                                 WHERE d.id > v_before AND d.order_id = COALESCE(r.order_id, '(none)'))::integer;
    END LOOP;

    -- approvals the ledger has
    FOR r IN SELECT DISTINCT ON (i.order_id) i.*
               FROM toss_billing._transaction_items(v_items) i
              WHERE i.is_approval AND i.order_id IS NOT NULL
              ORDER BY i.order_id, i.n
    LOOP
        SELECT * INTO v_p FROM toss_billing.payments p WHERE p.order_id = r.order_id;
        CONTINUE WHEN NOT FOUND;
        -- an approval of an order the ledger has not paid: its Payment, verified
        -- against the order, makes it paid (a lost or lying answer, a lag)
        IF v_p.state <> 'done' AND pg_catalog.jsonb_typeof(r.item->'payment') = 'object' THEN
            PERFORM toss_billing._apply_payment_state(r.item->'payment');
            SELECT * INTO v_p FROM toss_billing.payments p WHERE p.id = v_p.id;
        END IF;
        IF v_p.state = ANY (ARRAY['failed', 'unknown', 'pending']) THEN
            v_found := v_found || (v_p.order_id || E'\n' || 'state_mismatch');
            IF toss_billing._open_discrepancy('state_mismatch', v_p.order_id, r.payment_key, v_p.state, r.status,
                                              v_p.amount, r.amount,
                                              pg_catalog.jsonb_build_object(
                                                  'transaction_key', r.transaction_key,
                                                  'transaction_at', r.item->>'transactionAt',
                                                  'failure_code', v_p.failure_code,
                                                  'hint', CASE WHEN v_p.hold_reason IS NOT NULL
                                                      THEN 'Toss lists an approval, but its Payment did not match the order; see the unverified_answer discrepancy.'
                                                      WHEN v_p.state = 'unknown' THEN 'Toss approved it; the runner resolves the attempt by order id.'
                                                      ELSE 'Toss approved a charge the ledger records as not paid, and its Payment could not be fetched; look it up at Toss.' END)) THEN
                v_opened := v_opened + 1;
            END IF;
        ELSIF v_p.state = 'done' THEN
            IF v_p.payment_key IS NOT NULL AND r.payment_key IS DISTINCT FROM v_p.payment_key THEN
                v_found := v_found || (v_p.order_id || E'\n' || 'payment_key_mismatch');
                IF toss_billing._open_discrepancy('payment_key_mismatch', v_p.order_id, r.payment_key, v_p.state, r.status,
                                                  v_p.amount, r.amount,
                                                  pg_catalog.jsonb_build_object('ledger_payment_key', v_p.payment_key,
                                                                                'transaction_key', r.transaction_key)) THEN
                    v_opened := v_opened + 1;
                END IF;
            END IF;
            IF COALESCE(v_p.total_amount, v_p.amount) IS DISTINCT FROM r.amount THEN
                v_found := v_found || (v_p.order_id || E'\n' || 'amount_mismatch');
                IF toss_billing._open_discrepancy('amount_mismatch', v_p.order_id, r.payment_key, v_p.state, r.status,
                                                  COALESCE(v_p.total_amount, v_p.amount), r.amount,
                                                  pg_catalog.jsonb_build_object('transaction_key', r.transaction_key,
                                                                                'requested_amount', v_p.amount)) THEN
                    v_opened := v_opened + 1;
                END IF;
            END IF;
        END IF;
    END LOOP;

    -- cancels
    FOR r IN SELECT DISTINCT ON (i.transaction_key) i.*
               FROM toss_billing._transaction_items(v_items) i
              WHERE i.is_cancel
              ORDER BY i.transaction_key, i.n
    LOOP
        SELECT * INTO v_p FROM toss_billing.payments p WHERE p.order_id = r.order_id;
        IF NOT FOUND THEN
            SELECT * INTO v_p FROM toss_billing.payments p WHERE p.payment_key = r.payment_key;
        END IF;
        IF NOT FOUND THEN
            v_found := v_found || (COALESCE(r.order_id, '(none)') || E'\n' || 'missing_in_ledger');
            IF toss_billing._open_discrepancy('missing_in_ledger', COALESCE(r.order_id, '(none)'), r.payment_key, NULL,
                                              r.status, NULL, r.amount,
                                              pg_catalog.jsonb_build_object('transaction_key', r.transaction_key,
                                                                            'why', 'a cancel of a payment the ledger lacks')) THEN
                v_opened := v_opened + 1;
            END IF;
            CONTINUE;
        END IF;
        SELECT * INTO v_c FROM toss_billing.cancels c WHERE c.transaction_key = r.transaction_key;
        IF NOT FOUND AND pg_catalog.jsonb_typeof(r.item->'payment') = 'object' THEN
            PERFORM toss_billing._apply_payment_state(r.item->'payment');
            SELECT * INTO v_c FROM toss_billing.cancels c WHERE c.transaction_key = r.transaction_key;
        END IF;
        IF NOT FOUND THEN
            v_found := v_found || (v_p.order_id || E'\n' || 'cancel_missing');
            IF toss_billing._open_discrepancy('cancel_missing', v_p.order_id, r.payment_key, v_p.state, r.status,
                                              NULL, r.amount,
                                              pg_catalog.jsonb_build_object('transaction_key', r.transaction_key,
                                                                            'transaction_at', r.item->>'transactionAt')) THEN
                v_opened := v_opened + 1;
            END IF;
        ELSIF v_c.canceled_amount IS DISTINCT FROM r.amount THEN
            v_found := v_found || (v_p.order_id || E'\n' || 'cancel_amount_mismatch');
            IF toss_billing._open_discrepancy('cancel_amount_mismatch', v_p.order_id, r.payment_key, v_c.state,
                                              r.status, v_c.canceled_amount, r.amount,
                                              pg_catalog.jsonb_build_object('transaction_key', r.transaction_key,
                                                                            'cancel_id', v_c.id)) THEN
                v_opened := v_opened + 1;
            END IF;
        END IF;
    END LOOP;

    -- done payments of the window that Toss does not list
    SELECT pg_catalog.array_agg(DISTINCT i.order_id) FILTER (WHERE i.order_id IS NOT NULL),
           pg_catalog.array_agg(DISTINCT i.order_id) FILTER (WHERE i.is_approval AND i.order_id IS NOT NULL),
           pg_catalog.array_agg(DISTINCT i.transaction_key) FILTER (WHERE i.is_cancel AND i.transaction_key IS NOT NULL)
      INTO v_item_orders, v_approval_orders, v_cancel_keys
      FROM toss_billing._transaction_items(v_items) i;
    v_item_orders := COALESCE(v_item_orders, '{}');
    v_approval_orders := COALESCE(v_approval_orders, '{}');
    v_cancel_keys := COALESCE(v_cancel_keys, '{}');
    SELECT COALESCE(pg_catalog.array_agg(p.order_id), '{}') INTO v_window_orders
      FROM toss_billing.payments p
     WHERE p.state = 'done' AND p.merchant = v_merchant
       AND COALESCE(p.approved_at, p.created_at) >= _reconcile_items.from_at + '1 second'::interval
       AND COALESCE(p.approved_at, p.created_at) < _reconcile_items.to_at - '1 second'::interval
       AND COALESCE(p.approved_at, p.created_at) < pg_catalog.now() - '1 minute'::interval
       AND p.created_at < pg_catalog.now() - '1 minute'::interval;
    FOR r IN SELECT p.*
               FROM toss_billing.payments p
              WHERE p.order_id = ANY (v_window_orders) AND p.order_id <> ALL (v_approval_orders)
              ORDER BY p.id
    LOOP
        v_found := v_found || (r.order_id || E'\n' || 'missing_at_toss');
        IF toss_billing._open_discrepancy('missing_at_toss', r.order_id, r.payment_key, r.state, NULL,
                                          COALESCE(r.total_amount, r.amount), NULL,
                                          pg_catalog.jsonb_build_object('approved_at', r.approved_at,
                                                                        'recovered', r.recovered,
                                                                        'hint', 'Toss lists no approval of this order in the window; look it up at Toss.')) THEN
            v_opened := v_opened + 1;
        END IF;
    END LOOP;

    -- open discrepancies whose evidence was looked at again and is consistent
    -- now (not the amount_mismatch of a recovered payment: the ledger row
    -- agrees with Toss, but Toss approved another amount than its
    -- obligation charges, which only a person can settle)
    UPDATE toss_billing.discrepancies d
       SET resolved_at = pg_catalog.now(),
           detail = COALESCE(d.detail, '{}'::jsonb) || pg_catalog.jsonb_build_object('resolved_by', 'reconcile')
     WHERE d.resolved_at IS NULL
       AND (d.order_id || E'\n' || d.kind) <> ALL (v_found)
       AND ((d.kind = ANY (ARRAY['state_mismatch', 'amount_mismatch', 'payment_key_mismatch', 'missing_in_ledger'])
             AND d.order_id = ANY (v_item_orders)
             AND NOT (d.kind = 'amount_mismatch' AND d.detail->>'source' IS NOT DISTINCT FROM 'reconcile'))
            OR (d.kind = 'missing_at_toss' AND (d.order_id = ANY (v_approval_orders) OR d.order_id = ANY (v_window_orders)))
            OR (d.kind = ANY (ARRAY['cancel_missing', 'cancel_amount_mismatch'])
                AND d.detail->>'transaction_key' = ANY (v_cancel_keys)));

    checked := (SELECT pg_catalog.count(*) FROM (SELECT unnest(v_item_orders) UNION SELECT unnest(v_window_orders)) o);
    recovered := v_recovered;
    discrepancies := v_opened;
    -- the run log: this window of this merchant was compared (reconcile_coverage)
    PERFORM toss_billing._run_reconciled(_reconcile_items.from_at, _reconcile_items.to_at, v_merchant,
                                         CASE WHEN pg_catalog.jsonb_typeof(_reconcile_items.items) = 'array'
                                              THEN pg_catalog.jsonb_array_length(_reconcile_items.items) END,
                                         checked, recovered, discrepancies);
    RETURN NEXT;
END;
$$;

-- Compares Toss's transactions of a window with the ledger of a merchant
-- and repairs what it can: GET /v1/transactions over [from_at, to_at)
-- (_toss_transactions), Toss's Payment for every order the items alone
-- cannot settle (missing from the ledger, an unknown attempt, a cancel the
-- ledger lacks; a failed lookup leaves the order to be flagged), then
-- _reconcile_items.  Idempotent: run it again, or on a schedule, over
-- overlapping windows.
CREATE OR REPLACE FUNCTION toss_billing.reconcile(from_at timestamptz, to_at timestamptz, merchant text DEFAULT 'default')
RETURNS TABLE(checked integer, recovered integer, discrepancies integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_items jsonb;
    v_fetched jsonb := '{}';
    v_pay jsonb;
    r record;
BEGIN
    IF reconcile.from_at IS NULL OR reconcile.to_at IS NULL OR reconcile.merchant IS NULL THEN
        RAISE EXCEPTION 'from_at, to_at and merchant must not be null' USING ERRCODE = '22004';
    END IF;
    IF NOT pg_catalog.isfinite(reconcile.from_at) OR NOT pg_catalog.isfinite(reconcile.to_at) THEN
        RAISE EXCEPTION 'from_at and to_at must be finite times' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('The window is [%s, %s).', reconcile.from_at, reconcile.to_at);
    END IF;
    IF reconcile.to_at <= reconcile.from_at THEN
        RAISE EXCEPTION 'to_at must be later than from_at' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('The window is [%s, %s).', reconcile.from_at, reconcile.to_at);
    END IF;
    SELECT COALESCE(pg_catalog.jsonb_agg(t.item), '[]'::jsonb) INTO v_items
      FROM toss_billing._toss_transactions(reconcile.from_at, reconcile.to_at, reconcile.merchant) AS t(item);

    FOR r IN SELECT DISTINCT i.value->>'paymentKey' AS payment_key
               FROM pg_catalog.jsonb_array_elements(v_items) i
              WHERE i.value->>'paymentKey' IS NOT NULL
                AND ((i.value->>'status' = 'DONE'
                      AND NOT EXISTS (SELECT FROM toss_billing.payments p
                                       WHERE p.order_id = i.value->>'orderId' AND p.state = 'done'))
                     OR (i.value->>'status' = ANY (ARRAY['CANCELED', 'PARTIAL_CANCELED'])
                         AND NOT EXISTS (SELECT FROM toss_billing.cancels c
                                          WHERE c.transaction_key = i.value->>'transactionKey')))
    LOOP
        BEGIN
            v_pay := toss_billing._fetch_payment(r.payment_key, reconcile.merchant);
        EXCEPTION WHEN OTHERS THEN
            v_pay := NULL;
        END;
        IF pg_catalog.jsonb_typeof(v_pay) = 'object' THEN
            v_fetched := v_fetched || pg_catalog.jsonb_build_object(r.payment_key, v_pay);
        END IF;
    END LOOP;
    IF v_fetched <> '{}'::jsonb THEN
        SELECT pg_catalog.jsonb_agg(CASE WHEN v_fetched ? (i.value->>'paymentKey')
                                         THEN i.value || pg_catalog.jsonb_build_object('payment', v_fetched->(i.value->>'paymentKey'))
                                         ELSE i.value END ORDER BY i.n)
          INTO v_items
          FROM pg_catalog.jsonb_array_elements(v_items) WITH ORDINALITY AS i(value, n);
    END IF;
    RETURN QUERY SELECT * FROM toss_billing._reconcile_items(v_items, reconcile.from_at, reconcile.to_at, reconcile.merchant);
END;
$$;

-- Marks a discrepancy resolved by hand, with an optional note.  Resolving
-- one that is resolved already changes nothing.  Resolving an
-- unverified_answer releases its order's hold: an order still owed is
-- charged again (the runner, or the same toss_charge call), under its own
-- order id.
CREATE OR REPLACE FUNCTION toss_billing.resolve_discrepancy(discrepancy_id bigint, note text DEFAULT NULL)
RETURNS toss_billing.discrepancies
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_d toss_billing.discrepancies;
BEGIN
    IF resolve_discrepancy.discrepancy_id IS NULL THEN
        RAISE EXCEPTION 'discrepancy_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO v_d FROM toss_billing.discrepancies d WHERE d.id = resolve_discrepancy.discrepancy_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'discrepancy % does not exist', resolve_discrepancy.discrepancy_id USING ERRCODE = 'P0002';
    END IF;
    IF v_d.resolved_at IS NOT NULL THEN
        RETURN v_d;
    END IF;
    UPDATE toss_billing.discrepancies d
       SET resolved_at = pg_catalog.now(),
           detail = COALESCE(d.detail, '{}'::jsonb)
                    || pg_catalog.jsonb_build_object('resolved_by', SESSION_USER::text, 'note', resolve_discrepancy.note)
     WHERE d.id = v_d.id
    RETURNING * INTO v_d;
    IF v_d.kind = 'unverified_answer' THEN
        UPDATE toss_billing.payments p SET hold_reason = NULL, updated_at = pg_catalog.now()
         WHERE p.order_id = v_d.order_id AND p.hold_reason IS NOT NULL AND p.state <> 'done';
    END IF;
    RETURN v_d;
END;
$$;

GRANT EXECUTE ON FUNCTION toss_billing.reconcile(timestamptz, timestamptz, text),
                          toss_billing.resolve_discrepancy(bigint, text)
    TO toss_billing_operator;
GRANT SELECT ON toss_billing.discrepancies, toss_billing.open_discrepancies
    TO toss_billing_operator, toss_billing_auditor;
