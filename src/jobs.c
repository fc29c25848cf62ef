/*
 * jobs.c — the steps of toss_billing's calls, run inside an engine worker
 * (engine.c): issuing a billing key, a charge (a toss_charge, a
 * subscription's open period for charge_subscription_now, or an invoice for
 * charge_invoice_now), a cancel
 * (refund) and a key deletion.  Each call goes intent -> request(s) -> outcome; the engine
 * runs the steps of many calls at once and decides when each runs.
 *
 * Transactions: the intent of a call (toss_job_intent) validates
 * everything (customer, billing key, secret key) and records the attempt;
 * the engine runs it in a subtransaction of an intent transaction and
 * commits that before any request of the call leaves.  Requests run
 * outside any transaction.  The outcome (toss_job_outcome, or the charge
 * row of toss_job_charge_row recorded in one batch) runs in the engine's
 * outcome transaction.  A crash in between leaves the attempt in_flight,
 * never missing.  (Deleting a key records nothing first: DELETE is
 * idempotent by itself.)
 *
 * After a request has left (EngineJob.sent), the caller hears only the
 * verified outcome or TB006 (outcome unknown): any error from then on --
 * reading the answer, a cast, a lock, recording -- ends in
 * toss_job_outcome_failed(), which parks the attempt as unknown (to be
 * settled by looking the order up) and gives the caller TB006 with the
 * error in DETAIL and the order id in the message.
 *
 * Memory: everything of a call lives in its own context (EngineJob.cxt),
 * whose reset callback wipes the plaintext billing key and the
 * authorization header; both are wiped as soon as the last request of a
 * round has been answered, and a URL holding the billing key as soon as
 * curl has copied it.
 */
#include "postgres.h"

#include "access/xact.h"
#include "charge.h"
#include "crypto.h"
#include "engine.h"
#include "errors.h"
#include "executor/spi.h"
#include "recorder.h"
#include "settings.h"
#include "storage.h"
#include "toss_api.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* Toss keeps an Idempotency-Key for 15 days; replay only an hour short of that. */
#define IDEMPOTENCY_WINDOW_USEC ((int64) (15 * 24 - 1) * 3600 * USECS_PER_SEC)

void
toss_job_set_error(TossJobResult *r, int sqlerrcode, char *message, char *detail, char *hint)
{
	memset(r, 0, sizeof(*r));
	r->sqlerrcode = sqlerrcode;
	r->message = message;
	r->detail = detail;
	r->hint = hint;
}

static void
set_ok(TossJobResult *r, char *payload)
{
	memset(r, 0, sizeof(*r));
	r->ok = true;
	r->payload = payload;
}

/* A definitive Toss error reply as a job error. */
static void
set_toss_error(TossJobResult *r, const TossReply *reply, const char *applies_to, bool charge)
{
	TossErrorClass cls = toss_classify_code(reply->code, reply->http.status, applies_to);

	toss_job_set_error(r, toss_class_sqlstate(cls), pstrdup(toss_class_message(cls, charge)),
					   psprintf("Toss answered HTTP %ld with code %s: %s", reply->http.status,
								reply->code, reply->message ? reply->message : ""),
					   NULL);
}

const char *
toss_job_kind_name(TossJobKind kind)
{
	switch (kind)
	{
		case TOSS_JOB_ISSUE:
			return "toss_issue_billing_key";
		case TOSS_JOB_CHARGE:
			return "toss_charge";
		case TOSS_JOB_CANCEL:
			return "toss_cancel";
		case TOSS_JOB_DELETE_KEY:
			return "toss_delete_billing_key";
		case TOSS_JOB_CHARGE_SUBSCRIPTION:
			return "charge_subscription_now";
		case TOSS_JOB_CHARGE_INVOICE:
			return "charge_invoice_now";
	}
	return "unknown";
}

/* What the call is, without secrets (pg_stat_activity, messages). */
char *
toss_job_describe(const EngineJob *j)
{
	switch (j->job.kind)
	{
		case TOSS_JOB_CHARGE:
			return psprintf("toss_charge %s of customer %s",
							j->job.order_id[0] ? j->job.order_id : "(new order)", j->job.customer_key);
		case TOSS_JOB_ISSUE:
			return psprintf("toss_issue_billing_key for customer %s", j->job.customer_key);
		case TOSS_JOB_CANCEL:
			return psprintf("toss_cancel of %s", j->job.payment);
		case TOSS_JOB_DELETE_KEY:
			return psprintf("toss_delete_billing_key for customer %s", j->job.customer_key);
		case TOSS_JOB_CHARGE_SUBSCRIPTION:
			return psprintf("charge_subscription_now of subscription " INT64_FORMAT, j->job.subscription_id);
		case TOSS_JOB_CHARGE_INVOICE:
			return psprintf("charge_invoice_now of invoice " INT64_FORMAT, j->job.invoice_id);
	}
	return pstrdup("unknown call");
}

