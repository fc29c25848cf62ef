/*
 * charge.c — what a charge is on the wire and what its reply means.
 *
 * Builds the body of POST /v1/billing/{billingKey} and turns Toss's reply into
 * a verdict for the ledger (done, failed with a class, or unknown).  An
 * ambiguous reply is settled by GET /v1/payments/orders/{orderId}, never by
 * posting again.  Shared by the single-charge job and the runner.  No
 * transactions; memory is the caller's context.
 */
#include "postgres.h"

#include "charge.h"

char *
toss_charge_body(const TossChargeRequest *r)
{
	TossJsonField fields[] = {
		{"customerKey", TOSS_JSON_STRING, r->customer_key},
		{"amount", TOSS_JSON_INT64, NULL, r->amount},
		{"orderId", TOSS_JSON_STRING, r->order_id},
		{"orderName", TOSS_JSON_STRING, r->order_name},
		{"customerEmail", TOSS_JSON_STRING, r->customer_email},
		{"customerName", TOSS_JSON_STRING, r->customer_name},
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
	}
	return "toss returned an error";
}

/* Describe a reply that settled nothing, for the ledger and errdetail. */
char *
toss_describe_reply(const TossReply *reply)
{
	if (reply->http.failure != TOSS_HTTP_OK)
		return psprintf("%s after %.0f ms: %s",
						toss_http_failure_name(reply->http.failure),
						reply->http.elapsed_ms, reply->http.error);
	if (reply->is_error)
		return psprintf("HTTP %ld with code %s: %s", reply->http.status, reply->code,
						reply->message ? reply->message : "");
	return psprintf("HTTP %ld with a body that is not a Toss response", reply->http.status);
}

/* Judge a reply that carries a Payment object. */
static void
judge_payment(const TossReply *reply, TossChargeVerdict *v)
{
	char	   *status = toss_json_text(reply->doc, "status");

	v->payment = reply;
	v->outcome.http_status = reply->http.status;
	v->outcome.payment_json = reply->http.body;
	if (status && strcmp(status, "DONE") == 0)
		v->outcome.state = "done";
	else if (status && (strcmp(status, "ABORTED") == 0 || strcmp(status, "EXPIRED") == 0))
	{
		char	   *code = toss_json_text(reply->doc, "failure.code");

		v->outcome.state = "failed";
		v->outcome.failure_class = toss_class_name(toss_classify_code(code, 400));
	}
	else
	{
		v->outcome.state = "unknown";
		v->ambiguity = psprintf("Toss reports the payment in status %s", status ? status : "(none)");
	}
}

/*
 * If the lookup found a payment under the order id, judge it and return
 * true.  A payment there of another amount is not ours: this attempt made
 * nothing.  first: the reply that sent us looking, or NULL in recovery.
 */
static bool
judge_found(const TossReply *lookup, int64 amount, const TossReply *first,
			TossChargeVerdict *v)
{
	int64		found_amount = 0;

	if (!toss_reply_ok(lookup) || toss_json_text(lookup->doc, "paymentKey") == NULL)
		return false;
	if (toss_json_int64(lookup->doc, "totalAmount", &found_amount) && found_amount != amount)
	{
		v->outcome.state = "failed";
		v->outcome.http_status = first ? first->http.status : lookup->http.status;
		v->outcome.failure_class = toss_class_name(TOSS_CLASS_ALREADY_PROCESSED);
		v->outcome.failure_code = (first && first->code) ? first->code : "ORDER_ID_TAKEN";
		v->outcome.failure_message =
			psprintf("Toss holds another payment of " INT64_FORMAT " KRW under this order id.",
					 found_amount);
		v->taken = true;
		return true;
	}
	judge_payment(lookup, v);
	return true;
}

static bool
is_not_found_payment(const TossReply *reply)
{
	return reply->is_error && strcmp(reply->code, "NOT_FOUND_PAYMENT") == 0;
}

/*
 * Settle an ambiguous charge by looking the order up, never by posting it
 * again.  toss_said_failed: Toss answered with an error (e.g. a 5xx), so an
 * absent payment means it was not made.
 */
