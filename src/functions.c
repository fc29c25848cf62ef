/*
 * functions.c — the SQL-callable entry points that change something at
 * Toss: toss_issue_billing_key, toss_charge, charge_subscription_now,
 * charge_invoice_now, toss_cancel and toss_delete_billing_key.  (Read-only calls are in lookups.c, the runner in
 * runner.c.)
 *
 * Each function validates its arguments (every rule is checked here, before
 * the call is queued, so bad input costs nothing and records nothing), fills
 * a TossJob, runs it in the engine (engine.c: a worker of the database makes
 * the call in its own transactions) and turns the reply into a result or an
 * ERROR.  Nothing here touches the network or writes a table: the caller's
 * transaction stays free of side effects, so a ROLLBACK by the caller cannot
 * undo a charge.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"

#include "crypto.h"
#include "engine.h"
#include "errors.h"
#include "payment_row.h"
#include "settings.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(toss_issue_billing_key);
PG_FUNCTION_INFO_V1(toss_charge);
PG_FUNCTION_INFO_V1(toss_charge_subscription_now);
PG_FUNCTION_INFO_V1(toss_charge_invoice_now);
PG_FUNCTION_INFO_V1(toss_cancel);
PG_FUNCTION_INFO_V1(toss_delete_billing_key);

/* ---- argument checks ---- */

static char *
required_text(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

static char *
optional_text(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

static int64
required_int8(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return PG_GETARG_INT64(argno);
}

/* Every character from the set, and a length (in characters) in range. */
static void
check_charset(const char *value, const char *name, const char *extra_chars,
			  int minlen, int maxlen, const char *rule)
{
	int			len = strlen(value);
	bool		ok = len >= minlen && len <= maxlen;

	for (const char *p = value; ok && *p; p++)
		ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9') || strchr(extra_chars, *p) != NULL;
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" is not valid", name, value),
				 errdetail("%s", rule)));
}

static void
check_customer_key(const char *key)
{
	check_charset(key, "customer_key", "-_=.@", 2, 50,
				  "A customer key is 2 to 50 characters of letters, digits and - _ = . @.");
}

static void
check_max_chars(const char *value, const char *name, int max)
{
	if (value != NULL && pg_mbstrlen(value) > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is longer than %d characters", name, max),
				 errdetail("Toss accepts at most %d characters; this value has %d.",
						   max, pg_mbstrlen(value))));
}

static void
check_no_control_chars(const char *value, const char *name)
{
	for (const unsigned char *p = (const unsigned char *) value; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s contains a control character", name)));
}

static void
copy_field(char *dst, size_t dstsize, const char *src, const char *name)
{
	if (strlcpy(dst, src, dstsize) >= dstsize)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", name)));
}

/* ---- the job ---- */

static Oid
extension_owner(void)
{
	Oid			extoid = get_extension_oid("toss_billing", false);
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			owner = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return owner;
}

/* The engine's workers log in as the extension owner. */
static void
check_owner_can_log_in(Oid owner)
{
	if (!toss_role_can_log_in(owner))
		ereport(ERROR,
				(errcode(ERRCODE_TOSS_CONFIGURATION),
				 errmsg("the owner of extension toss_billing cannot log in"),
				 errdetail("toss_billing's engine workers connect as the extension owner, which needs the LOGIN attribute."),
				 errhint("ALTER ROLE the extension owner WITH LOGIN, or reinstall the extension as a role that can log in.")));
}

static void
init_job(TossJob *job, TossJobKind kind, const char *customer_key)
{
	memset(job, 0, sizeof(*job));
	job->kind = kind;
	job->database_id = MyDatabaseId;
	job->owner_id = extension_owner();
	check_owner_can_log_in(job->owner_id);
	strlcpy(job->requested_by, GetUserNameFromId(GetUserId(), false), NAMEDATALEN);
	copy_field(job->api_url, sizeof(job->api_url), toss_api_base_url(), "toss_billing.api_url");
	job->connect_timeout_ms = toss_connect_timeout_ms;
	job->timeout_ms = toss_timeout_ms;
	copy_field(job->customer_key, sizeof(job->customer_key), customer_key, "customer_key");
}

static void
raise_job_error(const TossJobResult *r)
{
	ereport(ERROR,
			(errcode(r->sqlerrcode),
			 errmsg_internal("%s", r->message),
			 r->detail ? errdetail_internal("%s", r->detail) : 0,
			 r->hint ? errhint("%s", r->hint) : 0));
}

/*
 * The row of a verified Payment the worker recorded.  Building it is after
 * the request left: should it fail, the caller hears TB006, not the error.
 */
static Datum
payment_result(const char *json, TupleDesc tupdesc, const char *what, const char *id)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile Datum row = (Datum) 0;

	PG_TRY();
	{
		row = toss_payment_datum(json, tupdesc);
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_TOSS_OUTCOME_UNKNOWN),
				 errmsg("the outcome of the %s %s is unknown here", what, id ? id : ""),
				 errdetail("Toss's answer was recorded, but showing it failed: %s (SQLSTATE %s).",
						   e->message, unpack_sql_state(e->sqlerrcode)),
				 errhint("Do not repeat it under a new id; toss_billing.order_status() shows what was recorded.")));
	}
	PG_END_TRY();
	return row;
}

