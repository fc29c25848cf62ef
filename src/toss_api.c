/*
 * toss_api.c — Toss's endpoints: URL building, request bodies, and reading
 * the reply into a TossReply (its secrets scrubbed and its bytes checked by
 * untrusted.c before anything parses them).  No transactions, no catalog
 * access; memory is the caller's current context.  The billing key and the
 * authorization header are used only to build the request and to scrub the
 * answer, and are never copied.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "toss_api.h"
#include "untrusted.h"

static void
call(const TossEndpoint *ep, TossCallKind kind, const char *method, const char *url,
	 const char *idempotency_key, const char *body, const char *billing_key, size_t max_bytes,
	 TossReply *reply)
{
	TossHttpRequest req = {
		.method = method,
		.url = url,
		.authorization = ep->authorization,
		.idempotency_key = idempotency_key,
		.body = body,
		.connect_timeout_ms = ep->connect_timeout_ms,
		.timeout_ms = ep->timeout_ms,
		.max_response_bytes = max_bytes,
		.kind = kind,
	};

	memset(reply, 0, sizeof(*reply));
	toss_http_perform(&req, &reply->http);
	toss_reply_read(reply, billing_key, ep->authorization);
}

/*
 * Read reply->http (already filled): scrub the request's secrets out of the
 * body, check its bytes, and parse it into the document and error fields.
 * A body that fails the checks is kept (scrubbed) but not parsed:
 * reply->unsafe says why, and the answer counts as no answer.
 */
void
toss_reply_read(TossReply *reply, const char *billing_key, const char *authorization)
{
	const char *code;
	const char *message;

	reply->doc = NULL;
	reply->is_error = false;
	reply->code = reply->message = NULL;
	reply->unsafe = NULL;
	if (reply->http.failure != TOSS_HTTP_OK)
		return;
	if (reply->http.body_len > 0 && (billing_key || authorization))
	{
		size_t		len;
		char	   *scrubbed = toss_scrub(reply->http.body, reply->http.body_len, billing_key,
										  authorization, &len);

		explicit_bzero(reply->http.body, reply->http.body_len);
		reply->http.body = scrubbed;
		reply->http.body_len = len;
	}
	reply->unsafe = toss_answer_problem(reply->http.body, reply->http.body_len);
	if (reply->unsafe)
		return;
	reply->doc = toss_json_parse(reply->http.body, reply->http.body_len);
	if (toss_json_is_array(reply->doc))
		return;					/* a list (transactions): no error fields */
	if (!toss_json_is_object(reply->doc))
	{
		reply->doc = NULL;
		return;
	}
	if (reply->http.status < 200 || reply->http.status >= 300)
	{
		code = toss_json_peek_text(reply->doc, "code");
		message = toss_json_peek_text(reply->doc, "message");
		reply->code = code ? pstrdup(code) : NULL;
		reply->message = message ? pstrdup(message) : NULL;
		reply->is_error = reply->code != NULL && reply->code[0] != '\0';
	}
}

/* A 2xx response whose body is a JSON object (or a list). */
bool
toss_reply_ok(const TossReply *reply)
{
	return reply->http.failure == TOSS_HTTP_OK &&
		reply->http.status >= 200 && reply->http.status < 300 &&
		reply->doc != NULL;
}

void
toss_api_issue_request(const TossEndpoint *ep, const char *idempotency_key,
					   const char *auth_key, const char *customer_key, TossHttpRequest *req)
{
	TossJsonField fields[] = {
		{"authKey", TOSS_JSON_STRING, auth_key, 0},
		{"customerKey", TOSS_JSON_STRING, customer_key, 0},
	};

	toss_api_charge_request(ep, psprintf("%s/v1/billing/authorizations/issue", ep->api_url),
							idempotency_key, toss_json_build(fields, lengthof(fields)), req);
	req->kind = TOSS_CALL_ISSUE;
}

void
toss_api_issue(const TossEndpoint *ep, const char *idempotency_key,
			   const char *auth_key, const char *customer_key, TossReply *reply)
{
	TossHttpRequest req;

	toss_api_issue_request(ep, idempotency_key, auth_key, customer_key, &req);
	memset(reply, 0, sizeof(*reply));
	toss_http_perform(&req, &reply->http);
	toss_reply_read(reply, NULL, ep->authorization);
}

/* The charge URL; it contains the billing key, so callers wipe it after use. */
char *
toss_api_charge_url(const TossEndpoint *ep, const char *billing_key)
{
	char	   *seg = toss_url_escape_segment(billing_key);
	char	   *url = psprintf("%s/v1/billing/%s", ep->api_url, seg);

	explicit_bzero(seg, strlen(seg));
	pfree(seg);
	return url;
}

