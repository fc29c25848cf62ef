/*
 * http.c — the only file that includes curl.
 *
 * toss_http_perform() makes one request with a fresh easy handle and returns
 * the outcome in a struct; transport failures are results, not errors.
 * TossHttpBatch runs many requests at once on one curl multi handle.
 *
 * Memory: the response body is collected in malloc'd memory by the write
 * callback (callbacks never palloc and never ereport: they only return short
 * counts or non-zero to make curl stop), then copied into the caller's memory
 * context after curl returns.  The easy handle, header list and buffer are
 * released in PG_FINALLY, so no error path leaks them.
 *
 * Interrupts: the progress callback stops the transfer as soon as an
 * interrupt is pending; after cleanup, CHECK_FOR_INTERRUPTS() raises the
 * real cancel/timeout/termination error.  No lock is held across the call.
 *
 * Secrets: the Authorization header is handed to curl and nowhere else; our
 * copy of it in the header list is wiped before the list is freed, and the
 * caller wipes its copy of a URL that holds a billing key (curl's own copy
 * of the URL is freed, unwiped, with the handle).  CURLOPT_VERBOSE is never
 * set.
 */
#include "postgres.h"

#include <math.h>
#include <poll.h>

#include <curl/curl.h>

#include "http.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "portability/instr_time.h"

StaticAssertDecl(LIBCURL_VERSION_NUM >= 0x074900,
				 "toss_billing needs libcurl 7.73 or later");

typedef struct Collected
{
	char	   *data;			/* malloc'd */
	size_t		len;
	size_t		cap;
	size_t		limit;			/* the most the body may hold */
	bool		too_large;
} Collected;

static bool curl_ready = false;

static size_t
collect_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	Collected  *c = (Collected *) userdata;
	size_t		n = size * nmemb;

	if (c->len + n > c->limit)
	{
		c->too_large = true;
		return 0;
	}
	if (c->len + n + 1 > c->cap)
	{
		size_t		newcap = Max(c->cap * 2, c->len + n + 1);
		char	   *grown;

		newcap = Min(Max(newcap, 4096), c->limit + 1);
		grown = realloc(c->data, newcap);
		if (grown == NULL)
			return 0;
		c->data = grown;
		c->cap = newcap;
	}
	memcpy(c->data + c->len, ptr, n);
	c->len += n;
	return n;
}

static int
check_interrupts(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
				 curl_off_t ultotal, curl_off_t ulnow)
{
	/* only the interrupts that will raise: cancel, timeouts, termination */
	return (QueryCancelPending || ProcDiePending) ? 1 : 0;
}

static void
ensure_curl(void)
{
	if (curl_ready)
		return;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	curl_ready = true;
}

static void
set_options(CURL *h, const TossHttpRequest *req, struct curl_slist *headers,
			Collected *body, char *errbuf)
{
	curl_easy_setopt(h, CURLOPT_URL, req->url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long) req->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) req->timeout_ms);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "toss_billing/" EXTVERSION);
	/* request bodies are small: the 16 kB minimum instead of 64 kB per connection */
	curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, check_interrupts);
	if (strcmp(req->method, "POST") == 0)
	{
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
	}
	else if (strcmp(req->method, "GET") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
}

/* Append a header; the formatted copy is wiped because it may be secret. */
static struct curl_slist *
add_header(struct curl_slist *list, const char *name, const char *value, bool *oom)
{
	char	   *line = psprintf("%s: %s", name, value);
	struct curl_slist *l = curl_slist_append(list, line);

	explicit_bzero(line, strlen(line));
	pfree(line);
	if (l == NULL)
	{
		*oom = true;
		return list;
	}
	return l;
}

static TossHttpFailure
classify(CURLcode rc, CURL *h, const Collected *body)
{
	long		sent = 0;

	if (rc == CURLE_OK)
		return TOSS_HTTP_OK;
	if (rc == CURLE_ABORTED_BY_CALLBACK)
		return TOSS_HTTP_INTERRUPTED;
	if (rc == CURLE_WRITE_ERROR && body->too_large)
		return TOSS_HTTP_TOO_LARGE;
	curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &sent);
	if (sent == 0 && (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
					  rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_SSL_CONNECT_ERROR ||
					  rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_UNSUPPORTED_PROTOCOL))
		return TOSS_HTTP_NOT_SENT;
	if (rc == CURLE_OPERATION_TIMEDOUT)
		return TOSS_HTTP_TIMEOUT;
	return TOSS_HTTP_TRANSPORT;
}

