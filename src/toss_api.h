/*
 * toss_api.h — the Toss endpoints toss_billing calls, as C functions.
 */
#ifndef TOSS_API_H
#define TOSS_API_H

#include "errors.h"
#include "http.h"
#include "json.h"

typedef struct TossEndpoint
{
	const char *api_url;		/* base, without trailing slash */
	const char *authorization;	/* secret */
	int			connect_timeout_ms;
	int			timeout_ms;
} TossEndpoint;

/* One call's result, read from the HTTP response. */
typedef struct TossReply
{
	TossHttpResponse http;
	TossJson   *doc;			/* parsed body if it is a JSON object */
	bool		is_error;		/* a Toss {code, message} error */
	char	   *code;			/* Toss error code */
	char	   *message;		/* Toss error message */
	const char *unsafe;			/* why the body was not read (untrusted.c), or NULL */
} TossReply;

/* The most an answer may hold: one object (a Payment, a Billing), or a page of transactions. */
#define TOSS_OBJECT_REPLY_BYTES (1024 * 1024)
#define TOSS_LIST_REPLY_BYTES (16 * 1024 * 1024)

extern void toss_api_issue(const TossEndpoint *ep, const char *idempotency_key,
						   const char *auth_key, const char *customer_key,
						   TossReply *reply);
extern void toss_api_charge(const TossEndpoint *ep, const char *idempotency_key,
							const char *billing_key, const char *body,
							TossReply *reply);
extern void toss_api_payment_by_order(const TossEndpoint *ep, const char *order_id,
									  TossReply *reply);
extern char *toss_api_payment_by_order_url(const TossEndpoint *ep, const char *order_id);
extern void toss_api_get_request(const TossEndpoint *ep, const char *url, TossHttpRequest *req);
extern void toss_api_payment(const TossEndpoint *ep, const char *payment_key, TossReply *reply);
extern void toss_api_cancel(const TossEndpoint *ep, const char *idempotency_key,
							const char *payment_key, const char *reason, bool full,
							int64 amount, TossReply *reply);
extern void toss_api_delete_billing_key(const TossEndpoint *ep, const char *billing_key,
										TossReply *reply);
extern void toss_api_transactions(const TossEndpoint *ep, const char *start_date,
								  const char *end_date, const char *starting_after,
								  int limit, TossReply *reply);
extern void toss_api_issue_request(const TossEndpoint *ep, const char *idempotency_key,
								   const char *auth_key, const char *customer_key, TossHttpRequest *req);
extern void toss_api_cancel_request(const TossEndpoint *ep, const char *idempotency_key,
									const char *payment_key, const char *reason, bool full,
									int64 amount, TossHttpRequest *req);
extern void toss_api_delete_request(const TossEndpoint *ep, const char *url, TossHttpRequest *req);
extern bool toss_reply_ok(const TossReply *reply);
extern void toss_reply_read(TossReply *reply, const char *billing_key, const char *authorization);
extern char *toss_api_charge_url(const TossEndpoint *ep, const char *billing_key);
extern void toss_api_charge_request(const TossEndpoint *ep, const char *url,
									const char *idempotency_key, const char *body,
									TossHttpRequest *req);

#endif
