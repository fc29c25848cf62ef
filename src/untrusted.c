/*
 * untrusted.c — what is done to an answer from upstream before anything
 * reads or stores it.  An answer is untrusted bytes: Toss, a proxy on the
 * way, or whoever sits on the path may send anything.
 *
 *   toss_answer_problem()  NULL if the body may be parsed and stored as
 *       text: valid UTF-8, no NUL byte, no \u0000 escape (which PostgreSQL's
 *       text and jsonb cannot hold, and which would make a dump fail to
 *       restore), JSON nested at most TOSS_JSON_MAX_DEPTH deep with at most
 *       TOSS_JSON_MAX_VALUES values (so that parsing it takes a bounded
 *       multiple of its size in memory).  Otherwise a sentence saying why
 *       not: the caller treats the answer as no answer (its outcome stays to
 *       be settled by looking the order up) and keeps its bytes only as
 *       bytea.
 *   toss_scrub()  the body with every secret of the request in it -- the
 *       billing key (raw, percent-encoded in either case, JSON-escaped), the
 *       Authorization value and the secret key it carries -- replaced by
 *       "[redacted]": an upstream or proxy that echoes the request path or
 *       headers back must not make the ledger store them.
 *
 * No transactions, no catalog access; memory is the caller's context.
 */
#include "postgres.h"

#include "common/base64.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "mb/pg_wchar.h"

#include "untrusted.h"

#define REDACTED "[redacted]"

/*
 * One pass over a JSON text: depth and the number of values (every '{',
 * '[', ',' and ':' outside strings starts one), and \u0000 inside strings.
 * It does not check the grammar; cJSON does that afterwards.
 */
static const char *
json_shape_problem(const char *body, size_t len)
{
	int			depth = 0;
	long		values = 1;
	bool		in_string = false;

	for (size_t i = 0; i < len; i++)
	{
		char		c = body[i];

		if (in_string)
		{
			if (c == '\\')
			{
				if (i + 5 < len && body[i + 1] == 'u' && strncmp(body + i + 2, "0000", 4) == 0)
					return "The answer holds a \\u0000 escape, which PostgreSQL cannot store as text.";
				i++;			/* the escaped character */
			}
			else if (c == '"')
				in_string = false;
			continue;
		}
		switch (c)
		{
			case '"':
				in_string = true;
				break;
			case '{':
			case '[':
				if (++depth > TOSS_JSON_MAX_DEPTH)
					return "The answer is JSON nested deeper than any Toss answer.";
				values++;
				break;
			case '}':
			case ']':
				depth--;
				break;
			case ',':
			case ':':
				if (++values > TOSS_JSON_MAX_VALUES)
					return "The answer holds more JSON values than any Toss answer.";
				break;
		}
	}
	return NULL;
}

const char *
toss_answer_problem(const char *body, size_t len)
{
	if (memchr(body, '\0', len) != NULL)
		return "The answer holds a NUL byte.";
	if (!pg_verify_mbstr(PG_UTF8, body, len, true))
		return "The answer is not valid UTF-8.";
	return json_shape_problem(body, len);
}

/* Every form of s that an echo might carry. */
static List *
needles_for(const char *billing_key, const char *authorization)
{
	static const char hex_upper[] = "0123456789ABCDEF";
	static const char hex_lower[] = "0123456789abcdef";
	List	   *needles = NIL;

	if (billing_key && billing_key[0])
	{
		size_t		len = strlen(billing_key);
		char	   *upper = palloc(len * 3 + 1);
		char	   *lower = palloc(len * 3 + 1);
		char	   *slashes = palloc(len * 2 + 1);
		char	   *u = upper,
				   *l = lower,
				   *j = slashes;

		for (const unsigned char *p = (const unsigned char *) billing_key; *p; p++)
		{
			bool		plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
				(*p >= '0' && *p <= '9') || *p == '_' || *p == '-';

			if (plain)
				*u++ = *l++ = *p;
			else
			{
				*u++ = '%';
				*u++ = hex_upper[*p >> 4];
				*u++ = hex_upper[*p & 15];
				*l++ = '%';
				*l++ = hex_lower[*p >> 4];
				*l++ = hex_lower[*p & 15];
			}
			if (*p == '/')
				*j++ = '\\';
			*j++ = *p;
		}
		*u = *l = *j = '\0';
		needles = lappend(needles, pstrdup(billing_key));
		needles = lappend(needles, upper);
		needles = lappend(needles, lower);
		needles = lappend(needles, slashes);
	}
	if (authorization && strncmp(authorization, "Basic ", 6) == 0)
	{
		const char *b64 = authorization + 6;
		int			b64len = strlen(b64);
		int			maxlen = pg_b64_dec_len(b64len);
		char	   *decoded = palloc(maxlen + 1);
		int			n = pg_b64_decode(b64, b64len, decoded, maxlen);

		needles = lappend(needles, pstrdup(b64));
		if (n > 1)
		{
			decoded[n] = '\0';
			if (decoded[n - 1] == ':')
				decoded[n - 1] = '\0';
			needles = lappend(needles, decoded);
		}
		else
			pfree(decoded);
	}
	return needles;
}

/* Replace every occurrence of needle in *buf (of *len bytes); returns the new buffer. */
static char *
replace_all(char *buf, size_t *len, const char *needle)
{
	size_t		nlen = strlen(needle);
	size_t		rlen = strlen(REDACTED);
	char	   *hit;
	StringInfoData out;
	size_t		from = 0;

	if (nlen < 8 || (hit = memmem(buf, *len, needle, nlen)) == NULL)
		return buf;
	initStringInfo(&out);
	while (hit != NULL)
	{
		size_t		at = hit - buf;

		appendBinaryStringInfo(&out, buf + from, at - from);
		appendBinaryStringInfo(&out, REDACTED, rlen);
		from = at + nlen;
		hit = memmem(buf + from, *len - from, needle, nlen);
	}
	appendBinaryStringInfo(&out, buf + from, *len - from);
	explicit_bzero(buf, *len);
	*len = out.len;
	return out.data;
}

char *
toss_scrub(const char *body, size_t len, const char *billing_key, const char *authorization,
		   size_t *outlen)
{
	List	   *needles = needles_for(billing_key, authorization);
	char	   *buf = palloc(len + 1);
	ListCell   *lc;

	memcpy(buf, body, len);
	buf[len] = '\0';
	foreach(lc, needles)
	{
		char	   *needle = lfirst(lc);

		buf = replace_all(buf, &len, needle);
		explicit_bzero(needle, strlen(needle));
		pfree(needle);
	}
	list_free(needles);
	*outlen = len;
	return buf;
}
