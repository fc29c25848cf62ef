/*
 * engine.c — the call engine: a small pool of long-lived background workers
 * per database that make the Toss calls of toss_charge,
 * toss_issue_billing_key, toss_cancel and toss_delete_billing_key, many at
 * once, for every session of their database.
 *
 * The queue: a bounded array of job slots in shared memory
 * (toss_billing.queue_depth), one per call queued or running.  A caller
 * takes a free slot (waiting interruptibly on a condition variable while
 * none is free), copies its job in, queues it, makes sure its database has
 * a worker, sets the workers' latches and waits on its own latch for the
 * result.  statement_timeout and pg_cancel_backend end the wait at once: a
 * call still queued is taken back (nothing was recorded or sent), a call a
 * worker has taken is left to it (its outcome is recorded all the same, in
 * the worker's transactions).  toss_billing.queue_timeout bounds the time
 * before a worker takes the call; past it the caller fails with 53000,
 * before anything is recorded or sent.
 *
 * Workers: started on demand by the first call of a database (one per
 * database and extension owner, connected as the owner), and by a worker
 * that sees calls waiting, up to toss_billing.engine_workers.  On demand,
 * not at server start: a database is known to use the extension only when
 * it calls, nothing has to be configured per database, and a database
 * without calls costs no worker slot.  A worker stops after a minute
 * without calls, or half a second after its database has no client
 * session left (so that DROP DATABASE, which waits five seconds for other
 * sessions, never finds one).  With no worker slot free, calls wait (and
 * the server log says why, once a minute).
 *
 * A worker owns one curl multi handle (http.c) driven through a
 * WaitEventSet holding its latch, postmaster death and curl's sockets;
 * connections are kept alive between calls.  Its loop: take queued calls;
 * record their intents, each in a subtransaction of one intent transaction
 * that is committed before any of their requests leaves; send their
 * requests (at most toss_billing.merchant_concurrency per merchant, over
 * all workers and runners); judge every answer as it arrives (jobs.c), a
 * lookup of an ambiguous answer queued on the multi handle like any call;
 * record the outcomes of all finished calls in one outcome transaction
 * (charges with toss_record_outcomes, the rest each in a subtransaction);
 * hand each caller its result.  The transaction rules are those of one
 * call made alone: intent committed before the request, outcome after it,
 * in the worker's own transactions, whatever the caller does meanwhile.
 *
 * Locks: an intent waits at most 200 ms for a row lock; then its
 * subtransaction is rolled back and it is tried again in a later intent
 * transaction (so one locked row never holds up the other calls), for up
 * to 10 s, after which the call fails with 55P03 before anything is
 * recorded or sent.  A caller that holds a lock the worker needs (SELECT
 * ... FOR UPDATE on toss_billing.customers, say) therefore gets a clear
 * error instead of waiting forever.
 *
 * A worker that exits (terminated, an error) gives back the calls it had
 * not yet recorded an intent for (another worker takes them) and answers
 * the others TB006: their attempts are in the ledger in_flight, with the
 * worker as their caller, so recovery finds them.  Postmaster death ends
 * workers and waiting callers at once.
 *
 * Visible work: workers have backend_type "toss_billing engine", and report
 * in pg_stat_activity what they are doing (the calls, by order id and
 * customer key: no secret); toss_billing.engine_queue shows the queue.
 *
 * Memory: each call has its own context in the worker, deleted when its
 * result is handed over.  A result longer than a slot holds travels in a
 * pinned DSM segment that the caller unpins.
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "crypto.h"
#include "engine.h"
#include "errors.h"
#include "recorder.h"
#include "settings.h"
#include "stats.h"

PG_FUNCTION_INFO_V1(toss_engine_queue_sql);
PG_FUNCTION_INFO_V1(toss_engine_workers_sql);
PG_FUNCTION_INFO_V1(toss_engine_slots_sql);

#define ENGINE_MAX_WORKERS 64	/* over all databases */
#define MERCHANT_GATES 64
#define RESULT_INLINE 4096
#define TAKE_MAX 64				/* calls taken into one intent transaction */
#define INTENT_LOCK_TIMEOUT "200ms"
#define LOCK_RETRY_FIRST_MS 50
#define LOCK_RETRY_MAX_MS 1000
#define LOCK_GIVE_UP_MS 10000
#define START_STALE_MS 10000	/* a registered worker that never came up */
#define IDLE_EXIT_MS 60000
#define ORPHAN_EXIT_MS 500		/* idle, and no client session in the database */
#define KINDS ((int) TOSS_JOB_CHARGE_INVOICE + 1)	/* one per TossJobKind */
#define BUSY_WAIT_MS 50			/* a call queued this long asks for another worker */

typedef enum SlotState
{
	SLOT_FREE,
	SLOT_QUEUED,				/* waiting for a worker */
	SLOT_TAKEN,					/* a worker runs it */
	SLOT_DONE					/* its result waits for the caller */
} SlotState;

typedef struct JobSlot
{
	SlotState	state;
	bool		abandoned;		/* the caller left: whoever finishes frees it */
	bool		sent;			/* its intent is committed: a request may have left */
	int			worker;			/* the worker that took it, or -1 */
	pid_t		worker_pid;
	uint32		generation;		/* bumped on every reuse */
	TimestampTz enqueued_at;
	PGPROC	   *caller;
	dlist_node	node;			/* in the free list or the queue */
	/* the result */
	bool		ok;
	int			sqlerrcode;
	int			result_len;
	bool		overflow;		/* the result is in a DSM segment */
	dsm_handle	overflow_handle;
	char		result[RESULT_INLINE];
	TossJob		job;
} JobSlot;

typedef enum WorkerState
{
	W_FREE,
	W_STARTING,
	W_RUNNING
} WorkerState;

typedef struct EngineWorker
{
	WorkerState state;
	Oid			dbid;
	Oid			owner;
	pid_t		pid;
	PGPROC	   *proc;
	TimestampTz since;			/* registered (starting) or started (running) */
	/* written by the worker alone, read without the lock */
	int			running[KINDS];
	int			in_flight[KINDS];
} EngineWorker;

typedef struct MerchantGate
{
	char		name[TOSS_MERCHANT_MAXLEN + 1];
	int			in_flight;
} MerchantGate;

typedef struct EngineShared
{
	LWLock	   *lock;
	ConditionVariable slot_freed;
	int			nslots;
	TimestampTz no_slot_logged;
	dlist_head	free_slots;
	dlist_head	queue;
	EngineWorker workers[ENGINE_MAX_WORKERS];
	MerchantGate gates[MERCHANT_GATES];
	JobSlot		slots[FLEXIBLE_ARRAY_MEMBER];
} EngineShared;

