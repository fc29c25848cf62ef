/*
 * runner.c — CALL toss_billing.run_due(): charges every due subscription
 * period, many Toss calls at once.
 *
 * Transactions: run_due is a procedure and must be CALLed outside a
 * transaction block; it commits its own transactions through non-atomic SPI.
 * A claim transaction (toss_billing._claim_due) records each attempt as
 * in_flight with its Idempotency-Key and commits BEFORE the HTTP call; an
 * outcome transaction (toss_billing._record_outcomes) records a batch of
 * results AFTER them, in the outcome recorder's process when one could be
 * started (recorder.c), else in this backend.  The run returns only once
 * every outcome is committed.  Several runners may run at once: claims use
 * FOR UPDATE SKIP LOCKED and a unique index allows one live attempt per
 * subscription period.  No lock is held across HTTP calls.
 *
 * Concurrency: up to toss_billing.max_concurrency calls in flight on one
 * curl multi handle, started at most toss_billing.max_requests_per_second,
 * pausing with a growing backoff on HTTP 429 / FORBIDDEN_CONSECUTIVE_REQUEST.
 *
 * Memory: each claimed attempt has its own memory context, deleted once its
 * outcome is committed, so memory stays flat however many charges a run
 * makes.  The curl handles belong to the run's context and are released by
 * its reset callback on any error.  Billing keys are decrypted only to build
 * the request URL, and wiped once curl has copied it.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "portability/instr_time.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "charge.h"
#include "crypto.h"
#include "engine.h"
#include "verify.h"
#include "recorder.h"
#include "runlog.h"
#include "storage.h"
#include "errors.h"
#include "settings.h"

PG_FUNCTION_INFO_V1(toss_run_due);

#define FLUSH_MAX 64			/* most outcomes per outcome transaction */
#define FLUSH_AFTER_MS 50		/* record outcomes at least this often */
#define BACKOFF_START_MS 1000
#define BACKOFF_MAX_MS 30000
/* Toss keeps an Idempotency-Key for 15 days; stop re-posting an hour before. */
#define IDEMPOTENCY_WINDOW_USEC ((int64) (15 * 24 - 1) * 3600 * USECS_PER_SEC)

/* What an item's next Toss call is. */
typedef enum ItemPhase
{
	PHASE_CHARGE,				/* a new attempt: POST */
	PHASE_LOOKUP,				/* its answer settled nothing: GET by order id */
	PHASE_RECOVER,				/* an unknown attempt: GET by order id */
	PHASE_REPOST,				/* Toss has no record of it: POST again, same key */
	PHASE_DONE					/* judged (or never sent): only its outcome is left */
} ItemPhase;

/* One claimed attempt, from claim to committed outcome. */
typedef struct RunItem
{
	MemoryContext cxt;
	MemoryContextCallback wipe_cb;
	ItemPhase	phase;
	TimestampTz created_at;		/* recovery: when the attempt was recorded */
	bool		may_repost;		/* recovery: the order is still owed as it was */
	int64		attempt_id;
	TossExpect	expect;			/* what Toss's answer must match */
	char	   *idempotency_key;
	const char *authorization;	/* shared per merchant */
	const char *merchant;		/* whose concurrency the call counts against */
	bool		gated;			/* it holds one of its merchant's calls */
	char	   *billing_key;	/* plaintext: wiped when the item goes */
	char	   *body;			/* must live until the transfer ends */
	TossReply	reply;			/* the POST's answer */
	TossReply	lookup;			/* the lookup's */
	TossChargeVerdict verdict;
	dlist_node	node;
} RunItem;

typedef struct MerchantAuth
{
	char	   *merchant;
	char	   *authorization;	/* NULL when the secret key could not be read */
	char	   *problem;		/* then: why */
} MerchantAuth;

typedef struct Runner
{
	MemoryContext cxt;
	MemoryContextCallback wipe_cb;
	TossEndpoint ep;
	TossHttpBatch *batch;
	dlist_head queue;			/* claimed, not yet sent */
	int			queued;
	dlist_head	in_flight;		/* sent, not yet answered */
	RunItem   **finished;		/* judged, outcome not yet committed */
	int			nfinished;
	List	   *auths;			/* MerchantAuth, read once per run */
	int			max_concurrency;
	int			max_per_second;
	double		tokens;
	double		last_refill;	/* seconds, monotonic */
	double		backoff_until;
	int			backoff_ms;
	double		started;
	double		last_flush;
	double		budget_ms;
	int			max_charges;
	int			flush_every;	/* outcomes per outcome transaction */
	bool		may_record_apart;	/* start an outcome recorder at the first flush */
	TossRecorder *recorder;		/* records outcomes in its own process, or NULL */
	uint64		recorded_seen;
	bool		exhausted;		/* nothing more is due */
	int64		claimed,
				resolved,
				done,
				failed,
				unknown,
				throttled;
} Runner;