/* ---- toss_issue_billing_key(customer_key, auth_key, merchant) ---- */

Datum
toss_issue_billing_key(PG_FUNCTION_ARGS)
{
	char	   *customer_key = required_text(fcinfo, 0, "customer_key");
	char	   *auth_key = required_text(fcinfo, 1, "auth_key");
	char	   *merchant = required_text(fcinfo, 2, "merchant");
	TossJob		job;
	TossJobResult result;
	Oid			rettype;
	TupleDesc	tupdesc;

	check_customer_key(customer_key);
	if (auth_key[0] == '\0' || strlen(auth_key) > 300)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auth_key must be 1 to 300 characters"),
				 errdetail("The auth key is the authKey query parameter Toss adds to the successUrl.")));
	check_no_control_chars(auth_key, "auth_key");
	if (!toss_merchant_name_is_valid(merchant))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("merchant \"%s\" is not a valid merchant name", merchant),
				 errdetail("A merchant name is 1 to %d letters, digits, _ or -.", TOSS_MERCHANT_MAXLEN)));
	toss_require_root_key();
	if (get_call_result_type(fcinfo, &rettype, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "toss_issue_billing_key must return a composite type");

	init_job(&job, TOSS_JOB_ISSUE, customer_key);
	copy_field(job.auth_key, sizeof(job.auth_key), auth_key, "auth_key");
	copy_field(job.merchant, sizeof(job.merchant), merchant, "merchant");

	toss_engine_call(&job, &result);
	if (!result.ok)
		raise_job_error(&result);
	PG_RETURN_DATUM(OidInputFunctionCall(F_RECORD_IN, result.payload,
										 tupdesc->tdtypeid, -1));
}

/* ---- toss_charge(customer_key, amount, order_name, order_id, ...) ---- */

static void
check_amounts(int64 amount, int64 tax_free_amount)
{
	if (amount <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("amount must be positive"),
				 errdetail("The amount is " INT64_FORMAT " KRW.", amount)));
	if (amount < 100)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("amount is below the minimum of 100 KRW"),
				 errdetail("Toss does not approve card payments under 100 KRW; the amount is " INT64_FORMAT " KRW.",
						   amount)));
	if (tax_free_amount < 0 || tax_free_amount > amount)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tax_free_amount must be between 0 and the amount"),
				 errdetail("The tax-free amount is " INT64_FORMAT " KRW and the amount " INT64_FORMAT " KRW.",
						   tax_free_amount, amount)));
}

Datum
toss_charge(PG_FUNCTION_ARGS)
{
	char	   *customer_key = required_text(fcinfo, 0, "customer_key");
	int64		amount = required_int8(fcinfo, 1, "amount");
	char	   *order_name = required_text(fcinfo, 2, "order_name");
	char	   *order_id = optional_text(fcinfo, 3);
	char	   *email = optional_text(fcinfo, 4);
	char	   *name = optional_text(fcinfo, 5);
	int64		tax_free = required_int8(fcinfo, 6, "tax_free_amount");
	TossJob		job;
	TossJobResult result;
	TupleDesc	tupdesc;

	check_customer_key(customer_key);
	check_amounts(amount, tax_free);
	if (order_name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("order_name must not be empty")));
	check_max_chars(order_name, "order_name", 100);
	check_no_control_chars(order_name, "order_name");
	/* none given: the engine makes tb<installation tag>-<uuid> */
	if (order_id != NULL)
		check_charset(order_id, "order_id", "-_", 6, 64,
					  "An order id is 6 to 64 characters of letters, digits, - and _.");
	check_max_chars(email, "customer_email", 100);
	check_max_chars(name, "customer_name", 100);
	toss_require_root_key();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "toss_charge must return a composite type");

	init_job(&job, TOSS_JOB_CHARGE, customer_key);
	job.amount = amount;
	job.tax_free_amount = tax_free;
	if (order_id != NULL)
		copy_field(job.order_id, sizeof(job.order_id), order_id, "order_id");
	copy_field(job.order_name, sizeof(job.order_name), order_name, "order_name");
	if (email)
		copy_field(job.customer_email, sizeof(job.customer_email), email, "customer_email");
	job.has_customer_email = email != NULL;
	if (name)
		copy_field(job.customer_name, sizeof(job.customer_name), name, "customer_name");
	job.has_customer_name = name != NULL;

	toss_engine_call(&job, &result);
	if (!result.ok)
		raise_job_error(&result);
	PG_RETURN_DATUM(payment_result(result.payload, tupdesc, "charge", order_id));
}

