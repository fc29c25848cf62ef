/*
 * errors.h — the SQLSTATEs toss_billing raises and how Toss error codes map
 * onto them (the rules are the tables toss_billing.error_codes and
 * failure_classes).  Every Toss failure surfaces as one of these classes;
 * the Toss code and message travel in errdetail, never in errmsg.
 */
#ifndef TOSS_ERRORS_H
#define TOSS_ERRORS_H

#include "utils/elog.h"

/* Class "TB" (toss_billing).  Documented in README, section "Errors". */
#define ERRCODE_TOSS_CARD_DECLINED		MAKE_SQLSTATE('T','B','0','0','1')
#define ERRCODE_TOSS_CONFIGURATION		MAKE_SQLSTATE('T','B','0','0','2')
#define ERRCODE_TOSS_TRANSIENT			MAKE_SQLSTATE('T','B','0','0','3')
#define ERRCODE_TOSS_NOT_FOUND			MAKE_SQLSTATE('T','B','0','0','4')
#define ERRCODE_TOSS_INVALID_REQUEST	MAKE_SQLSTATE('T','B','0','0','5')
#define ERRCODE_TOSS_OUTCOME_UNKNOWN	MAKE_SQLSTATE('T','B','0','0','6')
#define ERRCODE_TOSS_ALREADY_PROCESSED	MAKE_SQLSTATE('T','B','0','0','7')

typedef enum TossErrorClass
{
	TOSS_CLASS_CARD_DECLINED,
	TOSS_CLASS_CONFIGURATION,
	TOSS_CLASS_TRANSIENT,
	TOSS_CLASS_NOT_FOUND,
	TOSS_CLASS_INVALID_REQUEST,
	TOSS_CLASS_OUTCOME_UNKNOWN,
	TOSS_CLASS_ALREADY_PROCESSED,
	TOSS_CLASS_BILLING_KEY_GONE,
	TOSS_CLASS_COUNT
} TossErrorClass;

extern void toss_load_codes(void);
extern TossErrorClass toss_classify_code(const char *code, long http_status, const char *applies_to);
extern int	toss_class_sqlstate(TossErrorClass cls);
extern const char *toss_class_name(TossErrorClass cls);
extern TossErrorClass toss_class_from_name(const char *name);

#endif
