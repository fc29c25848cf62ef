-- 00_base: conventions, the roles and the schema's privileges.
--
-- The schema sources (sql/schema/NN_*.sql) hold the current definition of
-- every object of toss_billing, one domain per file; `make` concatenates them
-- into the install script of the default version, and replays their code
-- sections after sql/upgrade/<from>--<to>.sql to make the upgrade script.
-- Sections: "-- @data" (tables, indexes, types, rows: run on a fresh install
-- only; an upgrade migrates them in sql/upgrade/) and "-- @code" (functions,
-- procedures, views, triggers, grants: CREATE OR REPLACE, run on every
-- install and upgrade).
--
-- Style: everything is schema-qualified; table definitions, indexes and
-- defaults spell operators as OPERATOR(pg_catalog.x); function bodies name
-- every relation and function with its schema.  Nothing is granted to PUBLIC.

-- @data

-- Roles: operators call the functions, auditors read the ledger.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'toss_billing_operator') THEN
        CREATE ROLE toss_billing_operator NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'toss_billing_auditor') THEN
        CREATE ROLE toss_billing_auditor NOLOGIN;
    END IF;
END
$roles$;

-- @code

REVOKE ALL ON SCHEMA toss_billing FROM PUBLIC;
GRANT USAGE ON SCHEMA toss_billing TO toss_billing_operator, toss_billing_auditor;

-- recovery (in-flight attempts that lost their caller become unknown and are
-- resolved by order id), refunds (toss_cancel), billing key deletion
-- (toss_delete_billing_key), webhooks (ingest_webhook) and reconciliation
-- with Toss's transactions (reconcile), plus the declarations of the C
-- functions that call Toss for them.
--
-- Style as in 0.2.0: everything is schema-qualified; table definitions,
-- indexes and defaults spell operators as OPERATOR(pg_catalog.x); function
-- bodies run with search_path = ''.  Nothing is granted to PUBLIC.  Recovery
-- works on real time (pg_catalog.now(): updated_at, server start), never on
-- the billing clock; subscription events keep using the subscription's clock.


-- The start time of the current backend.  Together with its pid it names the
-- process that wrote an in-flight row, so that a row whose process is gone
-- (a killed worker, a crash restart) is known to have lost its caller.
CREATE OR REPLACE FUNCTION toss_billing._backend_start()
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT a.backend_start FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a;
$$;
