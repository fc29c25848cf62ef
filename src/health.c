/*
 * health.c — what toss_billing.health() asks of the library itself, as SQL
 * functions that answer without side effects and without secrets:
 *
 *   _root_key_problem()          NULL when this backend has the root key,
 *                                else why not
 *   _secret_key_problem(merchant)  NULL when the merchant's secret key can
 *                                be read from its file now, else why not
 *                                (the key read to check is wiped at once)
 *   _library_version()           the version of the loaded library, to
 *                                compare with the installed SQL
 *
 * Each returns a sentence written for an operator; none ever holds a key,
 * a line of a key file or a file's path.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "crypto.h"
#include "settings.h"

PG_FUNCTION_INFO_V1(toss_root_key_problem);
PG_FUNCTION_INFO_V1(toss_secret_key_problem_sql);
PG_FUNCTION_INFO_V1(toss_library_version);

Datum
toss_root_key_problem(PG_FUNCTION_ARGS)
{
	const char *problem;

	if (toss_root_key_status(&problem))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(problem));
}

Datum
toss_secret_key_problem_sql(PG_FUNCTION_ARGS)
{
	char	   *merchant;
	char	   *problem;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("merchant must not be null")));
	merchant = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!toss_merchant_name_is_valid(merchant))
		PG_RETURN_TEXT_P(cstring_to_text("The merchant name is not valid (1 to 63 letters, digits, _ or -)."));
	problem = toss_secret_key_problem(merchant);
	if (problem == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(problem));
}

Datum
toss_library_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(EXTVERSION));
}
