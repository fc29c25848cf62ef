-- 00_base: conventions; the checks that the schema and the roles are the
-- extension's own; the roles and the schema's privileges; the guard that
-- keeps DROP EXTENSION from deleting money records.
--
-- The schema sources (sql/schema/NN_*.sql) hold the current definition of
-- every object of toss_billing, one domain per file; `make` concatenates them
-- into the install script of the default version, and replays their code
-- sections after sql/upgrade/<from>--<to>.sql to make the upgrade script.
-- Sections: "-- @data" (tables, indexes, types, rows: run on a fresh install
-- only; an upgrade migrates them in sql/upgrade/) and "-- @code" (functions,
-- procedures, views, triggers, grants: CREATE OR REPLACE or otherwise
-- idempotent, run on every install and upgrade).
--
-- Style: everything is schema-qualified; table definitions, indexes and
-- defaults spell operators as OPERATOR(pg_catalog.x); every function runs
-- with search_path = pg_catalog, pg_temp (pg_temp explicitly last, so that a
-- caller's temporary types and relations can never stand in for ours) and
-- names every relation and function of the extension with its schema.
-- Nothing is granted to PUBLIC.
--
-- Verbs: "record" writes what happened (an attempt's outcome, a cancel, an
-- event); "settle" moves a subscription on because of an outcome; "apply"
-- takes in what Toss says (a Payment, a webhook) and records and settles
-- accordingly; "claim" takes rows for work with FOR UPDATE SKIP LOCKED;
-- "mark" changes a state without an outcome (stale, deleted).

-- @first

-- The schema must be the extension's own: owned by the extension's owner,
-- and holding nothing that is not part of the extension.  A role with
-- CREATE on the database could otherwise create schema toss_billing before
-- CREATE EXTENSION and plant objects there (or rename it later) that would
-- run with the owner's rights.  Checked on every install and upgrade.
DO $schema$
DECLARE
    v_ext oid;
    v_owner oid;
    v_nsp oid;
    v_nsp_owner oid;
    v_foreign text;
BEGIN
    SELECT e.oid, e.extowner INTO v_ext, v_owner FROM pg_catalog.pg_extension e
     WHERE e.extname OPERATOR(pg_catalog.=) 'toss_billing';
    SELECT n.oid, n.nspowner INTO v_nsp, v_nsp_owner FROM pg_catalog.pg_namespace n
     WHERE n.nspname OPERATOR(pg_catalog.=) 'toss_billing';
    IF v_nsp_owner OPERATOR(pg_catalog.<>) v_owner THEN
        RAISE EXCEPTION 'schema toss_billing belongs to role %, not to the extension''s owner %',
                        pg_catalog.pg_get_userbyid(v_nsp_owner), pg_catalog.pg_get_userbyid(v_owner)
            USING ERRCODE = '42501',
                  DETAIL = 'toss_billing installs only into a schema of its own: objects that another role put there would run with the extension owner''s rights.',
                  HINT = 'Check what schema toss_billing holds, drop or rename it, and run CREATE EXTENSION toss_billing again.';
    END IF;
    WITH RECURSIVE own(classid, objid) AS (
        SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
         WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.refobjid OPERATOR(pg_catalog.=) v_ext AND d.deptype OPERATOR(pg_catalog.=) 'e'
        UNION
        SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
          JOIN own o ON d.refclassid OPERATOR(pg_catalog.=) o.classid AND d.refobjid OPERATOR(pg_catalog.=) o.objid
         WHERE d.deptype OPERATOR(pg_catalog.=) ANY (ARRAY['i', 'a']::"char"[])),
    present(classid, objid) AS (
        SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, c.oid FROM pg_catalog.pg_class c
         WHERE c.relnamespace OPERATOR(pg_catalog.=) v_nsp
        UNION ALL
        SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid FROM pg_catalog.pg_proc p
         WHERE p.pronamespace OPERATOR(pg_catalog.=) v_nsp
        UNION ALL
        SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid FROM pg_catalog.pg_type t
         WHERE t.typnamespace OPERATOR(pg_catalog.=) v_nsp
        UNION ALL
        SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass, o.oid FROM pg_catalog.pg_operator o
         WHERE o.oprnamespace OPERATOR(pg_catalog.=) v_nsp
        UNION ALL
        SELECT 'pg_catalog.pg_collation'::pg_catalog.regclass, c.oid FROM pg_catalog.pg_collation c
         WHERE c.collnamespace OPERATOR(pg_catalog.=) v_nsp
        UNION ALL
        SELECT 'pg_catalog.pg_conversion'::pg_catalog.regclass, c.oid FROM pg_catalog.pg_conversion c
         WHERE c.connamespace OPERATOR(pg_catalog.=) v_nsp
        UNION ALL
        SELECT 'pg_catalog.pg_opfamily'::pg_catalog.regclass, f.oid FROM pg_catalog.pg_opfamily f
         WHERE f.opfnamespace OPERATOR(pg_catalog.=) v_nsp
        UNION ALL
        SELECT 'pg_catalog.pg_ts_config'::pg_catalog.regclass, c.oid FROM pg_catalog.pg_ts_config c
         WHERE c.cfgnamespace OPERATOR(pg_catalog.=) v_nsp
        UNION ALL
        SELECT 'pg_catalog.pg_ts_dict'::pg_catalog.regclass, d.oid FROM pg_catalog.pg_ts_dict d
         WHERE d.dictnamespace OPERATOR(pg_catalog.=) v_nsp
        UNION ALL
        SELECT 'pg_catalog.pg_extension'::pg_catalog.regclass, e.oid FROM pg_catalog.pg_extension e
         WHERE e.extnamespace OPERATOR(pg_catalog.=) v_nsp AND e.oid OPERATOR(pg_catalog.<>) v_ext)
    SELECT pg_catalog.string_agg(pg_catalog.pg_describe_object(p.classid, p.objid, 0), ', ')
      INTO v_foreign
      FROM present p
     WHERE NOT EXISTS (SELECT FROM own o
                        WHERE o.classid OPERATOR(pg_catalog.=) p.classid AND o.objid OPERATOR(pg_catalog.=) p.objid);
    IF v_foreign IS NOT NULL THEN
        RAISE EXCEPTION 'schema toss_billing holds objects that are not part of the extension'
            USING ERRCODE = '42501',
                  DETAIL = pg_catalog.format('Found: %s.', pg_catalog.left(v_foreign, 1000)),
                  HINT = 'toss_billing installs only into a schema of its own: move or drop those objects, or the schema, first.';
    END IF;
END
$schema$;

-- @code

-- Roles: operators call the functions, auditors read the ledger, receivers
-- take webhooks in (see configure_receiver).  Made if missing, on every
-- install and upgrade.
DO $roles$
DECLARE
    v_role name;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['toss_billing_operator', 'toss_billing_auditor', 'toss_billing_receiver']::name[] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) v_role) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', v_role);
        END IF;
    END LOOP;
