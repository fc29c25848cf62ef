/*
 * http.c — the only file that includes curl.
 *
 * Every request runs on a TossHttpBatch: one curl multi handle driven
 * through curl's socket interface and a PostgreSQL WaitEventSet that holds
 * the process's latch, postmaster death and the sockets curl asks for.
 * toss_http_perform() is a batch of one.  Transport failures are results,
 * not errors.
 *
 * Waiting: curl says which sockets to watch and when its next timer is due
 * (callbacks that only record, in malloc'd memory, and never raise); the
 * recorded changes are applied to the WaitEventSet before each wait
 * (ModifyWaitEvent for a socket already in the set, AddWaitEventToSet for a
 * new one); one WaitEventSetWait() sleeps on all of them, and curl is run
 * for the ready sockets and expired timers only.  A socket curl stops
 * watching while it keeps the connection (keep-alive) stays in the set as
 * readable; if it fires (the server closed it), or a socket in the set is
 * closed, the set is rebuilt before the next wait, since PostgreSQL's wait
 * sets cannot remove one event.  The latch ends a wait at once (a cancel,
 * statement_timeout, a new job for the engine); postmaster death ends the
 * process (WL_EXIT_ON_PM_DEATH), so nothing keeps calling Toss for a server
 * that is gone.
 *
 * File descriptors: curl opens and closes its sockets through our
 * callbacks, which reserve each with AcquireExternalFD() and release it on
 * close, so curl's sockets count against max_files_per_process like
 * PostgreSQL's own (fd.c closes cached files to make room).  A socket the
 * budget cannot cover is refused: curl reports the request as not sent.  A
 * batch keeps at most max_connections connections, capped to a third of
 * the process's safe descriptors, and queues transfers beyond that inside
 * curl.  (curl's threaded resolver may briefly hold a socket pair of its
 * own that does not pass through these callbacks.)
 *
 * Memory: response bodies are collected in malloc'd memory by the write
 * callback, then copied into the caller's memory context; a batch and its
 * transfers are malloc'd and destroyed by a reset callback of the memory
 * context current at creation, so no error path leaks a handle or a
 * socket.  Easy handles are reused between transfers of a batch.
 *
 * Secrets: the Authorization header is handed to curl and nowhere else;
 * our copy of it in the header list is wiped before the list is freed, and
 * the caller wipes its copy of a URL that holds a billing key (curl's own
 * copy of the URL is freed, unwiped, with the handle).  CURLOPT_VERBOSE is
 * never set.
 */
#include "postgres.h"

#include <math.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "http.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "stats.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

StaticAssertDecl(LIBCURL_VERSION_NUM >= 0x074900,
				 "toss_billing needs libcurl 7.73 or later");

#define MAX_READY 64			/* events taken from one wait */

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

/* ---- the batch's state ---- */

typedef struct SockSlot
{
	int			pos;			/* its event in the wait set, or -1 */
	uint32		want;			/* WL_SOCKET_* curl watches it for; 0: none */
	bool		ours;			/* opened by our callback (reserved) */
	bool		queued;			/* in the changed list */
} SockSlot;

typedef struct Transfer Transfer;

struct TossHttpBatch
{
	CURLM	   *multi;
	dlist_head	transfers;
	int			running;
	int			max_connections;
	MemoryContext cxt;			/* where the wait set lives */
	WaitEventSet *wes;
	int			wes_cap;
	int			wes_n;
	bool		dirty;			/* rebuild the wait set before the next wait */
	SockSlot   *socks;			/* malloc'd, indexed by fd */
	int			nsocks;
	int		   *changed;		/* malloc'd: fds whose watch changed */
	int			nchanged;
	int			changed_cap;
	bool		cb_oom;			/* a callback could not record something */
	bool		timer_set;
	double		timer_due;		/* monotonic ms */
	CURL	  **spare;			/* reusable easy handles */
	int			nspare;
	int			spare_cap;
	MemoryContextCallback cb;
};

/* One request's curl state; malloc'd so it never depends on a memory context. */
struct Transfer
{
	TossHttpBatch *batch;
	CURL	   *h;
	struct curl_slist *headers;
	Collected	body;
	char		errbuf[CURL_ERROR_SIZE];
	instr_time	start;
	void	   *tag;
	TossCallKind kind;
	bool		counted;		/* its end is counted in the statistics */
	char	   *send;			/* the request body (malloc'd), read by read_body */
	size_t		send_len;
	size_t		sent;
	dlist_node	node;
};

