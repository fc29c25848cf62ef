/*
 * runlog.h — the runner's rows of the run log (toss_billing.runs).
 */
#ifndef TOSS_RUNLOG_H
#define TOSS_RUNLOG_H

extern int64 toss_runlog_start(const char *kind, int64 parent_id, int max_charges, double budget_ms);
extern void toss_runlog_finish(int64 run_id, int64 claimed, int64 done, int64 failed, int64 unknown,
							   int64 throttled, double elapsed_ms);

#endif
