/*
 * recorder.h — recording the runner's outcomes, in the runner's backend or
 * in a background worker of its own (the outcome recorder).
 */
#ifndef TOSS_RECORDER_H
#define TOSS_RECORDER_H

#include "storage.h"

typedef struct TossRecorder TossRecorder;

/*
 * Records rows through SPI in the current transaction (SPI connected): the
 * batch, and if it fails, row by row; a row that still fails is parked.
 */
extern void toss_record_outcomes(const TossOutcome *rows, int n);
extern void toss_record_outcomes_parking(const TossOutcome *rows, int n, char **parked);

/*
 * Records a replayed cancel's outcome (SPI connected); if it cannot be
 * written, the cancel stays unknown with the error, and the run goes on.
 */
extern void toss_record_cancel_outcome(int64 cancel_id, const TossOutcome *outcome);

/*
 * The outcome recorder.  start returns NULL when it is switched off
 * (toss_billing.outcome_recorder) or no worker can be started (no free
 * slot, or the role cannot log in): the caller records itself.
 * The recorder lives in the current memory context; deleting or resetting
 * that context detaches from it, and the recorder then commits what it was
 * sent and exits.
 */
extern TossRecorder *toss_recorder_start(void);
extern void toss_recorder_send(TossRecorder *rec, const TossOutcome *rows, int n);
extern uint64 toss_recorder_pending(TossRecorder *rec);
extern uint64 toss_recorder_recorded(TossRecorder *rec);
extern void toss_recorder_wait(TossRecorder *rec, int timeout_ms);
extern void toss_recorder_finish(TossRecorder *rec);

extern PGDLLEXPORT void toss_billing_recorder_main(Datum main_arg);

#endif
