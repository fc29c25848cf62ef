/*
 * hints.c — a hint on one error PostgreSQL raises about toss_billing: a role
 * that may read only some columns of toss_billing.billing_keys (operators and
 * auditors: everything but the sealed key, its lookup hash and the
 * issuance's Idempotency-Key) and runs SELECT * gets "permission denied for
 * table billing_keys"; the hint names the view to read instead.
 *
 * An emit_log_hook (installed by _PG_init, chained to any earlier one):
 * called for every report on its way to the log and the client; it only
 * adds a hint to that one error when the report has none, and allocates it
 * in ErrorContext as elog.c does.  No catalog access (the report may come
 * from anywhere), no secret.
 */
#include "postgres.h"

#include "utils/elog.h"
#include "utils/memutils.h"

#include "hints.h"

static emit_log_hook_type prev_emit_log_hook = NULL;

static void
billing_keys_hint(ErrorData *edata)
{
	if (edata->elevel == ERROR && edata->sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE &&
		edata->hint == NULL && edata->message_id != NULL && edata->message != NULL &&
		strcmp(edata->message_id, "permission denied for table %s") == 0 &&
		strstr(edata->message, "billing_keys") != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(ErrorContext);

		edata->hint = pstrdup("toss_billing.billing_keys keeps its sealed key, lookup hash and Idempotency-Key "
							  "from every role but the extension owner: read toss_billing.billing_key_info, "
							  "or name the columns you need.");
		MemoryContextSwitchTo(old);
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
toss_install_hints(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = billing_keys_hint;
}