void
toss_job_wipe(EngineJob *j)
{
	toss_wipe_string(j->auth);
	toss_wipe_string(j->billing_key);
	toss_wipe_string(j->secret_url);
	j->auth = NULL;
	j->billing_key = NULL;
	j->secret_url = NULL;
}

static void
fill_endpoint(EngineJob *j)
{
	j->ep.api_url = j->job.api_url;
	j->ep.authorization = j->auth;
	j->ep.connect_timeout_ms = j->job.connect_timeout_ms;
	j->ep.timeout_ms = j->job.timeout_ms;
}

/* The reply of the request just answered, read into the call's memory. */
static void
read_answer(EngineJob *j, TossReply *answer, TossHttpResponse *resp)
{
	memset(answer, 0, sizeof(*answer));
	answer->http = *resp;
	answer->http.body = palloc(resp->body_len + 1);
	memcpy(answer->http.body, resp->body, resp->body_len + 1);
	explicit_bzero(resp->body, resp->body_len);
	pfree(resp->body);
	toss_reply_read(answer, j->billing_key, j->auth);
}

/* ---------------------------------------------------------------- intents */

/*
 * The Authorization header of a merchant, read from the secret key file
 * once per intent transaction (toss_job_auth_cache_reset), not once per
 * call; each call gets its own copy, wiped with the call.  The cache lives
 * in the memory context current at the reset, wiped at the next reset.
 */
typedef struct AuthCache
{
	char	   *merchant;
	char	   *header;
} AuthCache;

static List *auth_cache = NIL;

void
toss_job_auth_cache_reset(void)
{
	ListCell   *lc;

	foreach(lc, auth_cache)
		toss_wipe_string(((AuthCache *) lfirst(lc))->header);
	auth_cache = NIL;
}

static char *
job_auth(const char *merchant, MemoryContext cache_cxt)
{
	ListCell   *lc;
	AuthCache  *a;
	MemoryContext old;

	foreach(lc, auth_cache)
	{
		a = lfirst(lc);
		if (strcmp(a->merchant, merchant) == 0)
			return pstrdup(a->header);
	}
	/* raises if the key cannot be read: nothing is cached then */
	{
		char	   *header = toss_authorization_header(merchant);

		old = MemoryContextSwitchTo(cache_cxt);
		a = palloc(sizeof(AuthCache));
		a->merchant = pstrdup(merchant);
		a->header = pstrdup(header);
		auth_cache = lappend(auth_cache, a);
		MemoryContextSwitchTo(old);
		return header;
	}
}

static MemoryContext auth_cache_cxt = NULL;

void
toss_job_auth_cache_use(MemoryContext cxt)
{
	toss_job_auth_cache_reset();
	auth_cache_cxt = cxt;
}

/*
 * An authKey this customer already exchanged (the successUrl loaded again)
 * returns the key it gave: Toss has forgotten the authKey by then.
 */
static void
intent_issue(EngineJob *j)
{
	int64		issued;
	bool		pending;

	toss_require_root_key();
	j->customer_id = toss_store_customer_id(j->job.customer_key);
	j->auth_hash = toss_hash_auth_key(j->job.auth_key);
	issued = toss_store_issued_for_auth_key(j->customer_id, j->auth_hash, 0, &pending);
	if (issued > 0)
	{
		set_ok(&j->result, toss_store_billing_key_info(issued));
		j->step = STEP_DONE;
		return;
	}
	j->idem = toss_random_uuid();
	j->row_id = toss_store_issue_intent(j->customer_id, j->job.merchant, j->idem, j->auth_hash);
	j->auth = job_auth(j->job.merchant, auth_cache_cxt);
	j->merchant = j->job.merchant;
}

