-- 80_refunds: cancels (refunds) of payments: the table, the two halves of
-- toss_cancel (intent before the call, outcome after it), and the cancels
-- Toss's Payment shows that the ledger lacks.

-- @data

-- One row per cancel (refund) of a payment.  A toss_cancel call writes its
-- row in_flight with a fresh Idempotency-Key before calling Toss.  A cancel
-- made outside toss_cancel (Toss's console, another system) is recorded
-- from Toss's Payment when a webhook or reconcile shows it: it has no
-- idempotency key and no requested_by.  requested_amount NULL = the whole
-- remaining balance.  response is Toss's Payment after the cancel, only when
-- it was verified against the payment; raw_response the answer as received
-- (bytes, secrets scrubbed); deadline by when the cancel's call is over.
CREATE TABLE toss_billing.cancels (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id        bigint NOT NULL REFERENCES toss_billing.payments (id),
    idempotency_key   text UNIQUE,
    requested_amount  bigint CHECK (requested_amount OPERATOR(pg_catalog.>) 0),
    reason            text NOT NULL
                      CHECK (pg_catalog.char_length(reason) OPERATOR(pg_catalog.>=) 1
                             AND pg_catalog.char_length(reason) OPERATOR(pg_catalog.<=) 200),
    state             text NOT NULL DEFAULT 'in_flight'
                      CHECK (state OPERATOR(pg_catalog.=) ANY (ARRAY['in_flight', 'done', 'failed', 'unknown'])),
    requested_by      name,
    transaction_key   text,
    canceled_amount   bigint CHECK (canceled_amount OPERATOR(pg_catalog.>=) 0),
    canceled_at       timestamptz,
    failure_class     text,
    failure_code      text,
    failure_message   text,
    http_status       integer,
    response          jsonb,
    caller_pid        integer DEFAULT pg_catalog.pg_backend_pid(),
    caller_started_at timestamptz DEFAULT toss_billing._backend_start(),
    resolve_attempts  integer NOT NULL DEFAULT 0,
    next_resolve_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    customer_id       bigint REFERENCES toss_billing.customers (id),
    deadline          timestamptz,
    raw_response      bytea,
    CONSTRAINT cancels_outside_toss_cancel_done CHECK (idempotency_key IS NOT NULL OR state OPERATOR(pg_catalog.=) 'done')
);
CREATE INDEX cancels_payment ON toss_billing.cancels (payment_id);
CREATE INDEX cancels_customer ON toss_billing.cancels (customer_id);
CREATE UNIQUE INDEX cancels_transaction_key ON toss_billing.cancels (transaction_key)
    WHERE transaction_key IS NOT NULL;
CREATE INDEX cancels_open ON toss_billing.cancels (updated_at)
    WHERE state OPERATOR(pg_catalog.=) ANY (ARRAY['in_flight', 'unknown']);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.cancels', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.cancels_id_seq', '');

-- @code

-- payment_refunded events for the given (done) cancels of subscription
-- payments; a balance of 0 is a full refund whether Toss's status is
-- CANCELED or PARTIAL_CANCELED.
CREATE OR REPLACE FUNCTION toss_billing._refund_events(cancel_ids bigint[])
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, payment_id, type, from_status,
                                     to_status, reason, detail)
    SELECT COALESCE(tc.now_at, toss_billing.now()), s.id, s.customer_id, p.id, 'payment_refunded', s.status, s.status,
           CASE WHEN p.balance_amount = 0 THEN 'payment fully refunded' ELSE 'payment partially refunded' END,
           pg_catalog.jsonb_build_object('cancel_id', c.id, 'period_number', p.period_number,
                                         'amount', c.canceled_amount, 'balance_amount', p.balance_amount,
                                         'fully_refunded', p.balance_amount = 0, 'toss_status', p.toss_status,
                                         'reason', c.reason, 'outside_toss_billing', c.idempotency_key IS NULL)
      FROM toss_billing.cancels c
      JOIN toss_billing.payments p ON p.id = c.payment_id
      JOIN toss_billing.subscriptions s ON s.id = p.subscription_id
      LEFT JOIN toss_billing.test_clocks tc ON tc.id = s.test_clock_id
     WHERE c.id = ANY ($1) AND c.state = 'done'
     ORDER BY c.id;
