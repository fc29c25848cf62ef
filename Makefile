# toss_billing — PGXS build, plus the two user-facing entry points:
#   make demo   set up everything and walk through register card -> issue key -> charge
#   make test   set up everything and run every test suite (regress, TAP, emulator)
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

EXTENSION    = toss_billing
EXTVERSION   = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" toss_billing.control)
MODULE_big   = toss_billing
OBJS         = $(patsubst %.c,%.o,$(wildcard src/*.c))
# The schema's one source is sql/schema/ (one file per domain).  The install
# script of the default version is generated from it, and so is the upgrade
# script from the last released version, which is sql/upgrade/<from>--<to>.sql
# (the migration of the tables) followed by the schema's code sections.  The
# older scripts in sql/ are released history: they stay so that installations
# of earlier versions can ALTER EXTENSION ... UPDATE.  When a version is
# released, its generated upgrade script is committed as history and
# UPGRADE_FROM moves on.
UPGRADE_FROM = 0.4.0
SCHEMA       = $(sort $(wildcard sql/schema/*.sql))
DATA_built   = sql/$(EXTENSION)--$(EXTVERSION).sql sql/$(EXTENSION)--$(UPGRADE_FROM)--$(EXTVERSION).sql
DATA         = $(filter-out $(DATA_built),$(wildcard sql/$(EXTENSION)--*.sql))
REGRESS      = $(patsubst sql/%.sql,%,$(filter-out sql/$(EXTENSION)--%,$(wildcard sql/*.sql)))

# installcheck needs the Toss emulator beside the running server: our own
# target (below) starts it and runs pg_regress against that server.
NO_INSTALLCHECK = 1

PG_CPPFLAGS  = -DEXTVERSION=\"$(EXTVERSION)\"
# Every warning is an error.  Unused parameters are the one exception: the
# signatures of SQL functions (PG_FUNCTION_ARGS) and of PostgreSQL's and
# libcurl's callbacks are fixed, whether or not a body needs each argument.
PG_CFLAGS    = -Wall -Wextra -Werror -Wno-unused-parameter
SHLIB_LINK   = -lcurl -lcjson -lcrypto

# No JIT bitcode: it needs clang and buys nothing for an extension that waits on HTTP.
override with_llvm := no

ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
sql/$(EXTENSION)--$(EXTVERSION).sql: $(SCHEMA) sql/schema.awk
	awk -v mode=install -f sql/schema.awk $(SCHEMA) > $@
sql/$(EXTENSION)--$(UPGRADE_FROM)--$(EXTVERSION).sql: sql/upgrade/$(UPGRADE_FROM)--$(EXTVERSION).sql $(SCHEMA) sql/schema.awk
	awk -v mode=upgrade -f sql/schema.awk $< $(SCHEMA) > $@

# Every object depends on every header: a struct shared with the worker must
# never be compiled in two sizes.
$(OBJS): $(wildcard src/*.h)
else
all:
	@echo "PostgreSQL server headers are missing: run 'make deps' (or 'make test' / 'make demo', which do it)." >&2
	@exit 1
endif

.PHONY: deps demo test installcheck emulator bench

# The regression suite against an already running, preloaded server set up
# for testing (README: Testing against your own cluster).
installcheck:
	PG_CONFIG=$(PG_CONFIG) test/scripts/installcheck

deps:
	test/scripts/install-deps

demo: deps
	$(MAKE) all
	$(MAKE) install
	test/scripts/demo

test: deps
	$(MAKE) all
	$(MAKE) install
	test/scripts/run-tests

# The project's test merchants; EMULATOR_ARGS='--merchant test_sk_…' adds yours.
emulator:
	test/emulator/run --port $${PORT:-4010} --merchants test/scripts/merchants.json $(EMULATOR_ARGS)

bench: deps
	$(MAKE) all
	$(MAKE) install
	bench/emulator/run
	bench/charge_throughput
	bench/charge_concurrency