static EngineShared *engine = NULL;

/* an engine worker's database, named outside transactions (logs, bgw_name) */
static char *my_dbname = NULL;

/* the caller's slot while it waits (for the exit callback) */
static int	my_slot = -1;
static uint32 my_generation = 0;
static bool caller_hook_set = false;

Size
toss_engine_shmem_size(void)
{
	return add_size(offsetof(EngineShared, slots), mul_size(sizeof(JobSlot), toss_queue_depth));
}

void
toss_engine_shmem_request(void)
{
	RequestNamedLWLockTranche("toss_billing engine", 1);
}

/* In the shmem startup hook, with AddinShmemInitLock held. */
void
toss_engine_shmem_init(void)
{
	bool		found;

	engine = ShmemInitStruct("toss_billing engine", toss_engine_shmem_size(), &found);
	if (!found)
	{
		memset(engine, 0, offsetof(EngineShared, slots));
		engine->lock = &(GetNamedLWLockTranche("toss_billing engine"))->lock;
		ConditionVariableInit(&engine->slot_freed);
		engine->nslots = toss_queue_depth;
		dlist_init(&engine->free_slots);
		dlist_init(&engine->queue);
		for (int i = 0; i < engine->nslots; i++)
		{
			JobSlot    *s = &engine->slots[i];

			memset(s, 0, offsetof(JobSlot, result));
			s->state = SLOT_FREE;
			s->worker = -1;
			dlist_push_tail(&engine->free_slots, &s->node);
		}
	}
}

static int
slot_index(JobSlot *s)
{
	return (int) (s - engine->slots);
}

static int
kind_index(TossJobKind kind)
{
	return (int) kind;
}

/* With the lock held exclusively: the slot goes back to the free list. */
static void
free_slot(JobSlot *s)
{
	if (s->state == SLOT_DONE && s->overflow)
		dsm_unpin_segment(s->overflow_handle);
	s->overflow = false;
	s->state = SLOT_FREE;
	s->abandoned = false;
	s->sent = false;
	s->worker = -1;
	s->caller = NULL;
	s->generation++;
	/* nothing of the call stays in shared memory (an issuance's authKey) */
	memset(&s->job, 0, sizeof(s->job));
	dlist_push_tail(&engine->free_slots, &s->node);
}

/* ---- results through the slot ---- */

/* payload for a success; message, detail and hint, NUL-separated, for an error */
static char *
serialize_result(const TossJobResult *r, int *len)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (r->ok)
		appendStringInfoString(&buf, r->payload ? r->payload : "");
	else
	{
		appendStringInfoString(&buf, r->message ? r->message : "");
		appendStringInfoChar(&buf, '\0');
		appendStringInfoString(&buf, r->detail ? r->detail : "");
		appendStringInfoChar(&buf, '\0');
		appendStringInfoString(&buf, r->hint ? r->hint : "");
	}
	*len = buf.len;
	return buf.data;
}

static void
deserialize_result(bool ok, int sqlerrcode, const char *data, int len, TossJobResult *r)
{
	char	   *copy = palloc(len + 1);
	char	   *end = copy + len;
	char	   *parts[3] = {NULL, NULL, NULL};
	char	   *p = copy;

	memcpy(copy, data, len);
	copy[len] = '\0';
	memset(r, 0, sizeof(*r));
	r->ok = ok;
	if (ok)
	{
		r->payload = copy;
		return;
	}
	for (int i = 0; i < 3 && p <= end; i++)
	{
		parts[i] = p;
		p += strlen(p) + 1;
	}
	r->sqlerrcode = sqlerrcode;
	r->message = parts[0] ? parts[0] : "";
	r->detail = parts[1] && parts[1][0] ? parts[1] : NULL;
	r->hint = parts[2] && parts[2][0] ? parts[2] : NULL;
}

/* ---- the caller's side ---- */

static void
set_worker_latches(Oid dbid, Oid owner)
{
	for (int i = 0; i < ENGINE_MAX_WORKERS; i++)
	{
		EngineWorker *w = &engine->workers[i];

		if (w->state == W_RUNNING && w->dbid == dbid && w->owner == owner && w->proc)
			SetLatch(&w->proc->procLatch);
	}
}

/*
 * With the lock held exclusively: a worker entry to start for (dbid,
 * owner), or -1.  more: start one even if some run, up to
 * toss_billing.engine_workers.
 */
static int
worker_to_start(Oid dbid, Oid owner, bool more)
{
	TimestampTz now = GetCurrentTimestamp();
	int			count = 0;
	int			free_entry = -1;

	for (int i = 0; i < ENGINE_MAX_WORKERS; i++)
	{
		EngineWorker *w = &engine->workers[i];

		if (w->state == W_STARTING && TimestampDifferenceExceeds(w->since, now, START_STALE_MS))
			w->state = W_FREE;
		if (w->state == W_FREE)
		{
			if (free_entry < 0)
				free_entry = i;
			continue;
		}
		if (w->dbid == dbid && w->owner == owner)
		{
			/* one still starting: wait for it before asking for more */
			if (w->state == W_STARTING)
				return -1;
			count++;
		}
	}
	if (free_entry < 0 || count >= toss_engine_workers || (count > 0 && !more))
		return -1;
	engine->workers[free_entry].state = W_STARTING;
	engine->workers[free_entry].dbid = dbid;
	engine->workers[free_entry].owner = owner;
	engine->workers[free_entry].pid = 0;
	engine->workers[free_entry].proc = NULL;
	engine->workers[free_entry].since = now;
	return free_entry;
}

/* Registers the worker of entry idx (outside the lock); false if no slot. */
static bool
start_worker(int idx)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;
	Oid			dbid = engine->workers[idx].dbid;
	char	   *dbname = IsTransactionState() ? get_database_name(dbid) :
		(dbid == MyDatabaseId ? my_dbname : NULL);

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_ConsistentState;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "toss_billing");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "toss_billing_engine_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "toss_billing engine for database %s", dbname ? dbname : "?");
	snprintf(w.bgw_type, BGW_MAXLEN, "toss_billing engine");
	w.bgw_main_arg = Int32GetDatum(idx);
	w.bgw_notify_pid = 0;
	if (RegisterDynamicBackgroundWorker(&w, &handle))
		return true;

	LWLockAcquire(engine->lock, LW_EXCLUSIVE);
	if (engine->workers[idx].state == W_STARTING)
		engine->workers[idx].state = W_FREE;
	{
		TimestampTz now = GetCurrentTimestamp();
		bool		log = TimestampDifferenceExceeds(engine->no_slot_logged, now, 60000);

		if (log)
			engine->no_slot_logged = now;
		LWLockRelease(engine->lock);
		if (log)
			ereport(LOG,
					(errmsg("toss_billing: no free background worker slot for an engine worker of database \"%s\"; calls wait for one",
							dbname ? dbname : "?"),
					 errhint("Raise max_worker_processes (now %d).", max_worker_processes)));
	}
	return false;
}

