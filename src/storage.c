/*
 * storage.c — the SQL statements toss_billing's C code runs, through SPI
 * (recording outcomes is recorder.c's; the runner's claims are runner.c's):
 * every one through toss_spi_execute(), which pins search_path.
 *
 * Transactions: none here.  Callers (jobs.c, lookups.c, errors.c) open and
 * commit the transactions; each function connects to SPI, runs its
 * statements and copies what it returns into the caller's memory context
 * before SPI_finish.  Plans: toss_store_note_rows() makes a long run's
 * cached plans again as the tables it writes grow.  Locks: only the row locks the statements take,
 * released at the caller's commit.  Secrets: the sealed billing key is
 * passed as a bytea parameter, never interpolated into statement text.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "errors.h"
#include "executor/spi.h"
#include "storage.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/plancache.h"
#include "utils/timestamp.h"

#define MAX_ARGS 16

typedef struct Args
{
	int			n;
	Oid			types[MAX_ARGS];
	Datum		values[MAX_ARGS];
	char		nulls[MAX_ARGS];
} Args;

static void
arg_text(Args *a, const char *s)
{
	a->types[a->n] = TEXTOID;
	a->values[a->n] = s ? CStringGetTextDatum(s) : (Datum) 0;
	a->nulls[a->n] = s ? ' ' : 'n';
	a->n++;
}

static void
arg_int8(Args *a, int64 v)
{
	a->types[a->n] = INT8OID;
	a->values[a->n] = Int64GetDatum(v);
	a->nulls[a->n] = ' ';
	a->n++;
}

static void
arg_bytea(Args *a, bytea *b)
{
	a->types[a->n] = BYTEAOID;
	a->values[a->n] = PointerGetDatum(b);
	a->nulls[a->n] = b ? ' ' : 'n';
	a->n++;
}

static void
arg_raw(Args *a, const char *raw, size_t len)
{
	bytea	   *b = NULL;

	if (raw)
	{
		b = palloc(VARHDRSZ + len);
		SET_VARSIZE(b, VARHDRSZ + len);
		memcpy(VARDATA(b), raw, len);
	}
	arg_bytea(a, b);
}

/* A timeout in milliseconds, as an interval. */
static void
arg_interval_ms(Args *a, int ms)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = (int64) ms * 1000;
	a->types[a->n] = INTERVALOID;
	a->values[a->n] = IntervalPGetDatum(iv);
	a->nulls[a->n] = ' ';
	a->n++;
}

/* Column col of row 0 as text in cxt, or NULL. */
static char *
copy_text(MemoryContext cxt, int col)
{
	char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);

	return v ? MemoryContextStrdup(cxt, v) : NULL;
}

static bytea *
copy_bytea(MemoryContext cxt, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);
	MemoryContext old;
	bytea	   *b;

	if (isnull)
		return NULL;
	old = MemoryContextSwitchTo(cxt);
	b = (bytea *) PG_DETOAST_DATUM_COPY(d);
	MemoryContextSwitchTo(old);
	return b;
}

/*
 * Plans made while the tables were small (a fresh install, or just after
 * ANALYZE of empty tables) stay cached for the whole of a long run, and go
 * on scanning tables that have grown to thousands of rows meanwhile.  So
 * after 256, then 4x as many, rows claimed or recorded by this process,
 * every cached plan is made again at the sizes the tables have now (the
 * planner reads a table's current size even before it is analyzed): a
 * handful of resets in a run, each a few milliseconds of planning.
 */
void
toss_store_note_rows(uint64 n)
{
	static uint64 written = 0;
	static uint64 next_reset = 256;

	written += n;
	if (written >= next_reset)
	{
		ResetPlanCache();
		next_reset = written * 4;
	}
}

/*
 * Every statement toss_billing's C code runs goes through here: with
 * search_path = pg_catalog, pg_temp for the statement alone (a GUC nest
 * level, popped after it; an error pops it with the (sub)transaction), so
 * that no caller's setting can make a name in the statement text resolve to
 * an object of the caller's.  Returns SPI's result code.
 */
int
toss_spi_execute(const char *sql, int nargs, Oid *types, Datum *values,
				 const char *nulls, bool read_only)
{
	int			nest = NewGUCNestLevel();
	int			rc;

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, 0);
	AtEOXact_GUC(true, nest);
	return rc;
}

/* Run a statement; returns the number of rows processed. */
static uint64
run(const char *sql, Args *a, int expected)
{
	int			rc = toss_spi_execute(sql, a->n, a->types, a->values, a->nulls, false);

	if (rc != expected)
		elog(ERROR, "toss_billing: SPI statement failed with code %d", rc);
	return SPI_processed;
}