static void
resolve_by_order(const TossEndpoint *ep, const char *order_id, int64 amount,
				 const TossReply *first, bool toss_said_failed,
				 TossReply *lookup, TossChargeVerdict *v)
{
	toss_api_payment_by_order(ep, order_id, lookup);
	if (judge_found(lookup, amount, first, v))
		return;
	if (toss_said_failed && is_not_found_payment(lookup))
	{
		v->error = first;
		v->outcome.state = "failed";
		v->outcome.http_status = first->http.status;
		v->outcome.failure_class = toss_class_name(toss_classify_code(first->code, first->http.status));
		v->outcome.failure_code = first->code;
		v->outcome.failure_message = first->message;
		return;
	}
	v->outcome.state = "unknown";
	v->outcome.http_status = first->http.status;
	v->outcome.failure_class = toss_class_name(TOSS_CLASS_OUTCOME_UNKNOWN);
	v->ambiguity = psprintf("%s; the lookup by order id gave %s",
							toss_describe_reply(first), toss_describe_reply(lookup));
	v->outcome.failure_message = v->ambiguity;
}

/*
 * Recovery: what the lookup of an unknown attempt says.  Returns false when
 * Toss has no record of the order (the caller then decides whether the same
 * request may be posted again); otherwise fills the verdict, which stays
 * unknown if the lookup itself settled nothing.
 */
bool
toss_judge_recovery(const TossReply *lookup, int64 amount, TossChargeVerdict *v)
{
	memset(v, 0, sizeof(*v));
	if (judge_found(lookup, amount, NULL, v))
		return true;
	if (is_not_found_payment(lookup))
		return false;
	v->outcome.state = "unknown";
	v->outcome.http_status = lookup->http.status;
	v->outcome.failure_class = toss_class_name(TOSS_CLASS_OUTCOME_UNKNOWN);
	v->ambiguity = psprintf("the lookup by order id gave %s", toss_describe_reply(lookup));
	v->outcome.failure_message = v->ambiguity;
	return true;
}

/*
 * Decide what one charge reply means for the ledger.  An ambiguous reply is
 * settled by looking the order up (a synchronous GET into *lookup).
 */
void
toss_judge_charge(const TossEndpoint *ep, const char *order_id, int64 amount,
				  const TossReply *reply, TossReply *lookup, TossChargeVerdict *v)
{
	memset(v, 0, sizeof(*v));
	if (toss_reply_ok(reply) && toss_json_text(reply->doc, "paymentKey") != NULL)
		judge_payment(reply, v);
	else if (reply->is_error)
	{
		TossErrorClass cls = toss_classify_code(reply->code, reply->http.status);
		bool		settled = reply->http.status < 500 &&
			cls != TOSS_CLASS_OUTCOME_UNKNOWN && cls != TOSS_CLASS_ALREADY_PROCESSED;

		if (settled)
		{
			v->error = reply;
			v->outcome.state = "failed";
			v->outcome.http_status = reply->http.status;
			v->outcome.failure_class = toss_class_name(cls);
			v->outcome.failure_code = reply->code;
			v->outcome.failure_message = reply->message;
		}
		else
			resolve_by_order(ep, order_id, amount, reply, reply->http.status >= 500, lookup, v);
	}
	else if (reply->http.failure == TOSS_HTTP_NOT_SENT)
	{
		v->outcome.state = "failed";
		v->outcome.failure_class = toss_class_name(TOSS_CLASS_TRANSIENT);
		v->outcome.failure_code = "CONNECTION_FAILED";
		v->outcome.failure_message = toss_describe_reply(reply);
	}
	else
		resolve_by_order(ep, order_id, amount, reply, false, lookup, v);
}


/* ---- cancels ---- */

/* A reply that settles a cancel: the Payment after it, or a definitive error. */
static bool
cancel_settled(const TossReply *reply)
{
	if (toss_reply_ok(reply))
		return toss_json_text(reply->doc, "paymentKey") != NULL;
	return reply->is_error && reply->http.status < 500 &&
		strcmp(reply->code, "IDEMPOTENT_REQUEST_PROCESSING") != 0;
}

/*
 * The outcome of a cancel call: done (the Payment after it), failed (a
 * definitive Toss error; *cls set), or unknown.  Returns whether it settled.
 */
bool
toss_judge_cancel(const TossReply *reply, TossChargeOutcome *o, TossErrorClass *cls)
{
	memset(o, 0, sizeof(*o));
	o->http_status = reply->http.status;
	if (!cancel_settled(reply))
	{
		o->state = "unknown";
		o->failure_class = toss_class_name(TOSS_CLASS_OUTCOME_UNKNOWN);
		o->failure_message = toss_describe_reply(reply);
		return false;
	}
	if (toss_reply_ok(reply))
	{
		o->state = "done";
		o->payment_json = reply->http.body;
		return true;
	}
	*cls = toss_classify_code(reply->code, reply->http.status);
	o->state = "failed";
	o->failure_class = toss_class_name(*cls);
	o->failure_code = reply->code;
	o->failure_message = reply->message;
	return true;
}
