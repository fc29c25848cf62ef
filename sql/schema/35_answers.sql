-- 35_answers: what Toss's answers mean, as data read by C and SQL alike.
-- failure_classes says, for each class of failure, the SQLSTATE a caller
-- gets and what dunning does; error_codes maps each Toss error code to its
-- class.  Adding a Toss code or changing a dunning rule is one row here (the
-- C library reads both tables at the start of each call or run).
-- _verify_payment is the one predicate that decides whether a Payment Toss
-- returned answers a given order.

-- @data

-- The classes of failure (toss_billing's SQLSTATEs, class TB):
--   dunning: what a subscription does after a failed attempt of this class
--     retry     the same order again after the policy's transient backoff
--     dunning   the policy's retry schedule (declines, card-side limits)
--     key_gone  the billing key is gone at Toss: marked deleted, past_due
--               with nothing scheduled until a new card (card_replaced)
--     stop      charging stops with an alert until retry_subscription
--     none      not a failure of the charge (its outcome is unknown)
CREATE TABLE toss_billing.failure_classes (
    class       text PRIMARY KEY,
    sqlstate    text NOT NULL CHECK (sqlstate OPERATOR(pg_catalog.~) '^[0-9A-Z]{5}$'),
    dunning     text NOT NULL
                CHECK (dunning OPERATOR(pg_catalog.=) ANY (ARRAY['retry', 'dunning', 'key_gone', 'stop', 'none'])),
    description text NOT NULL
);

-- Toss error code -> class.  applies_to narrows a row to the answers of one
-- kind of call ('charge', 'issue', 'cancel', 'lookup'; 'any' for all); a
-- code ending in % is a prefix pattern, used when no exact row matches.
CREATE TABLE toss_billing.error_codes (
    code       text NOT NULL CHECK (code OPERATOR(pg_catalog.~) '^[A-Z0-9_]+%?$'),
    applies_to text NOT NULL DEFAULT 'any'
               CHECK (applies_to OPERATOR(pg_catalog.=) ANY (ARRAY['any', 'charge', 'issue', 'cancel', 'lookup'])),
    class      text NOT NULL REFERENCES toss_billing.failure_classes (class),
    PRIMARY KEY (code, applies_to)
);

-- @code

-- The rules themselves: made again on every install and upgrade, so that
-- this list is the one place a code or a dunning rule is written.
DELETE FROM toss_billing.error_codes;
DELETE FROM toss_billing.failure_classes;
INSERT INTO toss_billing.failure_classes AS f (class, sqlstate, dunning, description) VALUES
    ('card_declined', 'TB001', 'dunning', 'the card was refused, or a card-side limit was hit: retry on the dunning schedule, or ask for another card'),
    ('configuration', 'TB002', 'stop', 'the merchant''s keys or contract, or this installation''s configuration, are wrong: fix them; retrying changes nothing'),
    ('transient', 'TB003', 'retry', 'Toss or the card company could not process it now, or it could not be sent: retry the same order later'),
    ('not_found', 'TB004', 'dunning', 'Toss does not know the billing key, auth key or payment'),
    ('invalid_request', 'TB005', 'stop', 'Toss rejected the request as invalid: fix the request'),
    ('outcome_unknown', 'TB006', 'none', 'no verified answer: do not charge again; the order is resolved by looking it up'),
    ('already_processed', 'TB007', 'stop', 'Toss holds another payment under this order id'),
    ('billing_key_gone', 'TB004', 'key_gone', 'the billing key was deleted at Toss: register the card again');

INSERT INTO toss_billing.error_codes AS e (code, applies_to, class) VALUES
    -- card refusals and card-side limits: dunning, or ask for a new card
    ('REJECT_CARD_PAYMENT', 'any', 'card_declined'),
    ('REJECT_CARD_COMPANY', 'any', 'card_declined'),
    ('INVALID_STOPPED_CARD', 'any', 'card_declined'),
    ('INVALID_CARD_EXPIRATION', 'any', 'card_declined'),
    ('INVALID_REJECT_CARD', 'any', 'card_declined'),
    ('INVALID_CARD_LOST_OR_STOLEN', 'any', 'card_declined'),
    ('INVALID_CARD_NUMBER', 'any', 'card_declined'),
    ('NOT_SUPPORTED_CARD_TYPE', 'any', 'card_declined'),
    ('FDS_ERROR', 'any', 'card_declined'),
    ('EXCEED_MAX_DAILY_PAYMENT_COUNT', 'any', 'card_declined'),
    ('EXCEED_MAX_AMOUNT', 'any', 'card_declined'),
    ('EXCEED_MAX_PAYMENT_AMOUNT', 'any', 'card_declined'),
    ('EXCEED_MAX_ONE_DAY_AMOUNT', 'any', 'card_declined'),
    ('EXCEED_MAX_MONTHLY_PAYMENT_AMOUNT', 'any', 'card_declined'),
    ('EXCEED_MAX_AUTH_COUNT', 'any', 'card_declined'),
    ('NOT_AVAILABLE_PAYMENT', 'any', 'card_declined'),
    ('REJECT_%', 'any', 'card_declined'),
    ('INVALID_CARD_%', 'any', 'card_declined'),
    ('EXCEED_MAX_%', 'any', 'card_declined'),
    -- the billing key is gone at Toss (a charge's answer)
    ('ALREADY_REMOVED_BILLING_KEY', 'any', 'billing_key_gone'),
    ('NOT_FOUND_BILLING', 'charge', 'billing_key_gone'),
    -- configuration or integration bugs: do not retry, alert
    ('UNAUTHORIZED_KEY', 'any', 'configuration'),
    ('INVALID_API_KEY', 'any', 'configuration'),
    ('INCORRECT_BASIC_AUTH_FORMAT', 'any', 'configuration'),
    ('NOT_SUPPORTED_METHOD', 'any', 'configuration'),
    ('NOT_MATCHES_CUSTOMER_KEY', 'any', 'configuration'),
    ('INSECURE_KEY_USAGE', 'any', 'configuration'),
    ('FORBIDDEN_REQUEST', 'any', 'configuration'),
    ('INVALID_BILL_KEY_REQUEST', 'any', 'configuration'),
    -- transient: retry the same order later (after looking it up)
    ('PROVIDER_ERROR', 'any', 'transient'),
    ('CARD_PROCESSING_ERROR', 'any', 'transient'),
    ('FAILED_INTERNAL_SYSTEM_PROCESSING', 'any', 'transient'),
    ('FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING', 'any', 'transient'),
    ('UNKNOWN_PAYMENT_ERROR', 'any', 'transient'),
    ('FAILED_CARD_COMPANY_RESPONSE', 'any', 'transient'),
    ('COMMON_ERROR', 'any', 'transient'),
    ('FAILED_DB_PROCESSING', 'any', 'transient'),
    ('FORBIDDEN_CONSECUTIVE_REQUEST', 'any', 'transient'),
    ('IDEMPOTENT_REQUEST_PROCESSING', 'any', 'outcome_unknown'),
    -- not found
    ('NOT_FOUND_PAYMENT', 'any', 'not_found'),
    ('NOT_FOUND_BILLING', 'any', 'not_found'),
    ('BILLING_KEY_NOT_FOUND', 'any', 'not_found'),
    ('NOT_FOUND', 'any', 'not_found'),
    ('NOT_FOUND_PAYMENT_SESSION', 'any', 'not_found'),
    -- the order was already processed: look it up by orderId
    ('DUPLICATED_ORDER_ID', 'any', 'already_processed'),
    ('ALREADY_PROCESSED_PAYMENT', 'any', 'already_processed'),
    -- rejected input
    ('INVALID_REQUEST', 'any', 'invalid_request'),
    ('BELOW_MINIMUM_AMOUNT', 'any', 'invalid_request'),
    ('INVALID_BILLING_AUTH', 'any', 'invalid_request'),
    ('INVALID_IDEMPOTENCY_KEY', 'any', 'invalid_request'),
    ('INVALID_CARD_INSTALLMENT_PLAN', 'any', 'invalid_request'),
    ('EXCEED_MAX_CARD_INSTALLMENT_PLAN', 'any', 'invalid_request');

-- The class of a Toss error code for a kind of call: an exact row for the
-- call, else for any call, else the longest prefix pattern; NULL if none
-- (the caller then decides by HTTP status).
CREATE OR REPLACE FUNCTION toss_billing.classify_code(code text, applies_to text DEFAULT 'any')
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF classify_code.code IS NULL THEN
        RAISE EXCEPTION 'code must not be null' USING ERRCODE = '22004';
    END IF;
    RETURN (SELECT e.class
              FROM toss_billing.error_codes e
             WHERE e.applies_to = ANY (ARRAY[COALESCE(classify_code.applies_to, 'any'), 'any'])
               AND (e.code = classify_code.code
                    OR (e.code LIKE '%\%' AND classify_code.code LIKE e.code))
             ORDER BY e.code = classify_code.code DESC, e.applies_to = 'any', pg_catalog.length(e.code) DESC
             LIMIT 1);
END;
$$;

-- Does this Payment answer this order?  The one predicate (C: verify.c)
-- that every path applies before an answer counts: orderId equal,
-- totalAmount equal to the amount asked, currency KRW, type BILLING, mId
-- the merchant's (when known), a paymentKey, and a status.  Returns
-- 'approved' (DONE; CANCELED and PARTIAL_CANCELED are approved then
-- refunded), 'failed' (ABORTED or EXPIRED), or 'unverified: <why>'.
CREATE OR REPLACE FUNCTION toss_billing._verify_payment(payment jsonb, order_id text, amount bigint,
                                                         mid text DEFAULT NULL)
RETURNS text
LANGUAGE c STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_verify_payment_sql';

-- A JSON number as bigint: NULL unless it is an integral number in range
-- (an answer's amount may be anything; it never fails a statement).
CREATE OR REPLACE FUNCTION toss_billing._json_int(value jsonb)
RETURNS bigint
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.jsonb_typeof(value) = 'number'
                     AND (value #>> '{}') ~ '^-?[0-9]{1,18}$'
                THEN (value #>> '{}')::bigint END;
$$;

-- A JSON string as timestamptz: NULL unless it reads as one.
CREATE OR REPLACE FUNCTION toss_billing._json_time(value jsonb)
RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.jsonb_typeof(value) IS DISTINCT FROM 'string'
       OR (value #>> '{}') !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$' THEN
        RETURN NULL;
    END IF;
    RETURN (value #>> '{}')::timestamptz;
EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format OR data_exception THEN
    RETURN NULL;
END;
$$;

GRANT SELECT ON toss_billing.failure_classes, toss_billing.error_codes
    TO toss_billing_operator, toss_billing_auditor;
GRANT EXECUTE ON FUNCTION toss_billing.classify_code(text, text) TO toss_billing_operator, toss_billing_auditor;