static int64
first_int8(int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

int64
toss_store_customer_id(const char *customer_key)
{
	Args		a = {0};
	int64		id = 0;

	SPI_connect();
	arg_text(&a, customer_key);
	if (run("SELECT id FROM toss_billing.customers WHERE customer_key = $1", &a, SPI_OK_SELECT) == 1)
		id = first_int8(1);
	SPI_finish();
	if (id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_TOSS_NOT_FOUND),
				 errmsg("unknown customer \"%s\"", customer_key),
				 errdetail("No row of toss_billing.customers has this customer_key."),
				 errhint("Create the customer with toss_billing.create_customer() and commit before calling Toss.")));
	return id;
}

int64
toss_store_issue_intent(int64 customer_id, const char *merchant,
						const char *idempotency_key, bytea *auth_key_hash)
{
	Args		a = {0};
	int64		id;

	SPI_connect();
	arg_int8(&a, customer_id);
	arg_text(&a, merchant);
	arg_text(&a, idempotency_key);
	arg_bytea(&a, auth_key_hash);
	run("INSERT INTO toss_billing.billing_keys (customer_id, merchant, idempotency_key, status, auth_key_hash) "
		"VALUES ($1, $2, $3, 'pending', $4) RETURNING id", &a, SPI_OK_INSERT_RETURNING);
	id = first_int8(1);
	SPI_finish();
	return id;
}

/*
 * The billing key already issued to the customer for this authKey (by its
 * keyed hash), other than row except_id: its id, or 0.  *pending says
 * whether such an issuance is still in progress (pending, not yet recorded).
 */
int64
toss_store_issued_for_auth_key(int64 customer_id, bytea *auth_key_hash, int64 except_id, bool *pending)
{
	Args		a = {0};
	int64		id = 0;

	SPI_connect();
	arg_int8(&a, customer_id);
	arg_bytea(&a, auth_key_hash);
	arg_int8(&a, except_id);
	*pending = false;
	if (run("SELECT (SELECT bk.id FROM toss_billing.billing_keys bk "
			"         WHERE bk.customer_id = $1 AND bk.auth_key_hash = $2 AND bk.id <> $3 "
			"           AND bk.encrypted_key IS NOT NULL "
			"           AND bk.status = ANY (ARRAY['active', 'replaced', 'deleted']) "
			"         ORDER BY bk.id DESC LIMIT 1), "
			"       EXISTS (SELECT FROM toss_billing.billing_keys bk "
			"                WHERE bk.customer_id = $1 AND bk.auth_key_hash = $2 AND bk.id <> $3 "
			"                  AND bk.status = 'pending')",
			&a, SPI_OK_SELECT) == 1)
	{
		bool		isnull;

		id = first_int8(1);
		*pending = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)) &&
			!isnull;
	}
	SPI_finish();
	return id;
}

void
toss_store_issue_success(int64 id, int64 customer_id, bytea *sealed,
						 const TossCardSummary *card)
{
	Args		a = {0};

	SPI_connect();
	arg_int8(&a, customer_id);
	arg_int8(&a, id);
	run("UPDATE toss_billing.billing_keys SET status = 'replaced', updated_at = now() "
		"WHERE customer_id = $1 AND status = 'active' AND id <> $2", &a, SPI_OK_UPDATE);

	a.n = 0;
	arg_int8(&a, id);
	arg_bytea(&a, sealed);
	arg_text(&a, card->mid);
	arg_text(&a, card->method);
	arg_text(&a, card->card_company);
	arg_text(&a, card->issuer_code);
	arg_text(&a, card->acquirer_code);
	arg_text(&a, card->number);
	arg_text(&a, card->card_type);
	arg_text(&a, card->owner_type);
	arg_text(&a, card->authenticated_at);
	run("UPDATE toss_billing.billing_keys SET status = 'active', encrypted_key = $2, "
		"mid = $3, method = $4, card_company = $5, card_issuer_code = $6, "
		"card_acquirer_code = $7, card_number = $8, card_type = $9, card_owner_type = $10, "
		"authenticated_at = $11::pg_catalog.timestamptz, updated_at = pg_catalog.now() WHERE id = $1",
		&a, SPI_OK_UPDATE);
	SPI_finish();
}

void
toss_store_issue_failure(int64 id, const char *status, const char *code,
						 const char *message)
{
	Args		a = {0};

	SPI_connect();
	arg_int8(&a, id);
	arg_text(&a, status);
	arg_text(&a, code);
	arg_text(&a, message);
	run("UPDATE toss_billing.billing_keys SET status = $2, failure_code = $3, "
		"failure_message = $4, updated_at = now() WHERE id = $1", &a, SPI_OK_UPDATE);
	SPI_finish();
}

