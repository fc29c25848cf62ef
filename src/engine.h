/*
 * engine.h — the call engine: long-lived workers that make the Toss calls
 * of toss_charge, toss_issue_billing_key, toss_cancel and
 * toss_delete_billing_key for the sessions of their database (engine.c),
 * and the steps of each kind of call (jobs.c).
 */
#ifndef TOSS_ENGINE_H
#define TOSS_ENGINE_H

#include "charge.h"
#include "lib/ilist.h"
#include "storage.h"
#include "toss_api.h"
#include "worker.h"

/* Where a call stands in its worker. */
typedef enum JobStep
{
	STEP_INTENT,				/* its intent is recorded in the next intent transaction */
	STEP_SEND,					/* a request is ready to go */
	STEP_WAIT,					/* the request is at Toss */
	STEP_OUTCOME,				/* its outcome is recorded in the next outcome transaction */
	STEP_DONE					/* the caller's result is ready */
} JobStep;

/* A charge's next request. */
typedef enum ChargePhase
{
	CHARGE_POST,				/* POST the attempt */
	CHARGE_LOOKUP,				/* its answer settled nothing: GET by order id */
	CHARGE_RECOVER				/* an unknown attempt: GET by order id first */
} ChargePhase;

/* One call taken by an engine worker, from its slot to its result. */
typedef struct EngineJob
{
	MemoryContext cxt;			/* everything of the call; wiped and deleted at the end */
	MemoryContextCallback wipe_cb;
	int			slot;			/* its slot in the shared queue */
	uint32		generation;
	TossJob		job;			/* the caller's job (a copy) */
	JobStep		step;
	bool		sent;			/* a request of it may have left: only TB006 or the outcome now */
	TimestampTz taken_at;
	TimestampTz retry_at;		/* a lock was busy: the intent runs again then */
	TimestampTz lock_wait_since;
	int			retry_ms;
	const char *merchant;		/* whose concurrency it counts against */
	bool		gated;			/* it holds one of its merchant's calls */
	TossHttpRequest req;		/* the request to send (STEP_SEND) */
	char	   *secret_url;		/* the request's URL holds the billing key: wiped once sent */
	int			tries;			/* requests of this round */

	/* shared by the kinds */
	TossEndpoint ep;
	char	   *auth;			/* the Authorization header: wiped after the last request */
	char	   *billing_key;	/* plaintext: wiped after the last request */
	TossReply	reply;
	TossReply	lookup;

	/* charge */
	TossChargeIntent in;
	TossExpect	expect;
	ChargePhase phase;
	char	   *body;
	TossChargeVerdict verdict;
	int			round;			/* orders tried (Toss refusing an order id makes a new one) */
	int64		amount;			/* what the order charges */
	TossSubscriptionCharge sc;	/* charge_subscription_now: what the request carries */

	/* issue */
	char	   *idem;
	int64		customer_id;
	int64		row_id;
	bytea	   *auth_hash;		/* the authKey's keyed hash (a reloaded successUrl) */
	bool		issue_waiting;	/* refused: waiting for a concurrent issuance of the authKey */
	TimestampTz issue_wait_until;

	/* cancel */
	TossCancelIntent cin;
	TossOutcome cancel_outcome;
	TossErrorClass cancel_class;

	/* delete */
	TossBillingKeyRef ref;

	TossJobResult result;
	dlist_node	node;
} EngineJob;

/* engine.c */
extern Size toss_engine_shmem_size(void);
extern void toss_engine_shmem_request(void);
extern void toss_engine_shmem_init(void);
extern void toss_engine_call(const TossJob *job, TossJobResult *result);
extern PGDLLEXPORT void toss_billing_engine_main(Datum main_arg);
extern bool toss_engine_gate_acquire(const char *merchant);
extern void toss_engine_gate_release(const char *merchant);

/* jobs.c: the steps, called by the engine worker */
extern void toss_job_auth_cache_use(MemoryContext cxt);
extern void toss_job_auth_cache_reset(void);
extern void toss_job_intent(EngineJob *j);
extern void toss_job_after_intent(EngineJob *j);
extern void toss_job_reply(EngineJob *j, TossHttpResponse *resp);
extern bool toss_job_records_outcome_batched(EngineJob *j);
extern void toss_job_outcome(EngineJob *j);
extern void toss_job_outcome_failed(EngineJob *j, ErrorData *e, bool park);
extern const TossOutcome *toss_job_charge_row(EngineJob *j);
extern void toss_job_charge_recorded(EngineJob *j, bool parked, const char *why);
extern void toss_job_wipe(EngineJob *j);
extern void toss_job_set_error(TossJobResult *r, int sqlerrcode, char *message, char *detail, char *hint);
extern const char *toss_job_kind_name(TossJobKind kind);
extern char *toss_job_describe(const EngineJob *j);

#endif
