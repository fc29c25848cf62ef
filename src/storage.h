/*
 * storage.h — SPI access to toss_billing's tables, used by the worker.
 * Every function must run inside a transaction with an active snapshot.
 */
#ifndef TOSS_STORAGE_H
#define TOSS_STORAGE_H

#include "json.h"

typedef struct TossBillingKeyRef
{
	int64		customer_id;
	int64		billing_key_id;
	char	   *merchant;
	bytea	   *sealed;
} TossBillingKeyRef;

typedef struct TossChargeIntent
{
	const char *order_id;
	const char *order_name;
	int64		amount;
	int64		tax_free_amount;
	const char *customer_email;
	const char *customer_name;
	const char *idempotency_key;
	const char *requested_by;
} TossChargeIntent;

typedef struct TossChargeOutcome
{
	const char *state;			/* done, failed or unknown */
	long		http_status;	/* 0 without one */
	const char *failure_class;
	const char *failure_code;
	const char *failure_message;
	const char *payment_json;	/* Payment object text, or NULL */
} TossChargeOutcome;

typedef struct TossCardSummary
{
	const char *mid;
	const char *method;
	const char *card_company;
	const char *issuer_code;
	const char *acquirer_code;
	const char *number;
	const char *card_type;
	const char *owner_type;
	const char *authenticated_at;
} TossCardSummary;

typedef struct TossCancelIntent
{
	int64		cancel_id;
	char	   *payment_key;
	char	   *idempotency_key;
	char	   *merchant;
	bool		full;			/* cancel the whole remaining balance */
	int64		amount;			/* when !full */
} TossCancelIntent;

extern int	toss_spi_execute(const char *sql, int nargs, Oid *types, Datum *values,
							 const char *nulls, bool read_only);

extern int64 toss_store_customer_id(const char *customer_key);
extern int64 toss_store_issue_intent(int64 customer_id, const char *merchant,
									 const char *idempotency_key);
extern void toss_store_issue_success(int64 id, int64 customer_id, bytea *sealed,
									 const TossCardSummary *card);
extern void toss_store_issue_failure(int64 id, const char *status,
									 const char *code, const char *message);
extern char *toss_store_billing_key_info(int64 id);

extern void toss_store_active_billing_key(const char *customer_key,
										  TossBillingKeyRef *ref);
extern int64 toss_store_charge_intent(const TossBillingKeyRef *ref,
									  const TossChargeIntent *intent);
extern void toss_store_charge_outcome(int64 payment_id,
									  const TossChargeOutcome *outcome);

extern void toss_store_key_hash(int64 id, bytea *hash);
extern int	toss_store_keys_without_hash(int64 **ids, bytea ***sealed);
extern void toss_store_cancel_intent(const char *payment, const char *reason, bool has_amount,
									 int64 amount, const char *requested_by,
									 TossCancelIntent *out);
extern void toss_store_cancel_outcome(int64 cancel_id, const TossChargeOutcome *outcome);
extern void toss_store_delete_intent(const char *customer_key, TossBillingKeyRef *ref);
extern void toss_store_key_deleted(int64 billing_key_id, const char *reason);

#endif
