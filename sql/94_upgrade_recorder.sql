-- The 0.3.0 -> 0.4.0 upgrade: _record_outcomes, now called beside the same
-- runner's claims (by the outcome recorder), locks the subscriptions before
-- the payments.  An upgraded database defines it exactly as a fresh install
-- does, with the same privileges.
\set regress_db :DBNAME
SELECT md5(pg_get_functiondef(p.oid)) AS fresh_def, proacl::text AS fresh_acl
  FROM pg_proc p
 WHERE p.oid = 'toss_billing._record_outcomes(bigint[],text[],integer[],text[],text[],text[],jsonb[])'::regprocedure \gset
-- the subscriptions are locked before any payment is touched
SELECT strpos(d, 'FROM toss_billing.subscriptions s') < strpos(d, 'UPDATE toss_billing.payments p')
       AND strpos(d, 'FROM toss_billing.subscriptions s') > 0 AS subscriptions_first
  FROM pg_get_functiondef('toss_billing._record_outcomes(bigint[],text[],integer[],text[],text[],text[],jsonb[])'::regprocedure) d;

CREATE DATABASE tb_upgrade4;
\c tb_upgrade4
SET client_min_messages = warning;
CREATE EXTENSION toss_billing VERSION '0.3.0';
ALTER EXTENSION toss_billing UPDATE TO '0.4.0';
SELECT extversion FROM pg_extension WHERE extname = 'toss_billing';
SELECT md5(pg_get_functiondef(p.oid)) = :'fresh_def' AS same_definition,
       proacl::text = :'fresh_acl' AS same_privileges
  FROM pg_proc p
 WHERE p.oid = 'toss_billing._record_outcomes(bigint[],text[],integer[],text[],text[],text[],jsonb[])'::regprocedure;

\c :regress_db
DROP DATABASE tb_upgrade4;
