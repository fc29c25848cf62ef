/*
 * http.h — one HTTP exchange with the Toss API.  The only interface to curl.
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
	TOSS_HTTP_INTERRUPTED		/* aborted by a query cancel or termination */
} TossHttpFailure;

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

extern void toss_http_perform(const TossHttpRequest *req, TossHttpResponse *resp);

typedef struct TossHttpBatch TossHttpBatch;

extern TossHttpBatch *toss_http_batch_create(int max_connections);
extern void toss_http_batch_add(TossHttpBatch *b, const TossHttpRequest *req, void *tag);
extern void toss_http_batch_start(TossHttpBatch *b);
extern int	toss_http_batch_running(TossHttpBatch *b);
extern bool toss_http_batch_next(TossHttpBatch *b, int timeout_ms, void **tag,
								 TossHttpResponse *resp);
extern char *toss_url_escape_segment(const char *segment);
extern const char *toss_http_failure_name(TossHttpFailure failure);

#endif