/* One request's curl state; malloc'd so it never depends on a memory context. */
typedef struct Transfer
{
	CURL	   *h;
	struct curl_slist *headers;
	Collected	body;
	char		errbuf[CURL_ERROR_SIZE];
	instr_time	start;
	void	   *tag;
	dlist_node	node;
} Transfer;

static void
transfer_free(Transfer *t)
{
	/* the header list holds the Authorization value: wipe it before freeing */
	for (struct curl_slist *h = t->headers; h != NULL; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	if (t->headers)
		curl_slist_free_all(t->headers);
	if (t->h)
		curl_easy_cleanup(t->h);
	free(t->body.data);
	free(t);
}

/* A ready-to-run transfer.  Frees everything it made if it raises. */
static Transfer *
transfer_create(const TossHttpRequest *req)
{
	Transfer   *t;

	ensure_curl();
	t = calloc(1, sizeof(Transfer));
	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory creating a toss request")));
	PG_TRY();
	{
		bool		oom = false;

		t->h = curl_easy_init();
		if (t->h == NULL)
			oom = true;
		t->headers = add_header(t->headers, "Authorization", req->authorization, &oom);
		t->headers = add_header(t->headers, "Content-Type", "application/json", &oom);
		if (req->idempotency_key)
			t->headers = add_header(t->headers, "Idempotency-Key", req->idempotency_key, &oom);
		t->headers = add_header(t->headers, "Expect", "", &oom);
		if (oom)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory building a toss request")));
		t->body.limit = req->max_response_bytes > 0 ?
			Min(req->max_response_bytes, TOSS_HTTP_MAX_RESPONSE_BYTES) : TOSS_HTTP_MAX_RESPONSE_BYTES;
		set_options(t->h, req, t->headers, &t->body, t->errbuf);
		curl_easy_setopt(t->h, CURLOPT_PRIVATE, t);
		INSTR_TIME_SET_CURRENT(t->start);
	}
	PG_CATCH();
	{
		transfer_free(t);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return t;
}

/* Fill *resp from a finished transfer; the body is copied into palloc'd memory. */
static void
transfer_result(Transfer *t, CURLcode rc, TossHttpResponse *resp)
{
	instr_time	elapsed;

	memset(resp, 0, sizeof(*resp));
	resp->failure = classify(rc, t->h, &t->body);
	if (resp->failure == TOSS_HTTP_OK)
		curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &resp->status);
	else
		strlcpy(resp->error, t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc),
				sizeof(resp->error));
	resp->body = palloc(t->body.len + 1);
	if (t->body.len > 0)
		memcpy(resp->body, t->body.data, t->body.len);
	resp->body[t->body.len] = '\0';
	resp->body_len = t->body.len;
	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, t->start);
	resp->elapsed_ms = INSTR_TIME_GET_MILLISEC(elapsed);
}

void
toss_http_perform(const TossHttpRequest *req, TossHttpResponse *resp)
{
	Transfer   *volatile t = transfer_create(req);

	PG_TRY();
	{
		CURLcode	rc = curl_easy_perform(t->h);

		transfer_result(t, rc, resp);
	}
	PG_FINALLY();
	{
		transfer_free(t);
	}
	PG_END_TRY();

	if (resp->failure == TOSS_HTTP_INTERRUPTED)
		CHECK_FOR_INTERRUPTS();
}

/*
 * ---- concurrent requests (curl multi) ----
 *
 * A batch owns its transfers; a reset callback on the memory context that
 * was current at creation destroys every transfer still running, so an
 * ERROR anywhere in the caller cannot leak a handle or a socket.
 *
 * The batch is driven through curl's socket interface: curl says which
 * sockets to watch and when its next timeout is due (two callbacks that
 * only record, in malloc'd memory, and never raise), one poll() waits on all
 * of them, and curl is then run for the sockets that are ready and the
 * timers that expired only.  curl_multi_perform() would instead visit every
 * transfer, with a readiness check per socket, each time it is called: with
 * hundreds of calls in flight that cost grew with the concurrency.
 */
struct TossHttpBatch
{
	CURLM	   *multi;
	dlist_head	transfers;
	int			running;
	struct pollfd *watched;		/* malloc'd; the sockets curl asked for */
	int			nwatched;
	int			cap;
	bool		watch_oom;		/* a socket could not be recorded */
	bool		timer_set;
	double		timer_due;		/* monotonic ms */
	MemoryContextCallback cb;
};

