-- 85_webhooks: Toss's webhooks, taken in once each; a Payment Toss returned
-- applied to the ledger.  Payment webhooks are unsigned, so their payload is
-- never trusted: the Payment is fetched from Toss first.

-- @data

-- Every webhook delivery Toss made, once: a retry (same transmission id, or
-- the same event) finds its first delivery by dedupe_key.  Only Toss's own
-- headers (tosspayments-*) are kept; a billing key in a payload is redacted.
CREATE TABLE toss_billing.webhook_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedupe_key   text NOT NULL UNIQUE,
    event_type   text,
    payload      jsonb NOT NULL,
    headers      jsonb,
    received_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    processed_at timestamptz,
    outcome      text
);
CREATE INDEX webhook_events_received_at ON toss_billing.webhook_events (received_at);
SELECT pg_catalog.pg_extension_config_dump('toss_billing.webhook_events', '');
SELECT pg_catalog.pg_extension_config_dump('toss_billing.webhook_events_id_seq', '');

-- @code

-- GET /v1/payments/{paymentKey} under a merchant's secret key: the Payment.
CREATE OR REPLACE FUNCTION toss_billing._fetch_payment(payment_key text, merchant text DEFAULT 'default')
RETURNS jsonb
LANGUAGE c VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_fetch_payment';

-- Applies a Payment object Toss returned (never a webhook's payload: the
-- caller fetched it) to the ledger's order found by paymentKey or orderId,
-- once it is verified against that order (_verify_payment).  Returns what
-- it did, as text:
--   applied:   a paid order took the status, balance and response, and the
--              cancels it lacked (cancels made outside toss_cancel too); an
--              order Toss approved that the ledger held as unknown, owed or
--              failed (its answer lost, or a lie) became paid, settling its
--              subscription as _record_outcomes does
--   conflict:  the Payment does not match the order (unverified_answer),
--              another payment key, the ledger paid but Toss aborted, or the
--              obligation already paid under another order: a discrepancy
--              is opened for a person to settle
--   ignored:   not in the ledger, in flight (its caller records it), or a
--              status that changes nothing
CREATE OR REPLACE FUNCTION toss_billing._apply_payment_state(payment jsonb)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_pay jsonb := _apply_payment_state.payment;
    v_key text := v_pay->>'paymentKey';
    v_order text := v_pay->>'orderId';
    v_status text := v_pay->>'status';
    v_id bigint;
    v_sub bigint;
    v_p toss_billing.payments;
    v_mid text;
    v_verdict text;
    v_attempt bigint;
    v_other bigint;
    v_n integer;
