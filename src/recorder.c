/*
 * recorder.c — records the runner's outcomes: toss_billing._record_outcomes
 * through SPI, called either in the runner's own backend or in the outcome
 * recorder, a background worker that takes them over a shm_mq so that the
 * runner's backend can go on claiming and calling while they are written.
 *
 * Transactions: the recorder commits each batch it has received in a
 * transaction of its own, without waiting for the WAL flush (as the runner
 * does for its outcome transactions: an outcome lost in a crash leaves its
 * attempt in_flight for recovery), then adds the batch to a shared counter
 * and sets the runner's latch.  It records everything it was sent, even
 * after the runner has gone, and exits when the runner has detached.
 *
 * Memory: the runner's side lives in the memory context current at start;
 * a reset callback detaches the segment, so an ERROR in the runner never
 * leaves it mapped.  The recorder parses each batch into a context that is
 * reset after the batch commits.
 *
 * Secrets: messages carry outcomes only (ids, states, Toss's Payment JSON),
 * never a billing key or the secret key.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

#include "errors.h"
#include "recorder.h"
#include "settings.h"
#include "storage.h"
#include "worker.h"

#define RECORDER_MAGIC 0x70551b12
#define TOC_KEY_SHARED 1
#define TOC_KEY_MQ 2
#define RECORDER_MQ_SIZE (1024 * 1024)
#define RECORDER_BATCH_MAX 256
#define RECORDER_TRIES 5		/* a batch, after deadlocks */

typedef struct RecorderShared
{
	pg_atomic_uint64 recorded;	/* outcomes committed */
	PGPROC	   *runner;			/* whose latch to set after each commit */
	Oid			database_id;
	Oid			role_id;
} RecorderShared;

struct TossRecorder
{
	dsm_segment *seg;
	RecorderShared *shared;
	shm_mq_handle *mqh;
	BackgroundWorkerHandle *handle;
	uint64		sent;
	MemoryContextCallback cb;
};

/* ---- recording (either side) ---- */

static Datum
text_array(const TossOutcome *rows, int n, size_t field)
{
	Datum	   *elems = palloc0(sizeof(Datum) * n);
	bool	   *nulls = palloc0(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		const char *v = *(const char *const *) ((const char *) &rows[i] + field);

		nulls[i] = v == NULL;
		if (!nulls[i])
			elems[i] = CStringGetTextDatum(v);
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  TEXTOID, -1, false, TYPALIGN_INT));
}

static Datum
raw_array(const TossOutcome *rows, int n)
{
	Datum	   *elems = palloc0(sizeof(Datum) * n);
	bool	   *nulls = palloc0(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		nulls[i] = rows[i].raw == NULL;
		if (!nulls[i])
		{
			bytea	   *b = palloc(VARHDRSZ + rows[i].raw_len);

			SET_VARSIZE(b, VARHDRSZ + rows[i].raw_len);
			memcpy(VARDATA(b), rows[i].raw, rows[i].raw_len);
			elems[i] = PointerGetDatum(b);
		}
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  BYTEAOID, -1, false, TYPALIGN_INT));
}

