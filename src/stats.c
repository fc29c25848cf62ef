/*
 * stats.c — toss_billing.stats: how many calls were made to each Toss
 * endpoint, how they ended, how long they took (a latency histogram), and
 * how many are in flight now, since the last reset.  Shared-memory atomic
 * counters, written by every process that calls Toss (engine workers,
 * run_due, the lookups of webhooks and reconcile) when a request starts and
 * when it ends; read by toss_billing._stats(), reset by
 * toss_billing.stats_reset() (owner only).
 *
 * Outcomes: ok (2xx), client_error (other 4xx), throttled (429),
 * server_error (5xx and anything else with a status), timeout, not_sent,
 * connection_failure (broke after sending), too_large, interrupted (the
 * process stopped waiting).  The histogram counts every finished call, in
 * milliseconds, into buckets whose upper bounds are toss_stats_bounds_ms;
 * the view shows them cumulatively, as Prometheus histograms are.
 *
 * A process's calls in flight are counted back down when it exits, however
 * it exits short of a crash (a crash restart re-initializes shared memory,
 * which resets every counter).  Nothing here ever raises: without shared
 * memory (the library not preloaded) the counters are simply not kept.
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/timestamp.h"
#include "catalog/pg_type.h"

#include "stats.h"

PG_FUNCTION_INFO_V1(toss_stats_sql);
PG_FUNCTION_INFO_V1(toss_stats_reset_sql);

typedef enum CallOutcome
{
	OUT_OK,
	OUT_CLIENT_ERROR,
	OUT_THROTTLED,
	OUT_SERVER_ERROR,
	OUT_TIMEOUT,
	OUT_NOT_SENT,
	OUT_CONNECTION_FAILURE,
	OUT_TOO_LARGE,
	OUT_INTERRUPTED,
	OUT_COUNT
} CallOutcome;

static const double bounds_ms[] = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000};
#define NBOUNDS lengthof(bounds_ms)
#define NBUCKETS ((int) NBOUNDS + 1)	/* the last is +Inf */

typedef struct EndpointStats
{
	pg_atomic_uint64 outcomes[OUT_COUNT];
	pg_atomic_uint64 buckets[NBUCKETS];
	pg_atomic_uint64 sum_us;
	pg_atomic_uint64 started;	/* in flight = started - finished */
	pg_atomic_uint64 finished;
} EndpointStats;

typedef struct StatsShared
{
	pg_atomic_uint64 reset_at;	/* TimestampTz */
	EndpointStats ep[TOSS_CALL_COUNT];
} StatsShared;

static StatsShared *shared = NULL;
static int64 local_in_flight[TOSS_CALL_COUNT];
static bool exit_hook_set = false;

Size
toss_stats_shmem_size(void)
{
	return MAXALIGN(sizeof(StatsShared));
}

/* In the shmem startup hook, with AddinShmemInitLock held. */
void
toss_stats_shmem_init(void)
{
	bool		found;

	shared = ShmemInitStruct("toss_billing stats", sizeof(StatsShared), &found);
	if (!found)
	{
		pg_atomic_init_u64(&shared->reset_at, (uint64) GetCurrentTimestamp());
		for (int e = 0; e < TOSS_CALL_COUNT; e++)
		{
			EndpointStats *s = &shared->ep[e];

			for (int i = 0; i < OUT_COUNT; i++)
				pg_atomic_init_u64(&s->outcomes[i], 0);
			for (int i = 0; i < NBUCKETS; i++)
				pg_atomic_init_u64(&s->buckets[i], 0);
			pg_atomic_init_u64(&s->sum_us, 0);
			pg_atomic_init_u64(&s->started, 0);
			pg_atomic_init_u64(&s->finished, 0);
		}
	}
}

/* At exit: the calls this process still had in flight end with it. */
static void
stats_exit(int code, Datum arg)
{
	if (shared == NULL)
		return;
	for (int e = 0; e < TOSS_CALL_COUNT; e++)
	{
		if (local_in_flight[e] > 0)
		{
			pg_atomic_add_fetch_u64(&shared->ep[e].finished, local_in_flight[e]);
			pg_atomic_add_fetch_u64(&shared->ep[e].outcomes[OUT_INTERRUPTED], local_in_flight[e]);
			local_in_flight[e] = 0;
		}
	}
}

void
toss_stats_call_started(TossCallKind kind)
{
	if (shared == NULL || kind < 0 || kind >= TOSS_CALL_COUNT)
		return;
	if (!exit_hook_set)
	{
		before_shmem_exit(stats_exit, (Datum) 0);
		exit_hook_set = true;
	}
	local_in_flight[kind]++;
	pg_atomic_add_fetch_u64(&shared->ep[kind].started, 1);
}

static CallOutcome
outcome_of(TossHttpFailure failure, long status)
{
	switch (failure)
	{
		case TOSS_HTTP_OK:
			if (status >= 200 && status < 300)
				return OUT_OK;
			if (status == 429)
				return OUT_THROTTLED;
			if (status >= 400 && status < 500)
				return OUT_CLIENT_ERROR;
			return OUT_SERVER_ERROR;
		case TOSS_HTTP_NOT_SENT:
			return OUT_NOT_SENT;
		case TOSS_HTTP_TIMEOUT:
			return OUT_TIMEOUT;
		case TOSS_HTTP_TRANSPORT:
			return OUT_CONNECTION_FAILURE;
		case TOSS_HTTP_TOO_LARGE:
			return OUT_TOO_LARGE;
		case TOSS_HTTP_INTERRUPTED:
			return OUT_INTERRUPTED;
	}
	return OUT_SERVER_ERROR;
}