END
$roles$;

-- The roles are group roles for what the install grants them and nothing
-- else.  A role of that name that already exists (made before the install,
-- or changed since) with LOGIN or another attribute, or that is a member of
-- other roles, would hand those rights to everyone granted it: refuse.
DO $roles$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT a.rolname, a.rolsuper, a.rolcanlogin, a.rolcreaterole, a.rolcreatedb, a.rolreplication,
                    a.rolbypassrls,
                    (SELECT pg_catalog.string_agg(g.rolname, ', ' ORDER BY g.rolname)
                       FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) m.roleid
                      WHERE m.member OPERATOR(pg_catalog.=) a.oid) AS member_of
               FROM pg_catalog.pg_roles a
              WHERE a.rolname OPERATOR(pg_catalog.=) ANY (ARRAY['toss_billing_operator', 'toss_billing_auditor',
                                                                'toss_billing_receiver']::name[])
              ORDER BY a.rolname
    LOOP
        IF r.rolsuper OR r.rolcanlogin OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls THEN
            RAISE EXCEPTION 'role % already exists with attributes toss_billing does not give it', r.rolname
                USING ERRCODE = '42710',
                      DETAIL = pg_catalog.concat_ws(', ',
                                   CASE WHEN r.rolsuper THEN 'SUPERUSER' END, CASE WHEN r.rolcanlogin THEN 'LOGIN' END,
                                   CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END, CASE WHEN r.rolcreatedb THEN 'CREATEDB' END,
                                   CASE WHEN r.rolreplication THEN 'REPLICATION' END,
                                   CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END) || ': every role granted it would gain them.',
                      HINT = pg_catalog.format('ALTER ROLE %I NOSUPERUSER NOLOGIN NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS, or drop it, then try again.', r.rolname);
        END IF;
        IF r.member_of IS NOT NULL THEN
            RAISE EXCEPTION 'role % already exists as a member of %', r.rolname, r.member_of
                USING ERRCODE = '42710',
                      DETAIL = 'Every role granted it would gain the rights of those roles.',
                      HINT = pg_catalog.format('REVOKE those roles from %I, or drop it, then try again.', r.rolname);
        END IF;
    END LOOP;