static void
ensure_worker(Oid dbid, Oid owner, bool more)
{
	int			idx;

	LWLockAcquire(engine->lock, LW_EXCLUSIVE);
	idx = worker_to_start(dbid, owner, more);
	LWLockRelease(engine->lock);
	if (idx >= 0)
		start_worker(idx);
}

/* The caller gives its slot up (error, cancel, exit). */
static void
abandon_slot(void)
{
	JobSlot    *s;

	if (my_slot < 0 || engine == NULL)
		return;
	s = &engine->slots[my_slot];
	LWLockAcquire(engine->lock, LW_EXCLUSIVE);
	if (s->generation == my_generation && s->caller == MyProc)
	{
		if (s->state == SLOT_QUEUED)
		{
			dlist_delete(&s->node);
			free_slot(s);
		}
		else if (s->state == SLOT_TAKEN)
			s->abandoned = true;
		else if (s->state == SLOT_DONE)
			free_slot(s);
	}
	LWLockRelease(engine->lock);
	ConditionVariableSignal(&engine->slot_freed);
	my_slot = -1;
}

static void
caller_exit(int code, Datum arg)
{
	if (engine && LWLockHeldByMe(engine->lock))
		LWLockRelease(engine->lock);
	abandon_slot();
}

static void
queue_full_error(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
			 errmsg("the toss_billing engine did not take the call within toss_billing.queue_timeout"),
			 errdetail("The call waited %d ms for the engine (toss_billing.queue_depth = %d, toss_billing.engine_workers = %d). Nothing was recorded or sent to Toss.",
					   toss_queue_timeout_ms, toss_queue_depth, toss_engine_workers),
			 errhint("Retry the call, or raise toss_billing.queue_timeout.")));
}

static long
ms_until(TimestampTz deadline, long cap)
{
	long		left;

	if (deadline == 0)
		return cap;
	left = (long) ((deadline - GetCurrentTimestamp()) / 1000);
	return Max(0, Min(cap, left));
}

/*
 * Runs a job in the engine and returns its result; raises only before the
 * engine took the job (no free slot within toss_billing.queue_timeout, a
 * cancel or timeout while it was queued: nothing recorded or sent) or on a
 * cancel or timeout while it runs (the worker goes on and records the
 * outcome).
 */