/* The billing_key_info row as record text, in the caller's context. */
char *
toss_store_billing_key_info(int64 id)
{
	Args		a = {0};
	char	   *text = NULL;
	MemoryContext outer = CurrentMemoryContext;

	SPI_connect();
	arg_int8(&a, id);
	if (run("SELECT v::text FROM toss_billing.billing_key_info v WHERE v.id = $1",
			&a, SPI_OK_SELECT) == 1)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		text = MemoryContextStrdup(outer, v);
	}
	SPI_finish();
	if (text == NULL)
		elog(ERROR, "billing key row " INT64_FORMAT " vanished", id);
	return text;
}

static void read_charge_intent(MemoryContext outer, TossChargeIntent *out);

/*
 * The first half of a charge (toss_billing._charge_intent): the order of
 * the caller's order id and what to do for it; a new attempt is recorded
 * in_flight when the answer is "post".
 */
void
toss_store_charge_intent(const char *customer_key, int64 amount, const char *order_name,
						 const char *order_id, const char *customer_email, const char *customer_name,
						 int64 tax_free_amount, const char *requested_by, int timeout_ms,
						 TossChargeIntent *out)
{
	Args		a = {0};
	MemoryContext outer = CurrentMemoryContext;

	SPI_connect();
	arg_text(&a, customer_key);
	arg_int8(&a, amount);
	arg_text(&a, order_name);
	arg_text(&a, order_id);
	arg_text(&a, customer_email);
	arg_text(&a, customer_name);
	arg_int8(&a, tax_free_amount);
	arg_text(&a, requested_by);
	arg_interval_ms(&a, timeout_ms);
	if (run("SELECT action, payment_id, attempt_id, toss_order_id, idempotency_key, billing_key_id, merchant, "
			"encrypted_key, mid, payment::pg_catalog.text, attempt_created_at, may_repost "
			"FROM toss_billing._charge_intent($1, $2, $3, $4, $5, $6, $7, $8::pg_catalog.name, $9)",
			&a, SPI_OK_SELECT) != 1)
		elog(ERROR, "toss_billing._charge_intent returned no row");
	read_charge_intent(outer, out);
	SPI_finish();
}

/*
 * The first half of charge_subscription_now (_charge_now_intent: the
 * subscription's open period claimed as the runner claims it) or of
 * charge_invoice_now (_charge_invoice_now_intent: the invoice, likewise), and
 * what the request must carry.  function is one of those two.
 */
static void
charge_now_intent(const char *function, int64 id, const char *requested_by, int timeout_ms,
				  TossChargeIntent *out, TossSubscriptionCharge *req)
{
	Args		a = {0};
	MemoryContext outer = CurrentMemoryContext;

	SPI_connect();
	arg_int8(&a, id);
	arg_text(&a, requested_by);
	arg_interval_ms(&a, timeout_ms);
	if (run(psprintf("SELECT action, payment_id, attempt_id, toss_order_id, idempotency_key, billing_key_id, merchant, "
					 "encrypted_key, mid, payment::pg_catalog.text, attempt_created_at, may_repost, "
					 "customer_key, amount, tax_free_amount, order_name, customer_email, customer_name "
					 "FROM toss_billing.%s($1, $2::pg_catalog.name, $3)", function),
			&a, SPI_OK_SELECT) != 1)
		elog(ERROR, "toss_billing.%s returned no row", function);
	read_charge_intent(outer, out);
	memset(req, 0, sizeof(*req));
	req->customer_key = copy_text(outer, 13);
	req->amount = first_int8(14);
	req->tax_free_amount = first_int8(15);
	req->order_name = copy_text(outer, 16);
	req->customer_email = copy_text(outer, 17);
	req->customer_name = copy_text(outer, 18);
	SPI_finish();
}

void
toss_store_subscription_charge_intent(int64 subscription_id, const char *requested_by, int timeout_ms,
									  TossChargeIntent *out, TossSubscriptionCharge *req)
{
	charge_now_intent("_charge_now_intent", subscription_id, requested_by, timeout_ms, out, req);
}

void
toss_store_invoice_charge_intent(int64 invoice_id, const char *requested_by, int timeout_ms,
								 TossChargeIntent *out, TossSubscriptionCharge *req)
{
	charge_now_intent("_charge_invoice_now_intent", invoice_id, requested_by, timeout_ms, out, req);
}

