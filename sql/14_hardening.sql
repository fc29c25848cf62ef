-- Hardening: no role escalates through the extension, the install refuses a
-- schema or roles it did not make, DROP EXTENSION keeps money records, and
-- user-facing functions answer bad input with the documented SQLSTATE.
-- Needs: 00_setup (the extension in this database) and the emulator.
\set SHOW_CONTEXT never
\set VERBOSITY default
SET TimeZone = 'Asia/Seoul';
SELECT current_database() AS regress_db, current_user AS superuser \gset
-- a type's qualified name, usable in a cast whatever the search_path
CREATE FUNCTION public.tb_qualified(t oid) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.format('%I.%I', n.nspname, ty.typname)
      FROM pg_catalog.pg_type ty JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) ty.typnamespace
     WHERE ty.oid OPERATOR(pg_catalog.=) t
$$;

-- ---------------------------------------------------------------- search_path

-- Every function of the extension pins search_path with pg_catalog first and
-- pg_temp explicitly last.  The one exception is a procedure that commits
-- (a SET clause would forbid its COMMITs); its C code pins search_path for
-- each statement it runs itself.
SELECT p.oid::regprocedure AS missing_search_path
  FROM pg_proc p
 WHERE p.pronamespace = 'toss_billing'::regnamespace
   AND NOT (COALESCE(p.proconfig, '{}') @> ARRAY['search_path=pg_catalog, pg_temp'])
 ORDER BY 1;

-- An operator plants, in its own pg_temp, a domain over every type the
-- extension uses whose check runs a function of the operator's, tables and
-- functions named like the extension's, and operators; then calls every
-- SECURITY DEFINER function of the extension, and every C function an
-- operator may call (those that reach Toss hand their work to the engine,
-- whose worker runs its SQL as the owner) -- enumerated, so a new one is
-- covered too -- once with NULLs and once with plausible arguments.  If any
-- of the planted objects ran as the extension's owner, the sequence the
-- operator may not use would have moved.
CREATE SEQUENCE public.tb_escalated;
CREATE ROLE tb_attacker LOGIN IN ROLE toss_billing_operator;
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'cust-hard');
SELECT id AS hard_plan FROM toss_billing.create_plan('강화 테스트', 1000) \gset
SELECT id AS hard_sub FROM toss_billing.create_subscription('cust-hard', :hard_plan, now() + interval '1 day') \gset
SELECT set_config('tb.sub', :'hard_sub', false) IS NOT NULL AS set, set_config('tb.plan', :'hard_plan', false) IS NOT NULL AS set;
-- an invoice to charge: the one-off line of the subscription's first draft
SELECT invoice_id AS hard_invoice FROM toss_billing.add_invoice_item(:hard_sub, 5000, '강화 항목') \gset
SELECT set_config('tb.invoice', :'hard_invoice', false) IS NOT NULL AS set;

SET ROLE tb_attacker;
CREATE FUNCTION pg_temp.evil() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM nextval('public.tb_escalated');
    RETURN true;
END;
$$;
CREATE FUNCTION pg_temp.evil_eq(text, text) RETURNS boolean
LANGUAGE sql AS $$ SELECT pg_temp.evil() $$;
CREATE OPERATOR pg_temp.= (LEFTARG = text, RIGHTARG = text, FUNCTION = pg_temp.evil_eq);
CREATE OPERATOR pg_temp.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = pg_temp.evil_eq);
DO $plant$
DECLARE
    t text;
BEGIN
    FOR t IN
        SELECT DISTINCT ty.typname
          FROM pg_type ty
         WHERE ty.typnamespace = 'pg_catalog'::regnamespace AND ty.typtype = 'b' AND ty.typcategory <> 'A'
           AND (ty.oid IN (SELECT unnest(p.proargtypes::oid[]) FROM pg_proc p
                            WHERE p.pronamespace = 'toss_billing'::regnamespace)
                OR ty.oid IN (SELECT p.prorettype FROM pg_proc p WHERE p.pronamespace = 'toss_billing'::regnamespace)
                OR ty.oid IN (SELECT a.atttypid FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                               WHERE c.relnamespace = 'toss_billing'::regnamespace)
                OR ty.typname IN ('text', 'jsonb', 'json', 'bytea', 'name', 'timestamptz', 'int8', 'int4', 'bool',
                                  'numeric', 'interval', 'uuid', 'date', 'float8', 'regclass', 'oid'))
         ORDER BY 1
    LOOP
        EXECUTE format('CREATE DOMAIN pg_temp.%I AS pg_catalog.%I CHECK (pg_temp.evil())', t, t);
    END LOOP;
    FOR t IN SELECT c.relname FROM pg_class c
              WHERE c.relnamespace = 'toss_billing'::regnamespace AND c.relkind IN ('r', 'v') ORDER BY 1
    LOOP
        EXECUTE format('CREATE TEMP TABLE %I (id bigint, state text CHECK (pg_temp.evil()))', t);
    END LOOP;
    FOR t IN SELECT DISTINCT p.proname FROM pg_proc p
              WHERE p.pronamespace = 'toss_billing'::regnamespace AND p.prokind = 'f' ORDER BY 1
    LOOP
        EXECUTE format('CREATE FUNCTION pg_temp.%I() RETURNS boolean LANGUAGE sql AS $f$ SELECT pg_temp.evil() $f$', t);
    END LOOP;
