-- toss_billing 0.4.0 -> 0.5.0.  The generated upgrade script runs the
-- schema's "first" checks, then this migration of what 0.4.0 has, then the
-- code sections of every schema file, then the part after "@after-code".

-- Replay tokens are the owner's alone: an issuance's Idempotency-Key returns
-- the billing key in the clear to anyone who also has the secret key.
REVOKE SELECT (idempotency_key) ON toss_billing.billing_keys FROM toss_billing_operator, toss_billing_auditor;
REVOKE SELECT ON toss_billing.cancels FROM toss_billing_operator, toss_billing_auditor;

-- @after-code

CREATE EVENT TRIGGER toss_billing_drop_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA')
    EXECUTE FUNCTION toss_billing._guard_drop();