/* curl callback: the next piece of the request body. */
static size_t
read_body(char *buffer, size_t size, size_t nitems, void *userdata)
{
	Transfer   *t = (Transfer *) userdata;
	size_t		n = Min(size * nitems, t->send_len - t->sent);

	memcpy(buffer, t->send + t->sent, n);
	t->sent += n;
	return n;
}

/*
 * curl callback: rewind the body -- refused.  curl rewinds a POST body only
 * to send it again, when a kept-alive connection dropped after the request
 * went out and before any answer came back: that would be a blind second
 * POST, so the transfer fails instead (a request that was sent, its outcome
 * to be settled by looking it up).  A request that had not been sent yet
 * needs no rewind and is retried on a fresh connection as curl does.
 */
static int
refuse_rewind(void *userdata, curl_off_t offset, int origin)
{
	return CURL_SEEKFUNC_FAIL;
}

static double
monotonic_ms(void)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	return INSTR_TIME_GET_MILLISEC(now);
}

static double
elapsed_ms_since(instr_time start)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	return INSTR_TIME_GET_MILLISEC(now);
}

/* The slot of fd, growing the table (malloc: callbacks call this). */
static SockSlot *
sock_slot(TossHttpBatch *b, int fd)
{
	if (fd < 0)
		return NULL;
	if (fd >= b->nsocks)
	{
		int			n = Max(fd + 1, Max(64, b->nsocks * 2));
		SockSlot   *grown = realloc(b->socks, sizeof(SockSlot) * n);

		if (grown == NULL)
		{
			b->cb_oom = true;
			return NULL;
		}
		for (int i = b->nsocks; i < n; i++)
		{
			grown[i].pos = -1;
			grown[i].want = 0;
			grown[i].ours = false;
			grown[i].queued = false;
		}
		b->socks = grown;
		b->nsocks = n;
	}
	return &b->socks[fd];
}

static void
note_changed(TossHttpBatch *b, int fd, SockSlot *s)
{
	if (s->queued)
		return;
	if (b->nchanged == b->changed_cap)
	{
		int			n = Max(16, b->changed_cap * 2);
		int		   *grown = realloc(b->changed, sizeof(int) * n);

		if (grown == NULL)
		{
			/* cannot record the change: rebuild from the table instead */
			b->dirty = true;
			return;
		}
		b->changed = grown;
		b->changed_cap = n;
	}
	b->changed[b->nchanged++] = fd;
	s->queued = true;
}

/* curl callback: a socket for a connection, reserved against the FD budget. */
static curl_socket_t
open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	TossHttpBatch *b = (TossHttpBatch *) clientp;
	curl_socket_t s;
	SockSlot   *slot;

	if (!AcquireExternalFD())
		return CURL_SOCKET_BAD;
	s = socket(address->family, address->socktype, address->protocol);
	if (s == CURL_SOCKET_BAD)
	{
		ReleaseExternalFD();
		return CURL_SOCKET_BAD;
	}
	slot = sock_slot(b, s);
	if (slot == NULL)
	{
		close(s);
		ReleaseExternalFD();
		return CURL_SOCKET_BAD;
	}
	slot->ours = true;
	slot->want = 0;
	return s;
}

/* curl callback: close a socket it opened through open_socket. */
static int
close_socket(void *clientp, curl_socket_t s)
{
	TossHttpBatch *b = (TossHttpBatch *) clientp;
	SockSlot   *slot = (s >= 0 && s < b->nsocks) ? &b->socks[s] : NULL;
	int			rc = close(s);

	ReleaseExternalFD();
	if (slot)
	{
		/* its wait event is gone with it: the set must be rebuilt */
		if (slot->pos >= 0)
			b->dirty = true;
		slot->pos = -1;
		slot->want = 0;
		slot->ours = false;
	}
	return rc;
}

/* curl callback: watch socket s for what (or stop).  Records only. */
static int
watch_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	TossHttpBatch *b = (TossHttpBatch *) userp;
	SockSlot   *slot = sock_slot(b, s);
	uint32		want = 0;

	if (slot == NULL)
		return -1;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		want |= WL_SOCKET_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		want |= WL_SOCKET_WRITEABLE;
	if (want != slot->want)
	{
		slot->want = want;
		note_changed(b, s, slot);
	}
	return 0;
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

/* ---- the wait set ---- */

