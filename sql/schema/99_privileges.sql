-- 99_privileges: nothing of toss_billing is PUBLIC.  Runs last, on every
-- install and upgrade, so that objects added since are covered too.  (The
-- grants to the extension's roles are beside each object.)

-- @code

REVOKE ALL ON ALL TABLES IN SCHEMA toss_billing FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA toss_billing FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA toss_billing FROM PUBLIC;