static void flush(Runner *r);

/* Monotonic seconds. */
static double
now_s(void)
{
	instr_time	t;

	INSTR_TIME_SET_CURRENT(t);
	return INSTR_TIME_GET_DOUBLE(t);
}

static double
ms_since(double since)
{
	return (now_s() - since) * 1000.0;
}

/* Milliseconds left of the run's time budget (0 when it is over). */
static double
budget_left_ms(double started, double budget_ms)
{
	return Max(0.0, budget_ms - ms_since(started));
}

static void
wipe_auths(void *arg)
{
	Runner	   *r = (Runner *) arg;
	ListCell   *lc;

	foreach(lc, r->auths)
		toss_wipe_string(((MerchantAuth *) lfirst(lc))->authorization);
}

static void
wipe_item(void *arg)
{
	RunItem    *it = (RunItem *) arg;

	toss_wipe_string(it->billing_key);
}

/*
 * The authorization header of a merchant, read from the key file once per
 * run.  A merchant whose key cannot be read is remembered too: its rows
 * fail alone (see make_item), the others go on.
 */
static MerchantAuth *
merchant_auth(Runner *r, const char *merchant)
{
	ListCell   *lc;
	MerchantAuth *a;
	MemoryContext old;

	foreach(lc, r->auths)
	{
		a = lfirst(lc);
		if (strcmp(a->merchant, merchant) == 0)
			return a;
	}
	old = MemoryContextSwitchTo(r->cxt);
	a = palloc0(sizeof(MerchantAuth));
	a->merchant = pstrdup(merchant);
	PG_TRY();
	{
		a->authorization = toss_authorization_header(merchant);
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(r->cxt);
		e = CopyErrorData();
		FlushErrorState();
		a->problem = e->detail ? psprintf("%s: %s", e->message, e->detail) : e->message;
	}
	PG_END_TRY();
	r->auths = lappend(r->auths, a);
	MemoryContextSwitchTo(old);
	return a;
}

static char *
col_text(HeapTuple tup, TupleDesc desc, int col)
{
	return SPI_getvalue(tup, desc, col);
}

static int64
col_int8(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/* An item that will not be sent: it failed alone, as configuration. */
static void
fail_item(RunItem *it, const char *code, const char *message)
{
	it->phase = PHASE_DONE;
	memset(&it->verdict, 0, sizeof(it->verdict));
	it->verdict.outcome.state = "failed";
	it->verdict.outcome.failure_class = toss_class_name(TOSS_CLASS_CONFIGURATION);
	it->verdict.outcome.failure_code = code;
	it->verdict.outcome.failure_message = message;
}

/*
 * Build one item from a claimed row (a toss_billing._charge_call, and of
 * _claim_unknown, which adds created_at and may_repost): decrypt the key,
 * build the body.  A row that cannot be prepared -- no secret key for its
 * merchant, a sealed key that does not decrypt -- fails alone: its attempt
 * is recorded failed (configuration) with the reason, and the rest of the
 * batch goes on.  (Both steps are pure computation and a file read: an
 * error there leaves nothing to roll back.)
 */
static RunItem *
make_item(Runner *r, HeapTuple tup, TupleDesc desc, ItemPhase phase)
{
	MemoryContext cxt = AllocSetContextCreate(r->cxt, "toss_billing run item",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	RunItem    *it = palloc0(sizeof(RunItem));
	TossChargeRequest req;
	bool		isnull;
	Datum		sealed_datum;
	MerchantAuth *auth;

	it->cxt = cxt;
	it->wipe_cb.func = wipe_item;
	it->wipe_cb.arg = it;
	MemoryContextRegisterResetCallback(cxt, &it->wipe_cb);
	it->phase = phase;
	it->attempt_id = col_int8(tup, desc, 1);
	it->expect.order_id = col_text(tup, desc, 3);
	it->idempotency_key = col_text(tup, desc, 4);
	it->expect.amount = col_int8(tup, desc, 6);
	it->expect.mid = col_text(tup, desc, 14);
	if (phase == PHASE_RECOVER)
	{
		it->created_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 15, &isnull));
		it->may_repost = DatumGetBool(SPI_getbinval(tup, desc, 16, &isnull));
	}
	req.customer_key = col_text(tup, desc, 5);
	req.amount = it->expect.amount;
	req.tax_free_amount = col_int8(tup, desc, 7);
	req.order_id = it->expect.order_id;
	req.order_name = col_text(tup, desc, 8);
	req.customer_email = col_text(tup, desc, 9);
	req.customer_name = col_text(tup, desc, 10);
	it->body = toss_charge_body(&req);

	auth = merchant_auth(r, col_text(tup, desc, 12));
	it->authorization = auth->authorization;
	it->merchant = auth->merchant;
	sealed_datum = SPI_getbinval(tup, desc, 13, &isnull);
	if (auth->authorization == NULL)
		fail_item(it, "SECRET_KEY_MISSING", auth->problem);
	else if (isnull)
		fail_item(it, "BILLING_KEY_UNREADABLE", "the attempt's billing key has no sealed key");
	else
	{
		PG_TRY();
		{
			it->billing_key = toss_decrypt_billing_key(DatumGetByteaPP(sealed_datum),
													   col_int8(tup, desc, 11));
		}
		PG_CATCH();
		{
			ErrorData  *e;

			MemoryContextSwitchTo(cxt);
			e = CopyErrorData();
			FlushErrorState();
			fail_item(it, "BILLING_KEY_UNREADABLE",
					  e->detail ? psprintf("%s: %s", e->message, e->detail) : e->message);
		}
		PG_END_TRY();
	}
	MemoryContextSwitchTo(old);
	return it;
}