static void
intent_charge(EngineJob *j)
{
	TossChargeIntent *in = &j->in;

	if (j->job.kind == TOSS_JOB_CHARGE_SUBSCRIPTION)
	{
		/* claimed as the runner claims it: whichever claims the period first posts it */
		toss_store_subscription_charge_intent(j->job.subscription_id, j->job.requested_by, j->job.timeout_ms,
											  in, &j->sc);
		j->amount = j->sc.amount;
	}
	else if (j->job.kind == TOSS_JOB_CHARGE_INVOICE)
	{
		/* the same, for an invoice (a period invoice: its subscription's period) */
		toss_store_invoice_charge_intent(j->job.invoice_id, j->job.requested_by, j->job.timeout_ms, in, &j->sc);
		j->amount = j->sc.amount;
	}
	else
	{
		if (j->job.order_id[0] == '\0')
			snprintf(j->job.order_id, sizeof(j->job.order_id), "tb%s-%s",
					 toss_store_order_tag(), toss_random_uuid());
		toss_store_charge_intent(j->job.customer_key, j->job.amount, j->job.order_name, j->job.order_id,
								 j->job.has_customer_email ? j->job.customer_email : NULL,
								 j->job.has_customer_name ? j->job.customer_name : NULL,
								 j->job.tax_free_amount, j->job.requested_by, j->job.timeout_ms, in);
		j->amount = j->job.amount;
	}
	if (strcmp(in->action, "done") == 0)
	{
		set_ok(&j->result, pstrdup(in->payment_json));
		j->step = STEP_DONE;
		return;
	}
	if (strcmp(in->action, "busy") == 0 && j->job.kind == TOSS_JOB_CHARGE_SUBSCRIPTION)
	{
		toss_job_set_error(&j->result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
						   psprintf("the open period of subscription " INT64_FORMAT " is being charged",
									j->job.subscription_id),
						   psprintf("Order %s of the period is in flight or its outcome is being resolved (by the runner or another call).",
									in->order_id ? in->order_id : "(none)"),
						   pstrdup("Wait for its outcome: LISTEN toss_billing_events, or poll toss_billing.subscription_info; do not charge the period another way."));
		j->step = STEP_DONE;
		return;
	}
	if (strcmp(in->action, "busy") == 0 && j->job.kind == TOSS_JOB_CHARGE_INVOICE)
	{
		toss_job_set_error(&j->result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
						   psprintf("invoice " INT64_FORMAT " is being charged", j->job.invoice_id),
						   psprintf("Order %s of the invoice is in flight or its outcome is being resolved (by the runner or another call).",
									in->order_id ? in->order_id : "(none)"),
						   pstrdup("Wait for its outcome: LISTEN toss_billing_events, or poll toss_billing.invoices; do not charge the invoice another way."));
		j->step = STEP_DONE;
		return;
	}
	if (strcmp(in->action, "busy") == 0)
	{
		toss_job_set_error(&j->result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
						   psprintf("the outcome of the charge %s is not known yet", j->job.order_id),
						   psprintf("Another call for order %s is in flight.", j->job.order_id),
						   pstrdup("Ask toss_billing.order_status() shortly; do not charge under a new order id."));
		j->step = STEP_DONE;
		return;
	}
	j->billing_key = toss_decrypt_billing_key(in->sealed, in->billing_key_id);
	j->auth = job_auth(in->merchant, auth_cache_cxt);
	j->merchant = in->merchant;
}

static void
intent_cancel(EngineJob *j)
{
	toss_store_cancel_intent(j->job.payment, j->job.reason, j->job.has_amount, j->job.amount,
							 j->job.requested_by, j->job.timeout_ms, &j->cin);
	j->auth = job_auth(j->cin.merchant, auth_cache_cxt);
	j->merchant = j->cin.merchant;
}

static void
intent_delete(EngineJob *j)
{
	toss_store_delete_intent(j->job.customer_key, &j->ref);
	j->billing_key = toss_decrypt_billing_key(j->ref.sealed, j->ref.billing_key_id);
	j->auth = job_auth(j->ref.merchant, auth_cache_cxt);
	j->merchant = j->ref.merchant;
}

/*
 * The intent of a call, inside a subtransaction of the intent transaction,
 * with the call's memory context current.  Raises if the call cannot be
 * made (nothing is then recorded or sent).
 */
void
toss_job_intent(EngineJob *j)
{
	j->step = STEP_SEND;
	j->tries = 0;
	switch (j->job.kind)
	{
		case TOSS_JOB_ISSUE:
			intent_issue(j);
			break;
		case TOSS_JOB_CHARGE:
		case TOSS_JOB_CHARGE_SUBSCRIPTION:
		case TOSS_JOB_CHARGE_INVOICE:
			intent_charge(j);
			break;
		case TOSS_JOB_CANCEL:
			intent_cancel(j);
			break;
		case TOSS_JOB_DELETE_KEY:
			intent_delete(j);
			break;
	}
}

/* ---------------------------------------------------------------- requests */

