/*
 * worker.c — runs one Toss job in a dynamic background worker, so that the
 * job's transactions commit independently of the caller's (the pg_background
 * pattern).  A charge recorded at Toss therefore stays in the ledger even if
 * the caller rolls back, times out or is cancelled.
 *
 * Caller side (toss_run_job): creates a DSM segment holding the job and a
 * shm_mq for the reply, registers the worker, and waits for the reply on its
 * latch.  The wait is interruptible: statement_timeout and pg_cancel_backend
 * end it at once; the worker is left to finish and record the outcome.  If
 * no worker slot is free the caller fails before anything is recorded or
 * sent.  The segment is owned by the caller's resource owner and is detached
 * on error.
 *
 * Worker side (toss_billing_worker_main): attaches, connects to the caller's
 * database as the extension owner, runs the job (jobs.c), turns any ERROR
 * into a reply, and exits.  SIGTERM (fast shutdown) ends it like a backend.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "errors.h"
#include "worker.h"

#define TOSS_SHM_MAGIC 0x70551b11
#define TOC_KEY_JOB 1
#define TOC_KEY_MQ 2
#define MQ_SIZE (64 * 1024)

/* ---- the reply message ---- */

static void
send_result(shm_mq_handle *mqh, const TossJobResult *r)
{
	StringInfoData buf;

	initStringInfo(&buf);
	pq_sendbyte(&buf, r->ok ? 'O' : 'E');
	if (r->ok)
		pq_sendstring(&buf, r->payload ? r->payload : "");
	else
	{
		pq_sendint32(&buf, r->sqlerrcode);
		pq_sendstring(&buf, r->message ? r->message : "");
		pq_sendstring(&buf, r->detail ? r->detail : "");
		pq_sendstring(&buf, r->hint ? r->hint : "");
	}
	if (shm_mq_send(mqh, buf.len, buf.data, false, true) != SHM_MQ_SUCCESS)
		ereport(LOG,
				(errmsg("toss_billing worker: the caller left before the result arrived"),
				 r->ok ? 0 : errdetail_internal("Undelivered error: %s", r->message)));
}

static char *
nonempty(const char *s)
{
	return s[0] ? pstrdup(s) : NULL;
}

static void
parse_result(const char *data, Size len, TossJobResult *r)
{
	StringInfoData buf;

	buf.data = (char *) data;
	buf.len = len;
	buf.maxlen = len;
	buf.cursor = 0;
	memset(r, 0, sizeof(*r));
	r->ok = pq_getmsgbyte(&buf) == 'O';
	if (r->ok)
		r->payload = pstrdup(pq_getmsgstring(&buf));
	else
	{
		r->sqlerrcode = pq_getmsgint(&buf, 4);
		r->message = pstrdup(pq_getmsgstring(&buf));
		r->detail = nonempty(pq_getmsgstring(&buf));
		r->hint = nonempty(pq_getmsgstring(&buf));
	}
}

/* ---- caller side ---- */

/* A background worker logs in as a role; PostgreSQL 15 requires LOGIN. */
bool
toss_role_can_log_in(Oid role)
{
	HeapTuple	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(role));
	bool		canlogin;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for role %u", role);
	canlogin = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	ReleaseSysCache(tup);
	return canlogin;
}

/*
 * Registers a dynamic worker of this library that runs function with seg's
 * handle as its argument, named type (its backend_type) and notifying this
 * backend.  NULL when no slot is free.
 */
BackgroundWorkerHandle *
toss_register_worker(dsm_segment *seg, const char *function, const char *type)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_ConsistentState;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "toss_billing");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(w.bgw_name, BGW_MAXLEN, "%s for PID %d", type, MyProcPid);
	snprintf(w.bgw_type, BGW_MAXLEN, "%s", type);
	w.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	w.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&w, &handle) ? handle : NULL;
}

static BackgroundWorkerHandle *
start_worker(dsm_segment *seg)
{
	BackgroundWorkerHandle *handle = toss_register_worker(seg, "toss_billing_worker_main",
														  "toss_billing worker");

	if (handle == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start a toss_billing worker"),
				 errdetail("All background worker slots are in use (max_worker_processes = %d). Nothing was recorded or sent to Toss.",
						   max_worker_processes),
				 errhint("Retry later, or raise max_worker_processes.")));
	return handle;
}

