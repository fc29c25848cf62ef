/*
 * charge.h — the charge request body and the verdicts on Toss's answers.
 */
#ifndef TOSS_CHARGE_H
#define TOSS_CHARGE_H

#include "storage.h"
#include "toss_api.h"
#include "verify.h"

typedef struct TossChargeRequest
{
	const char *customer_key;
	int64		amount;
	int64		tax_free_amount;
	const char *order_id;
	const char *order_name;
	const char *customer_email; /* NULL omits */
	const char *customer_name;	/* NULL omits */
} TossChargeRequest;

/* The decision about one charge attempt. */
typedef struct TossChargeVerdict
{
	TossOutcome outcome;		/* attempt_id is the caller's to fill */
	const TossReply *payment;	/* the answer holding the verified Payment, if any */
	const TossReply *error;		/* the answer holding a definitive error */
	char	   *ambiguity;		/* why the outcome is unknown */
	bool		need_lookup;	/* look the order up, then toss_judge_lookup() */
	bool		duplicated;		/* Toss said the order id was used already */
	bool		toss_said_failed;	/* Toss itself answered with a 5xx */
} TossChargeVerdict;

extern char *toss_charge_body(const TossChargeRequest *r);
extern void toss_judge_reply(const TossReply *reply, const TossExpect *e, TossChargeVerdict *v);
extern void toss_judge_lookup(const TossReply *first, const TossReply *lookup, const TossExpect *e,
							  TossChargeVerdict *v);
extern bool toss_judge_recovery(const TossReply *lookup, const TossExpect *e, TossChargeVerdict *v);
extern bool toss_judge_cancel(const TossReply *reply, const TossExpect *e, TossOutcome *o,
							  TossErrorClass *cls);
extern const char *toss_class_message(TossErrorClass cls, bool charge);
extern char *toss_describe_reply(const TossReply *reply);

#endif