static void
batch_destroy(void *arg)
{
	TossHttpBatch *b = (TossHttpBatch *) arg;
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &b->transfers)
	{
		Transfer   *t = dlist_container(Transfer, node, it.cur);

		dlist_delete(&t->node);
		if (b->multi)
			curl_multi_remove_handle(b->multi, t->h);
		transfer_free(t);
	}
	if (b->multi)
		curl_multi_cleanup(b->multi);
	b->multi = NULL;
	b->running = 0;
	free(b->watched);
	b->watched = NULL;
	b->nwatched = b->cap = 0;
}

/* curl callback: watch socket s for what (or stop).  Records only. */
static int
watch_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	TossHttpBatch *b = (TossHttpBatch *) userp;
	int			i;

	for (i = 0; i < b->nwatched; i++)
		if (b->watched[i].fd == s)
			break;
	if (what == CURL_POLL_REMOVE)
	{
		if (i < b->nwatched)
			b->watched[i] = b->watched[--b->nwatched];
		return 0;
	}
	if (i == b->nwatched)
	{
		if (b->nwatched == b->cap)
		{
			int			newcap = Max(16, b->cap * 2);
			struct pollfd *grown = realloc(b->watched, sizeof(struct pollfd) * newcap);

			if (grown == NULL)
			{
				b->watch_oom = true;
				return -1;
			}
			b->watched = grown;
			b->cap = newcap;
		}
		b->watched[b->nwatched++].fd = s;
	}
	b->watched[i].events = ((what & CURL_POLL_IN) ? POLLIN : 0) |
		((what & CURL_POLL_OUT) ? POLLOUT : 0);
	b->watched[i].revents = 0;
	return 0;
}

static double
monotonic_ms(void)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	return INSTR_TIME_GET_MILLISEC(now);
}

/* curl callback: run the timers in timeout_ms (-1: no timer).  Records only. */
static int
set_timer(CURLM *multi, long timeout_ms, void *userp)
{
	TossHttpBatch *b = (TossHttpBatch *) userp;

	b->timer_set = timeout_ms >= 0;
	if (b->timer_set)
		b->timer_due = monotonic_ms() + timeout_ms;
	return 0;
}

TossHttpBatch *
toss_http_batch_create(int max_connections)
{
	TossHttpBatch *b = palloc0(sizeof(TossHttpBatch));

	ensure_curl();
	dlist_init(&b->transfers);
	b->multi = curl_multi_init();
	if (b->multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a curl multi handle")));
	b->cb.func = batch_destroy;
	b->cb.arg = b;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &b->cb);
	curl_multi_setopt(b->multi, CURLMOPT_MAXCONNECTS, (long) max_connections);
	curl_multi_setopt(b->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) max_connections);
	curl_multi_setopt(b->multi, CURLMOPT_SOCKETFUNCTION, watch_socket);
	curl_multi_setopt(b->multi, CURLMOPT_SOCKETDATA, b);
	curl_multi_setopt(b->multi, CURLMOPT_TIMERFUNCTION, set_timer);
	curl_multi_setopt(b->multi, CURLMOPT_TIMERDATA, b);
	return b;
}