static void
charge_request(EngineJob *j)
{
	fill_endpoint(j);
	if (j->phase == CHARGE_POST)
	{
		TossChargeRequest creq = {
			.customer_key = j->job.customer_key,
			.amount = j->job.amount,
			.tax_free_amount = j->job.tax_free_amount,
			.order_id = j->in.order_id,
			.order_name = j->job.order_name,
			.customer_email = j->job.has_customer_email ? j->job.customer_email : NULL,
			.customer_name = j->job.has_customer_name ? j->job.customer_name : NULL,
		};

		if (j->job.kind == TOSS_JOB_CHARGE_SUBSCRIPTION || j->job.kind == TOSS_JOB_CHARGE_INVOICE)
		{
			creq.customer_key = j->sc.customer_key;
			creq.amount = j->sc.amount;
			creq.tax_free_amount = j->sc.tax_free_amount;
			creq.order_name = j->sc.order_name;
			creq.customer_email = j->sc.customer_email;
			creq.customer_name = j->sc.customer_name;
		}

		if (j->body == NULL)
			j->body = toss_charge_body(&creq);
		/* the URL holds the billing key: curl copies it, ours is wiped once it is sent */
		j->secret_url = toss_api_charge_url(&j->ep, j->billing_key);
		toss_api_charge_request(&j->ep, j->secret_url, j->in.idempotency_key, j->body, &j->req);
	}
	else
		toss_api_get_request(&j->ep, toss_api_payment_by_order_url(&j->ep, j->in.order_id), &j->req);
}

/* Builds the request of the current step (STEP_SEND). */
static void
build_request(EngineJob *j)
{
	fill_endpoint(j);
	j->tries++;
	switch (j->job.kind)
	{
		case TOSS_JOB_ISSUE:
			toss_api_issue_request(&j->ep, j->idem, j->job.auth_key, j->job.customer_key, &j->req);
			break;
		case TOSS_JOB_CHARGE:
		case TOSS_JOB_CHARGE_SUBSCRIPTION:
		case TOSS_JOB_CHARGE_INVOICE:
			charge_request(j);
			break;
		case TOSS_JOB_CANCEL:
			toss_api_cancel_request(&j->ep, j->cin.idempotency_key, j->cin.payment_key, j->job.reason,
									j->cin.full, j->cin.amount, &j->req);
			break;
		case TOSS_JOB_DELETE_KEY:
			j->secret_url = toss_api_charge_url(&j->ep, j->billing_key);
			toss_api_delete_request(&j->ep, j->secret_url, &j->req);
			break;
	}
	j->step = STEP_SEND;
}

/* After the intent transaction committed: the first request, or the result. */
void
toss_job_after_intent(EngineJob *j)
{
	if (j->step == STEP_DONE)
		return;
	if (j->job.kind == TOSS_JOB_CHARGE || j->job.kind == TOSS_JOB_CHARGE_SUBSCRIPTION ||
		j->job.kind == TOSS_JOB_CHARGE_INVOICE)
	{
		j->expect.order_id = j->in.order_id;
		j->expect.amount = j->amount;
		j->expect.mid = j->in.mid;
		j->expect.payment_key = NULL;
		j->phase = strcmp(j->in.action, "lookup") == 0 ? CHARGE_RECOVER : CHARGE_POST;
		j->body = NULL;
	}
	build_request(j);
}

/* ---------------------------------------------------------------- replies */

static bool
issue_reply_settles(const TossReply *reply)
{
	return (toss_reply_ok(reply) && toss_json_is_object(reply->doc)) ||
		(reply->is_error && reply->http.status < 500 &&
		 strcmp(reply->code, "IDEMPOTENT_REQUEST_PROCESSING") != 0);
}

static void
last_request_done(EngineJob *j)
{
	toss_job_wipe(j);
	j->step = STEP_OUTCOME;
}

