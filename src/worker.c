/*
 * worker.c — what every background worker of this library shares: the
 * LOGIN check of the role it connects as, registering a dynamic worker
 * that reports to the registering backend (the outcome recorder), mapping
 * its segment, and connecting to a database with a safe search_path; and
 * the start time of the current process (toss_billing._backend_start), which
 * names it as the caller of the attempts it records.  (The engine's workers
 * are engine.c's.)
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
#include "fmgr.h"
#include "utils/timestamp.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(toss_backend_start);

/* toss_billing._backend_start(): this process's start, as pg_stat_activity.backend_start shows it. */
Datum
toss_backend_start(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(MyStartTimestamp);
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

/* ---- worker side ---- */

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