/*
 * Run a claiming query (new attempts, or unknown ones to resolve) and queue
 * what it returns; commit.  Rows that could not be prepared go straight to
 * the outcomes.  Returns the number of rows claimed.
 */
static uint64
claim_rows(Runner *r, const char *sql, int n, ItemPhase phase)
{
	Oid			argtypes[2] = {INT4OID, INTERVALOID};
	Datum		args[2];
	Interval	timeout = {0};
	uint64		got;

	timeout.time = (int64) toss_timeout_ms * 1000;
	args[0] = Int32GetDatum(n);
	args[1] = IntervalPGetDatum(&timeout);

	/*
	 * The transaction open since the last commit has done nothing; end it so
	 * that the claim's now(), its attempts' created_at, is the claim's time.
	 * (With the outcome recorder, this backend's commits are far apart.)
	 */
	SPI_commit();
	if (toss_spi_execute(sql, phase == PHASE_CHARGE ? 2 : 1, argtypes, args, NULL, false) != SPI_OK_SELECT)
		elog(ERROR, "toss_billing: claiming query failed");
	got = SPI_processed;
	for (uint64 i = 0; i < got; i++)
	{
		RunItem    *it = make_item(r, SPI_tuptable->vals[i], SPI_tuptable->tupdesc, phase);

		if (it->phase == PHASE_DONE)
			r->finished[r->nfinished++] = it;
		else
		{
			dlist_push_tail(&r->queue, &it->node);
			r->queued++;
		}
	}
	SPI_commit();
	return got;
}

/* Claim up to n due periods: each becomes an in_flight attempt, committed. */
static void
claim(Runner *r, int n)
{
	uint64		got = claim_rows(r, "SELECT attempt_id, payment_id, order_id, idempotency_key, customer_key, "
								 "amount, tax_free_amount, order_name, customer_email, customer_name, "
								 "billing_key_id, merchant, encrypted_key, mid "
								 "FROM toss_billing._claim_due($1, $2)", n, PHASE_CHARGE);

	r->claimed += got;
	toss_store_note_rows(got);
	if (got < (uint64) n)
		r->exhausted = true;
}

/* Token bucket: may another call start now? */
static bool
may_start(Runner *r)
{
	double		now = now_s();

	if (now < r->backoff_until)
		return false;
	if (r->max_per_second <= 0)
		return true;
	r->tokens = Min((double) r->max_per_second,
					r->tokens + (now - r->last_refill) * r->max_per_second);
	r->last_refill = now;
	if (r->tokens < 1.0)
		return false;
	r->tokens -= 1.0;
	return true;
}

