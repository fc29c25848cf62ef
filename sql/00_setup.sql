-- Installing the extension: fixed schema, guarded objects, dump registration.
CREATE EXTENSION toss_billing;

SELECT extname, extversion, extrelocatable, extnamespace::regnamespace AS schema
  FROM pg_extension WHERE extname = 'toss_billing';

-- every user table and sequence is registered for pg_dump
SELECT c.relname
  FROM pg_extension e, unnest(e.extconfig) AS cfg(oid)
  JOIN pg_class c ON c.oid = cfg.oid
 WHERE e.extname = 'toss_billing'
 ORDER BY 1;

-- nothing in the schema is usable by PUBLIC
SELECT has_schema_privilege('public', 'toss_billing', 'USAGE') AS public_usage,
       has_function_privilege('public', 'toss_billing.toss_charge(text,bigint,text,text,text,text,bigint)', 'EXECUTE') AS public_charge,
       has_function_privilege('public', 'toss_billing.toss_issue_billing_key(text,text,text)', 'EXECUTE') AS public_issue,
       has_table_privilege('public', 'toss_billing.payments', 'SELECT') AS public_ledger;

-- the roles exist and get what they need
SELECT rolname, rolcanlogin FROM pg_roles
 WHERE rolname IN ('toss_billing_operator', 'toss_billing_auditor') ORDER BY 1;

-- settings: secrets only by file, and hidden from ordinary roles
SELECT name, context, setting <> '' AS is_set
  FROM pg_settings WHERE name LIKE 'toss_billing.%' ORDER BY 1;

-- the root key was loaded at server start
SELECT count(*) FROM toss_billing.payments;