/* One call of toss_billing._record_outcomes for rows. */
static void
record_batch(const TossOutcome *rows, int n)
{
	Oid			types[10] = {INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, BYTEAARRAYOID, TEXTARRAYOID, TEXTARRAYOID, BOOLARRAYOID};
	Datum		values[10];
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *statuses = palloc(sizeof(Datum) * n);
	Datum	   *refused = palloc(sizeof(Datum) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		ids[i] = Int64GetDatum(rows[i].attempt_id);
		statuses[i] = Int32GetDatum((int32) rows[i].http_status);
		refused[i] = BoolGetDatum(rows[i].reuse_refused);
	}
	values[0] = PointerGetDatum(construct_md_array(ids, NULL, 1, dims, lbs, INT8OID, 8, true, TYPALIGN_DOUBLE));
	values[1] = text_array(rows, n, offsetof(TossOutcome, state));
	values[2] = PointerGetDatum(construct_md_array(statuses, NULL, 1, dims, lbs, INT4OID, 4, true, TYPALIGN_INT));
	values[3] = text_array(rows, n, offsetof(TossOutcome, failure_class));
	values[4] = text_array(rows, n, offsetof(TossOutcome, failure_code));
	values[5] = text_array(rows, n, offsetof(TossOutcome, failure_message));
	values[6] = raw_array(rows, n);
	values[7] = text_array(rows, n, offsetof(TossOutcome, payment_json));
	values[8] = text_array(rows, n, offsetof(TossOutcome, hold));
	values[9] = PointerGetDatum(construct_md_array(refused, NULL, 1, dims, lbs, BOOLOID, 1, true, TYPALIGN_CHAR));

	if (toss_spi_execute("SELECT toss_billing._record_outcomes($1, $2, $3, $4, $5, $6, $7, "
						 "$8::pg_catalog.jsonb[], $9, $10)",
						 10, types, values, NULL, false) != SPI_OK_SELECT)
		elog(ERROR, "toss_billing._record_outcomes failed");
	toss_store_note_rows(n);
}

static bool
is_retryable(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE;
}

/* What in_subtransaction runs: rows, or one cancel's outcome. */
typedef struct Recording
{
	void		(*what) (const struct Recording *);
	const TossOutcome *rows;
	int			n;
	int64		cancel_id;
	const char *error;			/* why the row is parked */
} Recording;

/*
 * Runs r->what(r) in a subtransaction; returns NULL if it committed, else
 * the error (copied into the caller's context), after rolling the
 * subtransaction back.
 */
static ErrorData *
in_subtransaction(const Recording *r)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		r->what(r);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}

static void
record_rows(const Recording *r)
{
	record_batch(r->rows, r->n);
}

static void
park_one(const Recording *r)
{
	toss_store_park(r->rows[0].attempt_id, r->error);
}

/*
 * Records rows: the batch at once (taken again after a deadlock or
 * serialization failure with another session, up to RECORDER_TRIES times:
 * recording twice changes nothing); if it fails otherwise, each row alone;
 * a row that still fails is parked with its error (its attempt unknown, to
 * be looked up again), so that one bad answer never stops the others.
 */
void
toss_record_outcomes(const TossOutcome *rows, int n)
{
	toss_record_outcomes_parking(rows, n, NULL);
}

/*
 * As toss_record_outcomes; parked, if not NULL, gets for each row NULL if
 * it was recorded, else why it was parked (palloc'd).
 */
void
toss_record_outcomes_parking(const TossOutcome *rows, int n, char **parked)
{
	ErrorData  *e = NULL;

	if (parked)
		memset(parked, 0, sizeof(char *) * n);

	/*
	 * The outcome commit need not wait for its WAL flush: if a crash loses
	 * it, the attempt is in_flight again and recovery settles it by looking
	 * the order up, so no charge can be lost.  The claim commits stay
	 * synchronous: they are what makes every call findable.
	 */
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	for (int attempt = 1; attempt <= RECORDER_TRIES; attempt++)
	{
		if (e)
			FreeErrorData(e);
		e = in_subtransaction(&(Recording) {.what = record_rows, .rows = rows, .n = n});
		if (e == NULL)
			return;
		if (!is_retryable(e->sqlerrcode))
			break;
		ereport(LOG,
				(errmsg("toss_billing: %s; recording the batch of %d again", e->message, n)));
		pg_usleep(10000L * attempt);
	}
	if (n > 1)
		ereport(LOG,
				(errmsg("toss_billing: a batch of %d outcomes could not be recorded (%s); recording them one by one",
						n, e->message)));
	for (int i = 0; i < n; i++)
	{
		ErrorData  *row_error = n > 1 ? in_subtransaction(&(Recording) {.what = record_rows, .rows = &rows[i], .n = 1}) : e;
		char	   *park_error;

		if (row_error == NULL)
			continue;
		park_error = psprintf("%s (SQLSTATE %s)", row_error->message, unpack_sql_state(row_error->sqlerrcode));
		if (parked)
			parked[i] = park_error;
		ereport(WARNING,
				(errmsg("toss_billing: the outcome of attempt " INT64_FORMAT " could not be recorded; it is parked",
						rows[i].attempt_id),
				 errdetail("%s", park_error)));
		if (in_subtransaction(&(Recording) {.what = park_one, .rows = &rows[i], .n = 1, .error = park_error}) != NULL)
			ereport(WARNING,
					(errmsg("toss_billing: attempt " INT64_FORMAT " could not be parked either; it stays in flight for recovery",
							rows[i].attempt_id)));
	}
}

