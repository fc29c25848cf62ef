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
text_array(const TossOutcomeRow *rows, int n, size_t field)
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

void
toss_record_outcomes(const TossOutcomeRow *rows, int n)
{
	Oid			types[7] = {INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[7];
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *statuses = palloc(sizeof(Datum) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		ids[i] = Int64GetDatum(rows[i].payment_id);
		statuses[i] = Int32GetDatum(rows[i].http_status);
	}
	values[0] = PointerGetDatum(construct_md_array(ids, NULL, 1, dims, lbs, INT8OID, 8, true, TYPALIGN_DOUBLE));
	values[1] = text_array(rows, n, offsetof(TossOutcomeRow, state));
	values[2] = PointerGetDatum(construct_md_array(statuses, NULL, 1, dims, lbs, INT4OID, 4, true, TYPALIGN_INT));
	values[3] = text_array(rows, n, offsetof(TossOutcomeRow, failure_class));
	values[4] = text_array(rows, n, offsetof(TossOutcomeRow, failure_code));
	values[5] = text_array(rows, n, offsetof(TossOutcomeRow, failure_message));
	values[6] = text_array(rows, n, offsetof(TossOutcomeRow, payment_json));

	/*
	 * The outcome commit need not wait for its WAL flush: if a crash loses
	 * it, the attempt is in_flight again and recovery settles it by looking
	 * the order up, so no charge can be lost.  The claim commits stay
	 * synchronous: they are what makes every call findable.
	 */
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	if (toss_spi_execute("SELECT toss_billing._record_outcomes($1, $2, $3, $4, $5, $6, $7::pg_catalog.jsonb[])",
						 7, types, values, NULL, false) != SPI_OK_SELECT)
		elog(ERROR, "toss_billing._record_outcomes failed");
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
encode_row(StringInfo buf, const TossOutcomeRow *row)
{
	resetStringInfo(buf);
	pq_sendint64(buf, row->payment_id);
	pq_sendint32(buf, row->http_status);
	pq_sendstring(buf, row->state);
	send_nullable(buf, row->failure_class);
	send_nullable(buf, row->failure_code);
	send_nullable(buf, row->failure_message);
	send_nullable(buf, row->payment_json);
}

static void
decode_row(const char *data, Size len, TossOutcomeRow *row)
{
	StringInfoData buf;

	buf.data = (char *) data;
	buf.len = len;
	buf.maxlen = len;
	buf.cursor = 0;
	row->payment_id = pq_getmsgint64(&buf);
	row->http_status = pq_getmsgint(&buf, 4);
	row->state = pstrdup(pq_getmsgstring(&buf));
	row->failure_class = get_nullable(&buf);
	row->failure_code = get_nullable(&buf);
	row->failure_message = get_nullable(&buf);
	row->payment_json = get_nullable(&buf);
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
toss_recorder_send(TossRecorder *rec, const TossOutcomeRow *rows, int n)
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
commit_batch(RecorderShared *shared, const TossOutcomeRow *rows, int n)
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
 * Commits a batch, taking it again after a deadlock or serialization
 * failure (another session's locks, say): recording twice changes nothing.
 */
static void
commit_batch_retrying(RecorderShared *shared, const TossOutcomeRow *rows, int n)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int attempt = 0;

	for (;;)
	{
		ErrorData  *volatile edata = NULL;

		attempt++;
		PG_TRY();
		{
			commit_batch(shared, rows, n);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			if (attempt >= RECORDER_TRIES ||
				(edata->sqlerrcode != ERRCODE_T_R_DEADLOCK_DETECTED &&
				 edata->sqlerrcode != ERRCODE_T_R_SERIALIZATION_FAILURE))
				PG_RE_THROW();
			FlushErrorState();
			AbortCurrentTransaction();
		}
		PG_END_TRY();
		if (edata == NULL)
			return;
		ereport(LOG,
				(errmsg("toss_billing outcome recorder: %s; recording the batch of %d again", edata->message, n)));
		FreeErrorData(edata);
		MemoryContextSwitchTo(cxt);
		pg_usleep(10000L * attempt);
	}
}

/*
 * Takes what has arrived, up to RECORDER_BATCH_MAX rows, waiting only for
 * the first; returns false once the runner has detached and all is taken.
 */
static bool
receive_batch(shm_mq_handle *mqh, TossOutcomeRow *rows, int *n)
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
	TossOutcomeRow *rows;
	bool		more = true;

	toc = toss_worker_attach(main_arg, RECORDER_MAGIC, "toss_billing outcome recorder", &seg);
	shared = shm_toc_lookup(toc, TOC_KEY_SHARED, false);
	mq = shm_toc_lookup(toc, TOC_KEY_MQ, false);
	shm_mq_set_receiver(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);

	toss_worker_connect(shared->database_id, shared->role_id, "toss_billing outcome recorder");

	batch_cxt = AllocSetContextCreate(TopMemoryContext, "toss_billing outcome batch",
									  ALLOCSET_DEFAULT_SIZES);
	rows = MemoryContextAlloc(TopMemoryContext, sizeof(TossOutcomeRow) * RECORDER_BATCH_MAX);
	while (more)
	{
		int			n;

		CHECK_FOR_INTERRUPTS();
		MemoryContextSwitchTo(batch_cxt);
		more = receive_batch(mqh, rows, &n);
		if (n > 0)
			commit_batch_retrying(shared, rows, n);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(batch_cxt);
	}
	dsm_detach(seg);
	proc_exit(0);
}
