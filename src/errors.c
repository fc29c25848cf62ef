/*
 * errors.c — classification of Toss error codes into toss_billing's error
 * classes (reference §6.4).  Pure functions over static tables: no memory is
 * allocated, no catalog or network access.
 */
#include "postgres.h"

#include "errors.h"

typedef struct CodeClass
{
	const char *code;
	TossErrorClass cls;
} CodeClass;

static const CodeClass known_codes[] = {
	/* card refusals and card-side limits: dunning, or ask for a new card */
	{"REJECT_CARD_PAYMENT", TOSS_CLASS_CARD_DECLINED},
	{"REJECT_CARD_COMPANY", TOSS_CLASS_CARD_DECLINED},
	{"INVALID_STOPPED_CARD", TOSS_CLASS_CARD_DECLINED},
	{"INVALID_CARD_EXPIRATION", TOSS_CLASS_CARD_DECLINED},
	{"INVALID_REJECT_CARD", TOSS_CLASS_CARD_DECLINED},
	{"INVALID_CARD_LOST_OR_STOLEN", TOSS_CLASS_CARD_DECLINED},
	{"INVALID_CARD_NUMBER", TOSS_CLASS_CARD_DECLINED},
	{"NOT_SUPPORTED_CARD_TYPE", TOSS_CLASS_CARD_DECLINED},
	{"FDS_ERROR", TOSS_CLASS_CARD_DECLINED},
	{"ALREADY_REMOVED_BILLING_KEY", TOSS_CLASS_CARD_DECLINED},
	{"EXCEED_MAX_DAILY_PAYMENT_COUNT", TOSS_CLASS_CARD_DECLINED},
	{"EXCEED_MAX_AMOUNT", TOSS_CLASS_CARD_DECLINED},
	{"EXCEED_MAX_PAYMENT_AMOUNT", TOSS_CLASS_CARD_DECLINED},
	{"EXCEED_MAX_ONE_DAY_AMOUNT", TOSS_CLASS_CARD_DECLINED},
	{"EXCEED_MAX_MONTHLY_PAYMENT_AMOUNT", TOSS_CLASS_CARD_DECLINED},
	{"EXCEED_MAX_AUTH_COUNT", TOSS_CLASS_CARD_DECLINED},
	{"NOT_AVAILABLE_PAYMENT", TOSS_CLASS_CARD_DECLINED},
	/* configuration or integration bugs: do not retry, alert */
	{"UNAUTHORIZED_KEY", TOSS_CLASS_CONFIGURATION},
	{"INVALID_API_KEY", TOSS_CLASS_CONFIGURATION},
	{"INCORRECT_BASIC_AUTH_FORMAT", TOSS_CLASS_CONFIGURATION},
	{"NOT_SUPPORTED_METHOD", TOSS_CLASS_CONFIGURATION},
	{"NOT_MATCHES_CUSTOMER_KEY", TOSS_CLASS_CONFIGURATION},
	{"INSECURE_KEY_USAGE", TOSS_CLASS_CONFIGURATION},
	{"FORBIDDEN_REQUEST", TOSS_CLASS_CONFIGURATION},
	{"INVALID_BILL_KEY_REQUEST", TOSS_CLASS_CONFIGURATION},
	/* transient: retry later (after checking by orderId) */
	{"PROVIDER_ERROR", TOSS_CLASS_TRANSIENT},
	{"CARD_PROCESSING_ERROR", TOSS_CLASS_TRANSIENT},
	{"FAILED_INTERNAL_SYSTEM_PROCESSING", TOSS_CLASS_TRANSIENT},
	{"FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING", TOSS_CLASS_TRANSIENT},
	{"UNKNOWN_PAYMENT_ERROR", TOSS_CLASS_TRANSIENT},
	{"FAILED_CARD_COMPANY_RESPONSE", TOSS_CLASS_TRANSIENT},
	{"COMMON_ERROR", TOSS_CLASS_TRANSIENT},
	{"FAILED_DB_PROCESSING", TOSS_CLASS_TRANSIENT},
	{"FORBIDDEN_CONSECUTIVE_REQUEST", TOSS_CLASS_TRANSIENT},
	{"IDEMPOTENT_REQUEST_PROCESSING", TOSS_CLASS_OUTCOME_UNKNOWN},
	/* not found */
	{"NOT_FOUND_PAYMENT", TOSS_CLASS_NOT_FOUND},
	{"NOT_FOUND_BILLING", TOSS_CLASS_NOT_FOUND},
	{"BILLING_KEY_NOT_FOUND", TOSS_CLASS_NOT_FOUND},
	{"NOT_FOUND", TOSS_CLASS_NOT_FOUND},
	{"NOT_FOUND_PAYMENT_SESSION", TOSS_CLASS_NOT_FOUND},
	/* the order was already processed: look it up by orderId */
	{"DUPLICATED_ORDER_ID", TOSS_CLASS_ALREADY_PROCESSED},
	{"ALREADY_PROCESSED_PAYMENT", TOSS_CLASS_ALREADY_PROCESSED},
	/* rejected input */
	{"INVALID_REQUEST", TOSS_CLASS_INVALID_REQUEST},
	{"BELOW_MINIMUM_AMOUNT", TOSS_CLASS_INVALID_REQUEST},
	{"INVALID_BILLING_AUTH", TOSS_CLASS_INVALID_REQUEST},
	{"INVALID_IDEMPOTENCY_KEY", TOSS_CLASS_INVALID_REQUEST},
	{"INVALID_CARD_INSTALLMENT_PLAN", TOSS_CLASS_INVALID_REQUEST},
	{"EXCEED_MAX_CARD_INSTALLMENT_PLAN", TOSS_CLASS_INVALID_REQUEST},
};

