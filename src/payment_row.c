/*
 * payment_row.c — maps a Toss Payment object onto the composite type
 * toss_billing.payment (and its nested toss_billing.card).
 *
 * The mapping is a table from column name to JSON path and kind, matched by
 * name against the type's tuple descriptor, so the SQL type and this table
 * can be read side by side.  A column the table does not know is an
 * installation mismatch and raises.  A field of another type than its
 * column's is NULL (the whole answer is in raw): showing a verified Payment
 * never fails on a field the ledger does not need.  Memory: the caller's
 * context.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "json.h"
#include "payment_row.h"
#include "verify.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

typedef enum FieldKind
{
	F_TEXT,
	F_INT64,
	F_INT32,
	F_BOOL,
	F_TIMESTAMPTZ,
	F_JSONB,
	F_CARD,						/* nested composite */
	F_RAW						/* the whole response */
} FieldKind;

typedef struct FieldMap
{
	const char *column;
	const char *path;
	FieldKind	kind;
} FieldMap;

static const FieldMap payment_fields[] = {
	{"payment_key", "paymentKey", F_TEXT},
	{"order_id", "orderId", F_TEXT},
	{"order_name", "orderName", F_TEXT},
	{"status", "status", F_TEXT},
	{"type", "type", F_TEXT},
	{"method", "method", F_TEXT},
	{"m_id", "mId", F_TEXT},
	{"version", "version", F_TEXT},
	{"currency", "currency", F_TEXT},
	{"country", "country", F_TEXT},
	{"total_amount", "totalAmount", F_INT64},
	{"balance_amount", "balanceAmount", F_INT64},
	{"supplied_amount", "suppliedAmount", F_INT64},
	{"vat", "vat", F_INT64},
	{"tax_free_amount", "taxFreeAmount", F_INT64},
	{"tax_exemption_amount", "taxExemptionAmount", F_INT64},
	{"requested_at", "requestedAt", F_TIMESTAMPTZ},
	{"approved_at", "approvedAt", F_TIMESTAMPTZ},
	{"use_escrow", "useEscrow", F_BOOL},
	{"culture_expense", "cultureExpense", F_BOOL},
	{"is_partial_cancelable", "isPartialCancelable", F_BOOL},
	{"last_transaction_key", "lastTransactionKey", F_TEXT},
	{"card", "card", F_CARD},
	{"virtual_account", "virtualAccount", F_JSONB},
	{"transfer", "transfer", F_JSONB},
	{"mobile_phone", "mobilePhone", F_JSONB},
	{"gift_certificate", "giftCertificate", F_JSONB},
	{"cash_receipt", "cashReceipt", F_JSONB},
	{"cash_receipts", "cashReceipts", F_JSONB},
	{"discount", "discount", F_JSONB},
	{"easy_pay", "easyPay", F_JSONB},
	{"cancels", "cancels", F_JSONB},
	{"failure_code", "failure.code", F_TEXT},
	{"failure_message", "failure.message", F_TEXT},
	{"receipt_url", "receipt.url", F_TEXT},
	{"checkout_url", "checkout.url", F_TEXT},
	{"secret", "secret", F_TEXT},
	{"metadata", "metadata", F_JSONB},
	{"raw", "", F_RAW},
};

static const FieldMap card_fields[] = {
	{"amount", "card.amount", F_INT64},
	{"issuer_code", "card.issuerCode", F_TEXT},
	{"acquirer_code", "card.acquirerCode", F_TEXT},
	{"number", "card.number", F_TEXT},
	{"installment_plan_months", "card.installmentPlanMonths", F_INT32},
	{"approve_no", "card.approveNo", F_TEXT},
	{"use_card_point", "card.useCardPoint", F_BOOL},
	{"card_type", "card.cardType", F_TEXT},
	{"owner_type", "card.ownerType", F_TEXT},
	{"acquire_status", "card.acquireStatus", F_TEXT},
	{"is_interest_free", "card.isInterestFree", F_BOOL},
	{"interest_payer", "card.interestPayer", F_TEXT},
};

static Datum build_row(TossJson *doc, const char *json, TupleDesc tupdesc,
					   const FieldMap *map, int nmap);

static const FieldMap *
find_field(const FieldMap *map, int nmap, const char *column)
{
	for (int i = 0; i < nmap; i++)
		if (strcmp(map[i].column, column) == 0)
			return &map[i];
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("column \"%s\" of the toss_billing result type is unknown to the library", column),
			 errhint("The installed SQL and library versions differ; run ALTER EXTENSION toss_billing UPDATE.")));
	return NULL;
}

static Datum
field_datum(TossJson *doc, const char *json, const FieldMap *f, Oid atttypid,
			bool *isnull)
{
	const char *s;
	int64		i;
	TossJsonType t = f->kind == F_RAW ? TOSS_JSON_OBJECT : toss_json_type(doc, f->path);

	*isnull = false;
	switch (f->kind)
	{
		case F_TEXT:
			if ((s = toss_json_peek_text(doc, f->path)) != NULL)
				return CStringGetTextDatum(s);
			break;
		case F_INT64:
			if (toss_json_peek_int64(doc, f->path, &i))
				return Int64GetDatum(i);
			break;
		case F_INT32:
			if (toss_json_peek_int64(doc, f->path, &i) && i >= PG_INT32_MIN && i <= PG_INT32_MAX)
				return Int32GetDatum((int32) i);
			break;
		case F_BOOL:
			if (t == TOSS_JSON_BOOLEAN)
			{
				bool		b = false;

				toss_json_bool(doc, f->path, &b);
				return BoolGetDatum(b);
			}
			break;
		case F_TIMESTAMPTZ:
			if ((s = toss_json_peek_text(doc, f->path)) != NULL && toss_is_timestamp(s))
				return DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
										   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
			break;
		case F_JSONB:
			if (t != TOSS_JSON_ABSENT && t != TOSS_JSON_NULL)
				return DirectFunctionCall1(jsonb_in, CStringGetDatum(toss_json_raw(doc, f->path)));
			break;
		case F_RAW:
			return DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
		case F_CARD:
			if (t == TOSS_JSON_OBJECT)
			{
				TupleDesc	card_desc = lookup_rowtype_tupdesc_copy(atttypid, -1);

				return build_row(doc, json, card_desc, card_fields, lengthof(card_fields));
			}
			break;
	}
	*isnull = true;
	return (Datum) 0;
}

static Datum
build_row(TossJson *doc, const char *json, TupleDesc tupdesc,
		  const FieldMap *map, int nmap)
{
	Datum	   *values = palloc0(sizeof(Datum) * tupdesc->natts);
	bool	   *nulls = palloc0(sizeof(bool) * tupdesc->natts);

	for (int i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		if (att->attisdropped)
		{
			nulls[i] = true;
			continue;
		}
		values[i] = field_datum(doc, json, find_field(map, nmap, NameStr(att->attname)),
								att->atttypid, &nulls[i]);
	}
	BlessTupleDesc(tupdesc);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/* A Payment object's JSON text as a toss_billing.payment datum. */
Datum
toss_payment_datum(const char *json, TupleDesc tupdesc)
{
	TossJson   *doc = toss_json_parse(json, strlen(json));

	if (!toss_json_is_object(doc))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("unexpected toss response: the payment is not a JSON object")));
	return build_row(doc, json, tupdesc, payment_fields, lengthof(payment_fields));
}