BEGIN
    IF pg_catalog.jsonb_typeof(v_pay) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'payment must be a JSON object' USING ERRCODE = '22023',
            DETAIL = 'Pass the Payment object Toss returned.';
    END IF;
    IF v_key IS NULL AND v_order IS NULL THEN
        RAISE EXCEPTION 'payment has neither paymentKey nor orderId' USING ERRCODE = '22023';
    END IF;

    SELECT p.id, p.subscription_id INTO v_id, v_sub FROM toss_billing.payments p WHERE p.payment_key = v_key;
    IF NOT FOUND THEN
        SELECT p.id, p.subscription_id INTO v_id, v_sub FROM toss_billing.payments p WHERE p.order_id = v_order;
    END IF;
    IF v_id IS NULL THEN
        RETURN pg_catalog.format('ignored: payment %s (order %s) is not in the ledger', v_key, v_order);
    END IF;
    -- the subscription first, then the order: the order every recording takes
    PERFORM FROM toss_billing.subscriptions s WHERE s.id = v_sub FOR UPDATE;
    SELECT * INTO v_p FROM toss_billing.payments p WHERE p.id = v_id FOR UPDATE;

    IF v_p.payment_key IS NOT NULL AND v_key IS DISTINCT FROM v_p.payment_key THEN
        PERFORM toss_billing._open_discrepancy('payment_key_mismatch', v_p.order_id, v_key, v_p.state, v_status,
                                               v_p.amount, NULL,
                                               pg_catalog.jsonb_build_object('ledger_payment_key', v_p.payment_key,
                                                                             'source', 'toss payment'));
        RETURN pg_catalog.format('conflict: order %s has payment key %s in the ledger, %s at toss',
                                 v_p.order_id, v_p.payment_key, v_key);
    END IF;
    SELECT bk.mid INTO v_mid FROM toss_billing.billing_keys bk WHERE bk.id = v_p.billing_key_id;
    v_verdict := toss_billing._verify_payment(v_pay, v_p.order_id, v_p.amount, v_mid);
    IF v_verdict LIKE 'unverified%' THEN
        PERFORM toss_billing._open_discrepancy('unverified_answer', v_p.order_id, v_key, v_p.state, v_status,
                                               v_p.amount, NULL,
                                               pg_catalog.jsonb_build_object('source', 'toss payment', 'why', v_verdict));
        -- an unknown order is held: its lookups go on, nothing is posted again
        UPDATE toss_billing.payments p
           SET hold_reason = pg_catalog.regexp_replace(v_verdict, '^unverified: ', ''), updated_at = pg_catalog.now()
         WHERE p.id = v_p.id AND p.state = 'unknown' AND p.hold_reason IS NULL;
        RETURN pg_catalog.format('conflict: toss''s payment for order %s does not match the order (%s)',
                                 v_p.order_id, v_verdict);
    END IF;

    IF v_verdict = 'approved' THEN
        IF v_p.state = 'done' THEN
            PERFORM toss_billing._record_payment_state(v_p.id, v_pay);
            v_n := toss_billing._sync_cancels(v_p.id, v_pay);
            SELECT * INTO v_p FROM toss_billing.payments p WHERE p.id = v_p.id;
            RETURN pg_catalog.format('applied: payment %s is %s with a balance of %s KRW%s', v_p.order_id,
                                     v_p.toss_status, v_p.balance_amount,
                                     CASE WHEN v_n > 0 THEN pg_catalog.format('; %s cancel(s) recorded', v_n) ELSE '' END);
        END IF;
        IF v_p.state = 'in_flight' THEN
            RETURN pg_catalog.format('ignored: %s is in flight; its caller records the outcome', v_p.order_id);
        END IF;
        -- Toss approved an order the ledger holds as unknown, owed or failed
        -- (a charge whose answer was lost or lied): it is paid, once.  An
        -- obligation already paid by another order was charged twice.
        SELECT p.id INTO v_other FROM toss_billing.payments p
         WHERE p.obligation = v_p.obligation AND p.id <> v_p.id
           AND p.state = ANY (ARRAY['in_flight', 'unknown', 'done'])
         LIMIT 1;
        IF v_other IS NOT NULL AND v_p.state <> 'unknown' THEN
            PERFORM toss_billing._open_discrepancy('duplicate_charge', v_p.order_id, v_key, v_p.state, v_status,
                                                   v_p.amount, toss_billing._json_int(v_pay->'totalAmount'),
                                                   pg_catalog.jsonb_build_object(
                                                       'other_payment_id', v_other, 'obligation', v_p.obligation,
                                                       'hint', 'The obligation was charged twice; refund one of them with toss_billing.toss_cancel().'));
            RETURN pg_catalog.format('conflict: %s was approved at toss, but its obligation is already paid or in flight under another order',
                                     v_p.order_id);
        END IF;
        -- a later order of the same obligation that is only owed (the next
        -- generation, made when Toss refused this order id) is not needed
        -- any more: this one is paid
        UPDATE toss_billing.payments p
           SET state = 'failed', failure_class = NULL, failure_code = NULL,
               failure_message = pg_catalog.format('not needed: order %s of the same obligation was paid', v_p.order_id),
               updated_at = pg_catalog.now()
         WHERE p.obligation = v_p.obligation AND p.id <> v_p.id AND p.state = 'pending';
        SELECT a.id INTO v_attempt FROM toss_billing.attempts a
         WHERE a.payment_id = v_p.id ORDER BY (a.state = 'unknown') DESC, a.attempt_number DESC LIMIT 1 FOR UPDATE;
        IF v_attempt IS NULL THEN
            RETURN pg_catalog.format('ignored: order %s has no attempt to settle', v_p.order_id);
        END IF;
        IF v_p.state <> 'unknown' THEN
            -- the attempt that was recorded as failed made the charge
            UPDATE toss_billing.attempts a SET state = 'unknown', updated_at = pg_catalog.now() WHERE a.id = v_attempt;
            UPDATE toss_billing.payments p SET state = 'unknown', updated_at = pg_catalog.now() WHERE p.id = v_p.id;
            INSERT INTO toss_billing.events (occurred_at, subscription_id, customer_id, payment_id, type, from_status,
                                             to_status, reason, detail)
            SELECT CASE WHEN s.id IS NULL THEN toss_billing.now() ELSE toss_billing.subscription_now(s.id) END, s.id,
                   v_p.customer_id, v_p.id, 'alert', s.status, s.status,
                   'toss approved an order the ledger had recorded as not paid; it is paid now',
                   pg_catalog.jsonb_build_object('order_id', v_p.order_id, 'ledger_state', v_p.state,
                                                 'failure_code', v_p.failure_code)
              FROM (SELECT v_p.subscription_id AS id) x LEFT JOIN toss_billing.subscriptions s ON s.id = x.id;
        END IF;
        PERFORM toss_billing._record_outcomes(ARRAY[v_attempt], ARRAY['done'], ARRAY[0], ARRAY[NULL::text],
                                              ARRAY[NULL::text], ARRAY[NULL::text], ARRAY[NULL::bytea], ARRAY[v_pay],
                                              ARRAY[NULL::text], ARRAY[false]);
        RETURN pg_catalog.format('applied: %s is done (%s, was %s)', v_p.order_id, v_status, v_p.state);
    END IF;

    -- failed (ABORTED, EXPIRED)
    IF v_p.state = 'done' THEN
        PERFORM toss_billing._open_discrepancy('state_mismatch', v_p.order_id, v_key, v_p.state, v_status,
                                               v_p.amount, toss_billing._json_int(v_pay->'totalAmount'),
                                               pg_catalog.jsonb_build_object('source', 'toss payment',
                                                                             'failure_code', v_p.failure_code));
        RETURN pg_catalog.format('conflict: the ledger has %s as %s, toss as %s', v_p.order_id, v_p.state, v_status);
    END IF;
    RETURN pg_catalog.format('ignored: toss status %s leaves the %s order %s as it is%s', v_status, v_p.state,
                             v_p.order_id,
                             CASE WHEN v_p.state = 'unknown' THEN '; the runner resolves it by order id' ELSE '' END);
