/*
 * lookups.c — SQL entry points that only read from Toss, or hash locally,
 * and so run in the calling backend: a GET moves no money, so doing it inside
 * the caller's transaction is harmless (a rollback loses nothing Toss has).
 *
 *   _fetch_payment(payment_key, merchant)      GET /v1/payments/{paymentKey}
 *   _toss_transactions(start, end, merchant)   GET /v1/transactions, all pages
 *   _billing_key_hash(billing_key)             the keyed lookup hash
 *   _backfill_key_hashes()                     hashes for keys issued before 0.3.0
 *
 * Memory: the caller's context; the SRF materializes into a tuplestore in
 * the per-query context.  Secrets: the authorization header is wiped after
 * each use.  All are owner-only in SQL.
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "crypto.h"
#include "errors.h"
#include "settings.h"
#include "storage.h"
#include "toss_api.h"

PG_FUNCTION_INFO_V1(toss_fetch_payment);
PG_FUNCTION_INFO_V1(toss_transactions);
PG_FUNCTION_INFO_V1(toss_billing_key_hash);
PG_FUNCTION_INFO_V1(toss_backfill_key_hashes);

#define TRANSACTIONS_PAGE 5000	/* Toss's maximum limit */
#define TRANSACTIONS_MAX_PAGES 2000 /* 10 million transactions in one window */

static void
endpoint_for(const char *merchant, TossEndpoint *ep)
{
	toss_store_check_version();
	toss_load_codes();
	ep->api_url = toss_api_base_url();
	ep->authorization = toss_authorization_header(merchant);
	ep->connect_timeout_ms = toss_connect_timeout_ms;
	ep->timeout_ms = toss_timeout_ms;
}

/* Raise for any reply that is not a 2xx JSON object. */
static void
require_ok(const TossReply *reply, const char *what)
{
	TossErrorClass cls;

	if (toss_reply_ok(reply))
		return;
	if (!reply->is_error)
		ereport(ERROR,
				(errcode(ERRCODE_TOSS_TRANSIENT),
				 errmsg("could not %s", what),
				 errdetail("%s", reply->http.failure != TOSS_HTTP_OK ? reply->http.error :
						   reply->unsafe ? reply->unsafe :
						   "Toss answered with a body that is not a Toss response.")));
	cls = toss_classify_code(reply->code, reply->http.status, "lookup");
	ereport(ERROR,
			(errcode(toss_class_sqlstate(cls)),
			 errmsg("could not %s", what),
			 errdetail("Toss answered HTTP %ld with code %s: %s", reply->http.status,
					   reply->code, reply->message ? reply->message : "")));
}

static char *
merchant_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *merchant = PG_ARGISNULL(argno) ? "default" : text_to_cstring(PG_GETARG_TEXT_PP(argno));

	if (!toss_merchant_name_is_valid(merchant))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("merchant \"%s\" is not a valid merchant name", merchant)));
	return merchant;
}

/* _fetch_payment(payment_key text, merchant text) -> jsonb: the authoritative Payment. */
Datum
toss_fetch_payment(PG_FUNCTION_ARGS)
{
	char	   *payment_key;
	TossEndpoint ep;
	TossReply	reply;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payment_key must not be null")));
	payment_key = text_to_cstring(PG_GETARG_TEXT_PP(0));
	endpoint_for(merchant_arg(fcinfo, 1), &ep);
	toss_api_payment(&ep, payment_key, &reply);
	toss_wipe_string((char *) ep.authorization);
	require_ok(&reply, "fetch the payment from toss");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(reply.http.body)));
}

/* Toss's local time (Asia/Seoul, UTC+9, no offset written), as its date parameters want. */
static char *
toss_local_time(TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(t + (int64) 9 * 3600 * USECS_PER_SEC, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * _toss_transactions(start_at, end_at, merchant) -> SETOF jsonb, one per
 * transaction (approval or cancel), following startingAfter page by page.
 */
Datum
toss_transactions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *start_date;
	char	   *end_date;
	char	   *after = NULL;
	List	   *seen = NIL;		/* the transactionKey each page ended at */
	TossEndpoint ep;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("start_at and end_at must not be null")));
	if (PG_GETARG_TIMESTAMPTZ(1) < PG_GETARG_TIMESTAMPTZ(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("end_at is before start_at")));
	start_date = toss_local_time(PG_GETARG_TIMESTAMPTZ(0));
	end_date = toss_local_time(PG_GETARG_TIMESTAMPTZ(1));
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC | MAT_SRF_BLESS);
	endpoint_for(merchant_arg(fcinfo, 2), &ep);

	/*
	 * Follow startingAfter page by page.  A cursor that does not move on
	 * (a page ending where an earlier one ended) or a window of more pages
	 * than any real one would loop until statement_timeout: stop with an
	 * error instead.
	 */
	for (int page = 1;; page++)
	{
		TossReply	reply;
		int			n = 0;
		char	   *item;

		CHECK_FOR_INTERRUPTS();
		if (page > TRANSACTIONS_MAX_PAGES)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("toss returned more than %d pages of transactions", TRANSACTIONS_MAX_PAGES),
					 errdetail("The window from %s to %s was not read to its end.", start_date, end_date),
					 errhint("Reconcile a shorter window.")));
		toss_api_transactions(&ep, start_date, end_date, after, TRANSACTIONS_PAGE, &reply);
		require_ok(&reply, "list transactions at toss");
		/* the reply is a JSON array of items */
		while ((item = toss_json_array_item(reply.doc, n)) != NULL)
		{
			Datum		value = DirectFunctionCall1(jsonb_in, CStringGetDatum(item));
			bool		isnull = false;

			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
			after = toss_json_array_item_text(reply.doc, n, "transactionKey");
			n++;
		}
		if (n < TRANSACTIONS_PAGE || after == NULL)
			break;
		if (list_member(seen, makeString(after)))
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("toss returned the same page of transactions twice"),
					 errdetail("Page %d ends at transaction %s again; the cursor does not advance.", page, after),
					 errhint("Nothing was reconciled. Try again later, or reconcile a shorter window.")));
		seen = lappend(seen, makeString(after));
	}
	toss_wipe_string((char *) ep.authorization);
	return (Datum) 0;
}

/* _billing_key_hash(billing_key) -> bytea */
Datum
toss_billing_key_hash(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(toss_hash_billing_key(text_to_cstring(PG_GETARG_TEXT_PP(0))));
}

/* _backfill_key_hashes() -> integer: keys given their lookup hash. */
Datum
toss_backfill_key_hashes(PG_FUNCTION_ARGS)
{
	int64	   *ids;
	bytea	  **sealed;
	int			n = toss_store_keys_without_hash(&ids, &sealed);

	for (int i = 0; i < n; i++)
	{
		char	   *plain = toss_decrypt_billing_key(sealed[i], ids[i]);
		bytea	   *hash = toss_hash_billing_key(plain);

		toss_wipe_string(plain);
		toss_store_key_hash(ids[i], hash);
		CHECK_FOR_INTERRUPTS();
	}
	PG_RETURN_INT32(n);
}