/* The charge request, ready for toss_http_perform or a batch. */
void
toss_api_charge_request(const TossEndpoint *ep, const char *url,
						const char *idempotency_key, const char *body,
						TossHttpRequest *req)
{
	req->method = "POST";
	req->url = url;
	req->authorization = ep->authorization;
	req->idempotency_key = idempotency_key;
	req->body = body;
	req->connect_timeout_ms = ep->connect_timeout_ms;
	req->timeout_ms = ep->timeout_ms;
	req->max_response_bytes = TOSS_OBJECT_REPLY_BYTES;
	req->kind = TOSS_CALL_CHARGE;
}

void
toss_api_charge(const TossEndpoint *ep, const char *idempotency_key,
				const char *billing_key, const char *body, TossReply *reply)
{
	char	   *url = toss_api_charge_url(ep, billing_key);

	call(ep, TOSS_CALL_CHARGE, "POST", url, idempotency_key, body, billing_key, TOSS_OBJECT_REPLY_BYTES, reply);
	explicit_bzero(url, strlen(url));
	pfree(url);
}

char *
toss_api_payment_by_order_url(const TossEndpoint *ep, const char *order_id)
{
	return psprintf("%s/v1/payments/orders/%s", ep->api_url, toss_url_escape_segment(order_id));
}

/* A GET request for a batch (or toss_http_perform). */
void
toss_api_get_request(const TossEndpoint *ep, const char *url, TossHttpRequest *req)
{
	toss_api_charge_request(ep, url, NULL, NULL, req);
	req->method = "GET";
	req->kind = TOSS_CALL_LOOKUP_ORDER;
}

void
toss_api_payment_by_order(const TossEndpoint *ep, const char *order_id,
						  TossReply *reply)
{
	call(ep, TOSS_CALL_LOOKUP_ORDER, "GET", toss_api_payment_by_order_url(ep, order_id), NULL, NULL, NULL,
		 TOSS_OBJECT_REPLY_BYTES, reply);
}

void
toss_api_payment(const TossEndpoint *ep, const char *payment_key, TossReply *reply)
{
	char	   *url = psprintf("%s/v1/payments/%s", ep->api_url,
							   toss_url_escape_segment(payment_key));

	call(ep, TOSS_CALL_LOOKUP_PAYMENT, "GET", url, NULL, NULL, NULL, TOSS_OBJECT_REPLY_BYTES, reply);
}

void
toss_api_cancel_request(const TossEndpoint *ep, const char *idempotency_key,
						const char *payment_key, const char *reason, bool full,
						int64 amount, TossHttpRequest *req)
{
	TossJsonField fields[] = {
		{"cancelReason", TOSS_JSON_STRING, reason, 0},
		{"cancelAmount", TOSS_JSON_INT64, NULL, amount},
	};

	toss_api_charge_request(ep, psprintf("%s/v1/payments/%s/cancel", ep->api_url,
										 toss_url_escape_segment(payment_key)),
							idempotency_key, toss_json_build(fields, full ? 1 : 2), req);
	req->kind = TOSS_CALL_CANCEL;
}

void
toss_api_cancel(const TossEndpoint *ep, const char *idempotency_key,
				const char *payment_key, const char *reason, bool full,
				int64 amount, TossReply *reply)
{
	TossHttpRequest req;

	toss_api_cancel_request(ep, idempotency_key, payment_key, reason, full, amount, &req);
	memset(reply, 0, sizeof(*reply));
	toss_http_perform(&req, &reply->http);
	toss_reply_read(reply, NULL, ep->authorization);
}

/* DELETE /v1/billing/{billingKey}, for a batch; url is toss_api_charge_url's. */
void
toss_api_delete_request(const TossEndpoint *ep, const char *url, TossHttpRequest *req)
{
	toss_api_charge_request(ep, url, NULL, NULL, req);
	req->method = "DELETE";
	req->kind = TOSS_CALL_DELETE_KEY;
}

/* DELETE /v1/billing/{billingKey}; the URL holds the key and is wiped. */
void
toss_api_delete_billing_key(const TossEndpoint *ep, const char *billing_key,
							TossReply *reply)
{
	char	   *url = toss_api_charge_url(ep, billing_key);

	call(ep, TOSS_CALL_DELETE_KEY, "DELETE", url, NULL, NULL, billing_key, TOSS_OBJECT_REPLY_BYTES, reply);
	explicit_bzero(url, strlen(url));
	pfree(url);
}

/* GET /v1/transactions for one page; dates are Toss's local time, no offset. */
void
toss_api_transactions(const TossEndpoint *ep, const char *start_date, const char *end_date,
					  const char *starting_after, int limit, TossReply *reply)
{
	StringInfoData url;

	initStringInfo(&url);
	appendStringInfo(&url, "%s/v1/transactions?startDate=%s&endDate=%s&limit=%d",
					 ep->api_url, toss_url_escape_segment(start_date),
					 toss_url_escape_segment(end_date), limit);
	if (starting_after)
		appendStringInfo(&url, "&startingAfter=%s", toss_url_escape_segment(starting_after));
	call(ep, TOSS_CALL_TRANSACTIONS, "GET", url.data, NULL, NULL, NULL, TOSS_LIST_REPLY_BYTES, reply);
}
