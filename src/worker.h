/*
 * worker.h — a Toss job (what a caller asks the engine to do, and what it
 * hears back), and the helpers every background worker of this library
 * uses.
 *
 * The job struct is copied into a slot of the engine's shared-memory queue
 * by the calling backend and read by an engine worker; it is plain data
 * (fixed-size strings), no pointers.
 */
#ifndef TOSS_WORKER_H
#define TOSS_WORKER_H

#include "settings.h"

typedef enum TossJobKind
{
	TOSS_JOB_ISSUE,
	TOSS_JOB_CHARGE,
	TOSS_JOB_CANCEL,
	TOSS_JOB_DELETE_KEY,
	TOSS_JOB_CHARGE_SUBSCRIPTION,
	TOSS_JOB_CHARGE_INVOICE
} TossJobKind;

typedef struct TossJob
{
	TossJobKind kind;
	Oid			database_id;
	Oid			owner_id;		/* the extension owner: the worker's role */
	char		requested_by[NAMEDATALEN];
	char		api_url[TOSS_API_URL_MAXLEN];
	int			connect_timeout_ms;
	int			timeout_ms;
	char		customer_key[64];
	char		merchant[TOSS_MERCHANT_MAXLEN + 1];
	/* issue */
	char		auth_key[304];
	/* charge */
	int64		amount;
	int64		tax_free_amount;
	char		order_id[72];
	char		order_name[408];
	char		customer_email[408];
	bool		has_customer_email;
	char		customer_name[408];
	bool		has_customer_name;
	/* cancel: payment key or order id, reason, amount (has_amount: partial) */
	char		payment[208];
	char		reason[808];
	bool		has_amount;
	/* charge_subscription_now */
	int64		subscription_id;
	/* charge_invoice_now */
	int64		invoice_id;
} TossJob;

/* What the engine sends back. */
typedef struct TossJobResult
{
	bool		ok;
	char	   *payload;		/* ok: Payment JSON or billing_key_info text */
	int			sqlerrcode;		/* !ok */
	char	   *message;
	char	   *detail;
	char	   *hint;
} TossJobResult;

extern bool toss_role_can_log_in(Oid role);

/* any worker of this library */
struct dsm_segment;
struct shm_toc;
struct BackgroundWorkerHandle;
extern struct BackgroundWorkerHandle *toss_register_worker(struct dsm_segment *seg, const char *function,
														   const char *type);
extern struct shm_toc *toss_worker_attach(Datum main_arg, uint64 magic, const char *what,
										  struct dsm_segment **seg);
extern void toss_worker_connect(Oid database_id, Oid role_id, const char *what);

#endif
