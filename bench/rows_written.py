"""Rows a run wrote to toss_billing's tables, from pg_stat_user_tables.

Shared by bench/charge_throughput and bench/throughput_cpu_of, so a charge's
CPU can be set beside the rows it writes (heap rows inserted, updated or
deleted, summed over every table of the schema toss_billing; index entries
and foreign-key checks are not counted).  The counts are PostgreSQL's
cumulative statistics: a process reports its own when it ends or goes idle,
so read them after the run's sessions and workers have finished.
"""

SQL = ("SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) "
       "FROM pg_catalog.pg_stat_user_tables WHERE schemaname = 'toss_billing'")


def rows_written(psql):
    """Rows written so far; psql(sql) runs one statement in a new session."""
    return int(psql(SQL))