END
$plant$;
SELECT count(*) > 10 AS planted_domains FROM pg_type WHERE typnamespace = pg_my_temp_schema() AND typtype = 'd';

-- call every SECURITY DEFINER function of the extension.  The block's own
-- queries run with search_path = pg_catalog, pg_temp (the traps are in this
-- very session); each call runs with the attacker's search_path: pg_temp first.
DO $calls$
DECLARE
    f record;
    v_args pg_catalog.text;
    v_calls pg_catalog.int4 := 0;
BEGIN
    SET LOCAL search_path = pg_catalog, pg_temp;
    FOR f IN
        SELECT p.oid, p.proname, p.proargtypes::pg_catalog.oid[] AS types,
               COALESCE(p.proargnames, '{}'::pg_catalog.text[]) AS names
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'toss_billing'::pg_catalog.regnamespace AND p.prosecdef AND p.prokind = 'f'
         ORDER BY p.oid
    LOOP
        FOR i IN 1..2 LOOP
            SELECT string_agg(
                       CASE
                           WHEN i = 1 THEN format('NULL::%s', public.tb_qualified(t))
                           WHEN f.names[n] = 'subscription_id' THEN format('%s::pg_catalog.int8', current_setting('tb.sub'))
                           WHEN f.names[n] = 'plan_id' THEN format('%s::pg_catalog.int8', current_setting('tb.plan'))
                           WHEN f.names[n] = 'invoice_id' THEN format('%s::pg_catalog.int8', current_setting('tb.invoice'))
                           WHEN f.names[n] = 'customer_key' THEN '''cust-hard''::pg_catalog.text'
                           WHEN f.names[n] = 'payload' THEN
                               '''{"eventType":"BILLING_DELETED","createdAt":"2026-01-01T00:00:00","data":{"billingKey":"k","reason":"x"}}''::pg_catalog.jsonb'
                           WHEN t = 'pg_catalog.text'::pg_catalog.regtype THEN '''x''::pg_catalog.text'
                           WHEN t IN ('pg_catalog.int8'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype)
                               THEN format('1::%s', public.tb_qualified(t))
                           WHEN t = 'pg_catalog.bool'::pg_catalog.regtype THEN 'false'
                           WHEN t = 'pg_catalog.timestamptz'::pg_catalog.regtype THEN 'pg_catalog.now()'
                           WHEN t = 'pg_catalog.interval'::pg_catalog.regtype THEN '''1 day''::pg_catalog.interval'
                           WHEN t = 'pg_catalog.jsonb'::pg_catalog.regtype THEN '''{}''::pg_catalog.jsonb'
                           ELSE format('NULL::%s', public.tb_qualified(t)) END,
                       ', ' ORDER BY n)
              INTO v_args FROM unnest(f.types) WITH ORDINALITY AS a(t, n);
            BEGIN
                PERFORM set_config('search_path', 'pg_temp', true);
                EXECUTE format('SELECT toss_billing.%I(%s)', f.proname, COALESCE(v_args, ''));
            EXCEPTION WHEN OTHERS THEN
                NULL;
            END;
            PERFORM set_config('search_path', 'pg_catalog, pg_temp', true);
        END LOOP;
        v_calls := v_calls + 1;
    END LOOP;
    RAISE NOTICE 'called % SECURITY DEFINER functions', v_calls;
END
$calls$;
-- then every C function an operator may call, in a transaction of its own
-- (the first block's calls may hold row locks until it ends, which an
-- engine worker would wait for): the charges, issues, cancels and key
-- deletions reach the engine, whose worker runs their SQL as the owner in a
-- session of its own (charge_invoice_now's intent, say); the plausible
-- arguments are refused there, before anything is sent.
DO $c_calls$
DECLARE
    f record;
    v_args pg_catalog.text;
    v_calls pg_catalog.int4 := 0;
    v_names pg_catalog.text[] := '{}';
    v_state pg_catalog.text;
BEGIN
    SET LOCAL search_path = pg_catalog, pg_temp;
    FOR f IN
        SELECT p.oid, p.proname, p.proargtypes::pg_catalog.oid[] AS types,
               COALESCE(p.proargnames, '{}'::pg_catalog.text[]) AS names
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'toss_billing'::pg_catalog.regnamespace AND NOT p.prosecdef AND p.prokind = 'f'
           AND p.prolang = (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname OPERATOR(pg_catalog.=) 'c')
           AND pg_catalog.has_function_privilege('toss_billing_operator', p.oid, 'EXECUTE')
         ORDER BY p.oid
    LOOP
        FOR i IN 1..2 LOOP
            SELECT string_agg(
                       CASE
                           WHEN i = 1 THEN format('NULL::%s', public.tb_qualified(t))
                           WHEN f.names[n] = 'subscription_id' THEN format('%s::pg_catalog.int8', current_setting('tb.sub'))
                           WHEN f.names[n] = 'plan_id' THEN format('%s::pg_catalog.int8', current_setting('tb.plan'))
                           WHEN f.names[n] = 'invoice_id' THEN format('%s::pg_catalog.int8', current_setting('tb.invoice'))
                           WHEN f.names[n] = 'customer_key' THEN '''cust-hard''::pg_catalog.text'
                           WHEN f.names[n] = 'payload' THEN
                               '''{"eventType":"BILLING_DELETED","createdAt":"2026-01-01T00:00:00","data":{"billingKey":"k","reason":"x"}}''::pg_catalog.jsonb'
                           WHEN t = 'pg_catalog.text'::pg_catalog.regtype THEN '''x''::pg_catalog.text'
                           WHEN t IN ('pg_catalog.int8'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype)
                               THEN format('1::%s', public.tb_qualified(t))
                           WHEN t = 'pg_catalog.bool'::pg_catalog.regtype THEN 'false'
                           WHEN t = 'pg_catalog.timestamptz'::pg_catalog.regtype THEN 'pg_catalog.now()'
                           WHEN t = 'pg_catalog.interval'::pg_catalog.regtype THEN '''1 day''::pg_catalog.interval'
                           WHEN t = 'pg_catalog.jsonb'::pg_catalog.regtype THEN '''{}''::pg_catalog.jsonb'
                           ELSE format('NULL::%s', public.tb_qualified(t)) END,
                       ', ' ORDER BY n)
              INTO v_args FROM unnest(f.types) WITH ORDINALITY AS a(t, n);
            v_state := 'ok';
            BEGIN
                PERFORM set_config('search_path', 'pg_temp', true);
                EXECUTE format('SELECT toss_billing.%I(%s)', f.proname, COALESCE(v_args, ''));
            EXCEPTION WHEN OTHERS THEN
                v_state := SQLSTATE;
            END;
            PERFORM set_config('search_path', 'pg_catalog, pg_temp', true);
        END LOOP;
        v_calls := v_calls + 1;
        -- with the plausible arguments: how it answered
        v_names := v_names OPERATOR(pg_catalog.||) pg_catalog.format('%s %s', f.proname, v_state);
    END LOOP;
    RAISE NOTICE 'called % C functions an operator may call: %', v_calls,
        pg_catalog.array_to_string(ARRAY(SELECT n FROM unnest(v_names) n ORDER BY n), ', ');
