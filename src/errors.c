/*
 * errors.c — toss_billing's error classes, and the classification of Toss
 * error codes into them.  The rules are data: toss_billing.error_codes (code
 * -> class) and toss_billing.failure_classes (class -> SQLSTATE), read by
 * toss_load_codes() at the start of every call and run, into a cache of
 * this process.  The class names are C's (the enum below); the tables say
 * which code belongs to which and what SQLSTATE a caller gets.  A code the
 * tables do not know is classified by its HTTP status.
 */
#include "postgres.h"

#include "errors.h"
#include "storage.h"
#include "utils/memutils.h"

static const char *const class_names[] = {
	[TOSS_CLASS_CARD_DECLINED] = "card_declined",
	[TOSS_CLASS_CONFIGURATION] = "configuration",
	[TOSS_CLASS_TRANSIENT] = "transient",
	[TOSS_CLASS_NOT_FOUND] = "not_found",
	[TOSS_CLASS_INVALID_REQUEST] = "invalid_request",
	[TOSS_CLASS_OUTCOME_UNKNOWN] = "outcome_unknown",
	[TOSS_CLASS_ALREADY_PROCESSED] = "already_processed",
	[TOSS_CLASS_BILLING_KEY_GONE] = "billing_key_gone",
};

/* The SQLSTATE of each class until the tables are read (and if they lack a class). */
static const int default_sqlstates[] = {
	[TOSS_CLASS_CARD_DECLINED] = ERRCODE_TOSS_CARD_DECLINED,
	[TOSS_CLASS_CONFIGURATION] = ERRCODE_TOSS_CONFIGURATION,
	[TOSS_CLASS_TRANSIENT] = ERRCODE_TOSS_TRANSIENT,
	[TOSS_CLASS_NOT_FOUND] = ERRCODE_TOSS_NOT_FOUND,
	[TOSS_CLASS_INVALID_REQUEST] = ERRCODE_TOSS_INVALID_REQUEST,
	[TOSS_CLASS_OUTCOME_UNKNOWN] = ERRCODE_TOSS_OUTCOME_UNKNOWN,
	[TOSS_CLASS_ALREADY_PROCESSED] = ERRCODE_TOSS_ALREADY_PROCESSED,
	[TOSS_CLASS_BILLING_KEY_GONE] = ERRCODE_TOSS_NOT_FOUND,
};

StaticAssertDecl(lengthof(class_names) == TOSS_CLASS_COUNT, "a class without a name");
StaticAssertDecl(lengthof(default_sqlstates) == TOSS_CLASS_COUNT, "a class without a SQLSTATE");

typedef struct CodeRule
{
	char	   *code;			/* without a trailing % for a pattern */
	bool		pattern;
	char	   *applies_to;
	TossErrorClass cls;
} CodeRule;

static CodeRule *rules = NULL;
static int	nrules = 0;
static int	sqlstates[TOSS_CLASS_COUNT];
static MemoryContext codes_cxt = NULL;

TossErrorClass
toss_class_from_name(const char *name)
{
	for (int i = 0; i < TOSS_CLASS_COUNT; i++)
		if (strcmp(name, class_names[i]) == 0)
			return (TossErrorClass) i;
	return TOSS_CLASS_INVALID_REQUEST;
}

/* (Re)reads the rules from toss_billing's tables; call inside a transaction. */
void
toss_load_codes(void)
{
	TossCodeRow *codes;
	TossClassRow *classes;
	int			ncodes,
				nclasses;
	MemoryContext old;

	ncodes = toss_store_codes(&codes);
	nclasses = toss_store_classes(&classes);
	if (codes_cxt == NULL)
		codes_cxt = AllocSetContextCreate(TopMemoryContext, "toss_billing error codes",
										  ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(codes_cxt);
	old = MemoryContextSwitchTo(codes_cxt);
	rules = palloc0(sizeof(CodeRule) * Max(ncodes, 1));
	for (int i = 0; i < ncodes; i++)
	{
		size_t		len = strlen(codes[i].code);

		rules[i].pattern = len > 0 && codes[i].code[len - 1] == '%';
		rules[i].code = pnstrdup(codes[i].code, rules[i].pattern ? len - 1 : len);
		rules[i].applies_to = pstrdup(codes[i].applies_to);
		rules[i].cls = toss_class_from_name(codes[i].cls);
	}
	nrules = ncodes;
	MemoryContextSwitchTo(old);
	memcpy(sqlstates, default_sqlstates, sizeof(sqlstates));
	for (int i = 0; i < nclasses; i++)
	{
		const char *s = classes[i].sqlstate;

		sqlstates[toss_class_from_name(classes[i].cls)] =
			MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4]);
	}
}

/*
 * Map a Toss error code to a class, for an answer to a kind of call
 * ("charge", "issue", "cancel", "lookup").  Decide by code, not by HTTP
 * status (PROVIDER_ERROR is a 400 but transient): an exact rule for the
 * call, else for any call, else the longest matching prefix pattern; only a
 * code no rule knows is classified by its status.
 */
TossErrorClass
toss_classify_code(const char *code, long http_status, const char *applies_to)
{
	const CodeRule *best = NULL;
	int			best_rank = 0;

	if (code != NULL)
	{
		for (int i = 0; i < nrules; i++)
		{
			const CodeRule *r = &rules[i];
			bool		for_call = applies_to && strcmp(r->applies_to, applies_to) == 0;
			int			rank;

			if (!for_call && strcmp(r->applies_to, "any") != 0)
				continue;
			if (r->pattern ? strncmp(code, r->code, strlen(r->code)) != 0 : strcmp(code, r->code) != 0)
				continue;
			/* exact beats pattern, the call beats any, a longer prefix beats a shorter */
			rank = (r->pattern ? 0 : 1000000) + (for_call ? 100000 : 0) + (int) strlen(r->code);
			if (rank > best_rank)
			{
				best = r;
				best_rank = rank;
			}
		}
		if (best)
			return best->cls;
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
	if (rules == NULL)
		return default_sqlstates[cls];
	return sqlstates[cls];
}

/* The class name stored in the ledger's failure_class column. */
const char *
toss_class_name(TossErrorClass cls)
{
	return class_names[cls];
}
