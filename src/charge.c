/*
 * charge.c — what a charge is on the wire and what Toss's answers to it
 * mean for the ledger.
 *
 * Builds the body of POST /v1/billing/{billingKey} and turns an answer into
 * a verdict: done, failed with a class, or unknown.  Nothing counts unless
 * it is verified against the order (verify.c).  An ambiguous answer asks
 * for GET /v1/payments/orders/{orderId} (need_lookup), whose answer
 * toss_judge_lookup() then judges; the caller makes that call (at once in a
 * job, on its multi handle in the runner), never a second POST.  An answer
 * that does not match the order holds it: the attempt is unknown and
 * nothing is posted for the order again automatically.  Shared by the jobs,
 * the runner and recovery.  No transactions; memory is the caller's
 * context.
 */
#include "postgres.h"

#include "charge.h"

char *
toss_charge_body(const TossChargeRequest *r)
{
	TossJsonField fields[] = {
		{"customerKey", TOSS_JSON_STRING, r->customer_key, 0},
		{"amount", TOSS_JSON_INT64, NULL, r->amount},
		{"orderId", TOSS_JSON_STRING, r->order_id, 0},
		{"orderName", TOSS_JSON_STRING, r->order_name, 0},
		{"customerEmail", TOSS_JSON_STRING, r->customer_email, 0},
		{"customerName", TOSS_JSON_STRING, r->customer_name, 0},
		{"taxFreeAmount", TOSS_JSON_INT64, NULL, r->tax_free_amount},
	};

	return toss_json_build(fields, lengthof(fields));
}

const char *
toss_class_message(TossErrorClass cls, bool charge)
{
	switch (cls)
	{
		case TOSS_CLASS_CARD_DECLINED:
			return charge ? "toss declined the charge" : "toss declined the card";
		case TOSS_CLASS_CONFIGURATION:
			return "toss rejected the merchant configuration";
		case TOSS_CLASS_TRANSIENT:
			return "toss could not process the request at this time";
		case TOSS_CLASS_NOT_FOUND:
			return charge ? "toss does not know this billing key or payment" : "toss does not know this auth key";
		case TOSS_CLASS_INVALID_REQUEST:
			return "toss rejected the request as invalid";
		case TOSS_CLASS_OUTCOME_UNKNOWN:
			return "the outcome of the toss call is unknown";
		case TOSS_CLASS_ALREADY_PROCESSED:
			return "toss has already processed this order";
		case TOSS_CLASS_BILLING_KEY_GONE:
			return "toss no longer has this billing key";
		case TOSS_CLASS_COUNT:
			break;
	}
	return "toss returned an error";
}

/* Describe an answer that settled nothing, for the ledger and errdetail. */
char *
toss_describe_reply(const TossReply *reply)
{
	if (reply->http.failure != TOSS_HTTP_OK)
		return psprintf("%s after %.0f ms: %s",
						toss_http_failure_name(reply->http.failure),
						reply->http.elapsed_ms, reply->http.error);
	if (reply->unsafe)
		return psprintf("HTTP %ld with a body that cannot be stored as text: %s", reply->http.status,
						reply->unsafe);
	if (reply->is_error)
		return psprintf("HTTP %ld with code %s: %s", reply->http.status, reply->code,
						reply->message ? reply->message : "");
	return psprintf("HTTP %ld with a body that is not a Toss response", reply->http.status);
}

static void
keep_raw(const TossReply *reply, TossOutcome *o)
{
	o->http_status = reply->http.status;
	if (reply->http.failure == TOSS_HTTP_OK)
	{
		o->raw = reply->http.body;
		o->raw_len = reply->http.body_len;
	}
}

static void
set_failed(TossOutcome *o, TossErrorClass cls, const char *code, const char *message)
{
	o->state = "failed";
	o->failure_class = toss_class_name(cls);
	o->failure_code = code;
	o->failure_message = message;
}

