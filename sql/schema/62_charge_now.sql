-- 62_charge_now: charging at once, for an operator (the app): a
-- subscription's open period (charge_subscription_now; e.g. the first
-- charge at sign-up, when the customer is waiting on the success page and
-- pg_cron would come within a minute) and an invoice (charge_invoice_now;
-- e.g. an upgrade's immediate proration).  The work is claimed exactly as
-- the runner claims it (_claim_due limited to the one subscription;
-- _claim_invoices limited to the one invoice), after taking the
-- subscription's row lock (and the invoice's): whichever of the two claims
-- it first records its attempt in flight and posts it; the other finds it
-- in flight and posts nothing.  The unique index of one live order per
-- obligation backs that up.  What a period is charged is its invoice
-- (32_invoices): the claim finalises it as the runner's does (without
-- waiting for the grace window) and charges its amount_due.  Both run in
-- the call engine (engine.c, jobs.c): its worker records the intent (the
-- order and its attempt in flight) in a transaction of its own, committed
-- before the POST, and the outcome after it, through _record_outcomes, as
-- the runner records it.

-- @code

-- The first half of charge_subscription_now, run by its worker: what to do
-- for the subscription's open period now.
--   post  the period was made due on the subscription's clock and claimed
--         (an attempt in flight, committed by the caller before the POST),
--         with what the request carries
--   busy  an order of the subscription is in flight or its outcome unknown
--         (the runner or another call is charging it): nothing is posted
--   done  nothing is owed now because the period before the open one is
--         paid: its Payment (a success page loaded twice sees the payment)
-- Refused (nothing recorded): a subscription that owes nothing now and was
-- never paid (a trial, a period not started), one that is paused, unpaid
-- or canceled, one whose period's invoice comes to nothing Toss can be
-- asked for (a total of 0, or below 100 KRW: the runner settles it without
-- a charge), one whose invoice raises the price without a valid consent
-- (finalising it would cancel the subscription) (55000), one held by an
-- answer that did not match (TB006), a customer without an active billing
-- key (TB004).
CREATE OR REPLACE FUNCTION toss_billing._charge_now_intent(subscription_id bigint, requested_by name,
                                                            call_timeout interval DEFAULT '65 seconds')
