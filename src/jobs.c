/*
 * jobs.c — the bodies of toss_billing's jobs, run inside the worker:
 * issuing a billing key, a charge, a cancel (refund) and a key deletion.
 *
 * Transactions: each job runs an "intent" transaction that validates
 * everything (customer, billing key, secret key) and records the attempt
 * before any HTTP call, then commits; the HTTP call runs outside any
 * transaction; an "outcome" transaction records what Toss said.  A crash in
 * between leaves the attempt in_flight/pending, never missing.  (Deleting a
 * key records nothing first: DELETE is idempotent by itself.)
 *
 * Memory: the worker's job context is current outside transactions; values
 * that must survive a commit are copied there.  The plaintext billing key and
 * the authorization header are wiped as soon as the request is made.
 */
#include "postgres.h"

#include "access/xact.h"
#include "charge.h"
#include "crypto.h"
#include "errors.h"
#include "storage.h"
#include "toss_api.h"
#include "utils/snapmgr.h"
#include "worker.h"

static void
begin_tx(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
commit_tx(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
}

static void
fill_endpoint(const TossJob *job, TossEndpoint *ep, const char *authorization)
{
	ep->api_url = job->api_url;
	ep->authorization = authorization;
	ep->connect_timeout_ms = job->connect_timeout_ms;
	ep->timeout_ms = job->timeout_ms;
}

static void
set_error(TossJobResult *r, int sqlerrcode, char *message, char *detail, char *hint)
{
	memset(r, 0, sizeof(*r));
	r->sqlerrcode = sqlerrcode;
	r->message = message;
	r->detail = detail;
	r->hint = hint;
}

/* A definitive Toss error reply as a job error. */
static void
set_toss_error(TossJobResult *r, const TossReply *reply, bool charge)
{
	TossErrorClass cls = toss_classify_code(reply->code, reply->http.status);

	set_error(r, toss_class_sqlstate(cls), pstrdup(toss_class_message(cls, charge)),
			  psprintf("Toss answered HTTP %ld with code %s: %s", reply->http.status,
					   reply->code, reply->message ? reply->message : ""),
			  NULL);
}

/* ---------------------------------------------------------------- issue */

static void
summarize_billing(TossJson *doc, TossCardSummary *c)
{
	c->mid = toss_json_text(doc, "mId");
	c->method = toss_json_text(doc, "method");
	c->card_company = toss_json_text(doc, "cardCompany");
	c->issuer_code = toss_json_text(doc, "card.issuerCode");
	c->acquirer_code = toss_json_text(doc, "card.acquirerCode");
	c->number = toss_json_text(doc, "card.number");
	if (c->number == NULL)
		c->number = toss_json_text(doc, "cardNumber");
	c->card_type = toss_json_text(doc, "card.cardType");
	c->owner_type = toss_json_text(doc, "card.ownerType");
	c->authenticated_at = toss_json_text(doc, "authenticatedAt");
}

static bool
issue_reply_settles(const TossReply *reply)
{
	return toss_reply_ok(reply) ||
		(reply->is_error && reply->http.status < 500 &&
		 strcmp(reply->code, "IDEMPOTENT_REQUEST_PROCESSING") != 0);
}

static void
job_issue(const TossJob *job, TossJobResult *result)
{
	MemoryContext job_cxt = CurrentMemoryContext;
	char	   *idem = toss_random_uuid();
	char	   *auth;
	int64		customer_id;
	int64		row_id;
	TossEndpoint ep;
	TossReply	reply;
	char	   *billing_key;

	/* intent: check everything, record the pending key, commit */
	begin_tx();
	toss_require_root_key();
	customer_id = toss_store_customer_id(job->customer_key);
	row_id = toss_store_issue_intent(customer_id, job->merchant, idem);
	MemoryContextSwitchTo(job_cxt);
	auth = toss_authorization_header(job->merchant);
	commit_tx();
	MemoryContextSwitchTo(job_cxt);

	/*
	 * The call.  A billing key can never be fetched again, so an ambiguous
	 * reply is replayed once with the same Idempotency-Key: Toss answers a
	 * replay with the first response instead of issuing twice.
	 */
	fill_endpoint(job, &ep, auth);
	toss_api_issue(&ep, idem, job->auth_key, job->customer_key, &reply);
	if (!issue_reply_settles(&reply))
		toss_api_issue(&ep, idem, job->auth_key, job->customer_key, &reply);
	toss_wipe_string(auth);

	begin_tx();
	if (toss_reply_ok(&reply) &&
		(billing_key = toss_json_text(reply.doc, "billingKey")) != NULL)
	{
		TossCardSummary card;
		bytea	   *sealed = toss_encrypt_billing_key(billing_key, row_id);
		bytea	   *hash = toss_hash_billing_key(billing_key);

		toss_wipe_string(billing_key);
		explicit_bzero(reply.http.body, reply.http.body_len);
		summarize_billing(reply.doc, &card);
		toss_json_wipe(reply.doc);
		toss_store_issue_success(row_id, customer_id, sealed, &card);
		toss_store_key_hash(row_id, hash);
		MemoryContextSwitchTo(job_cxt);
		result->ok = true;
		result->payload = toss_store_billing_key_info(row_id);
	}
	else if (reply.is_error && issue_reply_settles(&reply))
	{
		toss_store_issue_failure(row_id, "failed", reply.code, reply.message);
		MemoryContextSwitchTo(job_cxt);
		set_toss_error(result, &reply, false);
	}
	else
	{
		char	   *what = toss_describe_reply(&reply);

		toss_store_issue_failure(row_id, "unknown", NULL, what);
		MemoryContextSwitchTo(job_cxt);
		set_error(result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
				  pstrdup("the outcome of the billing key issue is unknown"),
				  psprintf("No definitive answer arrived from Toss, even on an idempotent replay (%s).", what),
				  pstrdup("The billing key row is marked unknown; ask the customer to register the card again."));
	}
	commit_tx();
	MemoryContextSwitchTo(job_cxt);
}

/* --------------------------------------------------------------- charge */

static void
charge_result(const TossChargeVerdict *v, const char *order_id, TossJobResult *result)
{
	if (strcmp(v->outcome.state, "done") == 0)
	{
		memset(result, 0, sizeof(*result));
		result->ok = true;
		result->payload = pstrdup(v->payment->http.body);
	}
	else if (v->error)
		set_toss_error(result, v->error, true);
	else if (v->taken)
		set_error(result, ERRCODE_TOSS_ALREADY_PROCESSED,
				  pstrdup(toss_class_message(TOSS_CLASS_ALREADY_PROCESSED, true)),
				  psprintf("Order %s is already used at Toss by a payment this attempt did not make. %s",
						   order_id, v->outcome.failure_message),
				  pstrdup("Use a new order id; nothing was charged by this attempt."));
	else if (strcmp(v->outcome.state, "failed") == 0 && v->payment)
	{
		char	   *code = toss_json_text(v->payment->doc, "failure.code");
		char	   *msg = toss_json_text(v->payment->doc, "failure.message");
		TossErrorClass cls = toss_classify_code(code, 400);

		set_error(result, toss_class_sqlstate(cls), pstrdup(toss_class_message(cls, true)),
				  psprintf("Toss reports the payment for order %s as failed with code %s: %s",
						   order_id, code ? code : "(none)", msg ? msg : ""), NULL);
	}
	else if (strcmp(v->outcome.state, "failed") == 0)
		set_error(result, ERRCODE_TOSS_TRANSIENT,
				  pstrdup("could not reach toss"),
				  psprintf("The request for order %s was not sent (%s). Nothing was charged.",
						   order_id, v->outcome.failure_message),
				  pstrdup("Retry later; the attempt is recorded as failed."));
	else
		set_error(result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
				  pstrdup("the outcome of the charge is unknown"),
				  psprintf("Order %s was sent to Toss but no definitive answer arrived (%s). The ledger row is marked unknown.",
						   order_id, v->ambiguity),
				  pstrdup("Do not charge again with a new order id: the attempt is resolved later by looking the order up at Toss."));
}

static void
job_charge(const TossJob *job, TossJobResult *result)
{
	MemoryContext job_cxt = CurrentMemoryContext;
	TossBillingKeyRef ref;
	TossChargeIntent intent = {0};
	char	   *billing_key;
	char	   *auth;
	int64		payment_id;
	TossEndpoint ep;
	TossReply	reply,
				lookup;
	TossChargeVerdict verdict;
	TossChargeRequest creq = {
		.customer_key = job->customer_key,
		.amount = job->amount,
		.tax_free_amount = job->tax_free_amount,
		.order_id = job->order_id,
		.order_name = job->order_name,
		.customer_email = job->has_customer_email ? job->customer_email : NULL,
		.customer_name = job->has_customer_name ? job->customer_name : NULL,
	};
	char	   *body = toss_charge_body(&creq);

	/* intent: resolve key and secret first, so nothing is recorded on failure */
	begin_tx();
	MemoryContextSwitchTo(job_cxt);
	toss_store_active_billing_key(job->customer_key, &ref);
	billing_key = toss_decrypt_billing_key(ref.sealed, ref.billing_key_id);
	auth = toss_authorization_header(ref.merchant);
	intent.order_id = job->order_id;
	intent.order_name = job->order_name;
	intent.amount = job->amount;
	intent.tax_free_amount = job->tax_free_amount;
	intent.customer_email = job->has_customer_email ? job->customer_email : NULL;
	intent.customer_name = job->has_customer_name ? job->customer_name : NULL;
	intent.idempotency_key = toss_random_uuid();
	intent.requested_by = job->requested_by;
	payment_id = toss_store_charge_intent(&ref, &intent);
	commit_tx();
	MemoryContextSwitchTo(job_cxt);

	fill_endpoint(job, &ep, auth);
	toss_api_charge(&ep, intent.idempotency_key, billing_key, body, &reply);
	toss_wipe_string(billing_key);
	toss_judge_charge(&ep, job->order_id, job->amount, &reply, &lookup, &verdict);
	toss_wipe_string(auth);

	begin_tx();
	toss_store_charge_outcome(payment_id, &verdict.outcome);
	commit_tx();
	MemoryContextSwitchTo(job_cxt);
	charge_result(&verdict, job->order_id, result);
}

/* --------------------------------------------------------------- cancel */

/*
 * Refund all or part of a payment.  The cancel is recorded (in_flight, with
 * its Idempotency-Key, after the over-refund check) before the call.  An
 * ambiguous reply is replayed once with the same Idempotency-Key: Toss
 * answers a replay from its cache, so the refund is made at most once.
 */
static void
job_cancel(const TossJob *job, TossJobResult *result)
{
	MemoryContext job_cxt = CurrentMemoryContext;
	TossCancelIntent in;
	char	   *auth;
	TossEndpoint ep;
	TossReply	reply;
	TossChargeOutcome o;
	TossErrorClass cls = TOSS_CLASS_TRANSIENT;

	begin_tx();
	MemoryContextSwitchTo(job_cxt);
	toss_store_cancel_intent(job->payment, job->reason, job->has_amount, job->amount,
							 job->requested_by, &in);
	auth = toss_authorization_header(in.merchant);
	commit_tx();
	MemoryContextSwitchTo(job_cxt);

	fill_endpoint(job, &ep, auth);
	toss_api_cancel(&ep, in.idempotency_key, in.payment_key, job->reason, in.full, in.amount, &reply);
	if (!toss_judge_cancel(&reply, &o, &cls))
	{
		toss_api_cancel(&ep, in.idempotency_key, in.payment_key, job->reason, in.full, in.amount, &reply);
		toss_judge_cancel(&reply, &o, &cls);
	}
	toss_wipe_string(auth);

	if (strcmp(o.state, "done") == 0)
	{
		result->ok = true;
		result->payload = reply.http.body;
	}
	else if (strcmp(o.state, "failed") == 0)
		set_error(result, toss_class_sqlstate(cls), pstrdup("toss refused the cancel"),
				  psprintf("Toss answered HTTP %ld with code %s: %s", reply.http.status,
						   reply.code, reply.message ? reply.message : ""), NULL);
	else
		set_error(result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
				  pstrdup("the outcome of the cancel is unknown"),
				  psprintf("No definitive answer arrived from Toss, even on an idempotent replay (%s).",
						   o.failure_message),
				  pstrdup("The cancel is recorded as unknown; the runner replays it with the same Idempotency-Key."));
	begin_tx();
	toss_store_cancel_outcome(in.cancel_id, &o);
	commit_tx();
	MemoryContextSwitchTo(job_cxt);
}

/* ---------------------------------------------------- billing key delete */

static bool
already_gone(const TossReply *reply)
{
	return reply->is_error &&
		(strcmp(reply->code, "NOT_FOUND_BILLING") == 0 ||
		 strcmp(reply->code, "BILLING_KEY_NOT_FOUND") == 0 ||
		 strcmp(reply->code, "ALREADY_REMOVED_BILLING_KEY") == 0);
}

/*
 * Delete the customer's billing key at Toss and mark it deleted.  DELETE is
 * idempotent by itself, so an ambiguous reply is simply retried once; a key
 * Toss no longer knows counts as deleted.
 */
static void
job_delete_key(const TossJob *job, TossJobResult *result)
{
	MemoryContext job_cxt = CurrentMemoryContext;
	TossBillingKeyRef ref;
	char	   *billing_key;
	char	   *auth;
	TossEndpoint ep;
	TossReply	reply;
	bool		ok;

	begin_tx();
	MemoryContextSwitchTo(job_cxt);
	toss_store_delete_intent(job->customer_key, &ref);
	billing_key = toss_decrypt_billing_key(ref.sealed, ref.billing_key_id);
	auth = toss_authorization_header(ref.merchant);
	commit_tx();
	MemoryContextSwitchTo(job_cxt);

	fill_endpoint(job, &ep, auth);
	toss_api_delete_billing_key(&ep, billing_key, &reply);
	if (!(reply.http.failure == TOSS_HTTP_OK && reply.http.status < 500))
		toss_api_delete_billing_key(&ep, billing_key, &reply);
	toss_wipe_string(billing_key);
	toss_wipe_string(auth);

	ok = (reply.http.failure == TOSS_HTTP_OK && reply.http.status >= 200 &&
		  reply.http.status < 300) || already_gone(&reply);
	if (!ok)
	{
		if (reply.is_error && reply.http.status < 500)
			set_toss_error(result, &reply, false);
		else
			set_error(result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
					  pstrdup("the outcome of the billing key deletion is unknown"),
					  psprintf("No definitive answer arrived from Toss (%s). The key stays active.",
							   toss_describe_reply(&reply)),
					  pstrdup("Call toss_billing.toss_delete_billing_key() again: deleting is idempotent."));
		return;
	}
	begin_tx();
	toss_store_key_deleted(ref.billing_key_id,
						   already_gone(&reply) ? "already removed at Toss" : "deleted at the merchant's request");
	MemoryContextSwitchTo(job_cxt);
	result->ok = true;
	result->payload = toss_store_billing_key_info(ref.billing_key_id);
	commit_tx();
	MemoryContextSwitchTo(job_cxt);
}

void
toss_job_execute(const TossJob *job, TossJobResult *result)
{
	memset(result, 0, sizeof(*result));
	switch (job->kind)
	{
		case TOSS_JOB_ISSUE:
			job_issue(job, result);
			break;
		case TOSS_JOB_CHARGE:
			job_charge(job, result);
			break;
		case TOSS_JOB_CANCEL:
			job_cancel(job, result);
			break;
		case TOSS_JOB_DELETE_KEY:
			job_delete_key(job, result);
			break;
	}
}
