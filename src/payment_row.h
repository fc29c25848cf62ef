/*
 * payment_row.h — Toss Payment JSON to a toss_billing.payment datum.
 */
#ifndef TOSS_PAYMENT_ROW_H
#define TOSS_PAYMENT_ROW_H

#include "access/tupdesc.h"

extern Datum toss_payment_datum(const char *json, TupleDesc tupdesc);

#endif