static void
send_queued(Runner *r)
{
	int			added = 0;
	double		left = budget_left_ms(r->started, r->budget_ms);

	/* nothing new leaves once the time budget is over: it could not be waited for */
	while (r->queued > 0 && left > 0 &&
		   toss_http_batch_running(r->batch) < r->max_concurrency &&
		   may_start(r))
	{
		RunItem    *it = dlist_container(RunItem, node, dlist_pop_head_node(&r->queue));
		TossEndpoint ep = r->ep;
		TossHttpRequest req;
		MemoryContext old;

		if (!it->gated)
		{
			if (!toss_engine_gate_acquire(it->merchant))
			{
				/* the merchant has toss_billing.merchant_concurrency calls in flight */
				dlist_push_head(&r->queue, &it->node);
				break;
			}
			it->gated = toss_merchant_concurrency > 0;
		}
		r->queued--;
		old = MemoryContextSwitchTo(it->cxt);
		ep.authorization = it->authorization;
		/* a call never outlasts the run's time budget */
		ep.timeout_ms = (int) Min((double) ep.timeout_ms, Max(1.0, left));
		if (it->phase == PHASE_LOOKUP || it->phase == PHASE_RECOVER)
			toss_api_get_request(&ep, toss_api_payment_by_order_url(&ep, it->expect.order_id), &req);
		else
		{
			/* the URL holds the billing key: curl copies it, ours is wiped at once */
			char	   *url = toss_api_charge_url(&ep, it->billing_key);

			toss_api_charge_request(&ep, url, it->idempotency_key, it->body, &req);
			toss_http_batch_add(r->batch, &req, it);
			toss_wipe_string(url);
			dlist_push_tail(&r->in_flight, &it->node);
			MemoryContextSwitchTo(old);
			added++;
			continue;
		}
		toss_http_batch_add(r->batch, &req, it);
		dlist_push_tail(&r->in_flight, &it->node);
		MemoryContextSwitchTo(old);
		added++;
	}
	/* on the wire now, not after the database work that comes next */
	if (added > 0)
		toss_http_batch_start(r->batch);
}

static bool
is_throttle(const TossReply *reply)
{
	return reply->http.failure == TOSS_HTTP_OK &&
		(reply->http.status == 429 ||
		 (reply->code && strcmp(reply->code, "FORBIDDEN_CONSECUTIVE_REQUEST") == 0));
}

static void
note_throttle(Runner *r, bool throttled)
{
	if (!throttled)
	{
		r->backoff_ms = 0;
		return;
	}
	r->throttled++;
	r->backoff_ms = r->backoff_ms == 0 ? BACKOFF_START_MS : Min(r->backoff_ms * 2, BACKOFF_MAX_MS);
	r->backoff_until = now_s() + r->backoff_ms / 1000.0;
}

/* Queue an item's next call, ahead of new claims. */
static void
requeue(Runner *r, RunItem *it, ItemPhase phase)
{
	it->phase = phase;
	dlist_push_head(&r->queue, &it->node);
	r->queued++;
}

/*
 * An answer came back; judge it and return whether the item is finished.
 *   CHARGE / REPOST: settled, or (ambiguous) on to its lookup, queued on the
 *     multi handle like any call: no lookup ever blocks the others.
 *   LOOKUP: judged with the POST's answer.
 *   RECOVER: an unknown attempt's lookup.  Settled, or Toss has no record:
 *     then the very same request is posted again with the same
 *     Idempotency-Key while Toss keeps that key and the order is still owed
 *     as it was (a request that did reach Toss is answered from its cache,
 *     one that did not is made now); otherwise the attempt is known to have
 *     made nothing.
 */
static bool
judge(Runner *r, RunItem *it, TossReply *answer)
{
	TossChargeVerdict *v = &it->verdict;

	switch (it->phase)
	{
		case PHASE_CHARGE:
		case PHASE_REPOST:
			toss_judge_reply(answer, &it->expect, v);
			if (!v->need_lookup)
				return true;
			requeue(r, it, PHASE_LOOKUP);
			return false;
		case PHASE_LOOKUP:
			toss_judge_lookup(&it->reply, answer, &it->expect, v);
			return true;
		case PHASE_RECOVER:
			if (toss_judge_recovery(answer, &it->expect, v))
				return true;
			if (it->may_repost && GetCurrentTimestamp() - it->created_at < IDEMPOTENCY_WINDOW_USEC)
			{
				requeue(r, it, PHASE_REPOST);
				return false;
			}
			memset(v, 0, sizeof(*v));
			v->outcome.state = "failed";
			v->outcome.http_status = answer->http.status;
			v->outcome.failure_class = toss_class_name(TOSS_CLASS_TRANSIENT);
			v->outcome.failure_code = "NOT_FOUND_AT_TOSS";
			v->outcome.failure_message = it->may_repost ?
				"Toss has no record of this attempt after its 15-day idempotency window; nothing was charged by it." :
				"Toss has no record of this attempt, and its order is not owed as it was (period, subscription or billing key changed): it is not posted again.";
			return true;
		case PHASE_DONE:
			break;
	}
	return true;
}