void
toss_engine_call(const TossJob *job, TossJobResult *result)
{
	TimestampTz deadline = 0;
	JobSlot    *s = NULL;
	volatile bool started_asked = false;
	volatile TimestampTz last_start = 0;

	if (engine == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_TOSS_CONFIGURATION),
				 errmsg("toss_billing is not loaded at server start"),
				 errdetail("Its calls run in engine workers, which need toss_billing in shared_preload_libraries. Nothing was recorded or sent to Toss."),
				 errhint("Add toss_billing to shared_preload_libraries and restart the server.")));
	if (!caller_hook_set)
	{
		before_shmem_exit(caller_exit, (Datum) 0);
		caller_hook_set = true;
	}
	if (toss_queue_timeout_ms > 0)
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), toss_queue_timeout_ms);

	/* a slot: wait (interruptibly) while none is free */
	for (;;)
	{
		LWLockAcquire(engine->lock, LW_EXCLUSIVE);
		if (!dlist_is_empty(&engine->free_slots))
		{
			s = dlist_container(JobSlot, node, dlist_pop_head_node(&engine->free_slots));
			memcpy(&s->job, job, sizeof(TossJob));
			s->state = SLOT_QUEUED;
			s->abandoned = false;
			s->sent = false;
			s->worker = -1;
			s->overflow = false;
			s->caller = MyProc;
			s->enqueued_at = GetCurrentTimestamp();
			dlist_push_tail(&engine->queue, &s->node);
			my_slot = slot_index(s);
			my_generation = s->generation;
			LWLockRelease(engine->lock);
			break;
		}
		LWLockRelease(engine->lock);
		if (deadline != 0 && GetCurrentTimestamp() >= deadline)
		{
			ConditionVariableCancelSleep();
			queue_full_error();
		}
		(void) ConditionVariableTimedSleep(&engine->slot_freed, ms_until(deadline, 100), PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();

	PG_TRY();
	{
		for (;;)
		{
			SlotState	state;
			bool		has_worker = false;

			LWLockAcquire(engine->lock, LW_SHARED);
			state = s->state;
			if (state == SLOT_QUEUED)
				for (int i = 0; i < ENGINE_MAX_WORKERS; i++)
					if (engine->workers[i].state != W_FREE && engine->workers[i].dbid == job->database_id &&
						engine->workers[i].owner == job->owner_id)
						has_worker = true;
			LWLockRelease(engine->lock);
			if (state == SLOT_DONE)
				break;
			if (state == SLOT_QUEUED)
			{
				if (deadline != 0 && GetCurrentTimestamp() >= deadline)
				{
					bool		taken_back = false;

					LWLockAcquire(engine->lock, LW_EXCLUSIVE);
					if (s->state == SLOT_QUEUED)
					{
						dlist_delete(&s->node);
						free_slot(s);
						taken_back = true;
						my_slot = -1;
					}
					LWLockRelease(engine->lock);
					if (taken_back)
					{
						ConditionVariableSignal(&engine->slot_freed);
						queue_full_error();
					}
					continue;
				}
				/* no worker (first call, or none could start yet): ask for one, once a second */
				if (!has_worker &&
					(!started_asked || TimestampDifferenceExceeds(last_start, GetCurrentTimestamp(), 1000)))
				{
					started_asked = true;
					last_start = GetCurrentTimestamp();
					ensure_worker(job->database_id, job->owner_id, false);
				}
				LWLockAcquire(engine->lock, LW_SHARED);
				set_worker_latches(job->database_id, job->owner_id);
				LWLockRelease(engine->lock);
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 state == SLOT_QUEUED ? ms_until(deadline, 1000) : 1000, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		abandon_slot();
		PG_RE_THROW();
	}
	PG_END_TRY();

	/* the result is ours: copy it out and give the slot back */
	if (s->overflow)
	{
		dsm_segment *seg = dsm_attach(s->overflow_handle);

		if (seg == NULL)
			toss_job_set_error(result, ERRCODE_TOSS_OUTCOME_UNKNOWN,
							   pstrdup("the result of the call was lost"),
							   pstrdup("The engine worker's result could not be mapped; its outcome is in the ledger."),
							   pstrdup("toss_billing.order_status() tells what happened."));
		else
		{
			deserialize_result(s->ok, s->sqlerrcode, dsm_segment_address(seg), s->result_len, result);
			dsm_detach(seg);
		}
	}
	else
		deserialize_result(s->ok, s->sqlerrcode, s->result, s->result_len, result);
	LWLockAcquire(engine->lock, LW_EXCLUSIVE);
	free_slot(s);
	LWLockRelease(engine->lock);
	ConditionVariableSignal(&engine->slot_freed);
	my_slot = -1;
}

/* ---- the worker ---- */

typedef struct Engine
{
	int			idx;
	EngineWorker *me;
	MemoryContext cxt;			/* the worker's lifetime */
	MemoryContext loop_cxt;		/* reset on every turn of the loop */
	TossHttpBatch *batch;
	dlist_head	jobs;
	int			njobs;
	int			cap;
	TimestampTz idle_since;
	TimestampTz last_report;
	char		last_activity[1024];
} Engine;

static Engine *worker_self = NULL;

static void
wipe_job(void *arg)
{
	toss_job_wipe((EngineJob *) arg);
}

/* At exit: calls not yet recorded go back to the queue; the others hear TB006. */
static void
worker_exit(int code, Datum arg)
{
	int			idx = DatumGetInt32(arg);
	EngineWorker *me = &engine->workers[idx];
	TossJobResult r;
	char	   *volatile data = NULL;
	int			len = 0;
	volatile bool requeued = false;

	if (LWLockHeldByMe(engine->lock))
		LWLockRelease(engine->lock);
	toss_job_set_error(&r, ERRCODE_TOSS_OUTCOME_UNKNOWN,
					   "the toss_billing worker exited without a result",
					   "The engine worker stopped after recording the call's intent; the attempt keeps its state in the ledger and is resolved by looking it up at Toss.",
					   "Check toss_billing.order_status() or toss_billing.payments for rows in state in_flight or unknown, and the server log.");
	PG_TRY();
	{
		data = serialize_result(&r, &len);
	}
	PG_CATCH();
	{
		FlushErrorState();
	}
	PG_END_TRY();
	LWLockAcquire(engine->lock, LW_EXCLUSIVE);
	for (int i = 0; i < engine->nslots; i++)
	{
		JobSlot    *s = &engine->slots[i];

		if (s->state != SLOT_TAKEN || s->worker_pid != MyProcPid)
			continue;
		if (s->abandoned)
			free_slot(s);
		else if (!s->sent)
		{
			s->state = SLOT_QUEUED;
			s->worker = -1;
			dlist_push_head(&engine->queue, &s->node);
			requeued = true;
		}
		else
		{
			s->ok = false;
			s->sqlerrcode = r.sqlerrcode;
			s->overflow = false;
			s->result_len = data ? Min(len, RESULT_INLINE) : 0;
			if (data)
				memcpy(s->result, data, s->result_len);
			s->state = SLOT_DONE;
			if (s->caller)
				SetLatch(&s->caller->procLatch);
		}
	}
	if (me->pid == MyProcPid)
	{
		me->state = W_FREE;
		me->pid = 0;
		me->proc = NULL;
	}
	/* calls given back: another worker of the database takes them, or their callers start one */
	if (requeued)
		for (int i = 0; i < engine->nslots; i++)
			if (engine->slots[i].state == SLOT_QUEUED && engine->slots[i].caller)
				SetLatch(&engine->slots[i].caller->procLatch);
	LWLockRelease(engine->lock);
	ConditionVariableBroadcast(&engine->slot_freed);
}

/* Takes queued calls of our database into local jobs. */
static int
take_jobs(Engine *e)
{
	int			taken = 0;
	JobSlot    *slots[TAKE_MAX];
	bool		more_waiting = false;
	dlist_mutable_iter it;

	if (e->njobs >= e->cap)
		return 0;
	LWLockAcquire(engine->lock, LW_EXCLUSIVE);
	dlist_foreach_modify(it, &engine->queue)
	{
		JobSlot    *s = dlist_container(JobSlot, node, it.cur);

		if (s->job.database_id != e->me->dbid || s->job.owner_id != e->me->owner)
			continue;
		if (taken == TAKE_MAX || e->njobs + taken >= e->cap)
		{
			more_waiting = true;
			break;
		}
		/* a call that waited while this worker was busy: it needs help */
		if (TimestampDifferenceExceeds(s->enqueued_at, GetCurrentTimestamp(), BUSY_WAIT_MS))
			more_waiting = true;
		dlist_delete(&s->node);
		s->state = SLOT_TAKEN;
		s->worker = e->idx;
		s->worker_pid = MyProcPid;
		slots[taken++] = s;
	}
	LWLockRelease(engine->lock);

	for (int i = 0; i < taken; i++)
	{
		MemoryContext cxt = AllocSetContextCreate(e->cxt, "toss_billing call", ALLOCSET_DEFAULT_SIZES);
		EngineJob  *j = MemoryContextAllocZero(cxt, sizeof(EngineJob));

		j->cxt = cxt;
		j->wipe_cb.func = wipe_job;
		j->wipe_cb.arg = j;
		MemoryContextRegisterResetCallback(cxt, &j->wipe_cb);
		j->slot = slot_index(slots[i]);
		j->generation = slots[i]->generation;
		/* the slot is ours while taken: its job does not change */
		memcpy(&j->job, &slots[i]->job, sizeof(TossJob));
		j->step = STEP_INTENT;
		j->taken_at = GetCurrentTimestamp();
		e->me->running[kind_index(j->job.kind)]++;
		dlist_push_tail(&e->jobs, &j->node);
		e->njobs++;
	}
	if (more_waiting)
		ensure_worker(e->me->dbid, e->me->owner, true);
	return taken;
}

static bool
is_lock_wait(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE || sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE;
}

static void
lock_give_up(EngineJob *j, ErrorData *e)
{
	toss_job_set_error(&j->result, ERRCODE_LOCK_NOT_AVAILABLE,
					   psprintf("%s could not lock what it must record", toss_job_describe(j)),
					   psprintf("For %d s another transaction held a lock on a row of toss_billing that the call must write (the last attempt: %s). If the calling transaction holds it itself (SELECT ... FOR UPDATE on toss_billing.customers, say), the call can never proceed. Nothing was recorded or sent to Toss.",
								LOCK_GIVE_UP_MS / 1000, e->message),
					   pstrdup("Do not hold locks on toss_billing rows across a call; to serialise calls per customer use pg_advisory_xact_lock() or a row of your own table."));
	j->step = STEP_DONE;
}

/* Runs fn(j) in a subtransaction; returns NULL, or the error (in j->cxt) after rolling back. */
static ErrorData *
in_subxact(void (*fn) (EngineJob *), EngineJob *j)
{
	ResourceOwner owner = CurrentResourceOwner;
	MemoryContext outer = CurrentMemoryContext;
	ErrorData  *volatile err = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(j->cxt);
	PG_TRY();
	{
		fn(j);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(j->cxt);
		err = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(outer);
	CurrentResourceOwner = owner;
	return err;
}

static void
begin_tx(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
commit_tx(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(worker_self->loop_cxt);
}

static void
report(Engine *e, const char *what)
{
	if (strcmp(what, e->last_activity) == 0)
		return;
	strlcpy(e->last_activity, what, sizeof(e->last_activity));
	pgstat_report_activity(e->njobs > 0 ? STATE_RUNNING : STATE_IDLE, what);
}

/*
 * The intents of the calls due for one: each in a subtransaction of one
 * transaction, committed before any of their requests leaves.
 */
static void
run_intents(Engine *e)
{
	TimestampTz now = GetCurrentTimestamp();
	EngineJob **due;
	int			n = 0;
	dlist_iter	it;
	bool		need_tag = false;
	MemoryContext cxt = CurrentMemoryContext;

	dlist_foreach(it, &e->jobs)
	{
		EngineJob  *j = dlist_container(EngineJob, node, it.cur);

		if (j->step == STEP_INTENT && j->retry_at <= now)
		{
			n++;
			need_tag |= j->job.kind == TOSS_JOB_CHARGE && j->job.order_id[0] == '\0';
		}
	}
	if (n == 0)
		return;
	due = palloc(sizeof(EngineJob *) * n);
	n = 0;
	dlist_foreach(it, &e->jobs)
	{
		EngineJob  *j = dlist_container(EngineJob, node, it.cur);

		if (j->step == STEP_INTENT && j->retry_at <= now)
			due[n++] = j;
	}
	report(e, psprintf("toss_billing engine: recording the intents of %d calls (%s%s)", n,
					   toss_job_describe(due[0]), n > 1 ? ", ..." : ""));

	PG_TRY();
	{
		begin_tx();
		(void) set_config_option("lock_timeout", INTENT_LOCK_TIMEOUT, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
		toss_store_check_version();
		toss_load_codes();
		toss_job_auth_cache_use(cxt);
		if (need_tag)
		{
			char	   *tag;

			MemoryContextSwitchTo(cxt);
			tag = toss_store_order_tag();
			/* the default order id is fixed before anything is recorded: a call given
			 * back to the queue keeps it, so it can never be charged under two ids */
			LWLockAcquire(engine->lock, LW_EXCLUSIVE);
			for (int i = 0; i < n; i++)
				if (due[i]->job.kind == TOSS_JOB_CHARGE && due[i]->job.order_id[0] == '\0')
				{
					char	   *uuid = toss_random_uuid();

					snprintf(due[i]->job.order_id, sizeof(due[i]->job.order_id), "tb%s-%s", tag, uuid);
					memcpy(engine->slots[due[i]->slot].job.order_id, due[i]->job.order_id,
						   sizeof(due[i]->job.order_id));
				}
			LWLockRelease(engine->lock);
		}
		for (int i = 0; i < n; i++)
		{
			EngineJob  *j = due[i];
			ErrorData  *err = in_subxact(toss_job_intent, j);

			if (err == NULL)
				continue;
			if (is_lock_wait(err->sqlerrcode))
			{
				if (j->lock_wait_since == 0)
					j->lock_wait_since = now;
				if (TimestampDifferenceExceeds(j->lock_wait_since, now, LOCK_GIVE_UP_MS))
					lock_give_up(j, err);
				else
				{
					j->retry_ms = j->retry_ms == 0 ? LOCK_RETRY_FIRST_MS : Min(j->retry_ms * 2, LOCK_RETRY_MAX_MS);
					j->retry_at = TimestampTzPlusMilliseconds(now, j->retry_ms);
					j->step = STEP_INTENT;
				}
			}
			else
			{
				toss_job_set_error(&j->result, err->sqlerrcode, err->message, err->detail, err->hint);
				j->step = STEP_DONE;
			}
			toss_job_wipe(j);
		}
		toss_job_auth_cache_reset();
		commit_tx();
	}
	PG_CATCH();
	{
		ErrorData  *err;

		toss_job_auth_cache_reset();
		MemoryContextSwitchTo(cxt);
		err = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		MemoryContextSwitchTo(cxt);
		/* nothing of these calls was recorded */
		for (int i = 0; i < n; i++)
		{
			if (!(due[i]->step == STEP_SEND || (due[i]->step == STEP_INTENT && due[i]->retry_at <= now)))
				continue;
			toss_job_wipe(due[i]);
			toss_job_set_error(&due[i]->result, err->sqlerrcode,
							   MemoryContextStrdup(due[i]->cxt, err->message),
							   err->detail ? MemoryContextStrdup(due[i]->cxt, err->detail) : NULL,
							   err->hint ? MemoryContextStrdup(due[i]->cxt, err->hint) : NULL);
			due[i]->step = STEP_DONE;
		}
		pfree(due);
		return;
	}
	PG_END_TRY();
	pgstat_report_stat(false);

	/* committed: the requests may leave */
	LWLockAcquire(engine->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
		if (due[i]->step == STEP_SEND)
		{
			due[i]->sent = true;
			engine->slots[due[i]->slot].sent = true;
		}
	LWLockRelease(engine->lock);
	for (int i = 0; i < n; i++)
		if (due[i]->step == STEP_SEND)
		{
			MemoryContext old = MemoryContextSwitchTo(due[i]->cxt);

			toss_job_after_intent(due[i]);
			MemoryContextSwitchTo(old);
		}
	pfree(due);
}

/* ---- merchants' concurrency ---- */

static bool
gate_acquire(const char *merchant)
{
	bool		ok = false;
	int			free_gate = -1;

	if (toss_merchant_concurrency <= 0 || merchant == NULL)
		return true;
	LWLockAcquire(engine->lock, LW_EXCLUSIVE);
	for (int i = 0; i < MERCHANT_GATES; i++)
	{
		MerchantGate *g = &engine->gates[i];

		if (g->name[0] == '\0')
		{
			if (free_gate < 0)
				free_gate = i;
			continue;
		}
		if (strcmp(g->name, merchant) == 0)
		{
			if (g->in_flight < toss_merchant_concurrency)
			{
				g->in_flight++;
				ok = true;
			}
			free_gate = -2;
			break;
		}
	}
	if (free_gate >= 0)
	{
		strlcpy(engine->gates[free_gate].name, merchant, sizeof(engine->gates[free_gate].name));
		engine->gates[free_gate].in_flight = 1;
		ok = true;
	}
	else if (free_gate == -1)
		ok = true;				/* more merchants than gates: not limited */
	LWLockRelease(engine->lock);
	return ok;
}

static void
gate_release(const char *merchant)
{
	if (merchant == NULL || engine == NULL)
		return;
	LWLockAcquire(engine->lock, LW_EXCLUSIVE);
	for (int i = 0; i < MERCHANT_GATES; i++)
	{
		MerchantGate *g = &engine->gates[i];

		if (g->name[0] != '\0' && strcmp(g->name, merchant) == 0)
		{
			if (--g->in_flight <= 0)
				g->name[0] = '\0';
			break;
		}
	}
	LWLockRelease(engine->lock);
}

/* For the runner: the same per-merchant limit. */
bool
toss_engine_gate_acquire(const char *merchant)
{
	if (engine == NULL)
		return true;
	return gate_acquire(merchant);
}

void
toss_engine_gate_release(const char *merchant)
{
	gate_release(merchant);
}

/* Sends the requests that are ready; returns whether some wait for their merchant. */
static bool
send_ready(Engine *e)
{
	dlist_iter	it;
	int			added = 0;
	bool		gated = false;

	dlist_foreach(it, &e->jobs)
	{
		EngineJob  *j = dlist_container(EngineJob, node, it.cur);
		MemoryContext old;

		if (j->step != STEP_SEND)
			continue;
		if (!j->gated)
		{
			if (!gate_acquire(j->merchant))
			{
				gated = true;
				continue;
			}
			j->gated = toss_merchant_concurrency > 0;
		}
		old = MemoryContextSwitchTo(j->cxt);
		toss_http_batch_add(e->batch, &j->req, j);
		MemoryContextSwitchTo(old);
		toss_wipe_string(j->secret_url);
		j->secret_url = NULL;
		j->step = STEP_WAIT;
		e->me->in_flight[kind_index(j->job.kind)]++;
		added++;
	}
	if (added > 0)
		toss_http_batch_start(e->batch);
	return gated;
}

/* Judges the answers that arrived. */
static void
collect(Engine *e)
{
	void	   *tag;
	TossHttpResponse resp;

	for (;;)
	{
		EngineJob  *j;
		MemoryContext old;

		if (!toss_http_batch_take(e->batch, &tag, &resp))
			break;
		j = (EngineJob *) tag;
		e->me->in_flight[kind_index(j->job.kind)]--;
		if (j->gated)
		{
			gate_release(j->merchant);
			j->gated = false;
		}
		old = MemoryContextSwitchTo(j->cxt);
		PG_TRY();
		{
			toss_job_reply(j, &resp);
		}
		PG_CATCH();
		{
			ErrorData  *err;

			MemoryContextSwitchTo(j->cxt);
			err = CopyErrorData();
			FlushErrorState();
			toss_job_wipe(j);
			toss_job_outcome_failed(j, err, true);
		}
		PG_END_TRY();
		MemoryContextSwitchTo(old);
	}
}

static void
outcome_one(EngineJob *j)
{
	toss_job_outcome(j);
}

/* Records the outcomes of every call whose requests are over. */
static void
run_outcomes(Engine *e)
{
	dlist_iter	it;
	int			ncharges = 0;
	volatile int nothers = 0;
	EngineJob **charges;
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();

	dlist_foreach(it, &e->jobs)
	{
		EngineJob  *j = dlist_container(EngineJob, node, it.cur);

		if (j->step == STEP_OUTCOME)
		{
			if (toss_job_records_outcome_batched(j))
				ncharges++;
			else if (j->retry_at <= now)
				nothers++;
		}
	}
	if (ncharges + nothers == 0)
		return;
	report(e, psprintf("toss_billing engine: recording the outcomes of %d calls", ncharges + nothers));

	if (ncharges > 0)
	{
		TossOutcome *rows = palloc(sizeof(TossOutcome) * ncharges);
		char	  **parked = palloc0(sizeof(char *) * ncharges);
		int			n = 0;

		charges = palloc(sizeof(EngineJob *) * ncharges);
		dlist_foreach(it, &e->jobs)
		{
			EngineJob  *j = dlist_container(EngineJob, node, it.cur);

			if (j->step == STEP_OUTCOME && toss_job_records_outcome_batched(j))
			{
				charges[n] = j;
				rows[n++] = *toss_job_charge_row(j);
			}
		}
		PG_TRY();
		{
			begin_tx();
			MemoryContextSwitchTo(cxt);
			SPI_connect();
			toss_record_outcomes_parking(rows, n, parked);
			MemoryContextSwitchTo(cxt);
			for (int i = 0; i < n; i++)
				if (parked[i])
					parked[i] = MemoryContextStrdup(cxt, parked[i]);
			SPI_finish();
			commit_tx();
			for (int i = 0; i < n; i++)
			{
				MemoryContext old = MemoryContextSwitchTo(charges[i]->cxt);

				toss_job_charge_recorded(charges[i], parked[i] != NULL, parked[i]);
				MemoryContextSwitchTo(old);
			}
		}
		PG_CATCH();
		{
			ErrorData  *err;

			MemoryContextSwitchTo(cxt);
			err = CopyErrorData();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			MemoryContextSwitchTo(cxt);
			for (int i = 0; i < n; i++)
			{
				MemoryContext old = MemoryContextSwitchTo(charges[i]->cxt);

				toss_job_outcome_failed(charges[i], err, true);
				MemoryContextSwitchTo(old);
			}
		}
		PG_END_TRY();
	}

	if (nothers > 0)
	{
		/* issued keys, cancels, deletions: one synchronous transaction, a subtransaction each */
		EngineJob **others = palloc(sizeof(EngineJob *) * nothers);
		ErrorData **errors = palloc0(sizeof(ErrorData *) * nothers);
		int			n = 0;

		dlist_foreach(it, &e->jobs)
		{
			EngineJob  *j = dlist_container(EngineJob, node, it.cur);

			if (j->step == STEP_OUTCOME && !toss_job_records_outcome_batched(j) && j->retry_at <= now)
				others[n++] = j;
		}
		PG_TRY();
		{
			begin_tx();
			for (int i = 0; i < n; i++)
				errors[i] = in_subxact(outcome_one, others[i]);
			commit_tx();
		}
		PG_CATCH();
		{
			ErrorData  *err;

			MemoryContextSwitchTo(cxt);
			err = CopyErrorData();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			MemoryContextSwitchTo(cxt);
			for (int i = 0; i < n; i++)
				errors[i] = err;
		}
		PG_END_TRY();
		/* what could not be recorded is parked, each in a transaction of its own */
		for (int i = 0; i < n; i++)
			if (errors[i])
			{
				MemoryContext old = MemoryContextSwitchTo(others[i]->cxt);

				toss_job_outcome_failed(others[i], errors[i], true);
				MemoryContextSwitchTo(old);
			}
	}
	pgstat_report_stat(false);
}

/* Hands the finished calls' results to their callers. */
static void
deliver(Engine *e)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &e->jobs)
	{
		EngineJob  *j = dlist_container(EngineJob, node, it.cur);
		JobSlot    *s = &engine->slots[j->slot];
		char	   *volatile data = NULL;
		volatile int len = 0;
		dsm_segment *volatile seg = NULL;
		volatile dsm_handle handle = 0;

		if (j->step != STEP_DONE)
			continue;
		PG_TRY();
		{
			MemoryContext old = MemoryContextSwitchTo(j->cxt);
			int			l;

			data = serialize_result(&j->result, &l);
			len = l;
			if (len > RESULT_INLINE && !s->abandoned)
			{
				seg = dsm_create(len, 0);
				memcpy(dsm_segment_address(seg), data, len);
				dsm_pin_segment(seg);
				handle = dsm_segment_handle(seg);
				dsm_detach(seg);
			}
			MemoryContextSwitchTo(old);
		}
		PG_CATCH();
		{
			/* too big and no segment: the caller hears TB006 or the error, shortened */
			FlushErrorState();
			seg = NULL;
			if (data && len > RESULT_INLINE)
				len = RESULT_INLINE;
		}
		PG_END_TRY();

		LWLockAcquire(engine->lock, LW_EXCLUSIVE);
		if (s->generation == j->generation && s->state == SLOT_TAKEN)
		{
			if (s->abandoned)
			{
				free_slot(s);
				if (seg)
					dsm_unpin_segment(handle);
			}
			else
			{
				s->ok = j->result.ok;
				s->sqlerrcode = j->result.sqlerrcode;
				s->result_len = len;
				s->overflow = seg != NULL;
				s->overflow_handle = handle;
				if (seg == NULL && data)
					memcpy(s->result, data, Min(len, RESULT_INLINE));
				s->state = SLOT_DONE;
				if (s->caller)
					SetLatch(&s->caller->procLatch);
			}
		}
		LWLockRelease(engine->lock);
		ConditionVariableSignal(&engine->slot_freed);

		e->me->running[kind_index(j->job.kind)]--;
		if (j->gated)
			gate_release(j->merchant);
		dlist_delete(&j->node);
		e->njobs--;
		MemoryContextDelete(j->cxt);
	}
}

static void
report_work(Engine *e)
{
	StringInfoData buf;
	dlist_iter	it;
	int			shown = 0;

	if (e->njobs == 0)
	{
		report(e, "toss_billing engine: waiting for calls");
		return;
	}
	initStringInfo(&buf);
	appendStringInfo(&buf, "toss_billing engine: %d calls:", e->njobs);
	dlist_foreach(it, &e->jobs)
	{
		EngineJob  *j = dlist_container(EngineJob, node, it.cur);

		if (buf.len > 900)
		{
			appendStringInfo(&buf, " and %d more", e->njobs - shown);
			break;
		}
		appendStringInfo(&buf, "%s %s (%s)", shown ? ";" : "", toss_job_describe(j),
						 j->step == STEP_WAIT ? "at toss" : j->step == STEP_INTENT ? "recording intent" :
						 j->step == STEP_SEND ? "waiting to be sent" :
						 j->step == STEP_OUTCOME ? "recording outcome" : "answering");
		shown++;
	}
	report(e, buf.data);
	pfree(buf.data);
}

/* Whether the worker may stop: idle long enough, nothing queued for it. */
static bool
may_exit(Engine *e)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		queued = false;
	dlist_iter	it;

	if (e->njobs > 0)
	{
		e->idle_since = 0;
		return false;
	}
	if (e->idle_since == 0)
		e->idle_since = now;
	if (!TimestampDifferenceExceeds(e->idle_since, now, IDLE_EXIT_MS) &&
		!(TimestampDifferenceExceeds(e->idle_since, now, ORPHAN_EXIT_MS) &&
		  CountDBConnections(MyDatabaseId) == 0))
		return false;
	LWLockAcquire(engine->lock, LW_EXCLUSIVE);
	dlist_foreach(it, &engine->queue)
	{
		JobSlot    *s = dlist_container(JobSlot, node, it.cur);

		if (s->job.database_id == e->me->dbid && s->job.owner_id == e->me->owner)
			queued = true;
	}
	if (!queued)
	{
		e->me->state = W_FREE;
		e->me->pid = 0;
		e->me->proc = NULL;
	}
	LWLockRelease(engine->lock);
	return !queued;
}

void
toss_billing_engine_main(Datum main_arg)
{
	int			idx = DatumGetInt32(main_arg);
	Engine		e;
	EngineWorker *me;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	if (engine == NULL || idx < 0 || idx >= ENGINE_MAX_WORKERS)
		proc_exit(0);
	me = &engine->workers[idx];
	LWLockAcquire(engine->lock, LW_EXCLUSIVE);
	if (me->state != W_STARTING)
	{
		LWLockRelease(engine->lock);
		proc_exit(0);
	}
	me->state = W_RUNNING;
	me->pid = MyProcPid;
	me->proc = MyProc;
	me->since = GetCurrentTimestamp();
	memset(me->running, 0, sizeof(me->running));
	memset(me->in_flight, 0, sizeof(me->in_flight));
	LWLockRelease(engine->lock);
	before_shmem_exit(worker_exit, Int32GetDatum(idx));

	toss_worker_connect(me->dbid, me->owner, "toss_billing engine");
	SetConfigOption("lock_timeout", "10s", PGC_USERSET, PGC_S_SESSION);
	StartTransactionCommand();
	{
		char	   *name = get_database_name(MyDatabaseId);

		my_dbname = MemoryContextStrdup(TopMemoryContext, name ? name : "?");
	}
	CommitTransactionCommand();

	memset(&e, 0, sizeof(e));
	e.idx = idx;
	e.me = me;
	e.cxt = AllocSetContextCreate(TopMemoryContext, "toss_billing engine", ALLOCSET_DEFAULT_SIZES);
	e.loop_cxt = AllocSetContextCreate(e.cxt, "toss_billing engine loop", ALLOCSET_DEFAULT_SIZES);
	worker_self = &e;
	dlist_init(&e.jobs);
	MemoryContextSwitchTo(e.cxt);
	e.batch = toss_http_batch_create(INT_MAX);
	e.cap = Max(16, toss_http_batch_max_connections(e.batch));
	report(&e, "toss_billing engine: starting");

	for (;;)
	{
		bool		gated;
		int			timeout = 1000;
		TimestampTz now;
		dlist_iter	it;

		/* a cancel of the engine's own statement has no meaning between its transactions */
		QueryCancelPending = false;
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextSwitchTo(e.loop_cxt);
		MemoryContextReset(e.loop_cxt);
		collect(&e);
		take_jobs(&e);
		run_intents(&e);
		gated = send_ready(&e);
		run_outcomes(&e);
		deliver(&e);
		report_work(&e);
		if (may_exit(&e))
			break;

		/* wait: for answers, new calls (the latch), or a lock retry that is due */
		now = GetCurrentTimestamp();
		dlist_foreach(it, &e.jobs)
		{
			EngineJob  *j = dlist_container(EngineJob, node, it.cur);

			if (j->step == STEP_INTENT || (j->step == STEP_OUTCOME && !toss_job_records_outcome_batched(j)))
				timeout = Min(timeout, (int) Max(0, (j->retry_at - now) / 1000));
			else if (j->step == STEP_OUTCOME || j->step == STEP_DONE || j->step == STEP_SEND)
				timeout = 0;
		}
		if (gated)
			timeout = Min(timeout, 10);
		if (e.njobs == 0)
		{
			timeout = Min(timeout, ORPHAN_EXIT_MS);
			/*
			 * Idle: report this worker's table and function statistics now
			 * (after a transaction they wait for PostgreSQL's minimum
			 * interval), so pg_stat_user_tables shows the calls' reads and
			 * writes while the worker lives on.
			 */
			pgstat_report_stat(true);
		}
		(void) toss_http_batch_wait(e.batch, timeout);
	}
	proc_exit(0);
}

/* ---- what the views show ---- */

/*
 * toss_billing._engine_queue() -> per kind of call, for this database:
 * queued (waiting for a worker), oldest_wait, running (taken by a worker),
 * in_flight (a request of it at Toss now).
 */
Datum
toss_engine_queue_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			queued[KINDS] = {0};
	TimestampTz oldest[KINDS] = {0};
	int			running[KINDS] = {0};
	int			in_flight[KINDS] = {0};
	TimestampTz now = GetCurrentTimestamp();

	InitMaterializedSRF(fcinfo, 0);
	if (engine)
	{
		dlist_iter	it;

		LWLockAcquire(engine->lock, LW_SHARED);
		dlist_foreach(it, &engine->queue)
		{
			JobSlot    *s = dlist_container(JobSlot, node, it.cur);
			int			k = kind_index(s->job.kind);

			if (s->job.database_id != MyDatabaseId)
				continue;
			queued[k]++;
			if (oldest[k] == 0 || s->enqueued_at < oldest[k])
				oldest[k] = s->enqueued_at;
		}
		for (int i = 0; i < ENGINE_MAX_WORKERS; i++)
		{
			EngineWorker *w = &engine->workers[i];

			if (w->state != W_RUNNING || w->dbid != MyDatabaseId)
				continue;
			for (int k = 0; k < KINDS; k++)
			{
				running[k] += Max(0, w->running[k]);
				in_flight[k] += Max(0, w->in_flight[k]);
			}
		}
		LWLockRelease(engine->lock);
	}
	for (int k = 0; k < KINDS; k++)
	{
		Datum		values[5];
		bool		nulls[5] = {0};

		values[0] = CStringGetTextDatum(toss_job_kind_name((TossJobKind) k));
		values[1] = Int32GetDatum(queued[k]);
		if (oldest[k] == 0)
			nulls[2] = true;
		else
		{
			Interval   *iv = palloc0(sizeof(Interval));

			iv->time = Max(0, now - oldest[k]);
			values[2] = IntervalPGetDatum(iv);
		}
		values[3] = Int32GetDatum(running[k]);
		values[4] = Int32GetDatum(in_flight[k]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * toss_billing._engine_workers() -> the engine workers of this database:
 * pid, state (starting, running), since, calls (taken, not finished),
 * in_flight.
 */
Datum
toss_engine_workers_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (engine == NULL)
		return (Datum) 0;
	LWLockAcquire(engine->lock, LW_SHARED);
	for (int i = 0; i < ENGINE_MAX_WORKERS; i++)
	{
		EngineWorker *w = &engine->workers[i];
		Datum		values[5];
		bool		nulls[5] = {0};
		int			calls = 0,
					flying = 0;

		if (w->state == W_FREE || w->dbid != MyDatabaseId)
			continue;
		for (int k = 0; k < KINDS; k++)
		{
			calls += Max(0, w->running[k]);
			flying += Max(0, w->in_flight[k]);
		}
		if (w->pid)
			values[0] = Int32GetDatum(w->pid);
		else
			nulls[0] = true;
		values[1] = CStringGetTextDatum(w->state == W_STARTING ? "starting" : "running");
		values[2] = TimestampTzGetDatum(w->since);
		values[3] = Int32GetDatum(calls);
		values[4] = Int32GetDatum(flying);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(engine->lock);
	return (Datum) 0;
}

/*
 * toss_billing._engine_slots() -> one row: in_use, the call slots of the
 * whole server taken (queued, running, or holding a result its caller has
 * not read yet: every database's), and capacity (toss_billing.queue_depth).
 * The queue is full, for every database, when in_use reaches capacity.
 * No row without the engine's shared memory.
 */
Datum
toss_engine_slots_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[2];
	bool		nulls[2] = {0};
	int			in_use = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (engine == NULL)
		return (Datum) 0;
	LWLockAcquire(engine->lock, LW_SHARED);
	for (int i = 0; i < engine->nslots; i++)
		if (engine->slots[i].state != SLOT_FREE)
			in_use++;
	values[1] = Int32GetDatum(engine->nslots);
	LWLockRelease(engine->lock);
	values[0] = Int32GetDatum(in_use);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