/* ---- charge_subscription_now(subscription_id) ---- */

/*
 * Charges a subscription's open period at once, as the runner would (the
 * same claim: whichever claims the period first posts it, the other finds it
 * in flight), e.g. the first charge at sign-up.  The worker checks the
 * subscription; the caller gets the Payment, or the error of the charge.
 * It runs in the engine like every call.
 */
Datum
toss_charge_subscription_now(PG_FUNCTION_ARGS)
{
	int64		subscription_id = required_int8(fcinfo, 0, "subscription_id");
	TossJob		job;
	TossJobResult result;
	TupleDesc	tupdesc;
	char	   *id = psprintf(INT64_FORMAT, subscription_id);

	toss_require_root_key();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "charge_subscription_now must return a composite type");

	init_job(&job, TOSS_JOB_CHARGE_SUBSCRIPTION, "");
	job.subscription_id = subscription_id;
	toss_engine_call(&job, &result);
	if (!result.ok)
		raise_job_error(&result);
	PG_RETURN_DATUM(payment_result(result.payload, tupdesc, "charge of subscription", id));
}

/* ---- charge_invoice_now(invoice_id) ---- */

/*
 * Charges an invoice at once, e.g. an upgrade's immediate proration: an
 * invoice of its own under its order (obligation invoice:<id>), claimed as
 * the runner claims it; a period invoice as its subscription's period (as
 * charge_subscription_now).  The worker checks the invoice and records the
 * intent before the POST and the outcome after it; the caller gets the
 * Payment, or the error of the charge.
 */
Datum
toss_charge_invoice_now(PG_FUNCTION_ARGS)
{
	int64		invoice_id = required_int8(fcinfo, 0, "invoice_id");
	TossJob		job;
	TossJobResult result;
	TupleDesc	tupdesc;
	char	   *id = psprintf(INT64_FORMAT, invoice_id);

	toss_require_root_key();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "charge_invoice_now must return a composite type");

	init_job(&job, TOSS_JOB_CHARGE_INVOICE, "");
	job.invoice_id = invoice_id;
	toss_engine_call(&job, &result);
	if (!result.ok)
		raise_job_error(&result);
	PG_RETURN_DATUM(payment_result(result.payload, tupdesc, "charge of invoice", id));
}

/* ---- toss_cancel(payment, reason, amount) ---- */

Datum
toss_cancel(PG_FUNCTION_ARGS)
{
	char	   *payment = required_text(fcinfo, 0, "payment");
	char	   *reason = required_text(fcinfo, 1, "reason");
	TossJob		job;
	TossJobResult result;
	TupleDesc	tupdesc;

	if (payment[0] == '\0' || strlen(payment) > 200)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payment must be a payment key or an order id of 1 to 200 characters")));
	check_no_control_chars(payment, "payment");
	if (reason[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("reason must not be empty"),
				 errdetail("Toss requires a cancel reason.")));
	check_max_chars(reason, "reason", 200);
	if (!PG_ARGISNULL(2) && PG_GETARG_INT64(2) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("amount must be positive"),
				 errhint("Pass NULL to cancel the whole remaining balance.")));
	toss_require_root_key();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "toss_cancel must return a composite type");

	init_job(&job, TOSS_JOB_CANCEL, "");
	copy_field(job.payment, sizeof(job.payment), payment, "payment");
	copy_field(job.reason, sizeof(job.reason), reason, "reason");
	job.has_amount = !PG_ARGISNULL(2);
	job.amount = job.has_amount ? PG_GETARG_INT64(2) : 0;

	toss_engine_call(&job, &result);
	if (!result.ok)
		raise_job_error(&result);
	PG_RETURN_DATUM(payment_result(result.payload, tupdesc, "cancel of", payment));
}

/* ---- toss_delete_billing_key(customer_key) ---- */

Datum
toss_delete_billing_key(PG_FUNCTION_ARGS)
{
	char	   *customer_key = required_text(fcinfo, 0, "customer_key");
	TossJob		job;
	TossJobResult result;
	TupleDesc	tupdesc;

	check_customer_key(customer_key);
	toss_require_root_key();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "toss_delete_billing_key must return a composite type");

	init_job(&job, TOSS_JOB_DELETE_KEY, customer_key);
	toss_engine_call(&job, &result);
	if (!result.ok)
		raise_job_error(&result);
	PG_RETURN_DATUM(OidInputFunctionCall(F_RECORD_IN, result.payload,
										 tupdesc->tdtypeid, -1));
}