/* Judge finished calls; wait up to wait_ms for the first one. */
static void
collect(Runner *r, int wait_ms)
{
	void	   *tag;
	TossHttpResponse resp;

	while (toss_http_batch_next(r->batch, wait_ms, &tag, &resp))
	{
		RunItem    *it = (RunItem *) tag;
		MemoryContext old = MemoryContextSwitchTo(it->cxt);
		TossReply  *answer = it->phase == PHASE_LOOKUP ? &it->lookup : &it->reply;

		dlist_delete(&it->node);
		if (it->gated)
		{
			toss_engine_gate_release(it->merchant);
			it->gated = false;
		}

		memset(answer, 0, sizeof(*answer));
		answer->http = resp;
		answer->http.body = palloc(resp.body_len + 1);
		memcpy(answer->http.body, resp.body, resp.body_len + 1);
		pfree(resp.body);
		toss_reply_read(answer, it->billing_key, it->authorization);
		note_throttle(r, is_throttle(answer));
		if (judge(r, it, answer))
		{
			it->phase = PHASE_DONE;
			r->finished[r->nfinished++] = it;
		}
		MemoryContextSwitchTo(old);
		wait_ms = 0;
	}
}

/*
 * The time budget is over: every call still waiting to be sent or for its
 * answer is given up (its transfer abandoned) and its attempt recorded
 * unknown, to be settled by the next run looking the order up (and posting
 * the very same request, with the same Idempotency-Key, if Toss has no
 * record of it).  So a run ends within its budget however Toss behaves.
 */
static void
abandon_unfinished(Runner *r)
{
	dlist_head *lists[2] = {&r->in_flight, &r->queue};

	for (int l = 0; l < 2; l++)
	{
		while (!dlist_is_empty(lists[l]))
		{
			RunItem    *it = dlist_container(RunItem, node, dlist_pop_head_node(lists[l]));
			TossChargeVerdict *v = &it->verdict;
			bool		sent = l == 0 || it->phase == PHASE_LOOKUP || it->phase == PHASE_REPOST;

			if (l == 0)
				toss_http_batch_cancel(r->batch, it);
			else
				r->queued--;
			if (it->gated)
			{
				toss_engine_gate_release(it->merchant);
				it->gated = false;
			}
			if (it->phase != PHASE_LOOKUP)
				memset(v, 0, sizeof(*v));
			v->outcome.state = "unknown";
			v->outcome.failure_class = toss_class_name(TOSS_CLASS_OUTCOME_UNKNOWN);
			v->outcome.failure_code = NULL;
			v->outcome.failure_message = sent ?
				"the run's time budget ended before Toss answered; the next run looks the order up" :
				"the run's time budget ended before this attempt was sent; the next run looks the order up and posts it if Toss has no record of it";
			v->outcome.payment_json = NULL;
			v->outcome.hold = NULL;
			it->phase = PHASE_DONE;
			r->finished[r->nfinished++] = it;
			if (r->nfinished >= FLUSH_MAX)
				flush(r);
		}
	}
}

/*
 * Hand the finished outcomes over: to the outcome recorder when there is
 * one, else record them here in one transaction.  Frees their items.
 */
static void
flush(Runner *r)
{
	int			n = r->nfinished;
	TossOutcome *rows;

	r->last_flush = now_s();
	if (n == 0)
		return;
	rows = palloc(sizeof(TossOutcome) * n);
	for (int i = 0; i < n; i++)
	{
		const TossOutcome *o = &r->finished[i]->verdict.outcome;

		rows[i] = *o;
		rows[i].attempt_id = r->finished[i]->attempt_id;
		if (strcmp(o->state, "done") == 0)
			r->done++;
		else if (strcmp(o->state, "failed") == 0)
			r->failed++;
		else
			r->unknown++;
	}
	if (r->may_record_apart)
	{
		/* started only once there is something to record: not for idle runs */
		MemoryContext old = MemoryContextSwitchTo(r->cxt);

		r->may_record_apart = false;
		/* detached when the run's context goes, on error too */
		r->recorder = toss_recorder_start();
		MemoryContextSwitchTo(old);
	}
	if (r->recorder != NULL)
		toss_recorder_send(r->recorder, rows, n);
	else
	{
		MemoryContext tmp = AllocSetContextCreate(r->cxt, "toss_billing flush",
												  ALLOCSET_DEFAULT_SIZES);
		MemoryContext old = MemoryContextSwitchTo(tmp);

		toss_record_outcomes(rows, n);
		MemoryContextSwitchTo(old);
		MemoryContextDelete(tmp);
		SPI_commit();
		/* a paid period can make the next one due at once (catching up) */
		r->exhausted = false;
	}
	pfree(rows);
	for (int i = 0; i < n; i++)
		MemoryContextDelete(r->finished[i]->cxt);
	r->nfinished = 0;
}

/* The recorder committed more: a paid period can make the next one due. */
static void
note_recorded(Runner *r)
{
	uint64		recorded;

	if (r->recorder == NULL)
		return;
	recorded = toss_recorder_recorded(r->recorder);
	if (recorded != r->recorded_seen)
	{
		r->recorded_seen = recorded;
		r->exhausted = false;
	}
}

