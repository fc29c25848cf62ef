/*
 * verify.h — whether an answer answers its request (see verify.c).
 */
#ifndef TOSS_VERIFY_H
#define TOSS_VERIFY_H

#include "json.h"

typedef enum TossPaymentVerdict
{
	TOSS_PAYMENT_APPROVED,		/* DONE, CANCELED or PARTIAL_CANCELED, and it matches */
	TOSS_PAYMENT_FAILED,		/* ABORTED or EXPIRED under this order id */
	TOSS_PAYMENT_UNVERIFIED		/* anything else: never counts */
} TossPaymentVerdict;

/* What an answer must match. */
typedef struct TossExpect
{
	const char *order_id;
	int64		amount;			/* the order's amount */
	const char *mid;			/* the merchant's mId, or NULL when not known */
	const char *payment_key;	/* a cancel's answer: the payment's key; else NULL */
} TossExpect;

extern TossPaymentVerdict toss_verify_payment(TossJson *doc, const TossExpect *e, char **why);
extern bool toss_verify_billing(TossJson *doc, const char *customer_key, char **why);
extern bool toss_is_timestamp(const char *s);

#endif