static void
record_cancel(const Recording *r)
{
	toss_store_cancel_outcome(r->cancel_id, &r->rows[0]);
}

/*
 * Records the outcome of a cancel the runner replayed, in a subtransaction;
 * if that fails, the cancel stays unknown with the error (the runner
 * replays it again after its back-off, with the same Idempotency-Key), so
 * that one cancel that cannot be written never stops the run.
 */
void
toss_record_cancel_outcome(int64 cancel_id, const TossOutcome *o)
{
	ErrorData  *e = in_subtransaction(&(Recording) {.what = record_cancel, .rows = o, .n = 1, .cancel_id = cancel_id});
	TossOutcome unknown = {0};
	char	   *error;

	if (e == NULL)
		return;
	error = psprintf("%s (SQLSTATE %s)", e->message, unpack_sql_state(e->sqlerrcode));
	ereport(WARNING,
			(errmsg("toss_billing: the outcome of cancel " INT64_FORMAT " could not be recorded; it stays unknown",
					cancel_id),
			 errdetail("%s", error)));
	if (strcmp(o->state, "unknown") == 0)
		return;					/* it is unknown already: claimed as such */
	unknown.state = "unknown";
	unknown.failure_class = toss_class_name(TOSS_CLASS_OUTCOME_UNKNOWN);
	unknown.failure_message = psprintf("the outcome could not be recorded: %s", error);
	if (in_subtransaction(&(Recording) {.what = record_cancel, .rows = &unknown, .n = 1, .cancel_id = cancel_id}) != NULL)
		ereport(WARNING,
				(errmsg("toss_billing: the error of cancel " INT64_FORMAT " could not be recorded either; it is replayed after its back-off",
						cancel_id)));
}

/* ---- messages: one outcome each ---- */

static void
send_nullable(StringInfo buf, const char *s)
{
	pq_sendbyte(buf, s != NULL);
	if (s != NULL)
		pq_sendstring(buf, s);
}

static const char *
get_nullable(StringInfo buf)
{
	return pq_getmsgbyte(buf) ? pstrdup(pq_getmsgstring(buf)) : NULL;
}

static void
encode_row(StringInfo buf, const TossOutcome *row)
{
	resetStringInfo(buf);
	pq_sendint64(buf, row->attempt_id);
	pq_sendint32(buf, (int32) row->http_status);
	pq_sendstring(buf, row->state);
	send_nullable(buf, row->failure_class);
	send_nullable(buf, row->failure_code);
	send_nullable(buf, row->failure_message);
	/* a verified Payment is usually the answer itself: send it once */
	if (row->payment_json != NULL && row->payment_json == row->raw)
		pq_sendbyte(buf, 2);
	else
		send_nullable(buf, row->payment_json);
	send_nullable(buf, row->hold);
	pq_sendbyte(buf, row->reuse_refused);
	pq_sendbyte(buf, row->raw != NULL);
	if (row->raw != NULL)
	{
		pq_sendint32(buf, (int32) row->raw_len);
		pq_sendbytes(buf, row->raw, row->raw_len);
	}
}

