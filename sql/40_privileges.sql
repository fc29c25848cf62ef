-- Who may do what: nothing without a grant, operators bill, auditors read,
-- Needs: 00_setup (the extension in this database) and the emulator; runs alone after it.
-- and nobody but superusers sees secrets.
\set SHOW_CONTEXT never
\getenv tbtest TB_TEST
CREATE ROLE tb_nobody;
CREATE ROLE tb_clerk IN ROLE toss_billing_operator;
CREATE ROLE tb_audit IN ROLE toss_billing_auditor;
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'cust-privs');
\set ak `$TB_TEST/emu authkey cust-privs`
SELECT status FROM toss_billing.toss_issue_billing_key('cust-privs', :'ak');

-- an ordinary role: no functions, no tables, no secret settings
SET ROLE tb_nobody;
SELECT toss_billing.toss_charge('cust-privs', 4900, '구독');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.toss_issue_billing_key('cust-privs', 'x');
SELECT count(*) FROM toss_billing.payments;
SELECT encrypted_key FROM toss_billing.billing_keys;
SHOW toss_billing.secret_key_file;
\echo :LAST_ERROR_SQLSTATE
SHOW toss_billing.root_key_file;
SELECT name FROM pg_settings WHERE name LIKE 'toss_billing.%' ORDER BY 1;
SELECT current_setting('toss_billing.secret_key_file');
SET toss_billing.api_url = 'https://attacker.example';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- an auditor reads the ledger and key summaries, never the sealed key, and cannot bill
SET ROLE tb_audit;
SELECT count(*) >= 0 AS reads_ledger FROM toss_billing.payments;
SELECT status FROM toss_billing.billing_key_info WHERE customer_key = 'cust-privs';
SELECT card_number IS NOT NULL AS sees_card_summary FROM toss_billing.billing_keys
 WHERE customer_id = (SELECT id FROM toss_billing.customers WHERE customer_key = 'cust-privs');
SELECT encrypted_key FROM toss_billing.billing_keys;
SELECT toss_billing.toss_charge('cust-privs', 4900, '구독');
RESET ROLE;

-- an operator bills, and still cannot read the sealed key or the key file
SET ROLE tb_clerk;
SELECT customer_key FROM toss_billing.create_customer('운영자 고객', NULL, 'cust-privs-2');
SELECT status, total_amount FROM toss_billing.toss_charge('cust-privs', 4900, '구독', 'order-privs-1');
SELECT order_id, state, requested_by FROM toss_billing.payments WHERE order_id = 'order-privs-1';
SELECT encrypted_key FROM toss_billing.billing_keys;
SELECT pg_read_file(current_setting('toss_billing.secret_key_file'));
RESET ROLE;

-- the worker acts as the extension owner, so the ledger records who asked
SELECT requested_by FROM toss_billing.payments WHERE order_id = 'order-privs-1';

-- the api URL must be https, or plain http only to loopback
SET toss_billing.api_url = 'http://example.com';
SET toss_billing.api_url = 'https://user:pw@example.com';
SET toss_billing.api_url = 'https://example.com/v1';
SET toss_billing.api_url = 'ftp://example.com';
DROP ROLE tb_nobody, tb_clerk, tb_audit;
