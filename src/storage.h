/*
 * storage.h — SPI access to toss_billing's tables from C.  Every function
 * must run inside a transaction with an active snapshot (or, for the
 * runner, in its non-atomic SPI connection).
 */
#ifndef TOSS_STORAGE_H
#define TOSS_STORAGE_H

#include "datatype/timestamp.h"
#include "json.h"

/*
 * One outcome of an attempt, as toss_billing._record_outcomes takes it
 * (recorder.c): what was decided (done, failed, unknown), what Toss
 * answered, and what the answer did to the order.
 */
typedef struct TossOutcome
{
	int64		attempt_id;
	const char *state;			/* done, failed or unknown */
	long		http_status;	/* 0 without one */
	const char *failure_class;
	const char *failure_code;
	const char *failure_message;
	const char *raw;			/* the answer's bytes, scrubbed; NULL without one */
	size_t		raw_len;
	const char *payment_json;	/* Toss's Payment, verified against the order; or NULL */
	const char *hold;			/* why the answer could not be verified; or NULL */
	bool		reuse_refused;	/* Toss will not take the order id again */
} TossOutcome;

typedef struct TossBillingKeyRef
{
	int64		customer_id;
	int64		billing_key_id;
	char	   *merchant;
	bytea	   *sealed;
} TossBillingKeyRef;

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

/* What _charge_intent decided, and the attempt it recorded. */
typedef struct TossChargeIntent
{
	char	   *action;			/* post, lookup, done or busy */
	int64		payment_id;
	int64		attempt_id;
	char	   *order_id;		/* the Toss orderId to use */
	char	   *idempotency_key;
	int64		billing_key_id;
	char	   *merchant;
	bytea	   *sealed;
	char	   *mid;			/* the merchant's mId, or NULL */
	char	   *payment_json;	/* done: the verified Payment */
	TimestampTz attempt_created_at;
	bool		may_repost;		/* lookup: post the same request again if Toss has no record */
} TossChargeIntent;

/* What charge_subscription_now (or charge_invoice_now) posts for what it claimed. */
typedef struct TossSubscriptionCharge
{
	char	   *customer_key;
	int64		amount;
	int64		tax_free_amount;
	char	   *order_name;
	char	   *customer_email;
	char	   *customer_name;
} TossSubscriptionCharge;

typedef struct TossCancelIntent
{
	int64		cancel_id;
	char	   *payment_key;
	char	   *idempotency_key;
	char	   *merchant;
	bool		full;			/* cancel the whole remaining balance */
	int64		amount;			/* when !full */
	char	   *order_id;		/* what the answer must match */
	int64		total_amount;
	char	   *mid;
} TossCancelIntent;

typedef struct TossCodeRow
{
	char	   *code;
	char	   *applies_to;
	char	   *cls;
} TossCodeRow;

typedef struct TossClassRow
{
	char	   *cls;
	char	   *sqlstate;
} TossClassRow;

extern int	toss_spi_execute(const char *sql, int nargs, Oid *types, Datum *values,
							 const char *nulls, bool read_only);
/* Rows claimed or recorded: cached plans are made again as tables grow. */
extern void toss_store_note_rows(uint64 n);
extern void toss_store_check_version(void);
extern int	toss_store_codes(TossCodeRow **rows);
extern int	toss_store_classes(TossClassRow **rows);
extern char *toss_store_order_tag(void);

extern int64 toss_store_customer_id(const char *customer_key);
extern int64 toss_store_issue_intent(int64 customer_id, const char *merchant,
									 const char *idempotency_key, bytea *auth_key_hash);
extern int64 toss_store_issued_for_auth_key(int64 customer_id, bytea *auth_key_hash, int64 except_id,
											bool *pending);
extern void toss_store_issue_success(int64 id, int64 customer_id, bytea *sealed,
									 const TossCardSummary *card);
extern void toss_store_issue_failure(int64 id, const char *status,
									 const char *code, const char *message);
extern char *toss_store_billing_key_info(int64 id);

extern void toss_store_charge_intent(const char *customer_key, int64 amount, const char *order_name,
									 const char *order_id, const char *customer_email,
									 const char *customer_name, int64 tax_free_amount,
									 const char *requested_by, int timeout_ms, TossChargeIntent *out);
extern void toss_store_subscription_charge_intent(int64 subscription_id, const char *requested_by,
												  int timeout_ms, TossChargeIntent *out,
												  TossSubscriptionCharge *req);
extern void toss_store_invoice_charge_intent(int64 invoice_id, const char *requested_by,
											 int timeout_ms, TossChargeIntent *out,
											 TossSubscriptionCharge *req);
extern void toss_store_park(int64 attempt_id, const char *error);

extern void toss_store_key_hash(int64 id, bytea *hash);
extern int	toss_store_keys_without_hash(int64 **ids, bytea ***sealed);
extern void toss_store_cancel_intent(const char *payment, const char *reason, bool has_amount,
									 int64 amount, const char *requested_by, int timeout_ms,
									 TossCancelIntent *out);
extern void toss_store_cancel_outcome(int64 cancel_id, const TossOutcome *outcome);
extern void toss_store_delete_intent(const char *customer_key, TossBillingKeyRef *ref);
extern void toss_store_key_deleted(int64 billing_key_id, const char *reason);

#endif