static void
decode_row(const char *data, Size len, TossOutcome *row)
{
	StringInfoData buf;
	int			payment;

	buf.data = (char *) data;
	buf.len = len;
	buf.maxlen = len;
	buf.cursor = 0;
	memset(row, 0, sizeof(*row));
	row->attempt_id = pq_getmsgint64(&buf);
	row->http_status = pq_getmsgint(&buf, 4);
	row->state = pstrdup(pq_getmsgstring(&buf));
	row->failure_class = get_nullable(&buf);
	row->failure_code = get_nullable(&buf);
	row->failure_message = get_nullable(&buf);
	payment = pq_getmsgbyte(&buf);
	if (payment == 1)
		row->payment_json = pstrdup(pq_getmsgstring(&buf));
	row->hold = get_nullable(&buf);
	row->reuse_refused = pq_getmsgbyte(&buf) != 0;
	if (pq_getmsgbyte(&buf))
	{
		int			n = pq_getmsgint(&buf, 4);
		char	   *raw = palloc(n + 1);

		memcpy(raw, pq_getmsgbytes(&buf, n), n);
		raw[n] = '\0';
		row->raw = raw;
		row->raw_len = n;
	}
	if (payment == 2)
		row->payment_json = row->raw;
	pq_getmsgend(&buf);
}

/* ---- the runner's side ---- */

static void
recorder_detach(void *arg)
{
	TossRecorder *rec = (TossRecorder *) arg;

	if (rec->seg != NULL)
		dsm_detach(rec->seg);
	rec->seg = NULL;
}

TossRecorder *
toss_recorder_start(void)
{
	shm_toc_estimator e;
	Size		size;
	shm_toc    *toc;
	shm_mq	   *mq;
	TossRecorder *rec;

	if (!toss_outcome_recorder || !toss_role_can_log_in(GetUserId()))
		return NULL;
	shm_toc_initialize_estimator(&e);
	shm_toc_estimate_chunk(&e, sizeof(RecorderShared));
	shm_toc_estimate_chunk(&e, RECORDER_MQ_SIZE);
	shm_toc_estimate_keys(&e, 2);
	size = shm_toc_estimate(&e);

	rec = palloc0(sizeof(TossRecorder));
	rec->seg = dsm_create(size, 0);
	/* the runner commits many transactions: keep the mapping across them */
	dsm_pin_mapping(rec->seg);
	rec->cb.func = recorder_detach;
	rec->cb.arg = rec;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &rec->cb);

	toc = shm_toc_create(RECORDER_MAGIC, dsm_segment_address(rec->seg), size);
	rec->shared = shm_toc_allocate(toc, sizeof(RecorderShared));
	pg_atomic_init_u64(&rec->shared->recorded, 0);
	rec->shared->runner = MyProc;
	rec->shared->database_id = MyDatabaseId;
	rec->shared->role_id = GetUserId();
	shm_toc_insert(toc, TOC_KEY_SHARED, rec->shared);
	mq = shm_mq_create(shm_toc_allocate(toc, RECORDER_MQ_SIZE), RECORDER_MQ_SIZE);
	shm_toc_insert(toc, TOC_KEY_MQ, mq);
	shm_mq_set_sender(mq, MyProc);
	rec->mqh = shm_mq_attach(mq, rec->seg, NULL);

	rec->handle = toss_register_worker(rec->seg, "toss_billing_recorder_main",
									   "toss_billing outcome recorder");
	if (rec->handle == NULL)
	{
		ereport(LOG,
				(errmsg("toss_billing: no free worker slot for an outcome recorder; the runner records outcomes itself"),
				 errhint("Raise max_worker_processes (now %d) for faster runs.", max_worker_processes)));
		recorder_detach(rec);
		return NULL;
	}
	shm_mq_set_handle(rec->mqh, rec->handle);
	return rec;
}

static void
recorder_stopped(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("the toss_billing outcome recorder stopped"),
			 errdetail("Outcomes it had not committed leave their attempts in_flight; the next run looks them up at Toss."),
			 errhint("See the server log for the recorder's error.")));
}

