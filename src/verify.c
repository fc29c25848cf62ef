/*
 * verify.c — the one predicate that decides whether an answer answers the
 * request it was the answer to.  No answer counts until it passes:
 *
 *   toss_verify_payment()  a Payment against an order: orderId equal,
 *       totalAmount equal to the amount asked, currency KRW, type BILLING,
 *       mId the merchant's (when the merchant's mId is known), a paymentKey
 *       (the given one, for a cancel's answer), a known status, and every
 *       field the ledger stores of the right type (amounts integers, times
 *       timestamps, cancels[] well formed), so that recording it can never
 *       fail on a cast.  APPROVED is DONE, CANCELED or PARTIAL_CANCELED
 *       (approved, then refunded in part or in full); FAILED is ABORTED or
 *       EXPIRED under this order id; anything else is UNVERIFIED, with the
 *       reason.
 *   toss_verify_billing()  a Billing object against an issuance: the
 *       customerKey asked for, a billingKey, and typed fields.
 *   toss_billing._verify_payment(payment, order_id, amount, mid)  the same
 *       predicate for SQL (webhooks, reconcile).
 *
 * Never raises on anything in the answer: it only reads it.  Memory: the
 * reason is palloc'd in the current context.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "verify.h"

PG_FUNCTION_INFO_V1(toss_verify_payment_sql);

/* yyyy-MM-ddTHH:mm:ss[.fraction][Z|+hh:mm], as Toss writes times. */
bool
toss_is_timestamp(const char *s)
{
	int			y,
				mo,
				d,
				h,
				mi,
				se;
	const char *p = s;

	if (strlen(s) < 19 || strlen(s) > 40)
		return false;
	for (int i = 0; i < 19; i++)
	{
		bool		digit = s[i] >= '0' && s[i] <= '9';

		if ((i == 4 || i == 7) ? s[i] != '-' : i == 10 ? (s[i] != 'T' && s[i] != ' ') :
			(i == 13 || i == 16) ? s[i] != ':' : !digit)
			return false;
	}
	y = atoi(s);
	mo = atoi(s + 5);
	d = atoi(s + 8);
	h = atoi(s + 11);
	mi = atoi(s + 14);
	se = atoi(s + 17);
	if (y < 1900 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
		return false;
	p = s + 19;
	if (*p == '.')
	{
		int			n = 0;

		for (p++; *p >= '0' && *p <= '9'; p++)
			n++;
		if (n == 0 || n > 9)
			return false;
	}
	if (*p == 'Z')
		p++;
	else if (*p == '+' || *p == '-')
	{
		if (!(p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9'))
			return false;
		p += 3;
		if (*p == ':')
			p++;
		if (*p)
		{
			if (!(p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9'))
				return false;
			p += 2;
		}
	}
	return *p == '\0';
}

typedef struct Check
{
	TossJson   *doc;
	char	  **why;
} Check;

static bool
fail(Check *c, const char *fmt, const char *arg)
{
	*c->why = psprintf(fmt, arg ? arg : "(none)");
	return false;
}

/* A field that must be a string (or, if optional, absent or null). */
static bool
text_field(Check *c, const char *path, bool required)
{
	TossJsonType t = toss_json_type(c->doc, path);

	if (t == TOSS_JSON_TEXT || (!required && (t == TOSS_JSON_ABSENT || t == TOSS_JSON_NULL)))
		return true;
	return fail(c, required ? "%s is missing or not a string" : "%s is not a string", path);
}

static bool
int_field(Check *c, const char *path, bool required)
{
	TossJsonType t = toss_json_type(c->doc, path);

	if (t == TOSS_JSON_INTEGER || (!required && (t == TOSS_JSON_ABSENT || t == TOSS_JSON_NULL)))
		return true;
	return fail(c, required ? "%s is missing or not an integer" : "%s is not an integer", path);
}

static bool
time_field(Check *c, const char *path, bool required)
{
	TossJsonType t = toss_json_type(c->doc, path);

	if (!required && (t == TOSS_JSON_ABSENT || t == TOSS_JSON_NULL))
		return true;
	if (t != TOSS_JSON_TEXT || !toss_is_timestamp(toss_json_peek_text(c->doc, path)))
		return fail(c, required ? "%s is missing or not a time" : "%s is not a time", path);
	return true;
}

/* cancels[]: what _sync_cancels and _cancel_outcome read of each entry. */
static bool
cancels_ok(Check *c)
{
	TossJsonType t = toss_json_type(c->doc, "cancels");
	int			n;

	if (t == TOSS_JSON_ABSENT || t == TOSS_JSON_NULL)
		return true;
	if (t != TOSS_JSON_ARRAY)
		return fail(c, "%s is not an array", "cancels");
	n = toss_json_array_size(c->doc, "cancels");
	for (int i = 0; i < n; i++)
	{
		char		path[64];

#define SUB(field) (snprintf(path, sizeof(path), "cancels.%d.%s", i, field), path)
		snprintf(path, sizeof(path), "cancels.%d", i);
		if (toss_json_type(c->doc, path) != TOSS_JSON_OBJECT)
			return fail(c, "%s is not an object", path);
		if (!text_field(c, SUB("transactionKey"), false) ||
			!int_field(c, SUB("cancelAmount"), false) ||
			!int_field(c, SUB("refundableAmount"), false) ||
			!int_field(c, SUB("taxFreeAmount"), false) ||
			!time_field(c, SUB("canceledAt"), false) ||
			!text_field(c, SUB("cancelReason"), false) ||
			!text_field(c, SUB("cancelStatus"), false))
			return false;
#undef SUB
	}
	return true;
}

TossPaymentVerdict
toss_verify_payment(TossJson *doc, const TossExpect *e, char **why)
{
	char	   *ignored;
	Check		c;
	const char *status;
	const char *s;
	int64		total,
				balance;
	bool		approved;

	if (why == NULL)
		why = &ignored;
	*why = NULL;
	c.doc = doc;
	c.why = why;
	if (!toss_json_is_object(doc))
	{
		fail(&c, "the answer is not a JSON object%s", "");
		return TOSS_PAYMENT_UNVERIFIED;
	}
	if (!text_field(&c, "status", true) || !text_field(&c, "orderId", true) ||
		!text_field(&c, "paymentKey", true))
		return TOSS_PAYMENT_UNVERIFIED;
	status = toss_json_peek_text(doc, "status");
	s = toss_json_peek_text(doc, "orderId");
	if (strcmp(s, e->order_id) != 0)
	{
		fail(&c, "orderId is %s, not the order's", s);
		return TOSS_PAYMENT_UNVERIFIED;
	}
	s = toss_json_peek_text(doc, "paymentKey");
	if (s[0] == '\0' || strlen(s) > 200)
	{
		fail(&c, "paymentKey %s is empty or too long", "");
		return TOSS_PAYMENT_UNVERIFIED;
	}
	if (e->payment_key && strcmp(s, e->payment_key) != 0)
	{
		fail(&c, "paymentKey %s is not the payment's", s);
		return TOSS_PAYMENT_UNVERIFIED;
	}
	if (strcmp(status, "ABORTED") == 0 || strcmp(status, "EXPIRED") == 0)
	{
		if (!text_field(&c, "failure.code", false) || !text_field(&c, "failure.message", false))
			return TOSS_PAYMENT_UNVERIFIED;
		return TOSS_PAYMENT_FAILED;
	}
	approved = strcmp(status, "DONE") == 0 || strcmp(status, "CANCELED") == 0 ||
		strcmp(status, "PARTIAL_CANCELED") == 0;
	if (!approved)
	{
		fail(&c, "status %s is neither approved nor failed", status);
		return TOSS_PAYMENT_UNVERIFIED;
	}
	if (!int_field(&c, "totalAmount", true))
		return TOSS_PAYMENT_UNVERIFIED;
	toss_json_peek_int64(doc, "totalAmount", &total);
	if (total != e->amount)
	{
		fail(&c, "totalAmount %s is not the amount asked", psprintf(INT64_FORMAT, total));
		return TOSS_PAYMENT_UNVERIFIED;
	}
	if (!text_field(&c, "currency", true) || strcmp(toss_json_peek_text(doc, "currency"), "KRW") != 0)
	{
		if (!*why)
			fail(&c, "currency %s is not KRW", toss_json_peek_text(doc, "currency"));
		return TOSS_PAYMENT_UNVERIFIED;
	}
	if (!text_field(&c, "type", true) || strcmp(toss_json_peek_text(doc, "type"), "BILLING") != 0)
	{
		if (!*why)
			fail(&c, "type %s is not BILLING", toss_json_peek_text(doc, "type"));
		return TOSS_PAYMENT_UNVERIFIED;
	}
	if (!text_field(&c, "mId", true))
		return TOSS_PAYMENT_UNVERIFIED;
	if (e->mid && strcmp(toss_json_peek_text(doc, "mId"), e->mid) != 0)
	{
		fail(&c, "mId %s is not the merchant's", toss_json_peek_text(doc, "mId"));
		return TOSS_PAYMENT_UNVERIFIED;
	}
	if (!int_field(&c, "balanceAmount", true) || !int_field(&c, "suppliedAmount", false) ||
		!int_field(&c, "vat", false) || !int_field(&c, "taxFreeAmount", false) ||
		!int_field(&c, "taxExemptionAmount", false) || !time_field(&c, "approvedAt", true) ||
		!time_field(&c, "requestedAt", false) || !text_field(&c, "orderName", false) ||
		!text_field(&c, "lastTransactionKey", false) || !cancels_ok(&c))
		return TOSS_PAYMENT_UNVERIFIED;
	toss_json_peek_int64(doc, "balanceAmount", &balance);
	if (balance < 0 || balance > total)
	{
		fail(&c, "balanceAmount %s is outside 0 to totalAmount", psprintf(INT64_FORMAT, balance));
		return TOSS_PAYMENT_UNVERIFIED;
	}
	if (strcmp(status, "DONE") == 0 && balance != total)
	{
		fail(&c, "a DONE payment with a balance of %s is not what was asked", psprintf(INT64_FORMAT, balance));
		return TOSS_PAYMENT_UNVERIFIED;
	}
	return TOSS_PAYMENT_APPROVED;
}

bool
toss_verify_billing(TossJson *doc, const char *customer_key, char **why)
{
	char	   *ignored;
	Check		c;
	const char *s;

	if (why == NULL)
		why = &ignored;
	*why = NULL;
	c.doc = doc;
	c.why = why;
	if (!toss_json_is_object(doc))
		return fail(&c, "the answer is not a JSON object%s", "");
	if (!text_field(&c, "billingKey", true) || !text_field(&c, "customerKey", true) ||
		!text_field(&c, "mId", false) || !text_field(&c, "method", false) ||
		!text_field(&c, "cardCompany", false) || !text_field(&c, "cardNumber", false) ||
		!text_field(&c, "card.issuerCode", false) || !text_field(&c, "card.acquirerCode", false) ||
		!text_field(&c, "card.number", false) || !text_field(&c, "card.cardType", false) ||
		!text_field(&c, "card.ownerType", false) || !time_field(&c, "authenticatedAt", false))
		return false;
	s = toss_json_peek_text(doc, "billingKey");
	if (s[0] == '\0' || strlen(s) > 200)
		return fail(&c, "billingKey is empty or too long%s", "");
	if (strcmp(toss_json_peek_text(doc, "customerKey"), customer_key) != 0)
		return fail(&c, "customerKey %s is not the customer's", toss_json_peek_text(doc, "customerKey"));
	return true;
}

/*
 * toss_billing._verify_payment(payment jsonb, order_id text, amount bigint,
 * mid text) -> 'approved', 'failed' or 'unverified: <why>'
 */
Datum
toss_verify_payment_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *payment;
	TossJson   *doc;
	TossExpect	e = {0};
	char	   *why = NULL;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payment, order_id and amount must not be null")));
	payment = PG_GETARG_JSONB_P(0);
	/* the same predicate, read from the jsonb in place */
	doc = toss_json_from_jsonb(payment);
	e.order_id = text_to_cstring(PG_GETARG_TEXT_PP(1));
	e.amount = PG_GETARG_INT64(2);
	e.mid = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	switch (toss_verify_payment(doc, &e, &why))
	{
		case TOSS_PAYMENT_APPROVED:
			PG_RETURN_TEXT_P(cstring_to_text("approved"));
		case TOSS_PAYMENT_FAILED:
			PG_RETURN_TEXT_P(cstring_to_text("failed"));
		case TOSS_PAYMENT_UNVERIFIED:
			break;
	}
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("unverified: %s", why ? why : "the answer does not match")));
}