$$;

-- Records the cancels in a Payment's cancels[] that the ledger lacks
-- (cancelStatus DONE, by transactionKey).  An open cancel of ours waiting
-- for its outcome takes the entry that fits it (the same amount; for a full
-- cancel, an entry that left no balance); any other entry is a cancel made
-- outside toss_cancel and gets a row of its own.  Call it after the payment
-- row took the Payment.  Returns how many cancels it recorded.
CREATE OR REPLACE FUNCTION toss_billing._sync_cancels(payment_id bigint, payment jsonb)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e record;
    v_open bigint;
    v_id bigint;
    v_ids bigint[] := '{}';
BEGIN
    PERFORM FROM toss_billing.payments p WHERE p.id = _sync_cancels.payment_id FOR UPDATE;
    IF pg_catalog.jsonb_typeof(_sync_cancels.payment->'cancels') IS DISTINCT FROM 'array' THEN
        RETURN 0;
    END IF;
    FOR e IN
        SELECT x.value->>'transactionKey' AS transaction_key,
               pg_catalog.abs((x.value->>'cancelAmount')::bigint) AS amount,
               (x.value->>'refundableAmount')::bigint AS refundable,
               (x.value->>'canceledAt')::timestamptz AS canceled_at,
               x.value->>'cancelReason' AS reason
          FROM pg_catalog.jsonb_array_elements(_sync_cancels.payment->'cancels') WITH ORDINALITY AS x(value, n)
         WHERE COALESCE(x.value->>'cancelStatus', 'DONE') = 'DONE' AND x.value->>'transactionKey' IS NOT NULL
         ORDER BY x.n
    LOOP
        IF EXISTS (SELECT FROM toss_billing.cancels c WHERE c.transaction_key = e.transaction_key) THEN
            CONTINUE;
        END IF;
        SELECT c.id INTO v_open
          FROM toss_billing.cancels c
         WHERE c.payment_id = _sync_cancels.payment_id AND c.state = ANY (ARRAY['in_flight', 'unknown'])
           AND (c.requested_amount = e.amount OR (c.requested_amount IS NULL AND COALESCE(e.refundable, 0) = 0))
         ORDER BY c.requested_amount IS NULL, c.id
         LIMIT 1
           FOR UPDATE;
        IF FOUND THEN
            UPDATE toss_billing.cancels c
               SET state = 'done', transaction_key = e.transaction_key, canceled_amount = e.amount,
                   canceled_at = e.canceled_at, failure_class = NULL, failure_code = NULL, failure_message = NULL,
                   response = _sync_cancels.payment, updated_at = pg_catalog.now()
             WHERE c.id = v_open;
            v_id := v_open;
        ELSE
            INSERT INTO toss_billing.cancels (payment_id, customer_id, idempotency_key, requested_amount, reason,
                                              state, requested_by, transaction_key, canceled_amount, canceled_at,
                                              response, caller_pid, caller_started_at)
            VALUES (_sync_cancels.payment_id,
                    (SELECT p.customer_id FROM toss_billing.payments p WHERE p.id = _sync_cancels.payment_id),
                    NULL, NULLIF(e.amount, 0),
                    pg_catalog.left(COALESCE(NULLIF(e.reason, ''), 'canceled outside toss_billing'), 200), 'done',
                    NULL, e.transaction_key, e.amount, e.canceled_at, _sync_cancels.payment, NULL, NULL)
            RETURNING id INTO v_id;
        END IF;
        v_ids := v_ids || v_id;
    END LOOP;
    PERFORM toss_billing._refund_events(v_ids);
    RETURN pg_catalog.cardinality(v_ids);
END;
$$;

-- The first half of toss_cancel: checks the cancel and records it in_flight,
-- before anything is sent.  payment is a payment key or an order id; the
-- payment must be done.  amount NULL cancels the whole remaining balance.
-- The payment row is locked, so concurrent cancels are counted one after
-- the other: a cancel may take at most the balance minus what cancels in
-- flight or unknown already hold (an open full cancel holds all of it).
-- With such cancels open, a full cancel is sent as a cancel of what they
-- leave.  Returns the row's id, the payment key and merchant to call, the
-- Idempotency-Key, the amount to send (NULL: a full cancel), and what
-- Toss's answer must match (the order id, its total, the merchant's mId).
-- The C worker commits this before calling Toss.
CREATE OR REPLACE FUNCTION toss_billing._cancel_intent(payment text, reason text, amount bigint, requested_by name,
                                                        call_timeout interval DEFAULT '65 seconds')