/* Hands rows to the recorder; waits (interruptibly) only if its queue is full. */
void
toss_recorder_send(TossRecorder *rec, const TossOutcome *rows, int n)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
	{
		encode_row(&buf, &rows[i]);
		/* wake the recorder once per batch, after its last row */
		if (shm_mq_send(rec->mqh, buf.len, buf.data, false, i == n - 1) != SHM_MQ_SUCCESS)
			recorder_stopped();
		rec->sent++;
	}
	pfree(buf.data);
}

uint64
toss_recorder_recorded(TossRecorder *rec)
{
	return pg_atomic_read_u64(&rec->shared->recorded);
}

/* Outcomes sent and not yet committed. */
uint64
toss_recorder_pending(TossRecorder *rec)
{
	return rec->sent - toss_recorder_recorded(rec);
}

/* Waits up to timeout_ms for the recorder to commit more; errors if it stopped. */
void
toss_recorder_wait(TossRecorder *rec, int timeout_ms)
{
	pid_t		pid;

	if (GetBackgroundWorkerPid(rec->handle, &pid) == BGWH_STOPPED &&
		toss_recorder_pending(rec) > 0)
		recorder_stopped();
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/* Waits until everything sent is committed, then lets the recorder go. */
void
toss_recorder_finish(TossRecorder *rec)
{
	while (toss_recorder_pending(rec) > 0)
		toss_recorder_wait(rec, 100);
	recorder_detach(rec);
}

/* ---- the recorder (background worker) ---- */

static void
commit_batch(RecorderShared *shared, const TossOutcome *rows, int n)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	toss_record_outcomes(rows, n);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pg_atomic_add_fetch_u64(&shared->recorded, n);
	SetLatch(&shared->runner->procLatch);
}

/*
 * Takes what has arrived, up to RECORDER_BATCH_MAX rows, waiting only for
 * the first; returns false once the runner has detached and all is taken.
 */
static bool
receive_batch(shm_mq_handle *mqh, TossOutcome *rows, int *n)
{
	*n = 0;
	while (*n < RECORDER_BATCH_MAX)
	{
		Size		len;
		void	   *data;
		shm_mq_result res = shm_mq_receive(mqh, &len, &data, *n > 0);

		if (res == SHM_MQ_WOULD_BLOCK)
			return true;
		if (res == SHM_MQ_DETACHED)
			return false;
		decode_row(data, len, &rows[(*n)++]);
	}
	return true;
}

void
toss_billing_recorder_main(Datum main_arg)
{
	dsm_segment *seg;
	shm_toc    *toc;
	RecorderShared *shared;
	shm_mq	   *mq;
	shm_mq_handle *mqh;
	MemoryContext batch_cxt;
	TossOutcome *rows;
	bool		more = true;

	toc = toss_worker_attach(main_arg, RECORDER_MAGIC, "toss_billing outcome recorder", &seg);
	shared = shm_toc_lookup(toc, TOC_KEY_SHARED, false);
	mq = shm_toc_lookup(toc, TOC_KEY_MQ, false);
	shm_mq_set_receiver(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);

	toss_worker_connect(shared->database_id, shared->role_id, "toss_billing outcome recorder");

	batch_cxt = AllocSetContextCreate(TopMemoryContext, "toss_billing outcome batch",
									  ALLOCSET_DEFAULT_SIZES);
	rows = MemoryContextAlloc(TopMemoryContext, sizeof(TossOutcome) * RECORDER_BATCH_MAX);
	while (more)
	{
		int			n;

		CHECK_FOR_INTERRUPTS();
		MemoryContextSwitchTo(batch_cxt);
		more = receive_batch(mqh, rows, &n);
		if (n > 0)
			commit_batch(shared, rows, n);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(batch_cxt);
	}
	dsm_detach(seg);
	proc_exit(0);
}