void
toss_http_batch_add(TossHttpBatch *b, const TossHttpRequest *req, void *tag)
{
	Transfer   *t = transfer_create(req);

	t->tag = tag;
	dlist_push_tail(&b->transfers, &t->node);
	if (curl_multi_add_handle(b->multi, t->h) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not add a toss request to the batch")));
	b->running++;
}

int
toss_http_batch_running(TossHttpBatch *b)
{
	return b->running;
}

/* Milliseconds until curl's timer is due: 0 if due, -1 if none. */
static int
timer_left_ms(TossHttpBatch *b)
{
	double		left;

	if (!b->timer_set)
		return -1;
	left = b->timer_due - monotonic_ms();
	return left <= 0 ? 0 : (int) ceil(left);
}

static void
run_timers(TossHttpBatch *b)
{
	int			still;

	if (timer_left_ms(b) == 0)
	{
		b->timer_set = false;
		curl_multi_socket_action(b->multi, CURL_SOCKET_TIMEOUT, 0, &still);
	}
}

/*
 * Wait up to wait_ms for a watched socket or curl's timer, then run curl for
 * what is ready.  The ready sockets are copied out first: running curl
 * changes the watched set.
 */
static void
drive(TossHttpBatch *b, int wait_ms)
{
	int			timer = timer_left_ms(b);
	int			n;
	int			nready = 0;
	struct pollfd *ready;

	if (b->watch_oom)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory watching toss request sockets")));
	if (timer >= 0 && timer < wait_ms)
		wait_ms = timer;
	n = poll(b->watched, b->nwatched, wait_ms);
	if (n > 0)
	{
		ready = palloc(sizeof(struct pollfd) * n);
		for (int i = 0; i < b->nwatched && nready < n; i++)
			if (b->watched[i].revents != 0)
				ready[nready++] = b->watched[i];
		for (int i = 0; i < nready; i++)
		{
			int			still;
			int			mask = ((ready[i].revents & POLLIN) ? CURL_CSELECT_IN : 0) |
				((ready[i].revents & POLLOUT) ? CURL_CSELECT_OUT : 0) |
				((ready[i].revents & (POLLERR | POLLHUP | POLLNVAL)) ? CURL_CSELECT_ERR : 0);

			curl_multi_socket_action(b->multi, ready[i].fd, mask, &still);
		}
		pfree(ready);
	}
	run_timers(b);
}

/*
 * Hand the requests added since the last call to the network, without
 * waiting: a request added to the multi handle is not sent until curl runs
 * (adding one sets curl's timer to fire at once).
 */
void
toss_http_batch_start(TossHttpBatch *b)
{
	run_timers(b);
}

/* Take one finished transfer off curl's message queue, if there is one. */
static bool
take_finished(TossHttpBatch *b, void **tag, TossHttpResponse *resp)
{
	int			left;
	CURLMsg    *m;

	while ((m = curl_multi_info_read(b->multi, &left)) != NULL)
	{
		Transfer   *t;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		curl_multi_remove_handle(b->multi, t->h);
		dlist_delete(&t->node);
		b->running--;
		PG_TRY();
		{
			transfer_result(t, m->data.result, resp);
		}
		PG_FINALLY();
		{
			*tag = t->tag;
			transfer_free(t);
		}
		PG_END_TRY();
		if (resp->failure == TOSS_HTTP_INTERRUPTED)
			CHECK_FOR_INTERRUPTS();
		return true;
	}
	return false;
}

/*
 * Wait up to timeout_ms for one transfer to finish.  Returns true with *tag
 * and *resp (body palloc'd in the current context) when one did.  Transfers
 * curl already reported finished are returned before waiting again; with a
 * timeout of 0, curl still runs once for whatever is ready.  Checks for
 * interrupts at least every 100 ms.
 */
bool
toss_http_batch_next(TossHttpBatch *b, int timeout_ms, void **tag, TossHttpResponse *resp)
{
	instr_time	start,
				now;
	bool		ran = false;

	INSTR_TIME_SET_CURRENT(start);
	for (;;)
	{
		int			left;

		if (take_finished(b, tag, resp))
			return true;
		CHECK_FOR_INTERRUPTS();
		if (b->running == 0)
			return false;
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		left = timeout_ms - (int) INSTR_TIME_GET_MILLISEC(now);
		if (ran && left <= 0)
			return false;
		drive(b, Max(0, Min(100, left)));
		ran = true;
	}
}

/*
 * Percent-encode one path segment.  Everything but [A-Za-z0-9_-] is encoded,
 * dots included, so "." and ".." can never become dot-segments.
 */
char *
toss_url_escape_segment(const char *segment)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t		len = strlen(segment);
	char	   *out = palloc(len * 3 + 1);
	char	   *o = out;

	for (const unsigned char *p = (const unsigned char *) segment; *p; p++)
	{
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9') || *p == '_' || *p == '-')
			*o++ = *p;
		else
		{
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

const char *
toss_http_failure_name(TossHttpFailure failure)
{
	switch (failure)
	{
		case TOSS_HTTP_OK:
			return "ok";
		case TOSS_HTTP_NOT_SENT:
			return "not sent";
		case TOSS_HTTP_TIMEOUT:
			return "timeout";
		case TOSS_HTTP_TRANSPORT:
			return "connection failure";
		case TOSS_HTTP_TOO_LARGE:
			return "response too large";
		case TOSS_HTTP_INTERRUPTED:
			return "interrupted";
	}
	return "unknown";
}
