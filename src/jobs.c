/*
 * jobs.c — the bodies of toss_billing's jobs, run inside the worker:
 * issuing a billing key, a charge (a toss_charge, or a subscription's open
 * period for charge_subscription_now), a cancel (refund) and a key
 * deletion.
 *
 * Transactions: each job runs an "intent" transaction that validates
 * everything (customer, billing key, secret key) and records the attempt
 * before any HTTP call, then commits; the HTTP call runs outside any
 * transaction; an "outcome" transaction records what Toss said.  A crash in
 * between leaves the attempt in_flight, never missing.  (Deleting a key
 * records nothing first: DELETE is idempotent by itself.)
 *
 * After a request has left, the caller hears only the verified outcome or
 * TB006 (outcome unknown): any error from then on -- reading the answer,
 * a cast, a lock, recording -- is caught, the attempt is parked as unknown
 * (to be settled by looking the order up), and the caller gets TB006 with
 * the error in DETAIL and the order id in the message.
 *
 * Memory: the worker's job context is current outside transactions; values
 * that must survive a commit are copied there.  The plaintext billing key and
 * the authorization header are wiped as soon as the answer is read.
 */
#include "postgres.h"

#include "access/xact.h"
#include "charge.h"
#include "miscadmin.h"
#include "crypto.h"
#include "errors.h"
#include "executor/spi.h"
#include "recorder.h"
#include "storage.h"
#include "toss_api.h"
#include "storage/latch.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"
#include "worker.h"

/* Toss keeps an Idempotency-Key for 15 days; replay only an hour short of that. */
#define IDEMPOTENCY_WINDOW_USEC ((int64) (15 * 24 - 1) * 3600 * USECS_PER_SEC)

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

