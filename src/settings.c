/*
 * settings.c — toss_billing's configuration: the GUCs and the Toss secret
 * key file.
 *
 * Secrets: the Toss secret key never lives in a GUC.  toss_billing.secret_key_file
 * names a file (like ssl_key_file) that is read on every use, in the process
 * that makes the HTTP call, into palloc'd memory that the caller wipes with
 * toss_wipe_string() as soon as the header is built.  No message this file
 * raises contains the key or a line of the file.
 *
 * The file holds one key per line: either "KEY" alone (merchant "default") or
 * "MERCHANT KEY".  Blank lines and lines starting with '#' are ignored.
 */
#include "postgres.h"

#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base64.h"
#include "errors.h"
#include "miscadmin.h"
#include "settings.h"
#include "pgtime.h"
#include "storage/fd.h"
#include "utils/guc.h"

char	   *toss_api_url = NULL;
int			toss_connect_timeout_ms = 5000;
int			toss_timeout_ms = 65000;
char	   *toss_secret_key_file = NULL;
char	   *toss_root_key_file = NULL;
int			toss_max_concurrency = 16;
bool		toss_outcome_recorder = true;
int			toss_max_requests_per_second = 0;
bool		toss_allow_drop = false;
int			toss_engine_workers = 2;
int			toss_queue_depth = 512;
int			toss_merchant_concurrency = 0;
int			toss_queue_timeout_ms = 0;
char	   *toss_report_time_zone = NULL;
int			toss_run_log_retention_s = 90 * 86400;

static bool
is_loopback_host(const char *host, size_t len)
{
	return (len == 9 && strncmp(host, "127.0.0.1", 9) == 0) ||
		(len == 9 && strncmp(host, "localhost", 9) == 0) ||
		(len == 5 && strncmp(host, "[::1]", 5) == 0);
}

/*
 * The API URL must be https, or plain http to a loopback address (the local
 * emulator).  No path, query, credentials or trailing garbage.
 */
static bool
check_api_url(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;
	const char *host;
	size_t		hostlen;
	bool		https;

	if (url == NULL || strlen(url) >= TOSS_API_URL_MAXLEN)
	{
		GUC_check_errdetail("The URL must be shorter than %d bytes.", TOSS_API_URL_MAXLEN);
		return false;
	}
	https = strncmp(url, "https://", 8) == 0;
	if (!https && strncmp(url, "http://", 7) != 0)
	{
		GUC_check_errdetail("The URL must start with https:// (or http:// for a loopback emulator).");
		return false;
	}
	host = url + (https ? 8 : 7);
	hostlen = strcspn(host, ":/");
	if (hostlen == 0 || strpbrk(url, "@?# \t\r\n") != NULL)
	{
		GUC_check_errdetail("The URL must be a scheme, a host and an optional port, with no credentials, query or fragment.");
		return false;
	}
	if (!https && !is_loopback_host(host, hostlen))
	{
		GUC_check_errdetail("Plain http is allowed only to 127.0.0.1, localhost or [::1].");
		return false;
	}
	if (host[hostlen] == ':')
	{
		const char *p = host + hostlen + 1;

		if (*p == '\0')
		{
			GUC_check_errdetail("The port is empty.");
			return false;
		}
		while (*p >= '0' && *p <= '9')
			p++;
		if (*p != '\0' && strcmp(p, "/") != 0)
		{
			GUC_check_errdetail("The URL must not have a path.");
			return false;
		}
	}
	else if (host[hostlen] == '/' && host[hostlen + 1] != '\0')
	{
		GUC_check_errdetail("The URL must not have a path.");
		return false;
	}
	return true;
}

/* A time zone name PostgreSQL knows (Asia/Seoul, UTC, America/New_York). */
static bool
check_report_time_zone(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0' || strlen(*newval) > 100 || pg_tzset(*newval) == NULL)
	{
		GUC_check_errdetail("Use a time zone name such as Asia/Seoul or UTC.");
		return false;
	}
	return true;
}

