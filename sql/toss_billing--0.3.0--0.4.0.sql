\echo Use "ALTER EXTENSION toss_billing UPDATE TO '0.4.0'" to load this file. \quit
-- toss_billing 0.3.0 -> 0.4.0: the runner records outcomes in a background
-- worker of its own (the outcome recorder, in C) while it goes on claiming,
-- so outcome transactions now run beside the same runner's claims.
-- _record_outcomes takes its locks in the order that cannot deadlock with a
-- claim: the subscriptions (in id order), then the payments.  Its contract
-- is unchanged: recording an outcome twice changes nothing.
--
-- Style as in 0.2.0: everything is schema-qualified; function bodies run with
-- an empty search_path.  CREATE OR REPLACE keeps the function's owner and its
-- privileges (the extension owner's alone).

-- Records the outcomes of claimed attempts (one array element per payment)
-- and settles their subscriptions.  The ledger row is completed exactly as
-- the single-charge path does (toss_store_charge_outcome): code and message
-- fall back to the Payment's failure object, Toss's fields are read from
-- the response.  Only attempts still pending, in flight or unknown are
-- touched, so recording an outcome twice changes nothing.
CREATE OR REPLACE FUNCTION toss_billing._record_outcomes(
    payment_ids bigint[],
    states text[],
    http_statuses integer[],
    failure_classes text[],
    failure_codes text[],
    failure_messages text[],
    responses jsonb[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_n integer := COALESCE(pg_catalog.cardinality(_record_outcomes.payment_ids), 0);
    v_outcomes toss_billing._outcome[];
    v_subscriptions bigint[];
BEGIN
    IF COALESCE(pg_catalog.cardinality(_record_outcomes.states), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.http_statuses), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.failure_classes), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.failure_codes), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.failure_messages), 0) <> v_n
       OR COALESCE(pg_catalog.cardinality(_record_outcomes.responses), 0) <> v_n THEN
        RAISE EXCEPTION 'the outcome arrays must all have the same length' USING ERRCODE = '22023';
    END IF;
    IF v_n = 0 THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM unnest(_record_outcomes.states) st
                WHERE st IS NULL OR st <> ALL (ARRAY['done', 'failed', 'unknown'])) THEN
        RAISE EXCEPTION 'an outcome state must be done, failed or unknown' USING ERRCODE = '22023';
    END IF;

    -- The subscriptions first, in id order, and only then the payments.
    -- A claim holds the subscriptions it claimed (FOR UPDATE SKIP LOCKED)
    -- and its insert may wait for a payment of one of them that is being
    -- recorded; recording must therefore never hold such a payment while it
    -- waits for a subscription, or the two deadlock.
    PERFORM FROM toss_billing.subscriptions s
     WHERE s.id = ANY (ARRAY(SELECT p.subscription_id FROM toss_billing.payments p
                              WHERE p.id = ANY (_record_outcomes.payment_ids)
                                AND p.subscription_id IS NOT NULL))
     ORDER BY s.id
       FOR UPDATE;

    WITH given AS (
        SELECT *
          FROM unnest(_record_outcomes.payment_ids, _record_outcomes.states, _record_outcomes.http_statuses,
                      _record_outcomes.failure_classes, _record_outcomes.failure_codes,
                      _record_outcomes.failure_messages, _record_outcomes.responses)
               AS i(payment_id, state, http_status, failure_class, failure_code, failure_message, response)),
    still_open AS (
        SELECT p.id, p.state
          FROM toss_billing.payments p
         WHERE p.id = ANY (_record_outcomes.payment_ids)
           AND p.state = ANY (ARRAY['pending', 'in_flight', 'unknown'])
         ORDER BY p.id
           FOR UPDATE),
    recorded AS (
        UPDATE toss_billing.payments p
           SET state = i.state,
               http_status = NULLIF(i.http_status, 0),
               failure_class = i.failure_class,
               failure_code = COALESCE(i.failure_code, i.response->'failure'->>'code'),
               failure_message = COALESCE(i.failure_message, i.response->'failure'->>'message'),
               toss_status = i.response->>'status',
               payment_key = i.response->>'paymentKey',
               total_amount = (i.response->>'totalAmount')::bigint,
               balance_amount = (i.response->>'balanceAmount')::bigint,
               supplied_amount = (i.response->>'suppliedAmount')::bigint,
               vat = (i.response->>'vat')::bigint,
               requested_at = (i.response->>'requestedAt')::timestamptz,
               approved_at = (i.response->>'approvedAt')::timestamptz,
               response = i.response,
               updated_at = pg_catalog.now()
          FROM given i, still_open o
         WHERE p.id = i.payment_id AND o.id = i.payment_id
        RETURNING ROW(p.id, p.subscription_id, p.period_number, p.attempt_number, p.amount, o.state, p.state,
                      p.failure_class, p.failure_code, p.failure_message)::toss_billing._outcome AS outcome)
    SELECT pg_catalog.array_agg(r.outcome) INTO v_outcomes FROM recorded r;

    SELECT pg_catalog.array_agg(DISTINCT o.subscription_id) INTO v_subscriptions
      FROM unnest(v_outcomes) o WHERE o.subscription_id IS NOT NULL;
    IF v_subscriptions IS NULL THEN
        RETURN;
    END IF;
    PERFORM toss_billing._settle_paid(v_outcomes);
    PERFORM toss_billing._settle_failed(v_outcomes);
    PERFORM toss_billing._settle_unknown(v_outcomes);
    -- catching up: the period just opened may already have ended
    PERFORM toss_billing._apply_transitions(v_subscriptions);
END;
$$;