/* The rules and the installed version, at the start of each job's first transaction. */
static void
begin_job_tx(void)
{
	begin_tx();
	toss_store_check_version();
	toss_load_codes();
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
set_toss_error(TossJobResult *r, const TossReply *reply, const char *applies_to, bool charge)
{
	TossErrorClass cls = toss_classify_code(reply->code, reply->http.status, applies_to);

	set_error(r, toss_class_sqlstate(cls), pstrdup(toss_class_message(cls, charge)),
			  psprintf("Toss answered HTTP %ld with code %s: %s", reply->http.status,
					   reply->code, reply->message ? reply->message : ""),
			  NULL);
}

/*
 * An error after the request left: the caller hears TB006, with the error in
 * DETAIL, never the error itself.  park: what to mark unknown (run in a
 * transaction of its own; if even that fails, the attempt's deadline makes
 * recovery find it).
 */
static void
after_send_error(TossJobResult *result, MemoryContext job_cxt, const char *what, const char *id,
				 void (*park) (const void *), const void *arg)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(job_cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortOutOfAnyTransaction();
	MemoryContextSwitchTo(job_cxt);
	if (park)
	{
		PG_TRY();
		{
			begin_tx();
			park(arg);
			commit_tx();
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
		MemoryContextSwitchTo(job_cxt);
	}
	set_error(result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
			  psprintf("the outcome of the %s %s is unknown", what, id),
			  psprintf("The request was sent to Toss, then this failed: %s (SQLSTATE %s).",
					   edata->message, unpack_sql_state(edata->sqlerrcode)),
			  pstrdup("Do not repeat it under a new id: toss_billing resolves it by looking it up at Toss; toss_billing.order_status() tells what happened."));
}

/* ---------------------------------------------------------------- issue */

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

static bool
issue_reply_settles(const TossReply *reply)
{
	return (toss_reply_ok(reply) && toss_json_is_object(reply->doc)) ||
		(reply->is_error && reply->http.status < 500 &&
		 strcmp(reply->code, "IDEMPOTENT_REQUEST_PROCESSING") != 0);
}

static int64 issue_row;			/* for park_issue */

/*
 * The billing key another issuance for the same authKey made (the
 * successUrl loaded twice at once: a double redirect, a quick reload):
 * waits, in transactions of its own and at most wait_ms, while that one is
 * in progress.  Returns its row id, or 0.
 */
static int64
issued_meanwhile(int64 customer_id, bytea *auth_hash, int64 own_row, int wait_ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);

	for (;;)
	{
		bool		pending;
		int64		other;

		begin_tx();
		other = toss_store_issued_for_auth_key(customer_id, auth_hash, own_row, &pending);
		commit_tx();
		if (other > 0 || !pending || GetCurrentTimestamp() >= until)
			return other;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

static void
park_issue(const void *arg)
{
	toss_store_issue_failure(issue_row, "unknown", NULL,
							 "the outcome of the issue could not be recorded; ask the customer to register the card again");
}

static void
job_issue(const TossJob *job, TossJobResult *result)
{
	MemoryContext job_cxt = CurrentMemoryContext;
	char	   *idem = toss_random_uuid();
	char	   *auth;
	int64		customer_id;
	int64		row_id;
	int64		issued;
	bool		pending;
	bytea	   *auth_hash;
	TossEndpoint ep;
	TossReply	reply;

	/*
	 * intent: check everything, record the pending key, commit.  An authKey
	 * this customer already exchanged (the successUrl loaded again) returns
	 * the key it gave: Toss has forgotten the authKey by then.
	 */
	begin_job_tx();
	toss_require_root_key();
	customer_id = toss_store_customer_id(job->customer_key);
	MemoryContextSwitchTo(job_cxt);
	auth_hash = toss_hash_auth_key(job->auth_key);
	issued = toss_store_issued_for_auth_key(customer_id, auth_hash, 0, &pending);
	if (issued > 0)
	{
		MemoryContextSwitchTo(job_cxt);
		result->ok = true;
		result->payload = toss_store_billing_key_info(issued);
		commit_tx();
		MemoryContextSwitchTo(job_cxt);
		return;
	}
	row_id = toss_store_issue_intent(customer_id, job->merchant, idem, auth_hash);
	MemoryContextSwitchTo(job_cxt);
	auth = toss_authorization_header(job->merchant);
	commit_tx();
	MemoryContextSwitchTo(job_cxt);
	issue_row = row_id;

	PG_TRY();
	{
		char	   *why = NULL;
		char	   *billing_key;

		/*
		 * The call.  A billing key can never be fetched again, so an
		 * ambiguous reply is replayed once with the same Idempotency-Key:
		 * Toss answers a replay with the first response instead of issuing
		 * twice.
		 */
		fill_endpoint(job, &ep, auth);
		toss_api_issue(&ep, idem, job->auth_key, job->customer_key, &reply);
		if (!issue_reply_settles(&reply))
			toss_api_issue(&ep, idem, job->auth_key, job->customer_key, &reply);
		toss_wipe_string(auth);

		begin_tx();
		if (toss_reply_ok(&reply) && toss_verify_billing(reply.doc, job->customer_key, &why))
		{
			TossCardSummary card;
			bytea	   *sealed;
			bytea	   *hash;

			billing_key = pstrdup(toss_json_peek_text(reply.doc, "billingKey"));
			sealed = toss_encrypt_billing_key(billing_key, row_id);
			hash = toss_hash_billing_key(billing_key);
			toss_wipe_string(billing_key);
			summarize_billing(reply.doc, &card);
			toss_json_wipe(reply.doc);
			explicit_bzero(reply.http.body, reply.http.body_len);
			toss_store_issue_success(row_id, customer_id, sealed, &card);
			toss_store_key_hash(row_id, hash);
			MemoryContextSwitchTo(job_cxt);
			result->ok = true;
			result->payload = toss_store_billing_key_info(row_id);
		}
		else if (reply.is_error && issue_reply_settles(&reply))
		{
			toss_store_issue_failure(row_id, "failed", reply.code, reply.message);
			commit_tx();
			MemoryContextSwitchTo(job_cxt);
			/* a concurrent load of the same successUrl may have taken the authKey first */
			issued = issued_meanwhile(customer_id, auth_hash, row_id, 2 * job->timeout_ms);
			MemoryContextSwitchTo(job_cxt);
			begin_tx();
			if (issued > 0)
			{
				MemoryContextSwitchTo(job_cxt);
				result->ok = true;
				result->payload = toss_store_billing_key_info(issued);
			}
			else
			{
				MemoryContextSwitchTo(job_cxt);
				set_toss_error(result, &reply, "issue", false);
			}
		}
		else
		{
			char	   *what = why ? psprintf("toss's answer does not match the issuance: %s", why) :
				toss_describe_reply(&reply);

			if (reply.doc)
				toss_json_wipe(reply.doc);
			explicit_bzero(reply.http.body, reply.http.body_len);
			toss_store_issue_failure(row_id, "unknown", NULL, what);
			MemoryContextSwitchTo(job_cxt);
			set_error(result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
					  pstrdup("the outcome of the billing key issue is unknown"),
					  psprintf("No verified answer arrived from Toss, even on an idempotent replay (%s).", what),
					  pstrdup("The billing key row is marked unknown; ask the customer to register the card again."));
		}
		commit_tx();
	}
	PG_CATCH();
	{
		toss_wipe_string(auth);
		after_send_error(result, job_cxt, "billing key issue for customer", job->customer_key,
						 park_issue, NULL);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(job_cxt);
}

/* --------------------------------------------------------------- charge */

/* The caller's answer from a verdict that was recorded. */
static void
charge_result(const TossChargeVerdict *v, const char *order_id, TossJobResult *result)
{
	const TossOutcome *o = &v->outcome;

	if (strcmp(o->state, "done") == 0)
	{
		memset(result, 0, sizeof(*result));
		result->ok = true;
		result->payload = pstrdup(o->payment_json);
	}
	else if (strcmp(o->state, "failed") == 0)
	{
		TossErrorClass cls = toss_class_from_name(o->failure_class);

		if (v->error)
			set_toss_error(result, v->error, "charge", true);
		else if (o->failure_code && strcmp(o->failure_code, "CONNECTION_FAILED") == 0)
			set_error(result, ERRCODE_TOSS_TRANSIENT,
					  pstrdup("could not reach toss"),
					  psprintf("The request for order %s was not sent (%s). Nothing was charged.",
							   order_id, o->failure_message),
					  pstrdup("Retry with the same order id; the attempt is recorded as failed."));
		else if (o->failure_code && strcmp(o->failure_code, "NOT_FOUND_AT_TOSS") == 0)
			set_error(result, ERRCODE_TOSS_TRANSIENT,
					  psprintf("toss has no record of the charge %s", order_id),
					  psprintf("%s", o->failure_message),
					  pstrdup("Call toss_charge again with the same order id to charge it with the customer's current card."));
		else
			set_error(result, toss_class_sqlstate(cls), pstrdup(toss_class_message(cls, true)),
					  psprintf("Toss reports the payment for order %s as failed with code %s: %s",
							   order_id, o->failure_code ? o->failure_code : "(none)",
							   o->failure_message ? o->failure_message : ""), NULL);
	}
	else
		set_error(result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
				  psprintf("the outcome of the charge %s is unknown", order_id),
				  psprintf("Order %s was sent to Toss but no verified answer arrived (%s). The order is marked unknown.",
						   order_id, v->ambiguity ? v->ambiguity : o->failure_message),
				  pstrdup("Do not charge again with a new order id: the order is resolved by looking it up at Toss; toss_billing.order_status() tells what happened."));
}

static int64 charge_attempt;	/* for park_charge */
static const char *charge_park_error;

static void
park_charge(const void *arg)
{
	SPI_connect();
	toss_store_park(charge_attempt, charge_park_error ? charge_park_error : "the worker failed after the call");
	SPI_finish();
}

/* Records one verdict of an attempt, in a transaction of its own. */
static void
record_verdict(int64 attempt_id, TossChargeVerdict *v)
{
	v->outcome.attempt_id = attempt_id;
	begin_tx();
	SPI_connect();
	toss_record_outcomes(&v->outcome, 1);
	SPI_finish();
	commit_tx();
}

/*
 * One attempt that was recorded in_flight: post (or, for an unknown one,
 * look the order up first, and post the very same request again only if
 * Toss has no record of it).
 */
static void
charge_attempt_call(int64 amount, const TossChargeIntent *in, const char *body,
					const char *billing_key, TossEndpoint *ep, TossChargeVerdict *v)
{
	TossExpect	e = {.order_id = in->order_id, .amount = amount, .mid = in->mid};
	TossReply  *reply = palloc0(sizeof(TossReply));
	TossReply  *lookup = palloc0(sizeof(TossReply));

	if (strcmp(in->action, "lookup") == 0)
	{
		toss_api_payment_by_order(ep, in->order_id, lookup);
		if (toss_judge_recovery(lookup, &e, v))
			return;
		if (!in->may_repost || GetCurrentTimestamp() - in->attempt_created_at >= IDEMPOTENCY_WINDOW_USEC)
		{
			/* closed as not sent; the caller's next call posts a new attempt */
			memset(v, 0, sizeof(*v));
			v->outcome.state = "failed";
			v->outcome.http_status = lookup->http.status;
			v->outcome.failure_class = toss_class_name(TOSS_CLASS_TRANSIENT);
			v->outcome.failure_code = "NOT_FOUND_AT_TOSS";
			v->outcome.failure_message = in->may_repost ?
				"Toss has no record of this attempt after its 15-day idempotency window; nothing was charged by it." :
				"Toss has no record of this attempt, and it is not posted again as it was (its order is held, or the customer's card changed); nothing was charged by it.";
			return;
		}
	}
	toss_api_charge(ep, in->idempotency_key, billing_key, body, reply);
	toss_judge_reply(reply, &e, v);
	if (v->need_lookup)
	{
		toss_api_payment_by_order(ep, in->order_id, lookup);
		toss_judge_lookup(reply, lookup, &e, v);
	}
}

/*
 * A toss_charge (TOSS_JOB_CHARGE: the caller's order), or the open period of
 * a subscription (TOSS_JOB_CHARGE_SUBSCRIPTION, charge_subscription_now:
 * claimed as the runner claims it, so that whichever of the two claims it
 * first is the only one to post it; the other finds it in flight).
 */
static void
job_charge(const TossJob *job, TossJobResult *result)
{
	MemoryContext job_cxt = CurrentMemoryContext;
	bool		for_subscription = job->kind == TOSS_JOB_CHARGE_SUBSCRIPTION;
	char	   *volatile order_id = (char *) job->order_id;
	TossChargeVerdict verdict;

	memset(&verdict, 0, sizeof(verdict));
	/* Toss refusing an order id again makes a new order: post once more, under it */
	for (volatile int round = 0; round < 3; round++)
	{
		TossChargeIntent in;
		char	   *billing_key;
		char	   *auth;
		char	   *body;
		TossEndpoint ep;
		TossChargeRequest creq = {
			.customer_key = job->customer_key,
			.amount = job->amount,
			.tax_free_amount = job->tax_free_amount,
			.order_name = job->order_name,
			.customer_email = job->has_customer_email ? job->customer_email : NULL,
			.customer_name = job->has_customer_name ? job->customer_name : NULL,
		};

		/* intent: the order, the key and the secret first; nothing is recorded if one fails */
		begin_job_tx();
		MemoryContextSwitchTo(job_cxt);
		if (for_subscription)
		{
			TossSubscriptionCharge sc;

			toss_store_subscription_charge_intent(job->subscription_id, job->requested_by, job->timeout_ms,
												  &in, &sc);
			creq.customer_key = sc.customer_key;
			creq.amount = sc.amount;
			creq.tax_free_amount = sc.tax_free_amount;
			creq.order_name = sc.order_name;
			creq.customer_email = sc.customer_email;
			creq.customer_name = sc.customer_name;
			order_id = in.order_id;
		}
		else
		{
			if (order_id[0] == '\0')
				order_id = psprintf("tb%s-%s", toss_store_order_tag(), toss_random_uuid());
			toss_store_charge_intent(job->customer_key, job->amount, job->order_name, order_id,
									 creq.customer_email, creq.customer_name, job->tax_free_amount,
									 job->requested_by, job->timeout_ms, &in);
		}
		if (strcmp(in.action, "done") == 0 || strcmp(in.action, "busy") == 0)
		{
			commit_tx();
			MemoryContextSwitchTo(job_cxt);
			if (strcmp(in.action, "done") == 0)
			{
				result->ok = true;
				result->payload = pstrdup(in.payment_json);
			}
			else if (for_subscription)
				set_error(result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
						  psprintf("the open period of subscription " INT64_FORMAT " is being charged", job->subscription_id),
						  psprintf("Order %s of the period is in flight or its outcome is being resolved (by the runner or another call).",
								   in.order_id ? in.order_id : "(none)"),
						  pstrdup("Wait for its outcome: LISTEN toss_billing_events, or poll toss_billing.subscription_info; do not charge the period another way."));
			else
				set_error(result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
						  psprintf("the outcome of the charge %s is not known yet", order_id),
						  psprintf("Another call for order %s is in flight.", order_id),
						  pstrdup("Ask toss_billing.order_status() shortly; do not charge under a new order id."));
			return;
		}
		billing_key = toss_decrypt_billing_key(in.sealed, in.billing_key_id);
		auth = toss_authorization_header(in.merchant);
		commit_tx();
		MemoryContextSwitchTo(job_cxt);

		creq.order_id = in.order_id;
		body = toss_charge_body(&creq);
		charge_attempt = in.attempt_id;
		charge_park_error = NULL;
		PG_TRY();
		{
			fill_endpoint(job, &ep, auth);
			charge_attempt_call(creq.amount, &in, body, billing_key, &ep, &verdict);
			toss_wipe_string(billing_key);
			toss_wipe_string(auth);
			record_verdict(in.attempt_id, &verdict);
			MemoryContextSwitchTo(job_cxt);
		}
		PG_CATCH();
		{
			toss_wipe_string(billing_key);
			toss_wipe_string(auth);
			after_send_error(result, job_cxt, "charge", in.order_id, park_charge, NULL);
			return;
		}
		PG_END_TRY();
		if (!verdict.outcome.reuse_refused)
		{
			PG_TRY();
			{
				charge_result(&verdict, in.order_id, result);
			}
			PG_CATCH();
			{
				after_send_error(result, job_cxt, "charge", in.order_id, NULL, NULL);
			}
			PG_END_TRY();
			return;
		}
	}
	set_error(result, ERRCODE_TOSS_TRANSIENT, psprintf("toss refused the order ids of charge %s", order_id),
			  pstrdup("Toss answered DUPLICATED_ORDER_ID to three order ids of this obligation, each with only a failed payment under it. Nothing was charged."),
			  pstrdup("Retry later with the same order id."));
}

/* --------------------------------------------------------------- cancel */

static int64 cancel_row;		/* for park_cancel */

static void
park_cancel(const void *arg)
{
	TossOutcome o = {0};

	o.state = "unknown";
	o.failure_class = toss_class_name(TOSS_CLASS_OUTCOME_UNKNOWN);
	o.failure_message = "the outcome of the cancel could not be recorded; the runner replays it with its own Idempotency-Key";
	toss_store_cancel_outcome(cancel_row, &o);
}

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
	TossOutcome o;
	TossErrorClass cls = TOSS_CLASS_TRANSIENT;

	begin_job_tx();
	MemoryContextSwitchTo(job_cxt);
	toss_store_cancel_intent(job->payment, job->reason, job->has_amount, job->amount,
							 job->requested_by, job->timeout_ms, &in);
	auth = toss_authorization_header(in.merchant);
	commit_tx();
	MemoryContextSwitchTo(job_cxt);
	cancel_row = in.cancel_id;

	PG_TRY();
	{
		TossExpect	e = {.order_id = in.order_id, .amount = in.total_amount, .mid = in.mid,
		.payment_key = in.payment_key};

		fill_endpoint(job, &ep, auth);
		toss_api_cancel(&ep, in.idempotency_key, in.payment_key, job->reason, in.full, in.amount, &reply);
		if (!toss_judge_cancel(&reply, &e, &o, &cls))
		{
			toss_api_cancel(&ep, in.idempotency_key, in.payment_key, job->reason, in.full, in.amount, &reply);
			toss_judge_cancel(&reply, &e, &o, &cls);
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
					  psprintf("the outcome of the cancel of %s is unknown", in.order_id),
					  psprintf("No verified answer arrived from Toss, even on an idempotent replay (%s).",
							   o.failure_message),
					  pstrdup("The cancel is recorded as unknown; the runner replays it with the same Idempotency-Key."));
		begin_tx();
		toss_store_cancel_outcome(in.cancel_id, &o);
		commit_tx();
	}
	PG_CATCH();
	{
		toss_wipe_string(auth);
		after_send_error(result, job_cxt, "cancel of", in.order_id, park_cancel, NULL);
	}
	PG_END_TRY();
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

	begin_job_tx();
	MemoryContextSwitchTo(job_cxt);
	toss_store_delete_intent(job->customer_key, &ref);
	billing_key = toss_decrypt_billing_key(ref.sealed, ref.billing_key_id);
	auth = toss_authorization_header(ref.merchant);
	commit_tx();
	MemoryContextSwitchTo(job_cxt);

	PG_TRY();
	{
		bool		ok;

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
				set_toss_error(result, &reply, "any", false);
			else
				set_error(result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
						  pstrdup("the outcome of the billing key deletion is unknown"),
						  psprintf("No definitive answer arrived from Toss (%s). The key stays active.",
								   toss_describe_reply(&reply)),
						  pstrdup("Call toss_billing.toss_delete_billing_key() again: deleting is idempotent."));
		}
		else
		{
			begin_tx();
			toss_store_key_deleted(ref.billing_key_id,
								   already_gone(&reply) ? "already removed at Toss" : "deleted at the merchant's request");
			MemoryContextSwitchTo(job_cxt);
			result->ok = true;
			result->payload = toss_store_billing_key_info(ref.billing_key_id);
			commit_tx();
		}
	}
	PG_CATCH();
	{
		toss_wipe_string(billing_key);
		toss_wipe_string(auth);
		after_send_error(result, job_cxt, "billing key deletion for customer", job->customer_key, NULL, NULL);
	}
	PG_END_TRY();
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
		case TOSS_JOB_CHARGE_SUBSCRIPTION:
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