static void
set_unknown(TossChargeVerdict *v, char *why)
{
	v->outcome.state = "unknown";
	v->outcome.failure_class = toss_class_name(TOSS_CLASS_OUTCOME_UNKNOWN);
	v->outcome.failure_code = NULL;
	v->outcome.failure_message = why;
	v->ambiguity = why;
}

/*
 * A 2xx answer holding an object, verified against the order: done, failed
 * (ABORTED under this order id), or unknown and held (it does not match).
 */
static void
judge_payment(const TossReply *reply, const TossExpect *e, TossChargeVerdict *v)
{
	char	   *why = NULL;

	v->payment = reply;
	switch (toss_verify_payment(reply->doc, e, &why))
	{
		case TOSS_PAYMENT_APPROVED:
			v->outcome.state = "done";
			v->outcome.payment_json = reply->http.body;
			break;
		case TOSS_PAYMENT_FAILED:
			{
				const char *code = toss_json_peek_text(reply->doc, "failure.code");
				const char *msg = toss_json_peek_text(reply->doc, "failure.message");

				set_failed(&v->outcome, toss_classify_code(code, 400, "charge"), code, msg);
				v->outcome.payment_json = reply->http.body;
			}
			break;
		case TOSS_PAYMENT_UNVERIFIED:
			set_unknown(v, psprintf("toss's answer does not match the order: %s", why));
			v->outcome.hold = why;
			v->payment = NULL;
			break;
	}
}

static bool
is_not_found_payment(const TossReply *reply)
{
	return reply->is_error && strcmp(reply->code, "NOT_FOUND_PAYMENT") == 0;
}

/*
 * Decide what one charge answer means.  need_lookup: the answer settles
 * nothing; look the order up and judge that with toss_judge_lookup().
 */
void
toss_judge_reply(const TossReply *reply, const TossExpect *e, TossChargeVerdict *v)
{
	memset(v, 0, sizeof(*v));
	keep_raw(reply, &v->outcome);
	if (toss_reply_ok(reply) && toss_json_is_object(reply->doc))
	{
		judge_payment(reply, e, v);
		return;
	}
	if (reply->is_error)
	{
		TossErrorClass cls = toss_classify_code(reply->code, reply->http.status, "charge");

		if (reply->http.status < 500 && cls != TOSS_CLASS_OUTCOME_UNKNOWN &&
			cls != TOSS_CLASS_ALREADY_PROCESSED)
		{
			/*
			 * Definitive.  Should Toss have made the charge all the same (an
			 * answer lost between its systems), the next attempt under this
			 * same order id gets DUPLICATED_ORDER_ID and its lookup finds it.
			 */
			v->error = reply;
			set_failed(&v->outcome, cls, reply->code, reply->message);
			return;
		}
		v->duplicated = cls == TOSS_CLASS_ALREADY_PROCESSED;
	}
	else if (reply->http.failure == TOSS_HTTP_NOT_SENT)
	{
		set_failed(&v->outcome, TOSS_CLASS_TRANSIENT, "CONNECTION_FAILED", toss_describe_reply(reply));
		return;
	}
	/*
	 * Ambiguous: a 5xx, a replayed or refused order id, a broken or odd
	 * answer.  Only Toss's own error object on a 5xx counts as Toss saying
	 * it failed (then a lookup that finds nothing settles it); a gateway's
	 * HTML page says nothing about what Toss did.
	 */
	v->toss_said_failed = reply->is_error && reply->http.failure == TOSS_HTTP_OK && reply->http.status >= 500;
	v->need_lookup = true;
	set_unknown(v, toss_describe_reply(reply));
}

/*
 * The lookup by order id of an ambiguous answer.  first: the answer that sent
 * us looking; v as toss_judge_reply left it.
 */