static void
check_call_context(FunctionCallInfo fcinfo)
{
	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext) ||
		castNode(CallContext, fcinfo->context)->atomic)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("toss_billing.run_due() must be called with CALL outside a transaction block"),
				 errdetail("It commits each attempt before its Toss call and each outcome after it.")));
}

static void
init_runner(Runner *r, int max_charges, double budget_ms)
{
	memset(r, 0, sizeof(*r));
	r->cxt = AllocSetContextCreate(CurrentMemoryContext, "toss_billing run_due",
								   ALLOCSET_DEFAULT_SIZES);
	r->wipe_cb.func = wipe_auths;
	r->wipe_cb.arg = r;
	MemoryContextRegisterResetCallback(r->cxt, &r->wipe_cb);
	r->ep.api_url = MemoryContextStrdup(r->cxt, toss_api_base_url());
	r->ep.connect_timeout_ms = toss_connect_timeout_ms;
	r->ep.timeout_ms = toss_timeout_ms;
	r->max_concurrency = toss_max_concurrency;
	r->max_per_second = toss_max_requests_per_second;
	r->tokens = Min(r->max_per_second, 1);
	r->last_refill = r->started = r->last_flush = now_s();
	r->budget_ms = budget_ms;
	r->max_charges = max_charges;
	dlist_init(&r->queue);
	dlist_init(&r->in_flight);
	/* small outcome batches keep slots refilled while the database works */
	r->flush_every = Max(8, Min(FLUSH_MAX, r->max_concurrency / 4));
	r->finished = MemoryContextAlloc(r->cxt, sizeof(RunItem *) * 2 * (r->max_concurrency + FLUSH_MAX));
	{
		MemoryContext old = MemoryContextSwitchTo(r->cxt);

		r->batch = toss_http_batch_create(r->max_concurrency);
		MemoryContextSwitchTo(old);
	}
}

/*
 * Claim ahead, up to twice max_concurrency queued or running, once at least
 * half of max_concurrency has room: a claim's statements (transitions,
 * consent notices, finalising, the claim) cost much the same for 20 rows
 * as for 40, and the calls still queued or running keep the slots busy
 * while it runs.
 */
static bool
should_claim(Runner *r)
{
	int			room = 2 * r->max_concurrency - r->queued - toss_http_batch_running(r->batch);

	return !r->exhausted && r->claimed < r->max_charges &&
		ms_since(r->started) < r->budget_ms &&
		room >= r->max_concurrency / 2 + 1;
}

static bool
should_flush(Runner *r)
{
	return r->nfinished >= r->flush_every ||
		(r->nfinished > 0 && ms_since(r->last_flush) >= FLUSH_AFTER_MS);
}

/*
 * The pipeline: claim ahead, keep max_concurrency calls running, record
 * outcomes in small batches.  Slots are refilled after every piece of
 * database work, so the calls in flight overlap the database's time.  When
 * an outcome recorder could be started, it writes the outcomes while this
 * backend goes on claiming and calling; the run ends once it has committed
 * them all and nothing more is due.
 */
static void
run(Runner *r)
{
	r->may_record_apart = true;
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		note_recorded(r);
		if (budget_left_ms(r->started, r->budget_ms) <= 0 &&
			(r->queued > 0 || toss_http_batch_running(r->batch) > 0))
			abandon_unfinished(r);
		if (should_claim(r))
		{
			int			room = 2 * r->max_concurrency - r->queued - toss_http_batch_running(r->batch);

			claim(r, Min(room, r->max_charges - (int) r->claimed));
		}
		send_queued(r);
		if (toss_http_batch_running(r->batch) == 0 && r->queued == 0 && !should_claim(r))
		{
			/* recording may make the next period due at once: look again */
			if (r->nfinished > 0)
				flush(r);
			else if (r->recorder != NULL && toss_recorder_pending(r->recorder) > 0)
				toss_recorder_wait(r->recorder, 100);
			else
				break;
			continue;
		}
		collect(r, (int) Min(toss_http_batch_running(r->batch) > 0 ? 20.0 : 5.0,
							 Max(1.0, budget_left_ms(r->started, r->budget_ms))));
		send_queued(r);
		if (should_flush(r))
		{
			flush(r);
			send_queued(r);
		}
	}
	if (r->recorder != NULL)
		toss_recorder_finish(r->recorder);
}