END;
$$;

-- Receives one webhook delivery: pass the request body and the request
-- headers (a JSON object of name -> value; only tosspayments-* headers are
-- kept).  A delivery seen before (the tosspayments-webhook-transmission-id
-- header, else a hash of eventType, the payment key / order id / billing
-- key, status and createdAt) returns the stored row and does nothing else.
-- Otherwise the event is stored and applied in the same transaction:
--   PAYMENT_STATUS_CHANGED: the payload is not trusted (payment webhooks are
--     unsigned): the Payment is fetched from Toss under the ledger row's
--     merchant and applied with _apply_payment_state
--   BILLING_DELETED: the key is found by its keyed hash and marked deleted
--     with the payload's reason (_billing_key_deleted)
--   anything else: stored and marked ignored
-- The returned row carries the outcome.  An error (e.g. Toss unreachable)
-- rolls everything back, so the receiver answers non-2xx and Toss retries.
CREATE OR REPLACE FUNCTION toss_billing.ingest_webhook(payload jsonb, headers jsonb DEFAULT NULL)
RETURNS toss_billing.webhook_events
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_headers jsonb;
    v_type text := ingest_webhook.payload->>'eventType';
    v_data jsonb;
    v_stored jsonb := ingest_webhook.payload;
    v_dedupe text;
    v_row toss_billing.webhook_events;
    v_outcome text;
    v_key text;
    v_order text;
    v_merchant text;
    v_ledger_key text;
    v_pay jsonb;
    v_hash bytea;
    v_bk toss_billing.billing_keys;
    v_note text := '';
