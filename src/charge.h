/*
 * charge.h — the charge request body and the verdict on a charge reply.
 */
#ifndef TOSS_CHARGE_H
#define TOSS_CHARGE_H

#include "storage.h"
#include "toss_api.h"

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
	TossChargeOutcome outcome;
	const TossReply *payment;	/* the reply holding the Payment, if any */
	const TossReply *error;		/* the reply holding a definitive error */
	char	   *ambiguity;		/* why the outcome is unknown */
	bool		taken;			/* the order id belongs to another payment */
} TossChargeVerdict;

extern char *toss_charge_body(const TossChargeRequest *r);
extern void toss_judge_charge(const TossEndpoint *ep, const char *order_id, int64 amount,
							  const TossReply *reply, TossReply *lookup,
							  TossChargeVerdict *v);
extern bool toss_judge_recovery(const TossReply *lookup, int64 amount,
								TossChargeVerdict *v);
extern bool toss_judge_cancel(const TossReply *reply, TossChargeOutcome *o,
							  TossErrorClass *cls);
extern const char *toss_class_message(TossErrorClass cls, bool charge);
extern char *toss_describe_reply(const TossReply *reply);

#endif
