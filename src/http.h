/*
 * http.h — HTTP exchanges with the Toss API.  The only interface to curl.
 */
#ifndef TOSS_HTTP_H
#define TOSS_HTTP_H

typedef enum TossHttpFailure
{
	TOSS_HTTP_OK,				/* an HTTP response arrived (any status) */
	TOSS_HTTP_NOT_SENT,			/* failed before any request byte was sent */
	TOSS_HTTP_TIMEOUT,			/* timed out after the request was sent */
	TOSS_HTTP_TRANSPORT,		/* connection broke after the request was sent */
	TOSS_HTTP_TOO_LARGE,		/* response body over the size limit */
	TOSS_HTTP_INTERRUPTED		/* abandoned: the process stopped waiting for it */
} TossHttpFailure;

/* Which Toss endpoint a request calls (toss_billing.stats counts by it). */
typedef enum TossCallKind
{
	TOSS_CALL_ISSUE,			/* POST /v1/billing/authorizations/issue */
	TOSS_CALL_CHARGE,			/* POST /v1/billing/{billingKey} */
	TOSS_CALL_LOOKUP_ORDER,		/* GET /v1/payments/orders/{orderId} */
	TOSS_CALL_LOOKUP_PAYMENT,	/* GET /v1/payments/{paymentKey} */
	TOSS_CALL_CANCEL,			/* POST /v1/payments/{paymentKey}/cancel */
	TOSS_CALL_DELETE_KEY,		/* DELETE /v1/billing/{billingKey} */
	TOSS_CALL_TRANSACTIONS,		/* GET /v1/transactions */
	TOSS_CALL_COUNT
} TossCallKind;

typedef struct TossHttpRequest
{
	const char *method;			/* "GET", "POST" or "DELETE" */
	const char *url;			/* complete, already percent-encoded */
	const char *authorization;	/* secret: never logged or copied */
	const char *idempotency_key;	/* NULL for none */
	const char *body;			/* JSON, or NULL */
	int			connect_timeout_ms;
	int			timeout_ms;
	size_t		max_response_bytes; /* 0: TOSS_HTTP_MAX_RESPONSE_BYTES */
	TossCallKind kind;
} TossHttpRequest;

typedef struct TossHttpResponse
{
	TossHttpFailure failure;
	long		status;			/* HTTP status, 0 without a response */
	char	   *body;			/* palloc'd, NUL-terminated, never NULL */
	size_t		body_len;
	char		error[256];		/* curl's description of a failure */
	double		elapsed_ms;
} TossHttpResponse;

#define TOSS_HTTP_MAX_RESPONSE_BYTES (16 * 1024 * 1024)

/* One request, waiting for it interruptibly (a batch of one). */
extern void toss_http_perform(const TossHttpRequest *req, TossHttpResponse *resp);

/*
 * Many requests at once on one curl multi handle, driven through a
 * WaitEventSet that holds this process's latch, postmaster death (the
 * process exits if the postmaster dies) and curl's sockets.  Every socket
 * curl opens is reserved with AcquireExternalFD() (and released when curl
 * closes it); a socket PostgreSQL's file-descriptor budget cannot cover is
 * refused, which curl reports as a request that was not sent.  The batch
 * lives in the memory context current at creation: resetting or deleting
 * that context destroys every transfer still running and closes its
 * sockets.  Connections are kept alive between requests while the batch
 * lives.
 */
typedef struct TossHttpBatch TossHttpBatch;

extern TossHttpBatch *toss_http_batch_create(int max_connections);
extern void toss_http_batch_add(TossHttpBatch *b, const TossHttpRequest *req, void *tag);
extern void toss_http_batch_start(TossHttpBatch *b);
extern int	toss_http_batch_running(TossHttpBatch *b);
extern int	toss_http_batch_max_connections(TossHttpBatch *b);

/* Waits up to timeout_ms for sockets, curl's timers or the latch, runs curl
 * for what is ready; returns whether the latch was set (it is reset). */
extern bool toss_http_batch_wait(TossHttpBatch *b, int timeout_ms);

/* A finished transfer, if curl has one; its body is palloc'd in the current context. */
extern bool toss_http_batch_take(TossHttpBatch *b, void **tag, TossHttpResponse *resp);

/* Waits up to timeout_ms for one transfer to finish (CHECK_FOR_INTERRUPTS
 * between waits); false on timeout, with none running, or when the latch was set. */
extern bool toss_http_batch_next(TossHttpBatch *b, int timeout_ms, void **tag,
								 TossHttpResponse *resp);

/* Abandons the transfer with this tag (it was in flight; counted as interrupted). */
extern void toss_http_batch_cancel(TossHttpBatch *b, void *tag);

extern char *toss_url_escape_segment(const char *segment);
extern const char *toss_http_failure_name(TossHttpFailure failure);
extern const char *toss_call_kind_name(TossCallKind kind);

#endif