RETURNS TABLE(cancel_id bigint, payment_key text, idempotency_key text, merchant text, cancel_amount bigint,
              order_id text, total_amount bigint, mid text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_p toss_billing.payments;
    v_balance bigint;
    v_held bigint;
    v_full_open boolean;
    v_left bigint;
    v_send bigint;
    v_id bigint;
    v_key text := pg_catalog.gen_random_uuid()::text;
BEGIN
    IF _cancel_intent.payment IS NULL THEN
        RAISE EXCEPTION 'payment must not be null' USING ERRCODE = '22004',
            HINT = 'Pass the payment key or the order id of the payment to cancel.';
    END IF;
    IF _cancel_intent.reason IS NULL THEN
        RAISE EXCEPTION 'reason must not be null' USING ERRCODE = '22004',
            DETAIL = 'Toss requires a cancel reason.';
    END IF;
    IF pg_catalog.char_length(_cancel_intent.reason) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'reason must be 1 to 200 characters' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('Toss takes a cancel reason of at most 200 characters; this one has %s.',
                                       pg_catalog.char_length(_cancel_intent.reason));
    END IF;
    IF _cancel_intent.amount <= 0 THEN
        RAISE EXCEPTION 'cancel amount must be positive' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('The amount is %s KRW.', _cancel_intent.amount),
            HINT = 'Give a positive amount in KRW, or NULL to cancel the whole remaining balance.';
    END IF;

    SELECT * INTO v_p FROM toss_billing.payments p WHERE p.payment_key = _cancel_intent.payment FOR UPDATE;
    IF NOT FOUND THEN
        SELECT * INTO v_p FROM toss_billing.payments p WHERE p.order_id = _cancel_intent.payment FOR UPDATE;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payment "%" is not in the ledger', _cancel_intent.payment USING ERRCODE = 'TB004',
            DETAIL = 'No row of toss_billing.payments has this payment key or order id.';
    END IF;
    IF v_p.state <> 'done' OR v_p.payment_key IS NULL THEN
        RAISE EXCEPTION 'payment "%" is not done', _cancel_intent.payment USING ERRCODE = '55000',
            DETAIL = pg_catalog.format('Only a completed payment can be canceled; the payment with order id %s is %s.',
                                       v_p.order_id, v_p.state),
            HINT = CASE WHEN v_p.state = ANY (ARRAY['pending', 'in_flight', 'unknown'])
                        THEN 'Wait until its outcome is known: the runner resolves it by order id.'
                        ELSE 'A failed attempt charged nothing, so there is nothing to refund.' END;
    END IF;

    v_balance := COALESCE(v_p.balance_amount, v_p.total_amount, v_p.amount);
    SELECT COALESCE(pg_catalog.sum(c.requested_amount), 0), COALESCE(pg_catalog.bool_or(c.requested_amount IS NULL), false)
      INTO v_held, v_full_open
      FROM toss_billing.cancels c
     WHERE c.payment_id = v_p.id AND c.state = ANY (ARRAY['in_flight', 'unknown']);
    v_left := CASE WHEN v_full_open THEN 0 ELSE GREATEST(v_balance - v_held, 0) END;

    IF v_balance <= 0 AND v_held = 0 AND NOT v_full_open THEN
        RAISE EXCEPTION 'payment "%" is fully refunded', _cancel_intent.payment USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('Its balance is 0 KRW (Toss status %s); nothing is left to cancel.',
                                       COALESCE(v_p.toss_status, 'unknown'));
    END IF;
    IF v_left <= 0 OR _cancel_intent.amount > v_left THEN
        RAISE EXCEPTION 'cancel amount exceeds the refundable balance' USING ERRCODE = '22023',
            DETAIL = pg_catalog.format('The payment has %s KRW left to cancel: a balance of %s KRW, of which %s is held by cancels in flight or unknown; %s was asked.',
                                       v_left, v_balance,
                                       CASE WHEN v_full_open THEN 'all' ELSE v_held::text || ' KRW' END,
                                       COALESCE(_cancel_intent.amount::text || ' KRW', 'the whole balance')),
            HINT = 'Cancel at most the amount left; a cancel whose outcome is unknown holds its amount until it is settled.';
    END IF;

    v_send := CASE WHEN _cancel_intent.amount IS NOT NULL THEN _cancel_intent.amount
                   WHEN v_held > 0 THEN v_left END;
    INSERT INTO toss_billing.cancels (payment_id, customer_id, idempotency_key, requested_amount, reason, state,
                                      requested_by, deadline)
    VALUES (v_p.id, v_p.customer_id, v_key, v_send, _cancel_intent.reason, 'in_flight',
            COALESCE(_cancel_intent.requested_by, CURRENT_USER),
            pg_catalog.now() + 2 * COALESCE(_cancel_intent.call_timeout, '65 seconds'))
    RETURNING id INTO v_id;
    RETURN QUERY SELECT v_id, v_p.payment_key, v_key, v_p.merchant, v_send, v_p.order_id,
                        COALESCE(v_p.total_amount, v_p.amount),
                        (SELECT bk.mid FROM toss_billing.billing_keys bk WHERE bk.id = v_p.billing_key_id);
END;
$$;

-- The second half of toss_cancel: records what Toss answered.  response is
-- the Payment Toss returns after the cancel.  done: the cancel takes its
-- entry of the Payment's cancels[] (the last one not recorded yet that fits
-- its amount) and the payment row takes the Payment (status, balance,
-- response); other entries the ledger lacks are recorded too; subscription
-- payments get a payment_refunded event.  failed / unknown: recorded as
-- they are; an unknown cancel keeps holding its amount until a webhook or
-- reconcile shows what Toss did.  Only cancels still in flight or unknown
-- are touched, so recording an outcome twice changes nothing.
CREATE OR REPLACE FUNCTION toss_billing._cancel_outcome(
    cancel_id bigint,
    state text,
    http_status integer,
    failure_class text,
    failure_code text,
    failure_message text,
    response jsonb,
    raw_response bytea DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_c toss_billing.cancels;
    v_entry jsonb;
    v_why text;
BEGIN
    IF _cancel_outcome.state IS NULL OR _cancel_outcome.state <> ALL (ARRAY['done', 'failed', 'unknown']) THEN
        RAISE EXCEPTION 'a cancel outcome state must be done, failed or unknown' USING ERRCODE = '22023';
    END IF;
    -- the payment row first, as every path that records cancels locks it
    PERFORM FROM toss_billing.payments p
     WHERE p.id = (SELECT c.payment_id FROM toss_billing.cancels c WHERE c.id = _cancel_outcome.cancel_id)
       FOR UPDATE;
    SELECT * INTO v_c FROM toss_billing.cancels c WHERE c.id = _cancel_outcome.cancel_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cancel % does not exist', _cancel_outcome.cancel_id USING ERRCODE = 'P0002';
    END IF;
    IF v_c.state <> ALL (ARRAY['in_flight', 'unknown']) THEN
        RETURN;
    END IF;

    -- a done cancel counts only with a Payment that is this payment's,
    -- checked by the same predicate as charges (a cancelled payment is an
    -- approved one); anything else leaves the cancel unknown, looked up again
    IF _cancel_outcome.state = 'done' THEN
        SELECT CASE WHEN _cancel_outcome.response IS NULL THEN 'a done cancel without its Payment'
                    WHEN _cancel_outcome.response->>'paymentKey' IS DISTINCT FROM p.payment_key
                        THEN 'paymentKey is not the payment''s'
                    ELSE NULLIF(pg_catalog.regexp_replace(
                                    toss_billing._verify_payment(_cancel_outcome.response, p.order_id, p.amount, bk.mid),
                                    '^unverified: ', ''), 'approved') END
          INTO v_why
          FROM toss_billing.payments p
          LEFT JOIN toss_billing.billing_keys bk ON bk.id = p.billing_key_id
         WHERE p.id = v_c.payment_id;
        IF v_why IS NOT NULL THEN
            UPDATE toss_billing.cancels c
               SET state = 'unknown', http_status = NULLIF(_cancel_outcome.http_status, 0),
                   failure_class = 'outcome_unknown', failure_code = NULL,
                   failure_message = 'toss''s answer does not match the payment: ' || v_why,
                   raw_response = COALESCE(_cancel_outcome.raw_response, c.raw_response), updated_at = pg_catalog.now()
             WHERE c.id = v_c.id;
            PERFORM toss_billing._open_discrepancy('unverified_answer', p.order_id, p.payment_key, p.state, NULL,
                                                   p.amount, NULL,
                                                   pg_catalog.jsonb_build_object('cancel_id', v_c.id, 'why', v_why))
               FROM toss_billing.payments p WHERE p.id = v_c.payment_id;
            RETURN;
        END IF;
        IF pg_catalog.jsonb_typeof(_cancel_outcome.response->'cancels') = 'array' THEN
            SELECT x.value INTO v_entry
              FROM pg_catalog.jsonb_array_elements(_cancel_outcome.response->'cancels') WITH ORDINALITY AS x(value, n)
             WHERE COALESCE(x.value->>'cancelStatus', 'DONE') = 'DONE'
               AND NOT EXISTS (SELECT FROM toss_billing.cancels o
                                WHERE o.transaction_key = x.value->>'transactionKey' AND o.id <> v_c.id)
             ORDER BY (v_c.requested_amount IS NULL
                       OR pg_catalog.abs((x.value->>'cancelAmount')::bigint) = v_c.requested_amount) DESC,
                      x.n DESC
             LIMIT 1;
        END IF;
        UPDATE toss_billing.cancels c
           SET state = 'done', http_status = NULLIF(_cancel_outcome.http_status, 0),
               failure_class = NULL, failure_code = NULL, failure_message = NULL,
               transaction_key = v_entry->>'transactionKey',
               canceled_amount = COALESCE(pg_catalog.abs((v_entry->>'cancelAmount')::bigint), c.requested_amount),
               canceled_at = COALESCE((v_entry->>'canceledAt')::timestamptz, pg_catalog.now()),
               response = _cancel_outcome.response,
               raw_response = COALESCE(_cancel_outcome.raw_response, c.raw_response), updated_at = pg_catalog.now()
         WHERE c.id = v_c.id;
        IF _cancel_outcome.response IS NOT NULL THEN
            PERFORM toss_billing._record_payment_state(v_c.payment_id, _cancel_outcome.response);
            PERFORM toss_billing._sync_cancels(v_c.payment_id, _cancel_outcome.response);
        END IF;
        PERFORM toss_billing._refund_events(ARRAY[v_c.id]);
    ELSE
        UPDATE toss_billing.cancels c
           SET state = _cancel_outcome.state, http_status = NULLIF(_cancel_outcome.http_status, 0),
               failure_class = _cancel_outcome.failure_class,
               failure_code = COALESCE(_cancel_outcome.failure_code, _cancel_outcome.response->>'code'),
               failure_message = COALESCE(_cancel_outcome.failure_message, _cancel_outcome.response->>'message'),
               response = _cancel_outcome.response,
               raw_response = COALESCE(_cancel_outcome.raw_response, c.raw_response), updated_at = pg_catalog.now()
         WHERE c.id = v_c.id;
    END IF;
END;
$$;

-- Cancels (refunds) a payment by payment key or order id: all of its
-- remaining balance, or amount KRW.  See the README.
CREATE OR REPLACE FUNCTION toss_billing.toss_cancel(payment text, reason text, amount bigint DEFAULT NULL)
RETURNS toss_billing.payment
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_cancel';

GRANT EXECUTE ON FUNCTION toss_billing.toss_cancel(text, text, bigint) TO toss_billing_operator;
-- Everything but the Idempotency-Key (a replay token).
GRANT SELECT (id, payment_id, requested_amount, reason, state, requested_by, transaction_key, canceled_amount,
              canceled_at, failure_class, failure_code, failure_message, http_status, response, caller_pid,
              caller_started_at, resolve_attempts, next_resolve_at, created_at, updated_at, customer_id, deadline,
              raw_response)
    ON toss_billing.cancels TO toss_billing_operator, toss_billing_auditor;
