/*
 * runlog.c — the runner's rows of the run log (toss_billing.runs): one row
 * for each CALL run_due() and one for its recovery pass, written by the SQL
 * functions toss_billing._run_started and _run_finished.
 *
 * Transactions: called from run_due's non-atomic SPI connection; each call
 * commits, so that a run in progress is visible as running, and a run that
 * ends by an error (its row never finished) is found interrupted by the next
 * run.  (reconcile writes its own row in SQL: it runs in its caller's
 * transaction.)
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "runlog.h"
#include "storage.h"

int64
toss_runlog_start(const char *kind, int64 parent_id, int max_charges, double budget_ms)
{
	Oid			types[3] = {TEXTOID, INT8OID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', parent_id > 0 ? ' ' : 'n', ' '};
	bool		isnull;
	int64		id;

	values[0] = CStringGetTextDatum(kind);
	values[1] = Int64GetDatum(parent_id);
	values[2] = CStringGetTextDatum(psprintf("{\"max_charges\": %d, \"time_budget_ms\": %.0f}",
											 max_charges, budget_ms));
	if (toss_spi_execute("SELECT toss_billing._run_started($1, $2, $3::pg_catalog.jsonb)",
						 3, types, values, nulls, false) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "toss_billing._run_started failed");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_commit();
	return id;
}

void
toss_runlog_finish(int64 run_id, int64 claimed, int64 done, int64 failed, int64 unknown,
				   int64 throttled, double elapsed_ms)
{
	Oid			types[7] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, FLOAT8OID};
	Datum		values[7];

	values[0] = Int64GetDatum(run_id);
	values[1] = Int64GetDatum(claimed);
	values[2] = Int64GetDatum(done);
	values[3] = Int64GetDatum(failed);
	values[4] = Int64GetDatum(unknown);
	values[5] = Int64GetDatum(throttled);
	values[6] = Float8GetDatum(elapsed_ms);
	if (toss_spi_execute("SELECT toss_billing._run_finished($1, $2, $3, $4, $5, $6, $7)",
						 7, types, values, NULL, false) != SPI_OK_SELECT)
		elog(ERROR, "toss_billing._run_finished failed");
	SPI_commit();
}