void
toss_stats_call_finished(TossCallKind kind, TossHttpFailure failure, long status, double elapsed_ms)
{
	EndpointStats *s;
	int			b = 0;

	if (shared == NULL || kind < 0 || kind >= TOSS_CALL_COUNT)
		return;
	s = &shared->ep[kind];
	if (local_in_flight[kind] > 0)
		local_in_flight[kind]--;
	while (b < (int) NBOUNDS && elapsed_ms > bounds_ms[b])
		b++;
	pg_atomic_add_fetch_u64(&s->outcomes[outcome_of(failure, status)], 1);
	pg_atomic_add_fetch_u64(&s->buckets[b], 1);
	pg_atomic_add_fetch_u64(&s->sum_us, (uint64) Max(elapsed_ms * 1000.0, 0));
	pg_atomic_add_fetch_u64(&s->finished, 1);
}

int64
toss_stats_in_flight(TossCallKind kind)
{
	uint64		started,
				finished;

	if (shared == NULL)
		return 0;
	finished = pg_atomic_read_u64(&shared->ep[kind].finished);
	started = pg_atomic_read_u64(&shared->ep[kind].started);
	return started > finished ? (int64) (started - finished) : 0;
}

/*
 * toss_billing._stats() -> one row per endpoint: endpoint, in_flight, calls,
 * one column per outcome, latency_seconds (float8[] bucket upper bounds,
 * +Inf last), latency_seconds_bucket (bigint[] cumulative counts),
 * latency_seconds_sum, latency_seconds_count, stats_reset.
 */
Datum
toss_stats_sql(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		bounds[NBUCKETS];
	TimestampTz reset_at;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < (int) NBOUNDS; i++)
		bounds[i] = Float8GetDatum(bounds_ms[i] / 1000.0);
	bounds[NBOUNDS] = Float8GetDatum(get_float8_infinity());
	reset_at = shared ? (TimestampTz) pg_atomic_read_u64(&shared->reset_at) : 0;
	for (int e = 0; e < TOSS_CALL_COUNT; e++)
	{
		Datum		values[8 + OUT_COUNT];
		bool		nulls[8 + OUT_COUNT] = {0};
		Datum		cumulative[NBUCKETS];
		uint64		total = 0;
		uint64		running = 0;
		int			col = 0;

		values[col++] = CStringGetTextDatum(toss_call_kind_name((TossCallKind) e));
		values[col++] = Int64GetDatum(toss_stats_in_flight((TossCallKind) e));
		for (int i = 0; i < OUT_COUNT; i++)
			total += shared ? pg_atomic_read_u64(&shared->ep[e].outcomes[i]) : 0;
		values[col++] = Int64GetDatum((int64) total);
		for (int i = 0; i < OUT_COUNT; i++)
			values[col++] = Int64GetDatum(shared ? (int64) pg_atomic_read_u64(&shared->ep[e].outcomes[i]) : 0);
		for (int i = 0; i < NBUCKETS; i++)
		{
			running += shared ? pg_atomic_read_u64(&shared->ep[e].buckets[i]) : 0;
			cumulative[i] = Int64GetDatum((int64) running);
		}
		values[col++] = PointerGetDatum(construct_array(bounds, NBUCKETS, FLOAT8OID, 8, FLOAT8PASSBYVAL,
														TYPALIGN_DOUBLE));
		values[col++] = PointerGetDatum(construct_array(cumulative, NBUCKETS, INT8OID, 8, FLOAT8PASSBYVAL,
														TYPALIGN_DOUBLE));
		values[col++] = Float8GetDatum(shared ? pg_atomic_read_u64(&shared->ep[e].sum_us) / 1e6 : 0.0);
		values[col++] = Int64GetDatum((int64) running);
		if (shared)
			values[col++] = TimestampTzGetDatum(reset_at);
		else
			nulls[col++] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* toss_billing.stats_reset(): counters back to zero (calls in flight stay counted). */
Datum
toss_stats_reset_sql(PG_FUNCTION_ARGS)
{
	if (shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("toss_billing's statistics are not kept"),
				 errdetail("toss_billing is not in shared_preload_libraries.")));
	for (int e = 0; e < TOSS_CALL_COUNT; e++)
	{
		EndpointStats *s = &shared->ep[e];

		for (int i = 0; i < OUT_COUNT; i++)
			pg_atomic_write_u64(&s->outcomes[i], 0);
		for (int i = 0; i < NBUCKETS; i++)
			pg_atomic_write_u64(&s->buckets[i], 0);
		pg_atomic_write_u64(&s->sum_us, 0);
	}
	pg_atomic_write_u64(&shared->reset_at, (uint64) GetCurrentTimestamp());
	PG_RETURN_TIMESTAMPTZ((TimestampTz) pg_atomic_read_u64(&shared->reset_at));
}