static void
rebuild_wait_set(TossHttpBatch *b)
{
	int			watched = 0;

	if (b->wes)
		FreeWaitEventSet(b->wes);
	b->wes = NULL;
	for (int fd = 0; fd < b->nsocks; fd++)
	{
		b->socks[fd].pos = -1;
		b->socks[fd].queued = false;
		if (b->socks[fd].want != 0)
			watched++;
	}
	b->nchanged = 0;
	b->wes_cap = 2 + Max(16, 2 * watched);
	b->wes = CreateWaitEventSet(b->cxt, b->wes_cap);
	AddWaitEventToSet(b->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(b->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	b->wes_n = 2;
	for (int fd = 0; fd < b->nsocks; fd++)
		if (b->socks[fd].want != 0)
		{
			b->socks[fd].pos = AddWaitEventToSet(b->wes, b->socks[fd].want, fd, NULL, NULL);
			b->wes_n++;
		}
	b->dirty = false;
}

/* Apply what curl asked for since the last wait. */
static void
prepare_wait(TossHttpBatch *b)
{
	if (b->cb_oom)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory watching toss request sockets")));
	if (b->wes == NULL || b->dirty)
	{
		rebuild_wait_set(b);
		return;
	}
	for (int i = 0; i < b->nchanged; i++)
	{
		int			fd = b->changed[i];
		SockSlot   *s = &b->socks[fd];

		s->queued = false;
		if (s->want != 0)
		{
			if (s->pos >= 0)
				ModifyWaitEvent(b->wes, s->pos, s->want, NULL);
			else if (b->wes_n < b->wes_cap)
			{
				s->pos = AddWaitEventToSet(b->wes, s->want, fd, NULL, NULL);
				b->wes_n++;
			}
			else
			{
				rebuild_wait_set(b);
				return;
			}
		}
		else if (s->pos >= 0)
		{
			if (s->ours)
				/* kept alive by curl: notice if the server closes it */
				ModifyWaitEvent(b->wes, s->pos, WL_SOCKET_READABLE, NULL);
			else
			{
				/* curl may close it without telling us: drop it now */
				rebuild_wait_set(b);
				return;
			}
		}
	}
	b->nchanged = 0;
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

typedef struct Ready
{
	int			fd;
	int			mask;
} Ready;

static int
collect_ready(TossHttpBatch *b, WaitEvent *ev, int n, Ready *ready, int nready, bool *latch)
{
	for (int i = 0; i < n; i++)
	{
		if (ev[i].events & WL_LATCH_SET)
		{
			*latch = true;
			continue;
		}
		if (ev[i].fd < 0 || ev[i].fd >= b->nsocks)
			continue;
		if (b->socks[ev[i].fd].want == 0)
		{
			/* an idle keep-alive connection fired: stop watching it */
			b->dirty = true;
			continue;
		}
		ready[nready].fd = ev[i].fd;
		ready[nready].mask = ((ev[i].events & WL_SOCKET_READABLE) ? CURL_CSELECT_IN : 0) |
			((ev[i].events & WL_SOCKET_WRITEABLE) ? CURL_CSELECT_OUT : 0);
		nready++;
	}
	return nready;
}

bool
toss_http_batch_wait(TossHttpBatch *b, int timeout_ms)
{
	WaitEvent	ev[MAX_READY];
	Ready		ready[2 * MAX_READY];
	int			nready = 0;
	int			n;
	int			timer = timer_left_ms(b);
	bool		latch = false;

	prepare_wait(b);
	if (timer >= 0 && (timeout_ms < 0 || timer < timeout_ms))
		timeout_ms = timer;
	n = WaitEventSetWait(b->wes, timeout_ms, ev, MAX_READY, PG_WAIT_EXTENSION);
	nready = collect_ready(b, ev, n, ready, 0, &latch);
	if (latch)
	{
		ResetLatch(MyLatch);
		/* a set latch returns alone: look at the sockets too, without sleeping */
		if (nready == 0)
		{
			bool		again = false;

			n = WaitEventSetWait(b->wes, 0, ev, MAX_READY, PG_WAIT_EXTENSION);
			nready = collect_ready(b, ev, n, ready, 0, &again);
		}
	}
	/* running curl changes the watched set: act on the copy */
	for (int i = 0; i < nready; i++)
	{
		int			still;

		curl_multi_socket_action(b->multi, ready[i].fd, ready[i].mask, &still);
	}
	run_timers(b);
	return latch;
}

/* ---- transfers ---- */

static void
set_options(CURL *h, const TossHttpRequest *req, struct curl_slist *headers,
			Collected *body, char *errbuf, TossHttpBatch *b, Transfer *t)
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
	curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, b);
	curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
	curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, b);
	if (strcmp(req->method, "POST") == 0)
	{
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, read_body);
		curl_easy_setopt(h, CURLOPT_READDATA, t);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, refuse_rewind);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, t);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) t->send_len);
	}
	else
	{
		/*
		 * A request without a body is not rewound, so curl would send it
		 * again by itself on a fresh connection if a kept-alive one dropped
		 * before the answer: lookups and deletions take a connection of
		 * their own, so that every request is made exactly as often as we
		 * make it.
		 */
		curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
		if (strcmp(req->method, "GET") != 0)
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
	}
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