void
toss_run_job(const TossJob *job, TossJobResult *result)
{
	shm_toc_estimator e;
	Size		size;
	dsm_segment *seg;
	shm_toc    *toc;
	TossJob    *shared_job;
	shm_mq	   *mq;
	shm_mq_handle *mqh;
	BackgroundWorkerHandle *handle;
	shm_mq_result res;
	Size		nbytes;
	void	   *data;

	shm_toc_initialize_estimator(&e);
	shm_toc_estimate_chunk(&e, sizeof(TossJob));
	shm_toc_estimate_chunk(&e, MQ_SIZE);
	shm_toc_estimate_keys(&e, 2);
	size = shm_toc_estimate(&e);

	seg = dsm_create(size, 0);
	toc = shm_toc_create(TOSS_SHM_MAGIC, dsm_segment_address(seg), size);
	shared_job = shm_toc_allocate(toc, sizeof(TossJob));
	memcpy(shared_job, job, sizeof(TossJob));
	shm_toc_insert(toc, TOC_KEY_JOB, shared_job);
	mq = shm_mq_create(shm_toc_allocate(toc, MQ_SIZE), MQ_SIZE);
	shm_toc_insert(toc, TOC_KEY_MQ, mq);
	shm_mq_set_receiver(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);

	handle = start_worker(seg);
	shm_mq_set_handle(mqh, handle);

	/* interruptible: shm_mq_receive waits on our latch and checks interrupts */
	res = shm_mq_receive(mqh, &nbytes, &data, false);
	if (res != SHM_MQ_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_TOSS_OUTCOME_UNKNOWN),
				 errmsg("the toss_billing worker exited without a result"),
				 errdetail("The worker stopped before reporting; any attempt it recorded keeps its state in the ledger."),
				 errhint("Check toss_billing.payments for rows in state in_flight or unknown, and the server log.")));
	parse_result(data, nbytes, result);
	dsm_detach(seg);
}

/* ---- worker side ---- */

static void
capture_error(TossJobResult *result, MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	memset(result, 0, sizeof(*result));
	result->ok = false;
	result->sqlerrcode = edata->sqlerrcode;
	result->message = edata->message;
	result->detail = edata->detail;
	result->hint = edata->hint;
}

/*
 * Worker side, shared by every worker of this library: take SIGTERM as a
 * backend does, map the segment named by main_arg and return its table of
 * contents (what names the worker in errors).
 */
shm_toc *
toss_worker_attach(Datum main_arg, uint64 magic, const char *what, dsm_segment **seg)
{
	shm_toc    *toc;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	CurrentResourceOwner = ResourceOwnerCreate(NULL, what);
	*seg = dsm_attach(DatumGetUInt32(main_arg));
	if (*seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s could not map its segment", what)));
	toc = shm_toc_attach(magic, dsm_segment_address(*seg));
	if (toc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s found a bad segment", what)));
	return toc;
}

/* Connects as role, with search_path pg_catalog, pg_temp, and names the session what. */
void
toss_worker_connect(Oid database_id, Oid role_id, const char *what)
{
	BackgroundWorkerInitializeConnectionByOid(database_id, role_id, 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("application_name", what, PGC_USERSET, PGC_S_SESSION);
	pgstat_report_appname(what);
}

void
toss_billing_worker_main(Datum main_arg)
{
	dsm_segment *seg;
	shm_toc    *toc;
	TossJob    *job;
	shm_mq_handle *mqh;
	shm_mq	   *mq;
	TossJobResult result;
	MemoryContext job_cxt;

	toc = toss_worker_attach(main_arg, TOSS_SHM_MAGIC, "toss_billing worker", &seg);
	job = shm_toc_lookup(toc, TOC_KEY_JOB, false);
	mq = shm_toc_lookup(toc, TOC_KEY_MQ, false);
	shm_mq_set_sender(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);

	toss_worker_connect(job->database_id, job->owner_id, "toss_billing worker");
	SetConfigOption("lock_timeout", "10s", PGC_USERSET, PGC_S_SESSION);

	job_cxt = AllocSetContextCreate(TopMemoryContext, "toss_billing job",
									ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(job_cxt);

	PG_TRY();
	{
		toss_job_execute(job, &result);
	}
	PG_CATCH();
	{
		capture_error(&result, job_cxt);
		AbortOutOfAnyTransaction();
	}
	PG_END_TRY();

	send_result(mqh, &result);
	dsm_detach(seg);
	proc_exit(0);
}