/* Drive queued and running calls until none is left, recording outcomes. */
static void
drain(Runner *r)
{
	while (r->queued > 0 || toss_http_batch_running(r->batch) > 0)
	{
		CHECK_FOR_INTERRUPTS();
		if (budget_left_ms(r->started, r->budget_ms) <= 0)
		{
			abandon_unfinished(r);
			break;
		}
		send_queued(r);
		collect(r, (int) Min(20.0, Max(1.0, budget_left_ms(r->started, r->budget_ms))));
		send_queued(r);
		if (should_flush(r))
			flush(r);
	}
	flush(r);
}

/* An unknown cancel being replayed. */
typedef struct CancelItem
{
	int64		cancel_id;
	bool		answered;
	bool		store;			/* record o once the calls are over */
	TossExpect	e;
	const char *authorization;
	TossReply	reply;
	TossOutcome o;
} CancelItem;

/*
 * Unknown cancels: each is replayed with its own Idempotency-Key and request
 * while Toss keeps that key (a cancel Toss made is answered from its cache,
 * one it never received is made now: either way exactly once).  After the
 * window the cancel is closed as failed; reconcile shows what Toss did.  The
 * replays of a batch run at once on the multi handle; one that gets no
 * answer within the run's time budget stays unknown for a later run.
 */
static void
recover_cancels(Runner *r)
{
	const int	n = 16;

	while (budget_left_ms(r->started, r->budget_ms) > 0)
	{
		MemoryContext tmp = AllocSetContextCreate(r->cxt, "toss_billing cancel recovery",
												  ALLOCSET_DEFAULT_SIZES);
		MemoryContext old = MemoryContextSwitchTo(tmp);
		Oid			argtype = INT4OID;
		Datum		arg = Int32GetDatum(n);
		uint64		got;
		TupleDesc	desc;
		CancelItem *items;
		int			pending = 0;

		CHECK_FOR_INTERRUPTS();
		if (toss_spi_execute("SELECT cancel_id, payment_key, idempotency_key, merchant, "
							 "cancel_amount, reason, created_at, order_id, total_amount, mid "
							 "FROM toss_billing._claim_unknown_cancels($1)",
							 1, &argtype, &arg, NULL, false) != SPI_OK_SELECT)
			elog(ERROR, "toss_billing._claim_unknown_cancels failed");
		got = SPI_processed;
		desc = CreateTupleDescCopy(SPI_tuptable->tupdesc);
		items = palloc0(sizeof(CancelItem) * Max(got, 1));
		for (uint64 i = 0; i < got; i++)
		{
			HeapTuple	row = heap_copytuple(SPI_tuptable->vals[i]);
			CancelItem *c = &items[i];
			bool		amount_null,
						isnull;
			int64		amount = DatumGetInt64(SPI_getbinval(row, desc, 5, &amount_null));
			TimestampTz created = DatumGetTimestampTz(SPI_getbinval(row, desc, 7, &isnull));
			MerchantAuth *auth = merchant_auth(r, SPI_getvalue(row, desc, 4));

			c->cancel_id = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
			c->store = true;
			if (auth->authorization == NULL)
			{
				c->o.state = "unknown";
				c->o.failure_class = toss_class_name(TOSS_CLASS_OUTCOME_UNKNOWN);
				c->o.failure_message = auth->problem;
			}
			else if (GetCurrentTimestamp() - created < IDEMPOTENCY_WINDOW_USEC)
			{
				TossEndpoint ep = r->ep;
				TossHttpRequest req;

				c->e.payment_key = SPI_getvalue(row, desc, 2);
				c->e.order_id = SPI_getvalue(row, desc, 8);
				c->e.amount = DatumGetInt64(SPI_getbinval(row, desc, 9, &isnull));
				c->e.mid = SPI_getvalue(row, desc, 10);
				c->authorization = auth->authorization;
				ep.authorization = auth->authorization;
				ep.timeout_ms = (int) Min((double) ep.timeout_ms,
										  Max(1.0, budget_left_ms(r->started, r->budget_ms)));
				toss_api_cancel_request(&ep, SPI_getvalue(row, desc, 3), c->e.payment_key,
										SPI_getvalue(row, desc, 6), amount_null, amount, &req);
				toss_http_batch_add(r->batch, &req, c);
				c->store = false;
				pending++;
			}
			else
			{
				c->o.state = "failed";
				c->o.failure_class = toss_class_name(TOSS_CLASS_OUTCOME_UNKNOWN);
				c->o.failure_message = "not confirmed within Toss's 15-day idempotency window; reconcile shows what Toss did";
			}
		}
		SPI_commit();
		toss_http_batch_start(r->batch);

		while (pending > 0 && budget_left_ms(r->started, r->budget_ms) > 0)
		{
			void	   *tag;
			TossHttpResponse resp;

			CHECK_FOR_INTERRUPTS();
			if (!toss_http_batch_next(r->batch, (int) Min(100.0, Max(1.0, budget_left_ms(r->started, r->budget_ms))),
									  &tag, &resp))
				continue;
			{
				CancelItem *c = (CancelItem *) tag;
				TossErrorClass cls;

				memset(&c->reply, 0, sizeof(c->reply));
				c->reply.http = resp;
				toss_reply_read(&c->reply, NULL, c->authorization);
				toss_judge_cancel(&c->reply, &c->e, &c->o, &cls);
				c->store = true;
				pending--;
			}
		}
		/* replays still unanswered when the budget ends stay unknown */
		for (uint64 i = 0; i < got; i++)
			if (!items[i].store)
				toss_http_batch_cancel(r->batch, &items[i]);
		for (uint64 i = 0; i < got; i++)
			if (items[i].store)
				toss_record_cancel_outcome(items[i].cancel_id, &items[i].o);
		SPI_commit();
		MemoryContextSwitchTo(old);
		MemoryContextDelete(tmp);
		if (got < (uint64) n)
			break;
	}
}