void
toss_judge_lookup(const TossReply *first, const TossReply *lookup, const TossExpect *e,
				  TossChargeVerdict *v)
{
	bool		duplicated = v->duplicated;
	bool		toss_said_failed = v->toss_said_failed;

	v->need_lookup = false;
	if (toss_reply_ok(lookup) && toss_json_is_object(lookup->doc))
	{
		judge_payment(lookup, e, v);
		if (strcmp(v->outcome.state, "failed") == 0 && duplicated)
		{
			/*
			 * Toss refused the order id again (DUPLICATED_ORDER_ID) and holds
			 * only a failed payment under it: this attempt charged nothing,
			 * and the order id cannot be used again.  A new order replaces it.
			 */
			v->outcome.reuse_refused = true;
			set_failed(&v->outcome, TOSS_CLASS_TRANSIENT, first->code,
					   "toss refuses to take this order id again and holds no approved payment under it");
		}
		if (strcmp(v->outcome.state, "unknown") == 0)
			v->ambiguity = (char *) v->outcome.failure_message;
		return;
	}
	if (toss_said_failed && is_not_found_payment(lookup))
	{
		/* Toss answered with an error and has no payment: nothing was charged */
		v->error = first;
		v->outcome.http_status = first->http.status;
		set_failed(&v->outcome, first->is_error ?
				   toss_classify_code(first->code, first->http.status, "charge") : TOSS_CLASS_TRANSIENT,
				   first->is_error ? first->code : NULL,
				   first->is_error ? first->message : toss_describe_reply(first));
		return;
	}
	set_unknown(v, psprintf("%s; the lookup by order id gave %s",
							toss_describe_reply(first), toss_describe_reply(lookup)));
}

/*
 * Recovery: what the lookup of an unknown attempt says.  Returns false when
 * Toss has no record of the order (the caller then decides whether the very
 * same request may be posted again); otherwise fills the verdict, which
 * stays unknown if the lookup itself settled nothing.
 */
bool
toss_judge_recovery(const TossReply *lookup, const TossExpect *e, TossChargeVerdict *v)
{
	memset(v, 0, sizeof(*v));
	keep_raw(lookup, &v->outcome);
	if (toss_reply_ok(lookup) && toss_json_is_object(lookup->doc))
	{
		judge_payment(lookup, e, v);
		return true;
	}
	if (is_not_found_payment(lookup))
		return false;
	set_unknown(v, psprintf("the lookup by order id gave %s", toss_describe_reply(lookup)));
	return true;
}


/* ---- cancels ---- */

/*
 * The outcome of a cancel call: done (Toss's Payment after it, verified
 * against the payment), failed (a definitive Toss error; *cls set), or
 * unknown.  Returns whether it settled.
 */
bool
toss_judge_cancel(const TossReply *reply, const TossExpect *e, TossOutcome *o, TossErrorClass *cls)
{
	char	   *why = NULL;

	memset(o, 0, sizeof(*o));
	keep_raw(reply, o);
	if (toss_reply_ok(reply) && toss_json_is_object(reply->doc))
	{
		if (toss_verify_payment(reply->doc, e, &why) == TOSS_PAYMENT_APPROVED)
		{
			o->state = "done";
			o->payment_json = reply->http.body;
			return true;
		}
		o->state = "unknown";
		o->failure_class = toss_class_name(TOSS_CLASS_OUTCOME_UNKNOWN);
		o->failure_message = psprintf("toss's answer does not match the payment: %s", why);
		return false;
	}
	if (reply->is_error && reply->http.status < 500 &&
		strcmp(reply->code, "IDEMPOTENT_REQUEST_PROCESSING") != 0)
	{
		*cls = toss_classify_code(reply->code, reply->http.status, "cancel");
		set_failed(o, *cls, reply->code, reply->message);
		return true;
	}
	o->state = "unknown";
	o->failure_class = toss_class_name(TOSS_CLASS_OUTCOME_UNKNOWN);
	o->failure_message = toss_describe_reply(reply);
	return false;
}