/* The columns an intent of a charge returns first, from row 0. */
static void
read_charge_intent(MemoryContext outer, TossChargeIntent *out)
{
	bool		isnull;

	memset(out, 0, sizeof(*out));
	out->action = copy_text(outer, 1);
	out->payment_id = first_int8(2);
	out->attempt_id = first_int8(3);
	out->order_id = copy_text(outer, 4);
	out->idempotency_key = copy_text(outer, 5);
	out->billing_key_id = first_int8(6);
	out->merchant = copy_text(outer, 7);
	out->sealed = copy_bytea(outer, 8);
	out->mid = copy_text(outer, 9);
	out->payment_json = copy_text(outer, 10);
	out->attempt_created_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
																 SPI_tuptable->tupdesc, 11, &isnull));
	out->may_repost = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 12, &isnull)) &&
		!isnull;
}

/*
 * An outcome that could not be recorded, alone, is parked: the attempt and
 * its order become unknown with the error, to be looked up again later; the
 * answer is never lost and never blocks another row.
 */
void
toss_store_park(int64 attempt_id, const char *error)
{
	Args		a = {0};

	SPI_connect();
	arg_int8(&a, attempt_id);
	arg_text(&a, error);
	run("SELECT toss_billing._park_outcome($1, $2)", &a, SPI_OK_SELECT);
	SPI_finish();
}

/* The library and the installed SQL must be the same version. */
void
toss_store_check_version(void)
{
	Args		a = {0};
	char	   *installed = NULL;

	SPI_connect();
	if (run("SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'toss_billing'",
			&a, SPI_OK_SELECT) == 1)
		installed = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (installed == NULL || strcmp(installed, EXTVERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("toss_billing's SQL is at version %s, its library at %s",
						installed ? installed : "(none)", EXTVERSION),
				 errdetail("Nothing was recorded or sent to Toss."),
				 errhint("Run ALTER EXTENSION toss_billing UPDATE in this database.")));
	SPI_finish();
}

/* The rules that classify Toss's error codes (errors.c), in the caller's context. */
int
toss_store_codes(TossCodeRow **rows)
{
	Args		a = {0};
	MemoryContext outer = CurrentMemoryContext;
	int			n;

	SPI_connect();
	run("SELECT e.code, e.applies_to, e.class FROM toss_billing.error_codes e", &a, SPI_OK_SELECT);
	n = (int) SPI_processed;
	*rows = MemoryContextAlloc(outer, sizeof(TossCodeRow) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;

		(*rows)[i].code = MemoryContextStrdup(outer, SPI_getvalue(t, d, 1));
		(*rows)[i].applies_to = MemoryContextStrdup(outer, SPI_getvalue(t, d, 2));
		(*rows)[i].cls = MemoryContextStrdup(outer, SPI_getvalue(t, d, 3));
	}
	SPI_finish();
	return n;
}

int
toss_store_classes(TossClassRow **rows)
{
	Args		a = {0};
	MemoryContext outer = CurrentMemoryContext;
	int			n;

	SPI_connect();
	run("SELECT f.class, f.sqlstate FROM toss_billing.failure_classes f", &a, SPI_OK_SELECT);
	n = (int) SPI_processed;
	*rows = MemoryContextAlloc(outer, sizeof(TossClassRow) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;

		(*rows)[i].cls = MemoryContextStrdup(outer, SPI_getvalue(t, d, 1));
		(*rows)[i].sqlstate = MemoryContextStrdup(outer, SPI_getvalue(t, d, 2));
	}
	SPI_finish();
	return n;
}

/* This installation's order tag (made on first use). */
char *
toss_store_order_tag(void)
{
	Args		a = {0};
	MemoryContext outer = CurrentMemoryContext;
	char	   *tag;

	SPI_connect();
	run("SELECT toss_billing._order_tag()", &a, SPI_OK_SELECT);
	tag = copy_text(outer, 1);
	SPI_finish();
	return tag;
}

/* ---- billing key lookup hashes (0.3.0 and later) ---- */

static bool
has_key_hash_column(void)
{
	Args		a = {0};
	bool		has;

	SPI_connect();
	has = run("SELECT 1 FROM pg_catalog.pg_attribute "
			  "WHERE attrelid = 'toss_billing.billing_keys'::pg_catalog.regclass "
			  "AND attname = 'key_hash' AND NOT attisdropped", &a, SPI_OK_SELECT) == 1;
	SPI_finish();
	return has;
}

