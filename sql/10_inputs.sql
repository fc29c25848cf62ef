-- Every input rule is checked before anything is recorded or sent.
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
\set SHOW_CONTEXT never
\getenv tbtest TB_TEST
SELECT customer_key FROM toss_billing.create_customer('입력 검사', 'inputs@example.com', 'cust-inputs');
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'cust-nokey');

-- amounts
SELECT toss_billing.toss_charge('cust-inputs', 0, '구독');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.toss_charge('cust-inputs', -4900, '구독');
SELECT toss_billing.toss_charge('cust-inputs', 99, '구독');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.toss_charge('cust-inputs', 4900, '구독', tax_free_amount => 5000);
SELECT toss_billing.toss_charge('cust-inputs', 4900, '구독', tax_free_amount => -1);

-- order ids: 6 to 64 of [A-Za-z0-9_-]
SELECT toss_billing.toss_charge('cust-inputs', 4900, '구독', 'abc12');
SELECT toss_billing.toss_charge('cust-inputs', 4900, '구독', repeat('a', 65));
SELECT toss_billing.toss_charge('cust-inputs', 4900, '구독', 'order/../x');
SELECT toss_billing.toss_charge('cust-inputs', 4900, '구독', 'order id 1');
SELECT toss_billing.toss_charge('cust-inputs', 4900, '구독', 'order=1234');
SELECT toss_billing.toss_charge('cust-inputs', 4900, '구독', '주문번호123456');

-- order name: required, at most 100 characters (not bytes)
SELECT toss_billing.toss_charge('cust-inputs', 4900, '');
SELECT toss_billing.toss_charge('cust-inputs', 4900, repeat('가', 101));
SELECT toss_billing.toss_charge('cust-inputs', 4900, E'line\nbreak');
SELECT toss_billing.toss_charge('cust-inputs', 4900, '구독', customer_email => repeat('e', 101));
SELECT toss_billing.toss_charge('cust-inputs', 4900, '구독', customer_name => repeat('이', 101));

-- NULLs
SELECT toss_billing.toss_charge(NULL, 4900, '구독');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.toss_charge('cust-inputs', NULL, '구독');
SELECT toss_billing.toss_charge('cust-inputs', 4900, NULL);
SELECT toss_billing.toss_charge('cust-inputs', 4900, '구독', tax_free_amount => NULL);
SELECT toss_billing.toss_issue_billing_key(NULL, 'ak');
SELECT toss_billing.toss_issue_billing_key('cust-inputs', NULL);
SELECT toss_billing.toss_issue_billing_key('cust-inputs', 'ak', NULL);

-- customer keys: 2 to 50 of [A-Za-z0-9-_=.@]
SELECT toss_billing.toss_charge('c', 4900, '구독');
SELECT toss_billing.toss_charge('cust inputs', 4900, '구독');
SELECT toss_billing.toss_charge(repeat('c', 51), 4900, '구독');
SELECT toss_billing.toss_issue_billing_key('cust/../x', 'ak');
SELECT toss_billing.toss_issue_billing_key('cust-inputs', '');
SELECT toss_billing.toss_issue_billing_key('cust-inputs', repeat('k', 301));
SELECT toss_billing.toss_issue_billing_key('cust-inputs', 'ak', 'bad merchant!');

-- unknown customer; customer without a billing key (checked by the worker)
SELECT toss_billing.toss_charge('cust-nobody', 4900, '구독');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.toss_charge('cust-nokey', 4900, '구독');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.toss_issue_billing_key('cust-nobody', 'ak');

-- an unknown merchant is a configuration error, found before anything is recorded
\set ak `$TB_TEST/emu authkey cust-inputs`
SELECT toss_billing.toss_issue_billing_key('cust-inputs', :'ak', 'nosuchmerchant');
\echo :LAST_ERROR_SQLSTATE

-- nothing was half-written
SELECT count(*) AS payments FROM toss_billing.payments;
SELECT count(*) AS billing_keys FROM toss_billing.billing_keys;