END
$c_calls$;
RESET ROLE;
-- nothing planted ran with the owner's rights, and the attacker gained nothing
SELECT last_value, is_called AS escalated FROM public.tb_escalated;
SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'tb_attacker';

-- a fresh session: the traps stay behind in the attacker's pg_temp
\c :regress_db :superuser
SET TimeZone = 'Asia/Seoul';

-- ---------------------------------------------------------------- replay tokens and LISTEN

-- no role but the owner reads an Idempotency-Key (a replay token)
SELECT c.relname, a.attname,
       has_column_privilege('toss_billing_operator', c.oid, a.attnum, 'SELECT') AS operator,
       has_column_privilege('toss_billing_auditor', c.oid, a.attnum, 'SELECT') AS auditor
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'toss_billing'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
   AND (a.attname IN ('idempotency_key', 'encrypted_key', 'key_hash', 'auth_key_hash'))
 ORDER BY 1, 2;

-- the notification carries ids, the event type and the status: nothing else
SELECT pg_get_functiondef('toss_billing._notify_events'::regproc) ~ 'json_build_object\(''event_id'', e.id, ''type'', e.type,\s+''subscription_id'', e.subscription_id,\s+''payment_id'', e.payment_id,\s+''status'', e.to_status\)' AS payload_is_ids_type_status;

-- ---------------------------------------------------------------- bad input

-- every function an operator may call answers NULL arguments with 22004
-- (or accepts them where NULL means "the default")
DO $nulls$
DECLARE
    f record;
    v_args text;
    v_state text;
