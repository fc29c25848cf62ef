/*
 * stats.h — counters of the calls made to Toss (toss_billing.stats).
 */
#ifndef TOSS_STATS_H
#define TOSS_STATS_H

#include "http.h"

extern Size toss_stats_shmem_size(void);
extern void toss_stats_shmem_init(void);
extern void toss_stats_call_started(TossCallKind kind);
extern void toss_stats_call_finished(TossCallKind kind, TossHttpFailure failure, long status,
									 double elapsed_ms);
extern int64 toss_stats_in_flight(TossCallKind kind);

#endif