void
toss_define_settings(void)
{
	DefineCustomStringVariable("toss_billing.api_url",
							   "Base URL of the Toss Payments API.",
							   "https only; plain http is accepted for loopback addresses (the local emulator).",
							   &toss_api_url,
							   "https://api.tosspayments.com",
							   PGC_SUSET, 0,
							   check_api_url, NULL, NULL);

	DefineCustomIntVariable("toss_billing.connect_timeout",
							"Timeout for connecting to the Toss API.",
							NULL,
							&toss_connect_timeout_ms,
							5000, 100, 600000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("toss_billing.timeout",
							"Total timeout of one Toss API call.",
							"Billing approvals can take tens of seconds; an expired call is recorded as outcome unknown and resolved by order id.",
							&toss_timeout_ms,
							65000, 1000, 3600000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("toss_billing.secret_key_file",
							   "File holding the Toss secret key(s).",
							   "One key per line, either KEY or MERCHANT KEY. Readable only by the server's OS user.",
							   &toss_secret_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("toss_billing.max_concurrency",
							"Most Toss calls the runner keeps in flight at once.",
							NULL,
							&toss_max_concurrency,
							16, 1, 1024,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("toss_billing.max_requests_per_second",
							"Most Toss calls the runner starts per second (0: no limit).",
							"The runner also backs off by itself on HTTP 429 and FORBIDDEN_CONSECUTIVE_REQUEST.",
							&toss_max_requests_per_second,
							0, 0, 100000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("toss_billing.outcome_recorder",
							 "Whether the runner records outcomes in a background worker of its own.",
							 "Off, or with no free worker slot, the runner records them in its own backend.",
							 &toss_outcome_recorder,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("toss_billing.allow_drop",
							 "Lets DROP EXTENSION toss_billing delete a ledger that holds payment records.",
							 "Off, an event trigger refuses to drop the extension while payments, cancels or billing keys hold rows.",
							 &toss_allow_drop,
							 false,
							 PGC_SUSET, GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("toss_billing.engine_workers",
							"Most engine workers per database, each making many Toss calls at once.",
							"The first call in a database starts one; another starts while calls wait for a worker. A worker stops after a minute without calls, or soon after the database has no sessions left.",
							&toss_engine_workers,
							2, 1, 32,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("toss_billing.merchant_concurrency",
							"Most Toss calls of one merchant in flight at once (0: no limit).",
							"Counts the engine's calls and run_due's together, over all databases; a call over the limit waits in its worker or runner until another of the merchant's calls ends.",
							&toss_merchant_concurrency,
							0, 0, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("toss_billing.queue_timeout",
							"How long a call may wait for the engine before it fails (0: until statement_timeout).",
							"A call that waited this long for a place in the queue or for a worker fails with SQLSTATE 53000, before anything is recorded or sent to Toss.",
							&toss_queue_timeout_ms,
							0, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("toss_billing.report_time_zone",
							   "Time zone in which the reporting views count days and months.",
							   "revenue_daily, failures_by_code, refunds, mrr and churn_monthly date money by this zone.",
							   &toss_report_time_zone,
							   "Asia/Seoul",
							   PGC_USERSET, 0,
							   check_report_time_zone, NULL, NULL);

	DefineCustomIntVariable("toss_billing.run_log_retention",
							"How long toss_billing.runs keeps a run.",
							"Each new run deletes the runs that started longer ago than this.",
							&toss_run_log_retention_s,
							90 * 86400, 3600, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	/*
	 * The settings read only at server start exist only when the library is
	 * preloaded: PostgreSQL ends the session (FATAL) of a backend that
	 * defines one later, and without preloading there is no root key nor
	 * engine for them to configure; every call then fails with a clear
	 * error instead (crypto.c, engine.c).  Nor is the prefix reserved then,
	 * which would warn that the placeholders of those two are removed.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomStringVariable("toss_billing.root_key_file",
							   "File holding the root key that encrypts billing keys at rest.",
							   "64 hex digits (32 bytes). Read once at server start.",
							   &toss_root_key_file,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("toss_billing.queue_depth",
							"Most calls queued for or running in the engine at once, over all databases.",
							"Beyond it a caller waits for a place (up to its statement_timeout or toss_billing.queue_timeout). Each place takes about 8 kB of shared memory.",
							&toss_queue_depth,
							512, 16, 65536,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("toss_billing");
}

bool
toss_merchant_name_is_valid(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0 || len > TOSS_MERCHANT_MAXLEN)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
			return false;
	return true;
}

/* toss_billing.api_url without a trailing slash, palloc'd: paths are appended to it. */
char *
toss_api_base_url(void)
{
	char	   *url = pstrdup(toss_api_url);
	size_t		len = strlen(url);

	if (len > 0 && url[len - 1] == '/')
		url[len - 1] = '\0';
	return url;
}

void
toss_wipe_string(char *s)
{
	if (s != NULL)
		explicit_bzero(s, strlen(s));
}

/*
 * The rule PostgreSQL applies to ssl_key_file, for toss_billing's two key
 * files: a regular file owned by the server's OS user with no group or world
 * access (0600 or less), or owned by root with at most group read (0640 or
 * less).  Returns NULL if the file passes, else a sentence saying why not.
 */
const char *
toss_key_file_problem(int fd)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return "The file could not be examined (fstat failed).";
	if (!S_ISREG(st.st_mode))
		return "The file is not a regular file.";
	if (st.st_uid != geteuid() && st.st_uid != 0)
		return "The file must be owned by the database server's OS user or by root.";
	if (st.st_uid == geteuid() && (st.st_mode & (S_IRWXG | S_IRWXO)))
		return "The file has group or world access; it must be u=rw (0600) or less when owned by the database user.";
	if (st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO)))
		return "The file has too broad access; it must be u=rw,g=r (0640) or less when owned by root.";
	return NULL;
}

static void
check_key_file_permissions(FILE *f)
{
	const char *problem = toss_key_file_problem(fileno(f));

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_TOSS_CONFIGURATION),
				 errmsg("the toss secret key file is not safe to use"),
				 errdetail("%s", problem),
				 errhint("chown the file named by toss_billing.secret_key_file to the database server's OS user and chmod it 0600.")));
}

static bool
key_is_well_formed(const char *key)
{
	if (strlen(key) < 8 || strlen(key) > 200)
		return false;
	for (const char *p = key; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
			return false;
	return true;
}

/*
 * Find the merchant's key in the secret key file.  Returns a palloc'd copy;
 * the line buffer is wiped before returning or raising.
 */
static char *
read_secret_key(const char *merchant)
{
	FILE	   *f;
	char		line[1024];
	char	   *volatile found = NULL;
	volatile bool malformed = false;

	if (toss_secret_key_file == NULL || toss_secret_key_file[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_TOSS_CONFIGURATION),
				 errmsg("toss_billing.secret_key_file is not set"),
				 errhint("Write the Toss secret key to a file readable only by the server, set toss_billing.secret_key_file to its path and reload.")));

	f = AllocateFile(toss_secret_key_file, "r");
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open the file named by toss_billing.secret_key_file: %m")));

	PG_TRY();
	{
		check_key_file_permissions(f);
		while (found == NULL && fgets(line, sizeof(line), f) != NULL)
		{
			char	   *name = "default";
			char	   *key;
			char	   *tok1,
					   *tok2,
					   *tok3,
					   *save;

			tok1 = strtok_r(line, " \t\r\n", &save);
			if (tok1 == NULL || tok1[0] == '#')
				continue;
			tok2 = strtok_r(NULL, " \t\r\n", &save);
			tok3 = strtok_r(NULL, " \t\r\n", &save);
			if (tok3 != NULL)
			{
				malformed = true;
				continue;
			}
			if (tok2 != NULL)
			{
				name = tok1;
				key = tok2;
			}
			else
				key = tok1;
			if (strcmp(name, merchant) != 0)
				continue;
			if (!key_is_well_formed(key))
				malformed = true;
			else
				found = pstrdup(key);
		}
	}
	PG_FINALLY();
	{
		explicit_bzero(line, sizeof(line));
		FreeFile(f);
	}
	PG_END_TRY();

	if (found == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_TOSS_CONFIGURATION),
				 errmsg("no toss secret key for merchant \"%s\"", merchant),
				 malformed ?
				 errdetail("The file named by toss_billing.secret_key_file has a malformed line for this merchant.") :
				 errdetail("The file named by toss_billing.secret_key_file has no line for this merchant."),
				 errhint("Each line is KEY (merchant \"default\") or MERCHANT KEY; keys are letters, digits and underscores.")));
	return found;
}

/*
 * Build "Basic base64(secretKey + ':')" for the merchant.  Returns palloc'd
 * memory that the caller must wipe with toss_wipe_string() after use.
 */
char *
toss_authorization_header(const char *merchant)
{
	char	   *key = read_secret_key(merchant);
	size_t		keylen = strlen(key);
	char	   *userpass = palloc(keylen + 2);
	int			enclen = pg_b64_enc_len(keylen + 1);
	char	   *header = palloc(enclen + 7);
	int			n;

	memcpy(userpass, key, keylen);
	userpass[keylen] = ':';
	userpass[keylen + 1] = '\0';
	toss_wipe_string(key);
	pfree(key);

	memcpy(header, "Basic ", 6);
	n = pg_b64_encode(userpass, keylen + 1, header + 6, enclen);
	toss_wipe_string(userpass);
	pfree(userpass);
	if (n < 0)
		elog(ERROR, "could not encode the toss authorization header");
	header[6 + n] = '\0';
	return header;
}

/*
 * Whether the merchant's secret key can be read and used now: NULL if so,
 * else the sentence the error would carry (never the key, nor a line of the
 * file).  The key read to check is wiped at once.
 */
char *
toss_secret_key_problem(const char *merchant)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *volatile problem = NULL;

	PG_TRY();
	{
		char	   *header = toss_authorization_header(merchant);

		toss_wipe_string(header);
		pfree(header);
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		FlushErrorState();
		problem = e->detail ? psprintf("%s: %s", e->message, e->detail) : pstrdup(e->message);
		FreeErrorData(e);
	}
	PG_END_TRY();
	return problem;
}