BEGIN
    FOR f IN
        SELECT p.oid, p.proname, p.proargtypes::oid[] AS types
          FROM pg_proc p
         WHERE p.pronamespace = 'toss_billing'::regnamespace AND p.prokind = 'f' AND p.pronargs > 0
           AND has_function_privilege('toss_billing_operator', p.oid, 'EXECUTE')
         ORDER BY p.proname
    LOOP
        SELECT string_agg(format('NULL::%s', public.tb_qualified(t)), ', ' ORDER BY n)
          INTO v_args FROM unnest(f.types) WITH ORDINALITY AS a(t, n);
        v_state := 'ok';
        BEGIN
            EXECUTE format('SELECT toss_billing.%I(%s)', f.proname, v_args);
        EXCEPTION WHEN OTHERS THEN
            v_state := SQLSTATE;
        END;
        RAISE NOTICE '%(NULL...) -> %', f.proname, v_state;
    END LOOP;
END
$nulls$;

-- times that are not finite are refused, never looped over
SELECT id AS hard_plan FROM toss_billing.create_plan('강화 테스트 2', 1000) \gset
SELECT toss_billing.create_subscription('cust-hard', :hard_plan, anchor => '-infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.create_subscription('cust-hard', :hard_plan, anchor => 'infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.freeze_clock('infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.create_test_clock('-infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.period_start('infinity', 'Asia/Seoul', 'month', 1, 3);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM toss_billing.reconcile('-infinity', '2026-01-01 00:00+09');
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.schedule(NULL);
\echo :LAST_ERROR_SQLSTATE
-- a check constraint never answers for a bad value: the rule does, first
SELECT toss_billing.create_customer(NULL, NULL, 'x');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO toss_billing.customers (customer_key, name) VALUES ('cust-hard-2', repeat('가', 101));
\echo :LAST_ERROR_SQLSTATE
SELECT toss_billing.create_plan('긴 주기', 1000, 'day', 100000);
\echo :LAST_ERROR_SQLSTATE

-- ---------------------------------------------------------------- the install

-- a schema toss_billing made by someone else is refused
CREATE ROLE tb_squatter LOGIN;
CREATE DATABASE tb_squatted;
GRANT CREATE ON DATABASE tb_squatted TO tb_squatter;
\c tb_squatted
SET ROLE tb_squatter;
CREATE SCHEMA toss_billing;
RESET ROLE;
CREATE EXTENSION toss_billing;
\echo :LAST_ERROR_SQLSTATE
-- even owned by the installer, a schema holding foreign objects is refused
ALTER SCHEMA toss_billing OWNER TO CURRENT_USER;
CREATE TABLE toss_billing.planted (x int);
CREATE EXTENSION toss_billing;
\echo :LAST_ERROR_SQLSTATE
DROP TABLE toss_billing.planted;
CREATE EXTENSION toss_billing;
SELECT extname FROM pg_extension WHERE extname = 'toss_billing';

-- existing roles with rights the install does not give are refused
DROP EXTENSION toss_billing;
ALTER ROLE toss_billing_auditor LOGIN;
CREATE EXTENSION toss_billing;
\echo :LAST_ERROR_SQLSTATE
ALTER ROLE toss_billing_auditor NOLOGIN;
GRANT pg_read_all_data TO toss_billing_operator;
CREATE EXTENSION toss_billing;
\echo :LAST_ERROR_SQLSTATE
REVOKE pg_read_all_data FROM toss_billing_operator;
CREATE EXTENSION toss_billing;

-- ---------------------------------------------------------------- DROP EXTENSION

-- an empty ledger may be dropped; one that holds money records may not
DROP EXTENSION toss_billing;
CREATE EXTENSION toss_billing;
SELECT customer_key FROM toss_billing.create_customer(NULL, NULL, 'cust-drop');
INSERT INTO toss_billing.billing_keys (customer_id, status, encrypted_key, idempotency_key)
SELECT id, 'active', '\x00', 'drop-test' FROM toss_billing.customers;
DROP EXTENSION toss_billing;
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA toss_billing CASCADE;
\echo :LAST_ERROR_SQLSTATE
CREATE EXTENSION dblink;
DROP EXTENSION dblink;
SELECT count(*) AS still_there FROM toss_billing.billing_keys;
SET toss_billing.allow_drop = on;
DROP EXTENSION toss_billing;
RESET toss_billing.allow_drop;
SELECT count(*) AS gone FROM pg_extension WHERE extname = 'toss_billing';
\c :regress_db :superuser
DROP DATABASE tb_squatted;
DROP ROLE tb_squatter;
DROP FUNCTION public.tb_qualified(oid);
DROP SEQUENCE public.tb_escalated;
DROP ROLE tb_attacker;