static void
transfer_free(Transfer *t)
{
	TossHttpBatch *b = t->batch;

	if (!t->counted)
		toss_stats_call_finished(t->kind, TOSS_HTTP_INTERRUPTED, 0, elapsed_ms_since(t->start));
	/* the header list holds the Authorization value: wipe it before freeing */
	for (struct curl_slist *h = t->headers; h != NULL; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	if (t->headers)
		curl_slist_free_all(t->headers);
	if (t->h)
	{
		if (b && b->nspare < b->spare_cap)
		{
			curl_easy_reset(t->h);
			b->spare[b->nspare++] = t->h;
		}
		else
			curl_easy_cleanup(t->h);
	}
	free(t->body.data);
	free(t->send);
	free(t);
}

static CURL *
easy_handle(TossHttpBatch *b)
{
	if (b->nspare > 0)
		return b->spare[--b->nspare];
	return curl_easy_init();
}

/* Fill *resp from a finished transfer; the body is copied into palloc'd memory. */
static void
transfer_result(Transfer *t, CURLcode rc, TossHttpResponse *resp)
{
	memset(resp, 0, sizeof(*resp));
	resp->failure = classify(rc, t->h, &t->body);
	if (resp->failure == TOSS_HTTP_OK)
		curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &resp->status);
	else if (rc == CURLE_SEND_FAIL_REWIND)
		strlcpy(resp->error, "the connection closed after the request was sent, before any answer",
				sizeof(resp->error));
	else
		strlcpy(resp->error, t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc),
				sizeof(resp->error));
	resp->elapsed_ms = elapsed_ms_since(t->start);
	toss_stats_call_finished(t->kind, resp->failure, resp->status, resp->elapsed_ms);
	t->counted = true;
	resp->body = palloc(t->body.len + 1);
	if (t->body.len > 0)
		memcpy(resp->body, t->body.data, t->body.len);
	resp->body[t->body.len] = '\0';
	resp->body_len = t->body.len;
}

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
		t->batch = NULL;
		transfer_free(t);
	}
	for (int i = 0; i < b->nspare; i++)
		curl_easy_cleanup(b->spare[i]);
	b->nspare = 0;
	/* closes the kept-alive connections, through close_socket */
	if (b->multi)
		curl_multi_cleanup(b->multi);
	b->multi = NULL;
	b->running = 0;
	if (b->wes)
		FreeWaitEventSet(b->wes);
	b->wes = NULL;
	free(b->socks);
	free(b->changed);
	free(b->spare);
	b->socks = NULL;
	b->changed = NULL;
	b->spare = NULL;
	b->nsocks = b->nchanged = b->changed_cap = 0;
	free(b);
}

TossHttpBatch *
toss_http_batch_create(int max_connections)
{
	TossHttpBatch *b;
	MemoryContextCallback *cb;

	ensure_curl();
	/* a third of the safe descriptors is what fd.c grants external use; keep a margin */
	max_connections = Max(1, Min(max_connections, max_safe_fds / 3 - 16));
	b = calloc(1, sizeof(TossHttpBatch));
	if (b == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory creating a toss request batch")));
	dlist_init(&b->transfers);
	b->cxt = CurrentMemoryContext;
	b->max_connections = max_connections;
	b->spare_cap = max_connections;
	b->spare = malloc(sizeof(CURL *) * b->spare_cap);
	b->multi = curl_multi_init();
	cb = MemoryContextAllocZero(CurrentMemoryContext, sizeof(MemoryContextCallback));
	cb->func = batch_destroy;
	cb->arg = b;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
	if (b->multi == NULL || b->spare == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a curl multi handle")));
	curl_multi_setopt(b->multi, CURLMOPT_MAXCONNECTS, (long) max_connections);
	curl_multi_setopt(b->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) max_connections);
	curl_multi_setopt(b->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) max_connections);
	curl_multi_setopt(b->multi, CURLMOPT_SOCKETFUNCTION, watch_socket);
	curl_multi_setopt(b->multi, CURLMOPT_SOCKETDATA, b);
	curl_multi_setopt(b->multi, CURLMOPT_TIMERFUNCTION, set_timer);
	curl_multi_setopt(b->multi, CURLMOPT_TIMERDATA, b);
	return b;
}

int
toss_http_batch_max_connections(TossHttpBatch *b)
{
	return b->max_connections;
}