static void
reply_charge(EngineJob *j, TossHttpResponse *resp)
{
	TossChargeVerdict *v = &j->verdict;

	switch (j->phase)
	{
		case CHARGE_RECOVER:
			read_answer(j, &j->lookup, resp);
			if (toss_judge_recovery(&j->lookup, &j->expect, v))
				break;
			if (!j->in.may_repost ||
				GetCurrentTimestamp() - j->in.attempt_created_at >= IDEMPOTENCY_WINDOW_USEC)
			{
				/* closed as not sent; the caller's next call posts a new attempt */
				memset(v, 0, sizeof(*v));
				v->outcome.state = "failed";
				v->outcome.http_status = j->lookup.http.status;
				v->outcome.failure_class = toss_class_name(TOSS_CLASS_TRANSIENT);
				v->outcome.failure_code = "NOT_FOUND_AT_TOSS";
				v->outcome.failure_message = j->in.may_repost ?
					"Toss has no record of this attempt after its 15-day idempotency window; nothing was charged by it." :
					"Toss has no record of this attempt, and it is not posted again as it was (its order is held, or the customer's card changed); nothing was charged by it.";
				break;
			}
			/* Toss has no record of it: the very same request, same key */
			j->phase = CHARGE_POST;
			build_request(j);
			return;
		case CHARGE_POST:
			read_answer(j, &j->reply, resp);
			toss_judge_reply(&j->reply, &j->expect, v);
			if (v->need_lookup)
			{
				/* ambiguous: look the order up, on the multi handle like any call */
				j->phase = CHARGE_LOOKUP;
				build_request(j);
				return;
			}
			break;
		case CHARGE_LOOKUP:
			read_answer(j, &j->lookup, resp);
			toss_judge_lookup(&j->reply, &j->lookup, &j->expect, v);
			break;
	}
	last_request_done(j);
}

/*
 * A request of the call was answered (or failed): judge it, then either the
 * call's next request (STEP_SEND) or its outcome (STEP_OUTCOME).  The call's
 * memory context is current.
 */
void
toss_job_reply(EngineJob *j, TossHttpResponse *resp)
{
	switch (j->job.kind)
	{
		case TOSS_JOB_CHARGE:
		case TOSS_JOB_CHARGE_SUBSCRIPTION:
		case TOSS_JOB_CHARGE_INVOICE:
			reply_charge(j, resp);
			return;
		case TOSS_JOB_ISSUE:
			read_answer(j, &j->reply, resp);
			/*
			 * A billing key can never be fetched again, so an ambiguous reply
			 * is replayed once with the same Idempotency-Key: Toss answers a
			 * replay with the first response instead of issuing twice.
			 */
			if (!issue_reply_settles(&j->reply) && j->tries < 2)
			{
				build_request(j);
				return;
			}
			break;
		case TOSS_JOB_CANCEL:
			{
				TossExpect	e = {.order_id = j->cin.order_id, .amount = j->cin.total_amount,
				.mid = j->cin.mid, .payment_key = j->cin.payment_key};

				read_answer(j, &j->reply, resp);
				/* an ambiguous reply is replayed once with the same Idempotency-Key */
				if (!toss_judge_cancel(&j->reply, &e, &j->cancel_outcome, &j->cancel_class) && j->tries < 2)
				{
					build_request(j);
					return;
				}
			}
			break;
		case TOSS_JOB_DELETE_KEY:
			read_answer(j, &j->reply, resp);
			/* DELETE is idempotent by itself: an ambiguous reply is retried once */
			if (!(j->reply.http.failure == TOSS_HTTP_OK && j->reply.http.status < 500) && j->tries < 2)
			{
				build_request(j);
				return;
			}
			break;
	}
	last_request_done(j);
}

/* ---------------------------------------------------------------- outcomes */

/* Charges are recorded together (toss_record_outcomes); the others one by one. */
bool
toss_job_records_outcome_batched(EngineJob *j)
{
	return j->job.kind == TOSS_JOB_CHARGE || j->job.kind == TOSS_JOB_CHARGE_SUBSCRIPTION ||
		j->job.kind == TOSS_JOB_CHARGE_INVOICE;
}

static void
summarize_billing(TossJson *doc, TossCardSummary *c)
{
#define PEEK(path) (toss_json_peek_text(doc, path) ? pstrdup(toss_json_peek_text(doc, path)) : NULL)
	c->mid = PEEK("mId");
	c->method = PEEK("method");
	c->card_company = PEEK("cardCompany");
	c->issuer_code = PEEK("card.issuerCode");
	c->acquirer_code = PEEK("card.acquirerCode");
	c->number = PEEK("card.number");
	if (c->number == NULL)
		c->number = PEEK("cardNumber");
	c->card_type = PEEK("card.cardType");
	c->owner_type = PEEK("card.ownerType");
	c->authenticated_at = PEEK("authenticatedAt");
#undef PEEK
}

/*
 * After Toss refused an issuance: a concurrent load of the same successUrl
 * may have taken the authKey first.  While such an issuance is in progress
 * (for at most twice the call's timeout) the call waits, checking again
 * every 100 ms in later outcome transactions; its key, once recorded, is
 * the answer.
 */