/*
 * Recovery, before any new charge: attempts left in_flight by a crash or a
 * killed process become unknown, and unknown attempts are resolved by
 * looking the order up (see judge_lookup).  Each unknown attempt is taken at
 * most once per run (_claim_unknown backs it off).
 */
static void
recover(Runner *r)
{
	if (toss_spi_execute("SELECT toss_billing._mark_stale()", 0, NULL, NULL, NULL, false) != SPI_OK_SELECT)
		elog(ERROR, "toss_billing._mark_stale failed");
	SPI_commit();

	while (ms_since(r->started) < r->budget_ms)
	{
		int			n = 2 * r->max_concurrency;
		uint64		got;

		CHECK_FOR_INTERRUPTS();
		got = claim_rows(r, "SELECT attempt_id, payment_id, order_id, idempotency_key, customer_key, amount, "
						 "tax_free_amount, order_name, customer_email, customer_name, "
						 "billing_key_id, merchant, encrypted_key, mid, created_at, may_repost "
						 "FROM toss_billing._claim_unknown($1)", n, PHASE_RECOVER);
		r->resolved += got;
		drain(r);
		if (got < (uint64) n)
			break;
	}
	recover_cancels(r);
}

static double
interval_ms(Interval *iv)
{
	return (iv->time / 1000.0) +
		(iv->day + iv->month * (double) DAYS_PER_MONTH) * SECS_PER_DAY * 1000.0;
}

/*
 * CALL toss_billing.run_due(max_charges, time_budget)
 *   -> (claimed, done, failed, unknown, throttled, elapsed_ms, run_id)
 *
 * The run and its recovery pass each get a row of the run log (runlog.c),
 * written at their start and end.
 */
Datum
toss_run_due(PG_FUNCTION_ARGS)
{
	int			max_charges = PG_ARGISNULL(0) ? 10000 : PG_GETARG_INT32(0);
	double		budget_ms = PG_ARGISNULL(1) ? 50000.0 : interval_ms(PG_GETARG_INTERVAL_P(1));
	Runner		r;
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {0};
	HeapTuple	result;
	int64		run_id,
				recovery_id;

	check_call_context(fcinfo);
	if (max_charges < 0 || budget_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_charges and time_budget must not be negative")));
	toss_require_root_key();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "run_due must return a composite type");
	tupdesc = BlessTupleDesc(CreateTupleDescCopy(tupdesc));

	SPI_connect_ext(SPI_OPT_NONATOMIC);
	toss_store_check_version();
	toss_load_codes();
	init_runner(&r, max_charges, budget_ms);
	run_id = toss_runlog_start("run_due", 0, max_charges, budget_ms);
	recovery_id = toss_runlog_start("recovery", run_id, max_charges, budget_ms);
	recover(&r);
	toss_runlog_finish(recovery_id, r.resolved, r.done, r.failed, r.unknown, r.throttled, ms_since(r.started));
	run(&r);
	toss_runlog_finish(run_id, r.claimed + r.resolved, r.done, r.failed, r.unknown, r.throttled,
					   ms_since(r.started));

	values[0] = Int64GetDatum(r.claimed + r.resolved);
	values[1] = Int64GetDatum(r.done);
	values[2] = Int64GetDatum(r.failed);
	values[3] = Int64GetDatum(r.unknown);
	values[4] = Int64GetDatum(r.throttled);
	values[5] = Float8GetDatum(ms_since(r.started));
	values[6] = Int64GetDatum(run_id);
	MemoryContextDelete(r.cxt);
	SPI_finish();
	result = heap_form_tuple(tupdesc, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}