RETURNS TABLE(action text, payment_id bigint, attempt_id bigint, toss_order_id text, idempotency_key text,
              billing_key_id bigint, merchant text, encrypted_key bytea, mid text, payment jsonb,
              attempt_created_at timestamptz, may_repost boolean, customer_key text, amount bigint,
              tax_free_amount bigint, order_name text, customer_email text, customer_name text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_sub toss_billing.subscriptions;
    v_now timestamptz;
    v_p toss_billing.payments;
    v_c record;
    v_preview toss_billing.invoice_preview;
    v_amount bigint;
BEGIN
    IF _charge_now_intent.subscription_id IS NULL THEN
        RAISE EXCEPTION 'subscription_id must not be null' USING ERRCODE = '22004';
    END IF;
    -- the row lock first: a runner claiming it right now is waited for, and
    -- a runner that comes later skips it (SKIP LOCKED) until this commits
    v_sub := toss_billing._lock_subscription(_charge_now_intent.subscription_id);
    PERFORM toss_billing._apply_transitions(ARRAY[v_sub.id]);
    SELECT * INTO v_sub FROM toss_billing.subscriptions s WHERE s.id = v_sub.id;
    v_now := toss_billing.subscription_now(v_sub.id);

    SELECT * INTO v_p FROM toss_billing.payments p
     WHERE p.subscription_id = v_sub.id AND p.state = ANY (ARRAY['in_flight', 'unknown'])
     ORDER BY p.id DESC LIMIT 1;
    IF FOUND THEN
        RETURN QUERY SELECT 'busy'::text, v_p.id, NULL::bigint, v_p.order_id, NULL::text, v_p.billing_key_id,
                            v_p.merchant, NULL::bytea, NULL::text, NULL::jsonb, NULL::timestamptz, false,
                            NULL::text, v_p.amount, v_p.tax_free_amount, v_p.order_name, NULL::text, NULL::text;
        RETURN;
    END IF;

    IF v_sub.status = ANY (ARRAY['active', 'past_due', 'trialing']) AND v_sub.current_period_start > v_now THEN
        SELECT * INTO v_p FROM toss_billing.payments p
         WHERE p.obligation = pg_catalog.format('subscription:%s:%s', v_sub.id, v_sub.period_number - 1)
           AND p.state = 'done';
        IF FOUND THEN
            RETURN QUERY
            SELECT 'done'::text, v_p.id, NULL::bigint, v_p.order_id, NULL::text, v_p.billing_key_id, v_p.merchant,
                   NULL::bytea, NULL::text,
                   COALESCE(v_p.response,
                            pg_catalog.jsonb_build_object('paymentKey', v_p.payment_key, 'orderId', v_p.order_id,
                                                          'orderName', v_p.order_name, 'status', v_p.toss_status,
                                                          'totalAmount', COALESCE(v_p.total_amount, v_p.amount),
                                                          'balanceAmount', v_p.balance_amount,
                                                          'approvedAt', v_p.approved_at, 'type', 'BILLING')),
                   NULL::timestamptz, false, NULL::text, v_p.amount, v_p.tax_free_amount, v_p.order_name,
                   NULL::text, NULL::text;
            RETURN;
        END IF;
        RAISE EXCEPTION 'subscription % owes nothing now', v_sub.id
            USING ERRCODE = '55000',
                  DETAIL = CASE WHEN v_sub.status = 'trialing'
                                THEN pg_catalog.format('It is in its trial until %s; the first charge is due then.',
                                                       v_sub.trial_end)
                                ELSE pg_catalog.format('Its open period starts at %s, and nothing before it is owed.',
                                                       v_sub.current_period_start) END,
                  HINT = 'The runner charges it when it is due; nothing needs to be charged now.';
    END IF;
    IF v_sub.status <> ALL (ARRAY['active', 'past_due', 'trialing']) THEN
        RAISE EXCEPTION 'subscription % is %', v_sub.id, v_sub.status USING ERRCODE = '55000',
            DETAIL = 'Only an active, past_due or trialing subscription whose open period has started is charged.',
            HINT = CASE v_sub.status
                       WHEN 'unpaid' THEN 'Call toss_billing.retry_subscription() (or card_replaced() after a new card) to charge it again.'
                       WHEN 'paused' THEN 'Resume it with toss_billing.resume_subscription() first.'
                       ELSE 'A canceled subscription is not charged.' END;
    END IF;
    IF EXISTS (SELECT FROM toss_billing.payments p
                WHERE p.obligation = pg_catalog.format('subscription:%s:%s', v_sub.id, v_sub.period_number)
                  AND p.state = 'pending' AND p.hold_reason IS NOT NULL) THEN
        RAISE EXCEPTION 'the open period of subscription % is held', v_sub.id USING ERRCODE = 'TB006',
            DETAIL = 'An answer from Toss did not match its order, so nothing is posted for it again automatically.',
            HINT = 'See toss_billing.open_discrepancies; toss_billing.resolve_discrepancy() releases it.';
    END IF;
    IF NOT EXISTS (SELECT FROM toss_billing.billing_keys bk
                    WHERE bk.customer_id = v_sub.customer_id AND bk.status = 'active') THEN
        RAISE EXCEPTION 'the customer of subscription % has no active billing key', v_sub.id USING ERRCODE = 'TB004',
            HINT = 'Register a card with toss_billing.toss_issue_billing_key(), then call toss_billing.card_replaced() or charge again.';
    END IF;

    -- what is charged: the period's invoice, as finalised, or as it would be
    -- finalised now (NULL preview: it is finalised already)
    v_preview := toss_billing._preview_period(v_sub, v_sub.period_number);
    IF v_preview.consent = 'canceled' THEN
        RAISE EXCEPTION 'the price increase of subscription % has no valid consent', v_sub.id USING ERRCODE = '55000',
            DETAIL = 'Finalising the invoice of its open period would cancel the subscription (see toss_billing.price_increases).',
            HINT = 'Record the customer''s consent with toss_billing.record_consent() first.';
    END IF;
    v_amount := toss_billing._next_amount(v_sub.id);
    IF v_amount < 100 THEN
        RAISE EXCEPTION 'subscription % has nothing to charge now', v_sub.id USING ERRCODE = '55000',
            DETAIL = pg_catalog.format('The invoice of its open period comes to %s KRW to charge; Toss charges at least 100.',
                                       v_amount),
            HINT = 'The runner settles such an invoice without a charge (a total of 0 as paid; 1 to 99 KRW, or a credit, carried to the next invoice).';
    END IF;

    -- due now on the subscription's clock, then claimed by the runner's own rules
    UPDATE toss_billing.subscriptions s
       SET next_charge_at = LEAST(COALESCE(s.next_charge_at, v_now), v_now), updated_at = pg_catalog.now()
     WHERE s.id = v_sub.id;
    SELECT * INTO v_c FROM toss_billing._claim_due(1, _charge_now_intent.call_timeout, v_sub.id) c;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the open period of subscription % could not be claimed', v_sub.id USING ERRCODE = '55000',
            DETAIL = 'It is not chargeable by the runner''s rules now (paid, held, or without an active billing key).';
    END IF;
    UPDATE toss_billing.attempts a SET requested_by = _charge_now_intent.requested_by WHERE a.id = v_c.attempt_id;
    RETURN QUERY
    SELECT 'post'::text, v_c.payment_id, v_c.attempt_id, v_c.order_id, v_c.idempotency_key, v_c.billing_key_id,
           v_c.merchant, v_c.encrypted_key, v_c.mid, NULL::jsonb, a.created_at, true, v_c.customer_key, v_c.amount,
           v_c.tax_free_amount, v_c.order_name, v_c.customer_email, v_c.customer_name
      FROM toss_billing.attempts a WHERE a.id = v_c.attempt_id;
END;
$$;

-- Charges a subscription's open period now (see the README): returns the
-- Payment, or raises the charge's error like toss_charge (TB001 declined,
-- TB006 in flight or unknown: wait for the outcome).  The C function runs
-- the call in a background worker, which uses _charge_now_intent and
-- _record_outcomes, so the outcome settles the subscription as the
-- runner's would.
CREATE OR REPLACE FUNCTION toss_billing.charge_subscription_now(subscription_id bigint)
RETURNS toss_billing.payment
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_charge_subscription_now';