static void
issue_refused(EngineJob *j)
{
	bool		pending;
	int64		issued = toss_store_issued_for_auth_key(j->customer_id, j->auth_hash, j->row_id, &pending);
	TimestampTz now = GetCurrentTimestamp();

	if (issued > 0)
	{
		set_ok(&j->result, toss_store_billing_key_info(issued));
		j->step = STEP_DONE;
		return;
	}
	if (j->issue_wait_until == 0)
		j->issue_wait_until = TimestampTzPlusMilliseconds(now, 2 * j->job.timeout_ms);
	if (pending && now < j->issue_wait_until)
	{
		j->retry_at = TimestampTzPlusMilliseconds(now, 100);
		j->step = STEP_OUTCOME;
		return;
	}
	set_toss_error(&j->result, &j->reply, "issue", false);
	j->step = STEP_DONE;
}

static void
outcome_issue(EngineJob *j)
{
	TossReply  *reply = &j->reply;
	char	   *why = NULL;

	if (j->issue_waiting)
	{
		issue_refused(j);
		return;
	}
	if (toss_reply_ok(reply) && toss_verify_billing(reply->doc, j->job.customer_key, &why))
	{
		TossCardSummary card;
		bytea	   *sealed;
		bytea	   *hash;
		char	   *billing_key = pstrdup(toss_json_peek_text(reply->doc, "billingKey"));

		sealed = toss_encrypt_billing_key(billing_key, j->row_id);
		hash = toss_hash_billing_key(billing_key);
		toss_wipe_string(billing_key);
		summarize_billing(reply->doc, &card);
		toss_json_wipe(reply->doc);
		explicit_bzero(reply->http.body, reply->http.body_len);
		toss_store_issue_success(j->row_id, j->customer_id, sealed, &card);
		toss_store_key_hash(j->row_id, hash);
		set_ok(&j->result, toss_store_billing_key_info(j->row_id));
	}
	else if (reply->is_error && issue_reply_settles(reply))
	{
		toss_store_issue_failure(j->row_id, "failed", reply->code, reply->message);
		j->issue_waiting = true;
		issue_refused(j);
		return;
	}
	else
	{
		char	   *what = why ? psprintf("toss's answer does not match the issuance: %s", why) :
			toss_describe_reply(reply);

		if (reply->doc)
			toss_json_wipe(reply->doc);
		explicit_bzero(reply->http.body, reply->http.body_len);
		toss_store_issue_failure(j->row_id, "unknown", NULL, what);
		toss_job_set_error(&j->result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
						   pstrdup("the outcome of the billing key issue is unknown"),
						   psprintf("No verified answer arrived from Toss, even on an idempotent replay (%s).", what),
						   pstrdup("The billing key row is marked unknown; ask the customer to register the card again."));
	}
}

static void
outcome_cancel(EngineJob *j)
{
	TossOutcome *o = &j->cancel_outcome;
	TossReply  *reply = &j->reply;

	if (strcmp(o->state, "done") == 0)
		set_ok(&j->result, reply->http.body);
	else if (strcmp(o->state, "failed") == 0)
		toss_job_set_error(&j->result, toss_class_sqlstate(j->cancel_class), pstrdup("toss refused the cancel"),
						   psprintf("Toss answered HTTP %ld with code %s: %s", reply->http.status,
									reply->code, reply->message ? reply->message : ""), NULL);
	else
		toss_job_set_error(&j->result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
						   psprintf("the outcome of the cancel of %s is unknown", j->cin.order_id),
						   psprintf("No verified answer arrived from Toss, even on an idempotent replay (%s).",
									o->failure_message),
						   pstrdup("The cancel is recorded as unknown; the runner replays it with the same Idempotency-Key."));
	toss_store_cancel_outcome(j->cin.cancel_id, o);
}

static bool
already_gone(const TossReply *reply)
{
	return reply->is_error &&
		(strcmp(reply->code, "NOT_FOUND_BILLING") == 0 ||
		 strcmp(reply->code, "BILLING_KEY_NOT_FOUND") == 0 ||
		 strcmp(reply->code, "ALREADY_REMOVED_BILLING_KEY") == 0);
}

static void
outcome_delete(EngineJob *j)
{
	TossReply  *reply = &j->reply;
	bool		ok = (reply->http.failure == TOSS_HTTP_OK && reply->http.status >= 200 &&
					  reply->http.status < 300) || already_gone(reply);

	if (!ok)
	{
		if (reply->is_error && reply->http.status < 500)
			set_toss_error(&j->result, reply, "any", false);
		else
			toss_job_set_error(&j->result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
							   pstrdup("the outcome of the billing key deletion is unknown"),
							   psprintf("No definitive answer arrived from Toss (%s). The key stays active.",
										toss_describe_reply(reply)),
							   pstrdup("Call toss_billing.toss_delete_billing_key() again: deleting is idempotent."));
		return;
	}
	toss_store_key_deleted(j->ref.billing_key_id,
						   already_gone(reply) ? "already removed at Toss" : "deleted at the merchant's request");
	set_ok(&j->result, toss_store_billing_key_info(j->ref.billing_key_id));
}