END
$roles$;

REVOKE ALL ON SCHEMA toss_billing FROM PUBLIC;
GRANT USAGE ON SCHEMA toss_billing TO toss_billing_operator, toss_billing_auditor, toss_billing_receiver;

-- The start time of the current backend (pg_stat_activity.backend_start).
-- Together with its pid it names the process that wrote an in-flight row,
-- so that a row whose process is gone (a killed worker, a crash restart) is
-- known to have lost its caller.  (In C: it is the default of every
-- attempt's caller_started_at, and a SQL function is planned on each call.)
CREATE OR REPLACE FUNCTION toss_billing._backend_start()
RETURNS timestamptz
LANGUAGE c STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'toss_backend_start';

-- The drop guard: DROP EXTENSION toss_billing (or DROP SCHEMA toss_billing)
-- would delete the ledger with the extension.  While payments, cancels or
-- billing keys hold rows it is refused, unless a superuser has set
-- toss_billing.allow_drop = on for the session.  (An event trigger at
-- ddl_command_start: it runs before anything is dropped.  It cannot see which
-- objects a DROP names, so it looks for the word toss_billing in the
-- statement.)
CREATE OR REPLACE FUNCTION toss_billing._guard_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_payments bigint;
    v_cancels bigint;
    v_keys bigint;
BEGIN
    IF pg_catalog.current_query() !~* '(^|[^a-z0-9_$])"?toss_billing"?($|[^a-z0-9_$])' THEN
        RETURN;
    END IF;
    IF COALESCE(pg_catalog.current_setting('toss_billing.allow_drop', true), 'off') = 'on' THEN
        RETURN;
    END IF;
    SELECT pg_catalog.count(*) INTO v_payments FROM toss_billing.payments;
    SELECT pg_catalog.count(*) INTO v_cancels FROM toss_billing.cancels;
    SELECT pg_catalog.count(*) INTO v_keys FROM toss_billing.billing_keys;
    IF v_payments + v_cancels + v_keys > 0 THEN
        RAISE EXCEPTION 'toss_billing holds payment records; dropping it would delete them'
            USING ERRCODE = '2BP01',
                  DETAIL = pg_catalog.format('The ledger has %s payments, %s cancels and %s billing keys.',
                                             v_payments, v_cancels, v_keys),
                  HINT = 'Export them first (pg_dump --schema=toss_billing, or COPY each table), then, as a superuser, SET toss_billing.allow_drop = on and drop again.';
    END IF;
END;
$$;

-- @data

CREATE EVENT TRIGGER toss_billing_drop_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA')
    EXECUTE FUNCTION toss_billing._guard_drop();