BEGIN
    IF ingest_webhook.payload IS NULL THEN
        RAISE EXCEPTION 'payload must not be null' USING ERRCODE = '22004';
    END IF;
    IF pg_catalog.jsonb_typeof(ingest_webhook.payload) <> 'object' THEN
        RAISE EXCEPTION 'payload must be a JSON object' USING ERRCODE = '22023',
            DETAIL = 'Pass the request body of the webhook exactly as received.';
    END IF;
    IF ingest_webhook.headers IS NOT NULL AND pg_catalog.jsonb_typeof(ingest_webhook.headers) <> 'object' THEN
        RAISE EXCEPTION 'headers must be a JSON object' USING ERRCODE = '22023',
            DETAIL = 'Pass the request headers as an object of header name to value.';
    END IF;
    SELECT pg_catalog.jsonb_object_agg(pg_catalog.lower(h.key),
                                       CASE WHEN pg_catalog.jsonb_typeof(h.value) = 'array' THEN h.value->0 ELSE h.value END)
      INTO v_headers
      FROM pg_catalog.jsonb_each(ingest_webhook.headers) h
     WHERE pg_catalog.lower(h.key) LIKE 'tosspayments-%';

    v_data := CASE WHEN pg_catalog.jsonb_typeof(ingest_webhook.payload->'data') = 'object'
                   THEN ingest_webhook.payload->'data' ELSE ingest_webhook.payload END;
    v_dedupe := COALESCE(NULLIF(v_headers->>'tosspayments-webhook-transmission-id', ''),
                         pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
                             pg_catalog.concat_ws(E'\n', COALESCE(v_type, ''),
                                                  COALESCE(v_data->>'paymentKey', v_data->>'orderId', v_data->>'billingKey', ''),
                                                  COALESCE(v_data->>'status', ''),
                                                  COALESCE(ingest_webhook.payload->>'createdAt', '')),
                             'UTF8')), 'hex'));
    -- a billing key is a secret: it is never stored in the clear
    IF v_data ? 'billingKey' THEN
        v_stored := CASE WHEN pg_catalog.jsonb_typeof(ingest_webhook.payload->'data') = 'object'
                         THEN pg_catalog.jsonb_set(v_stored, '{data,billingKey}', '"[redacted]"')
                         ELSE pg_catalog.jsonb_set(v_stored, '{billingKey}', '"[redacted]"') END;
    END IF;

    INSERT INTO toss_billing.webhook_events AS w (dedupe_key, event_type, payload, headers)
    VALUES (v_dedupe, v_type, v_stored, v_headers)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING * INTO v_row;
    IF NOT FOUND THEN
        SELECT * INTO STRICT v_row FROM toss_billing.webhook_events w WHERE w.dedupe_key = v_dedupe;
        RETURN v_row;
    END IF;

    IF v_type = 'PAYMENT_STATUS_CHANGED' THEN
        v_key := v_data->>'paymentKey';
        v_order := v_data->>'orderId';
        SELECT p.merchant, p.payment_key INTO v_merchant, v_ledger_key
          FROM toss_billing.payments p
         WHERE p.payment_key = v_key OR p.order_id = v_order
         ORDER BY p.payment_key = v_key DESC NULLS LAST
         LIMIT 1;
        v_key := COALESCE(v_key, v_ledger_key);
        IF v_key IS NULL THEN
            v_outcome := 'ignored: the event names no payment key';
        ELSE
            BEGIN
                v_pay := toss_billing._fetch_payment(v_key, COALESCE(v_merchant, 'default'));
            EXCEPTION WHEN SQLSTATE 'TB004' THEN
                v_pay := NULL;
            END;
            IF pg_catalog.jsonb_typeof(v_pay) IS DISTINCT FROM 'object' THEN
                v_outcome := pg_catalog.format('rejected: toss has no payment %s', v_key);
            ELSE
                v_outcome := toss_billing._apply_payment_state(v_pay);
            END IF;
        END IF;
    ELSIF v_type = 'BILLING_DELETED' THEN
        v_key := v_data->>'billingKey';
        IF COALESCE(v_key, '') = '' THEN
            v_outcome := 'ignored: the event names no billing key';
        ELSE
            -- keys issued before 0.3.0 get their hash first
            IF EXISTS (SELECT FROM toss_billing.billing_keys bk
                        WHERE bk.key_hash IS NULL AND bk.status = ANY (ARRAY['active', 'replaced'])) THEN
                BEGIN
                    PERFORM toss_billing._backfill_key_hashes();
                EXCEPTION WHEN OTHERS THEN
                    v_note := pg_catalog.format(' (the hashes of older keys could not be filled: %s)', SQLERRM);
                END;
            END IF;
            v_hash := toss_billing._billing_key_hash(v_key);
            SELECT * INTO v_bk FROM toss_billing.billing_keys bk WHERE bk.key_hash = v_hash;
            IF NOT FOUND THEN
                v_outcome := 'ignored: no billing key of toss_billing matches' || v_note;
            ELSIF v_bk.status = 'deleted' THEN
                v_outcome := pg_catalog.format('ignored: billing key %s was already deleted', v_bk.id);
            ELSE
                PERFORM toss_billing._billing_key_deleted(v_bk.id,
                                                          COALESCE(NULLIF(v_data->>'reason', ''),
                                                                   'deleted by toss or the card company'));
                v_outcome := pg_catalog.format('applied: billing key %s deleted (%s)', v_bk.id,
                                               COALESCE(NULLIF(v_data->>'reason', ''), 'no reason given'));
            END IF;
        END IF;
    ELSE
        v_outcome := pg_catalog.format('ignored: event type %s is not handled', COALESCE(v_type, '(none)'));
    END IF;

    UPDATE toss_billing.webhook_events w SET processed_at = pg_catalog.now(), outcome = v_outcome
     WHERE w.id = v_row.id
    RETURNING * INTO v_row;
    RETURN v_row;