/*
 * The outcome of an issue, cancel or deletion, inside a subtransaction of
 * the outcome transaction, with the call's memory context current.
 */
void
toss_job_outcome(EngineJob *j)
{
	j->retry_at = 0;			/* set again by a call that waits */
	switch (j->job.kind)
	{
		case TOSS_JOB_ISSUE:
			outcome_issue(j);
			break;
		case TOSS_JOB_CANCEL:
			outcome_cancel(j);
			break;
		case TOSS_JOB_DELETE_KEY:
			outcome_delete(j);
			break;
		case TOSS_JOB_CHARGE:
		case TOSS_JOB_CHARGE_SUBSCRIPTION:
		case TOSS_JOB_CHARGE_INVOICE:
			elog(ERROR, "charges are recorded in batches");
	}
	if (j->step == STEP_OUTCOME && j->retry_at == 0)
		j->step = STEP_DONE;
}

static const char *
what_of(EngineJob *j, const char **id)
{
	switch (j->job.kind)
	{
		case TOSS_JOB_ISSUE:
			*id = j->job.customer_key;
			return "billing key issue for customer";
		case TOSS_JOB_CHARGE:
		case TOSS_JOB_CHARGE_SUBSCRIPTION:
		case TOSS_JOB_CHARGE_INVOICE:
			*id = j->in.order_id ? j->in.order_id : j->job.order_id;
			return "charge";
		case TOSS_JOB_CANCEL:
			*id = j->cin.order_id ? j->cin.order_id : j->job.payment;
			return "cancel of";
		case TOSS_JOB_DELETE_KEY:
			*id = j->job.customer_key;
			return "billing key deletion for customer";
	}
	*id = "";
	return "call";
}

/* Marks what the call recorded as unknown, in a transaction of its own. */
static void
park(EngineJob *j, const char *error)
{
	switch (j->job.kind)
	{
		case TOSS_JOB_ISSUE:
			toss_store_issue_failure(j->row_id, "unknown", NULL,
									 "the outcome of the issue could not be recorded; ask the customer to register the card again");
			break;
		case TOSS_JOB_CHARGE:
		case TOSS_JOB_CHARGE_SUBSCRIPTION:
		case TOSS_JOB_CHARGE_INVOICE:
			SPI_connect();
			toss_store_park(j->in.attempt_id, error);
			SPI_finish();
			break;
		case TOSS_JOB_CANCEL:
			{
				TossOutcome o = {0};

				o.state = "unknown";
				o.failure_class = toss_class_name(TOSS_CLASS_OUTCOME_UNKNOWN);
				o.failure_message = "the outcome of the cancel could not be recorded; the runner replays it with its own Idempotency-Key";
				toss_store_cancel_outcome(j->cin.cancel_id, &o);
			}
			break;
		case TOSS_JOB_DELETE_KEY:
			break;
	}
}

/*
 * The outcome could not be recorded (or the result not built) after a
 * request left: the caller hears TB006 with the error in DETAIL.  park:
 * mark what the call recorded as unknown (in a transaction of its own; if
 * even that fails, the attempt's deadline makes recovery find it).  Runs
 * outside any transaction, the call's memory context current.
 */
void
toss_job_outcome_failed(EngineJob *j, ErrorData *e, bool do_park)
{
	const char *volatile id;
	const char *volatile what;
	char	   *error;
	const char *id_out;

	what = what_of(j, &id_out);
	id = id_out;
	error = psprintf("%s (SQLSTATE %s)", e->message, unpack_sql_state(e->sqlerrcode));

	if (do_park)
	{
		MemoryContext cxt = CurrentMemoryContext;

		PG_TRY();
		{
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			MemoryContextSwitchTo(cxt);
			park(j, error);
			PopActiveSnapshot();
			CommitTransactionCommand();
		}
		PG_CATCH();
		{
			FlushErrorState();
			AbortOutOfAnyTransaction();
			ereport(LOG,
					(errmsg("toss_billing: could not mark %s %s unknown; recovery finds it by its deadline",
							what, id)));
		}
		PG_END_TRY();
		MemoryContextSwitchTo(cxt);
	}
	toss_job_set_error(&j->result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
					   psprintf("the outcome of the %s %s is unknown", what, id),
					   psprintf("The request was sent to Toss, then this failed: %s.", error),
					   pstrdup("Do not repeat it under a new id: toss_billing resolves it by looking it up at Toss; toss_billing.order_status() tells what happened."));
	j->step = STEP_DONE;
}