-- The first half of charge_invoice_now, run by its worker: what to do for
-- the invoice now (the actions of _charge_now_intent: post, busy, done).
-- A period invoice is charged as its subscription's period: an open or
-- uncollectible one of the open period, or the open period's draft once
-- the period has started, goes through _charge_now_intent (finalised
-- without waiting for the grace window, under the period's order); an
-- uncollectible one, or one of an unpaid subscription, first retries the
-- subscription and reopens the invoice (_invoice_due_now).  Any other
-- invoice -- one of its own (proration, one-off, final), or the next
-- period's draft, whose one-off and proration lines go to a one-off invoice
-- of their own -- is made due now (_invoice_due_now: finalised, due now;
-- reopened if uncollectible) and claimed as the runner claims it
-- (_claim_invoices, limited to it), under obligation 'invoice:<id>', with
-- the subscription's and then the invoice's row lock held: a runner
-- claiming it meanwhile skips it (SKIP LOCKED), one that claimed it first
-- has its order in flight, and this call posts nothing (busy).
-- Refused (nothing recorded): an unknown invoice (P0002), one paid or void,
-- a period invoice of another period than the open one, a total Toss
-- cannot be asked for (0, below 100 KRW, a credit), and every refusal of
-- _charge_now_intent for a period invoice (55000); an order of the invoice
-- held by an answer that did not match (TB006); a customer without an
-- active billing key (TB004).
CREATE OR REPLACE FUNCTION toss_billing._charge_invoice_now_intent(invoice_id bigint, requested_by name,
                                                                    call_timeout interval DEFAULT '65 seconds')
RETURNS TABLE(action text, payment_id bigint, attempt_id bigint, toss_order_id text, idempotency_key text,
              billing_key_id bigint, merchant text, encrypted_key bytea, mid text, payment jsonb,
              attempt_created_at timestamptz, may_repost boolean, customer_key text, amount bigint,
              tax_free_amount bigint, order_name text, customer_email text, customer_name text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_inv toss_billing.invoices;
    v_sub toss_billing.subscriptions;
    v_now timestamptz;
    v_p toss_billing.payments;
    v_c record;
    v_split boolean;
BEGIN
    IF _charge_invoice_now_intent.invoice_id IS NULL THEN
        RAISE EXCEPTION 'invoice_id must not be null' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO v_inv FROM toss_billing.invoices i WHERE i.id = _charge_invoice_now_intent.invoice_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invoice % does not exist', _charge_invoice_now_intent.invoice_id USING ERRCODE = 'P0002';
    END IF;
    -- the subscription's row lock, then the invoice's: a runner claiming
    -- the invoice right now is waited for, and one that comes later skips
    -- it (SKIP LOCKED) until this commits
    v_sub := toss_billing._lock_subscription(v_inv.subscription_id);
    SELECT * INTO v_inv FROM toss_billing.invoices i WHERE i.id = v_inv.id FOR UPDATE;
    v_now := toss_billing.subscription_now(v_sub.id);
    IF v_inv.status = ANY (ARRAY['paid', 'void']) THEN
        RAISE EXCEPTION 'invoice % is %', v_inv.id, v_inv.status USING ERRCODE = '55000',
            DETAIL = CASE v_inv.status
                         WHEN 'paid' THEN 'Nothing is owed on it.'
                         ELSE pg_catalog.format('Nothing is owed on it (%s).',
                                                COALESCE(v_inv.status_reason, 'voided')) END,
            HINT = CASE v_inv.status
                       WHEN 'paid' THEN 'The order that paid it is in toss_billing.payments (invoice_id); nothing needs to be charged.'
                       ELSE 'A voided invoice is not charged; what it owed, if anything, went on to a later invoice.' END;
    END IF;

    IF v_inv.kind = 'period'
       AND (v_inv.status <> 'draft'
            OR (v_inv.period_number = v_sub.period_number AND v_sub.current_period_start <= v_now)) THEN
        -- the subscription's period: charged as charge_subscription_now charges it
        IF v_inv.period_number <> v_sub.period_number THEN
            RAISE EXCEPTION 'invoice % does not bill the open period of subscription %', v_inv.id, v_sub.id
                USING ERRCODE = '55000',
                      DETAIL = pg_catalog.format('It bills period %s; the subscription''s open period is %s, and only the open period is charged.',
                                                 v_inv.period_number, v_sub.period_number);
        END IF;
        IF (v_inv.status = 'uncollectible' OR v_sub.status = 'unpaid')
           AND NOT EXISTS (SELECT FROM toss_billing.payments p
                            WHERE p.subscription_id = v_sub.id AND p.state = ANY (ARRAY['in_flight', 'unknown'])) THEN
            -- an explicit request to charge it: the subscription is retried
            -- now and the invoice reopened
            PERFORM toss_billing._invoice_due_now(v_inv.id);
        END IF;
        RETURN QUERY SELECT * FROM toss_billing._charge_now_intent(v_sub.id, _charge_invoice_now_intent.requested_by,
                                                                   _charge_invoice_now_intent.call_timeout);
        RETURN;
    END IF;

    -- an invoice of its own, or the one-off lines of the next period's draft
    v_split := v_inv.kind = 'period';
    IF NOT v_split THEN
        SELECT * INTO v_p FROM toss_billing.payments p
         WHERE p.invoice_id = v_inv.id AND p.hold_reason IS NOT NULL AND p.state <> 'done'
         ORDER BY p.id DESC LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'invoice % is held', v_inv.id USING ERRCODE = 'TB006',
                DETAIL = pg_catalog.format('An answer from Toss did not match its order %s, so nothing is posted for it again automatically.',
                                           v_p.order_id),
                HINT = 'See toss_billing.open_discrepancies; toss_billing.resolve_discrepancy() releases it.';
        END IF;
        SELECT * INTO v_p FROM toss_billing.payments p
         WHERE p.invoice_id = v_inv.id AND p.state = ANY (ARRAY['in_flight', 'unknown'])
         ORDER BY p.id DESC LIMIT 1;
        IF FOUND THEN
            RETURN QUERY SELECT 'busy'::text, v_p.id, NULL::bigint, v_p.order_id, NULL::text, v_p.billing_key_id,
                                v_p.merchant, NULL::bytea, NULL::text, NULL::jsonb, NULL::timestamptz, false,
                                NULL::text, v_p.amount, v_p.tax_free_amount, v_p.order_name, NULL::text, NULL::text;
            RETURN;
        END IF;
    END IF;
    IF NOT EXISTS (SELECT FROM toss_billing.billing_keys bk
                    WHERE bk.customer_id = v_inv.customer_id AND bk.status = 'active') THEN
        RAISE EXCEPTION 'the customer of invoice % has no active billing key', v_inv.id USING ERRCODE = 'TB004',
            HINT = 'Register a card with toss_billing.toss_issue_billing_key(), then charge the invoice again.';
    END IF;

    -- finalised (a draft; the next period's one-off lines on an invoice of
    -- their own), reopened (uncollectible) or simply due now (open)
    v_inv := toss_billing._invoice_due_now(v_inv.id);
    IF v_inv.amount_due < 100 THEN
        RAISE EXCEPTION 'invoice % has nothing to charge now', _charge_invoice_now_intent.invoice_id
            USING ERRCODE = '55000',
                  DETAIL = pg_catalog.format(CASE WHEN v_split
                                                  THEN 'Its one-off and proration lines come to %s KRW; Toss charges at least 100, and a credit is never charged.'
                                                  ELSE 'It comes to %s KRW; Toss charges at least 100, and a credit is never charged.' END,
                                             v_inv.total),
                  HINT = CASE WHEN v_split
                              THEN 'The lines stay on the draft: the period''s invoice settles them when it is finalised (a total of 0 as paid; 1 to 99 KRW, or a credit, carried forward).'
                              ELSE 'Nothing needs to be charged: the extension owner''s toss_billing._invoice_due_now() finalises it without a charge (a total of 0 as paid; 1 to 99 KRW, or a credit, carried to the next invoice).' END;
    END IF;

    -- claimed by the runner's own rules
    SELECT * INTO v_c FROM toss_billing._claim_invoices(1, _charge_invoice_now_intent.call_timeout, v_inv.id) c;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invoice % could not be claimed', v_inv.id USING ERRCODE = '55000',
            DETAIL = 'It is not chargeable by the runner''s rules now (paid, held, or without an active billing key).';
    END IF;
    UPDATE toss_billing.attempts a SET requested_by = _charge_invoice_now_intent.requested_by WHERE a.id = v_c.attempt_id;
    RETURN QUERY
    SELECT 'post'::text, v_c.payment_id, v_c.attempt_id, v_c.order_id, v_c.idempotency_key, v_c.billing_key_id,
           v_c.merchant, v_c.encrypted_key, v_c.mid, NULL::jsonb, a.created_at, true, v_c.customer_key, v_c.amount,
           v_c.tax_free_amount, v_c.order_name, v_c.customer_email, v_c.customer_name
      FROM toss_billing.attempts a WHERE a.id = v_c.attempt_id;
END;
$$;

-- Charges an invoice now (see the README): returns the Payment, or raises
-- the charge's error like toss_charge (TB001 declined, TB006 in flight or
-- unknown: wait for the outcome).  The C function runs the call in the
-- engine, whose worker uses _charge_invoice_now_intent and
-- _record_outcomes, so the outcome settles the invoice (_settle_invoices)
-- as the runner's would.  The finalise-only half (make it due for the
-- runner's next run) is 32_invoices' _invoice_due_now.
CREATE OR REPLACE FUNCTION toss_billing.charge_invoice_now(invoice_id bigint)
RETURNS toss_billing.payment
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_charge_invoice_now';

GRANT EXECUTE ON FUNCTION toss_billing.charge_subscription_now(bigint), toss_billing.charge_invoice_now(bigint)
    TO toss_billing_operator;