/* Store a key's lookup hash; a no-op under SQL versions without the column. */
void
toss_store_key_hash(int64 id, bytea *hash)
{
	Args		a = {0};

	if (!has_key_hash_column())
		return;
	SPI_connect();
	arg_int8(&a, id);
	arg_bytea(&a, hash);
	run("UPDATE toss_billing.billing_keys SET key_hash = $2 WHERE id = $1", &a, SPI_OK_UPDATE);
	SPI_finish();
}

/* Sealed keys that have no lookup hash yet, as (ids, sealed) in the caller's context. */
int
toss_store_keys_without_hash(int64 **ids, bytea ***sealed)
{
	Args		a = {0};
	MemoryContext outer = CurrentMemoryContext;
	int			n;

	SPI_connect();
	run("SELECT id, encrypted_key FROM toss_billing.billing_keys "
		"WHERE key_hash IS NULL AND encrypted_key IS NOT NULL ORDER BY id", &a, SPI_OK_SELECT);
	n = (int) SPI_processed;
	*ids = MemoryContextAlloc(outer, sizeof(int64) * Max(n, 1));
	*sealed = MemoryContextAlloc(outer, sizeof(bytea *) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);
		MemoryContext old = MemoryContextSwitchTo(outer);

		(*ids)[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		(*sealed)[i] = (bytea *) PG_DETOAST_DATUM_COPY(d);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return n;
}

/* ---- refunds ---- */

void
toss_store_cancel_intent(const char *payment, const char *reason, bool has_amount,
						 int64 amount, const char *requested_by, int timeout_ms, TossCancelIntent *out)
{
	Args		a = {0};
	MemoryContext outer = CurrentMemoryContext;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	SPI_connect();
	arg_text(&a, payment);
	arg_text(&a, reason);
	arg_int8(&a, amount);
	if (!has_amount)
		a.nulls[a.n - 1] = 'n';
	arg_text(&a, requested_by);
	arg_interval_ms(&a, timeout_ms);
	if (run("SELECT cancel_id, payment_key, idempotency_key, merchant, cancel_amount, order_id, total_amount, mid "
			"FROM toss_billing._cancel_intent($1, $2, $3, $4::pg_catalog.name, $5)", &a, SPI_OK_SELECT) != 1)
		elog(ERROR, "toss_billing._cancel_intent returned no row");
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	out->cancel_id = first_int8(1);
	out->payment_key = copy_text(outer, 2);
	out->idempotency_key = copy_text(outer, 3);
	out->merchant = copy_text(outer, 4);
	out->amount = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
	out->full = isnull;
	out->order_id = copy_text(outer, 6);
	out->total_amount = first_int8(7);
	out->mid = copy_text(outer, 8);
	SPI_finish();
}

void
toss_store_cancel_outcome(int64 cancel_id, const TossOutcome *o)
{
	Args		a = {0};

	SPI_connect();
	arg_int8(&a, cancel_id);
	arg_text(&a, o->state);
	arg_int8(&a, o->http_status);
	arg_text(&a, o->failure_class);
	arg_text(&a, o->failure_code);
	arg_text(&a, o->failure_message);
	arg_text(&a, o->payment_json);
	arg_raw(&a, o->raw, o->raw_len);
	run("SELECT toss_billing._cancel_outcome($1, $2, NULLIF($3, 0)::pg_catalog.int4, $4, $5, $6, "
		"$7::pg_catalog.jsonb, $8)", &a, SPI_OK_SELECT);
	SPI_finish();
}

/* ---- billing key deletion ---- */

void
toss_store_delete_intent(const char *customer_key, TossBillingKeyRef *ref)
{
	Args		a = {0};
	MemoryContext outer = CurrentMemoryContext;
	bool		isnull;
	Datum		d;

	SPI_connect();
	arg_text(&a, customer_key);
	if (run("SELECT billing_key_id, merchant, encrypted_key FROM toss_billing._delete_intent($1)",
			&a, SPI_OK_SELECT) != 1)
		elog(ERROR, "toss_billing._delete_intent returned no row");
	ref->billing_key_id = first_int8(1);
	ref->merchant = MemoryContextStrdup(outer,
										SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	if (isnull)
		elog(ERROR, "billing key " INT64_FORMAT " has no sealed key", ref->billing_key_id);
	{
		MemoryContext old = MemoryContextSwitchTo(outer);

		ref->sealed = (bytea *) PG_DETOAST_DATUM_COPY(d);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
}

void
toss_store_key_deleted(int64 billing_key_id, const char *reason)
{
	Args		a = {0};

	SPI_connect();
	arg_int8(&a, billing_key_id);
	arg_text(&a, reason);
	run("SELECT toss_billing._billing_key_deleted($1, $2)", &a, SPI_OK_SELECT);
	SPI_finish();
}