/* The charge's row for toss_record_outcomes. */
const TossOutcome *
toss_job_charge_row(EngineJob *j)
{
	j->verdict.outcome.attempt_id = j->in.attempt_id;
	return &j->verdict.outcome;
}

/* The caller's answer from a verdict that was recorded. */
static void
charge_result(EngineJob *j)
{
	const TossChargeVerdict *v = &j->verdict;
	const TossOutcome *o = &v->outcome;
	const char *order_id = j->in.order_id;
	TossJobResult *result = &j->result;

	if (strcmp(o->state, "done") == 0)
		set_ok(result, pstrdup(o->payment_json));
	else if (strcmp(o->state, "failed") == 0)
	{
		TossErrorClass cls = toss_class_from_name(o->failure_class);

		if (v->error)
			set_toss_error(result, v->error, "charge", true);
		else if (o->failure_code && strcmp(o->failure_code, "CONNECTION_FAILED") == 0)
			toss_job_set_error(result, ERRCODE_TOSS_TRANSIENT,
							   pstrdup("could not reach toss"),
							   psprintf("The request for order %s was not sent (%s). Nothing was charged.",
										order_id, o->failure_message),
							   pstrdup("Retry with the same order id; the attempt is recorded as failed."));
		else if (o->failure_code && strcmp(o->failure_code, "NOT_FOUND_AT_TOSS") == 0)
			toss_job_set_error(result, ERRCODE_TOSS_TRANSIENT,
							   psprintf("toss has no record of the charge %s", order_id),
							   psprintf("%s", o->failure_message),
							   pstrdup("Call toss_charge again with the same order id to charge it with the customer's current card."));
		else
			toss_job_set_error(result, toss_class_sqlstate(cls), pstrdup(toss_class_message(cls, true)),
							   psprintf("Toss reports the payment for order %s as failed with code %s: %s",
										order_id, o->failure_code ? o->failure_code : "(none)",
										o->failure_message ? o->failure_message : ""), NULL);
	}
	else
		toss_job_set_error(result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
						   psprintf("the outcome of the charge %s is unknown", order_id),
						   psprintf("Order %s was sent to Toss but no verified answer arrived (%s). The order is marked unknown.",
									order_id, v->ambiguity ? v->ambiguity : o->failure_message),
						   pstrdup("Do not charge again with a new order id: the order is resolved by looking it up at Toss; toss_billing.order_status() tells what happened."));
}

/*
 * After the outcome transaction committed the charge's row.  parked: the
 * row could not be recorded and was parked as unknown (why says how).
 * Toss refusing the order id again makes a new order: the call's intent
 * runs again, under it (at most three orders).
 */
void
toss_job_charge_recorded(EngineJob *j, bool parked, const char *why)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (parked)
	{
		toss_job_set_error(&j->result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
						   psprintf("the outcome of the charge %s is unknown", j->in.order_id),
						   psprintf("The request was sent to Toss, then recording its answer failed: %s.",
									why ? why : "(unknown error)"),
						   pstrdup("Do not repeat it under a new id: toss_billing resolves it by looking it up at Toss; toss_billing.order_status() tells what happened."));
		j->step = STEP_DONE;
		return;
	}
	if (j->verdict.outcome.reuse_refused)
	{
		if (++j->round < 3)
		{
			j->step = STEP_INTENT;
			j->retry_at = 0;
			return;
		}
		/* a charge-now call has no order id of the caller's: the last one tried */
		toss_job_set_error(&j->result, ERRCODE_TOSS_TRANSIENT,
						   psprintf("toss refused the order ids of charge %s",
									j->job.order_id[0] ? j->job.order_id : (j->in.order_id ? j->in.order_id : "")),
						   pstrdup("Toss answered DUPLICATED_ORDER_ID to three order ids of this obligation, each with only a failed payment under it. Nothing was charged."),
						   pstrdup(j->job.kind == TOSS_JOB_CHARGE ? "Retry later with the same order id." :
								   "Retry later: the obligation is charged under its next order id."));
		j->step = STEP_DONE;
		return;
	}
	PG_TRY();
	{
		charge_result(j);
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		FlushErrorState();
		toss_job_outcome_failed(j, e, false);
	}
	PG_END_TRY();
	j->step = STEP_DONE;
}