void
toss_http_batch_add(TossHttpBatch *b, const TossHttpRequest *req, void *tag)
{
	Transfer   *t;

	t = calloc(1, sizeof(Transfer));
	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory creating a toss request")));
	t->batch = b;
	t->kind = req->kind;
	t->tag = tag;
	INSTR_TIME_SET_CURRENT(t->start);
	toss_stats_call_started(t->kind);
	PG_TRY();
	{
		bool		oom = false;

		t->h = easy_handle(b);
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
		t->send_len = req->body ? strlen(req->body) : 0;
		t->send = malloc(t->send_len + 1);
		if (t->send == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory building a toss request")));
		if (t->send_len > 0)
			memcpy(t->send, req->body, t->send_len);
		set_options(t->h, req, t->headers, &t->body, t->errbuf, b, t);
		curl_easy_setopt(t->h, CURLOPT_PRIVATE, t);
		if (curl_multi_add_handle(b->multi, t->h) != CURLM_OK)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not add a toss request to the batch")));
	}
	PG_CATCH();
	{
		t->counted = false;
		transfer_free(t);
		PG_RE_THROW();
	}
	PG_END_TRY();
	dlist_push_tail(&b->transfers, &t->node);
	b->running++;
}

int
toss_http_batch_running(TossHttpBatch *b)
{
	return b->running;
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

bool
toss_http_batch_take(TossHttpBatch *b, void **tag, TossHttpResponse *resp)
{
	int			left;
	CURLMsg    *m;

	while ((m = curl_multi_info_read(b->multi, &left)) != NULL)
	{
		Transfer   *t;
		CURLcode	rc;

		if (m->msg != CURLMSG_DONE)
			continue;
		rc = m->data.result;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		curl_multi_remove_handle(b->multi, t->h);
		dlist_delete(&t->node);
		b->running--;
		PG_TRY();
		{
			transfer_result(t, rc, resp);
		}
		PG_FINALLY();
		{
			*tag = t->tag;
			transfer_free(t);
		}
		PG_END_TRY();
		return true;
	}
	return false;
}

void
toss_http_batch_cancel(TossHttpBatch *b, void *tag)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &b->transfers)
	{
		Transfer   *t = dlist_container(Transfer, node, it.cur);

		if (t->tag != tag)
			continue;
		dlist_delete(&t->node);
		curl_multi_remove_handle(b->multi, t->h);
		b->running--;
		transfer_free(t);
		return;
	}
}

bool
toss_http_batch_next(TossHttpBatch *b, int timeout_ms, void **tag, TossHttpResponse *resp)
{
	double		start = monotonic_ms();
	bool		ran = false;

	for (;;)
	{
		int			left;

		if (toss_http_batch_take(b, tag, resp))
			return true;
		CHECK_FOR_INTERRUPTS();
		if (b->running == 0)
			return false;
		left = timeout_ms - (int) (monotonic_ms() - start);
		if (ran && left <= 0)
			return false;
		if (toss_http_batch_wait(b, Max(0, left)))
		{
			CHECK_FOR_INTERRUPTS();
			if (toss_http_batch_take(b, tag, resp))
				return true;
			return false;
		}
		ran = true;
	}
}

/*
 * One request: a batch of one in a memory context of its own, waited for
 * interruptibly (a cancel or statement_timeout raises at once; postmaster
 * death ends the process).
 */
void
toss_http_perform(const TossHttpRequest *req, TossHttpResponse *resp)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "toss_billing request",
											  ALLOCSET_SMALL_SIZES);

	PG_TRY();
	{
		TossHttpBatch *b;
		void	   *tag;

		MemoryContextSwitchTo(cxt);
		b = toss_http_batch_create(1);
		toss_http_batch_add(b, req, NULL);
		toss_http_batch_start(b);
		MemoryContextSwitchTo(caller);
		while (!toss_http_batch_next(b, 1000, &tag, resp))
			;
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(caller);
		MemoryContextDelete(cxt);
	}
	PG_END_TRY();
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

const char *
toss_call_kind_name(TossCallKind kind)
{
	switch (kind)
	{
		case TOSS_CALL_ISSUE:
			return "issue_billing_key";
		case TOSS_CALL_CHARGE:
			return "charge";
		case TOSS_CALL_LOOKUP_ORDER:
			return "lookup_order";
		case TOSS_CALL_LOOKUP_PAYMENT:
			return "lookup_payment";
		case TOSS_CALL_CANCEL:
			return "cancel";
		case TOSS_CALL_DELETE_KEY:
			return "delete_billing_key";
		case TOSS_CALL_TRANSACTIONS:
			return "transactions";
		case TOSS_CALL_COUNT:
			break;
	}
	return "unknown";
}