/*
 * Map a Toss error code to a class.  Decide by code, not by HTTP status
 * (PROVIDER_ERROR is a 400 but transient); the status only classifies codes
 * this table does not know.
 */
TossErrorClass
toss_classify_code(const char *code, long http_status)
{
	if (code != NULL)
	{
		for (size_t i = 0; i < lengthof(known_codes); i++)
			if (strcmp(code, known_codes[i].code) == 0)
				return known_codes[i].cls;
		if (strncmp(code, "REJECT_", 7) == 0 ||
			strncmp(code, "INVALID_CARD_", 13) == 0 ||
			strncmp(code, "EXCEED_MAX_", 11) == 0)
			return TOSS_CLASS_CARD_DECLINED;
	}
	if (http_status >= 500 || http_status == 429 || http_status == 0)
		return TOSS_CLASS_TRANSIENT;
	if (http_status == 401)
		return TOSS_CLASS_CONFIGURATION;
	if (http_status == 404)
		return TOSS_CLASS_NOT_FOUND;
	return TOSS_CLASS_INVALID_REQUEST;
}

int
toss_class_sqlstate(TossErrorClass cls)
{
	switch (cls)
	{
		case TOSS_CLASS_CARD_DECLINED:
			return ERRCODE_TOSS_CARD_DECLINED;
		case TOSS_CLASS_CONFIGURATION:
			return ERRCODE_TOSS_CONFIGURATION;
		case TOSS_CLASS_TRANSIENT:
			return ERRCODE_TOSS_TRANSIENT;
		case TOSS_CLASS_NOT_FOUND:
			return ERRCODE_TOSS_NOT_FOUND;
		case TOSS_CLASS_INVALID_REQUEST:
			return ERRCODE_TOSS_INVALID_REQUEST;
		case TOSS_CLASS_OUTCOME_UNKNOWN:
			return ERRCODE_TOSS_OUTCOME_UNKNOWN;
		case TOSS_CLASS_ALREADY_PROCESSED:
			return ERRCODE_TOSS_ALREADY_PROCESSED;
	}
	return ERRCODE_INTERNAL_ERROR;
}

/* The class name stored in the ledger's failure_class column. */
const char *
toss_class_name(TossErrorClass cls)
{
	switch (cls)
	{
		case TOSS_CLASS_CARD_DECLINED:
			return "card_declined";
		case TOSS_CLASS_CONFIGURATION:
			return "configuration";
		case TOSS_CLASS_TRANSIENT:
			return "transient";
		case TOSS_CLASS_NOT_FOUND:
			return "not_found";
		case TOSS_CLASS_INVALID_REQUEST:
			return "invalid_request";
		case TOSS_CLASS_OUTCOME_UNKNOWN:
			return "outcome_unknown";
		case TOSS_CLASS_ALREADY_PROCESSED:
			return "already_processed";
	}
	return "unknown";
}