END;
$$;

-- Sets up the login role a webhook receiver connects as.  A BILLING_DELETED
-- payload holds a billing key, and PostgreSQL logs statement texts and bind
-- parameters whenever log_statement, log_min_duration_statement, sampling or
-- log_min_error_statement say so.  This turns all of that off for the role
-- (ALTER ROLE ... SET: it applies to sessions that log in as the role, not
-- to SET ROLE), and makes it a member of toss_billing_receiver, which may
-- call ingest_webhook and nothing else.  Returns the settings it made.
CREATE OR REPLACE FUNCTION toss_billing.configure_receiver(role_name name)
RETURNS text[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_settings text[] := ARRAY['log_statement=none', 'log_min_duration_statement=-1',
                               'log_min_duration_sample=-1', 'log_transaction_sample_rate=0',
                               'log_min_error_statement=panic', 'log_parameter_max_length=0',
                               'log_parameter_max_length_on_error=0'];
    v_setting text;
BEGIN
    IF configure_receiver.role_name IS NULL THEN
        RAISE EXCEPTION 'role_name must not be null' USING ERRCODE = '22004';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = configure_receiver.role_name) THEN
        RAISE EXCEPTION 'role "%" does not exist', configure_receiver.role_name USING ERRCODE = '42704';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = configure_receiver.role_name AND r.rolcanlogin) THEN
        RAISE EXCEPTION 'role "%" cannot log in', configure_receiver.role_name USING ERRCODE = '22023',
            DETAIL = 'Logging settings made with ALTER ROLE apply to sessions that log in as the role.',
            HINT = 'Configure the role the webhook receiver connects as.';
    END IF;
    FOREACH v_setting IN ARRAY v_settings LOOP
        EXECUTE pg_catalog.format('ALTER ROLE %I SET %s TO %L', configure_receiver.role_name,
                                  pg_catalog.split_part(v_setting, '=', 1), pg_catalog.split_part(v_setting, '=', 2));
    END LOOP;
    EXECUTE pg_catalog.format('GRANT toss_billing_receiver TO %I', configure_receiver.role_name);
    RETURN v_settings;
END;
$$;

GRANT EXECUTE ON FUNCTION toss_billing.ingest_webhook(jsonb, jsonb) TO toss_billing_operator, toss_billing_receiver;
GRANT SELECT ON toss_billing.webhook_events TO toss_billing_operator, toss_billing_auditor;
