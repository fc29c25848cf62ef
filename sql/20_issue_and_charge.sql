-- The seed's flow: register a card, issue a billing key, charge 4,900 KRW.
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
\set SHOW_CONTEXT never
\getenv tbtest TB_TEST
SELECT customer_key FROM toss_billing.create_customer('박토스', 'customer@email.com', 'cust-happy');

-- Toss may hand out keys with characters that must be escaped in the path.
\set ak `$TB_TEST/emu authkey cust-happy 9410001234567890 'bk/with?odd=chars%and..dots=='`
SELECT id > 0 AS has_id, customer_key, merchant, status, method, card_number, card_type,
       card_owner_type, card_issuer_code IS NOT NULL AS has_issuer,
       authenticated_at IS NOT NULL AS has_authenticated_at
  FROM toss_billing.toss_issue_billing_key('cust-happy', :'ak');

-- the key is stored only sealed: no plaintext, and Toss's raw answer is not kept
SELECT status, length(encrypted_key) > 0 AS sealed,
       position(convert_to('bk/with', 'UTF8') IN encrypted_key) = 0 AS no_plaintext
  FROM toss_billing.billing_keys bk JOIN toss_billing.customers c ON c.id = bk.customer_id
 WHERE c.customer_key = 'cust-happy';

-- an authKey works once at Toss; the same customer bringing it again (the
-- successUrl reloaded) gets the key it was exchanged for, with no call
SELECT status, card_number FROM toss_billing.toss_issue_billing_key('cust-happy', :'ak');
\echo :LAST_ERROR_SQLSTATE

\x on
SELECT payment_key IS NOT NULL AS has_payment_key, order_id, order_name, status, type, method,
       currency, country, version, total_amount, balance_amount, supplied_amount, vat,
       tax_free_amount, tax_exemption_amount, requested_at IS NOT NULL AS has_requested_at,
       approved_at IS NOT NULL AS has_approved_at, use_escrow, culture_expense,
       is_partial_cancelable, last_transaction_key IS NOT NULL AS has_last_transaction_key,
       (card).amount AS card_amount, (card).number AS card_number,
       (card).installment_plan_months AS card_installment, (card).card_type AS card_type,
       (card).owner_type AS card_owner_type, (card).acquire_status AS card_acquire_status,
       (card).approve_no IS NOT NULL AS card_has_approve_no,
       cancels, failure_code, receipt_url IS NOT NULL AS has_receipt_url,
       raw->>'orderId' = order_id AS raw_matches
  FROM toss_billing.toss_charge('cust-happy', 4900, '토스 프라임 구독', 'order-happy-0001',
                                'customer@email.com', '박토스');
\x off

-- the ledger row: done, with the Toss fields copied exactly
SELECT order_id, state, toss_status, amount, total_amount, balance_amount, supplied_amount, vat,
       http_status, payment_key = response->>'paymentKey' AS payment_key_matches,
       approved_at IS NOT NULL AS has_approved_at, requested_by, failure_code
  FROM toss_billing.payments WHERE order_id = 'order-happy-0001';

-- what reached the emulator: the escaped path and the stored Idempotency-Key
\set req `$TB_TEST/emu last-request`
SELECT (:'req'::jsonb)->>'method' AS method, (:'req'::jsonb)->>'rawPath' AS raw_path,
       (:'req'::jsonb)->'body'->'amount' AS amount,
       (:'req'::jsonb)->'body'->>'customerKey' AS customer_key,
       (:'req'::jsonb)->>'idempotencyKey' = a.idempotency_key AS idempotency_key_persisted
  FROM toss_billing.payments p JOIN toss_billing.attempts a ON a.payment_id = p.id
 WHERE p.order_id = 'order-happy-0001';

-- an order id is charged at most once: the same call again returns the
-- same payment without calling Toss; another charge under it is refused
SELECT payment_key AS first_key FROM toss_billing.payments WHERE order_id = 'order-happy-0001' \gset
SELECT payment_key = :'first_key' AS same_payment, status
  FROM toss_billing.toss_charge('cust-happy', 4900, '토스 프라임 구독', 'order-happy-0001');
SELECT toss_billing.toss_charge('cust-happy', 5900, '토스 프라임 구독', 'order-happy-0001');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS orders, (SELECT count(*) FROM toss_billing.attempts a JOIN toss_billing.payments p ON p.id = a.payment_id
                             WHERE p.order_id = 'order-happy-0001') AS attempts
  FROM toss_billing.payments WHERE order_id = 'order-happy-0001';
\set done `$TB_TEST/emu done-count order-happy-0001`
SELECT :done AS charges_at_toss;

-- without an order id one is generated; tax-free part and VAT as Toss computes them
-- (tb, this installation's tag, a UUID: reconcile knows the order as ours)
SELECT toss_billing._order_tag() AS tag \gset
SELECT order_id ~ ('^tb' || :'tag' || '-[0-9a-f-]{36}$') AS generated,
       total_amount, tax_free_amount, vat, supplied_amount
  FROM toss_billing.toss_charge('cust-happy', 55000, '연간 구독', tax_free_amount => 5000);

-- a second card replaces the first; charges use the new key
\set ak2 `$TB_TEST/emu authkey cust-happy 4906251234123456`
SELECT status, card_number FROM toss_billing.toss_issue_billing_key('cust-happy', :'ak2');
SELECT status, card_number FROM toss_billing.billing_key_info WHERE customer_key = 'cust-happy' ORDER BY id;
SELECT (card).number FROM toss_billing.toss_charge('cust-happy', 1000, '추가 결제', 'order-happy-0002');

-- the sealed key is bound to its row: moved to another row it does not decrypt
UPDATE toss_billing.billing_keys SET encrypted_key = (
    SELECT encrypted_key FROM toss_billing.billing_keys WHERE status = 'replaced' ORDER BY id LIMIT 1)
 WHERE status = 'active' AND customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'cust-happy');
-- (the key's row id, which depends on what ran before, is shown as #)
DO $$
DECLARE
    v_detail text;
    v_hint text;
BEGIN
    PERFORM toss_billing.toss_charge('cust-happy', 1000, '추가 결제', 'order-happy-0003');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    RAISE NOTICE '%: %', SQLSTATE, regexp_replace(SQLERRM, 'billing key [0-9]+', 'billing key #');
    RAISE NOTICE 'detail: %', v_detail;
    RAISE NOTICE 'hint: %', v_hint;
END;
$$;
SELECT count(*) FROM toss_billing.payments WHERE order_id = 'order-happy-0003';

-- a trailing slash on toss_billing.api_url is dropped before paths are appended
\getenv emu EMULATOR_URL
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'cust-slash');
\set ak `$TB_TEST/emu authkey cust-slash`
SELECT set_config('toss_billing.api_url', :'emu' || '/', false) LIKE '%/' AS trailing_slash;
SELECT status FROM toss_billing.toss_issue_billing_key('cust-slash', :'ak');
SELECT status FROM toss_billing.toss_charge('cust-slash', 1000, '추가 결제', 'order-slash-0001');
\set req `$TB_TEST/emu last-request`
SELECT (:'req'::jsonb)->>'rawPath' ~ '^/v1/billing/[^/]+$' AS single_slash_path;
RESET toss_billing.api_url;
