# toss_billing — PGXS build, plus the two user-facing entry points:
#   make demo   set up everything and walk through register card -> issue key -> charge
#   make test   set up everything and run every test suite (regress, TAP, emulator)
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

EXTENSION    = toss_billing
EXTVERSION   = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" toss_billing.control)
MODULE_big   = toss_billing
OBJS         = $(patsubst %.c,%.o,$(wildcard src/*.c))
# The base install script plus the upgrade scripts; CREATE EXTENSION walks the chain.
DATA         = $(wildcard sql/$(EXTENSION)--*.sql)
REGRESS      = $(patsubst sql/%.sql,%,$(filter-out sql/$(EXTENSION)--%,$(wildcard sql/*.sql)))

PG_CPPFLAGS  = -DEXTVERSION=\"$(EXTVERSION)\"
PG_CFLAGS    = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
SHLIB_LINK   = -lcurl -lcjson -lcrypto

# No JIT bitcode: it needs clang and buys nothing for an extension that waits on HTTP.
override with_llvm := no

ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
# Every object depends on every header: a struct shared with the worker must
# never be compiled in two sizes.
$(OBJS): $(wildcard src/*.h)
else
all:
	@echo "PostgreSQL server headers are missing: run 'make deps' (or 'make test' / 'make demo', which do it)." >&2
	@exit 1
endif

.PHONY: deps demo test emulator bench

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

emulator:
	test/emulator/run --port $${PORT:-4010} $(EMULATOR_ARGS)

bench: deps
	$(MAKE) all
	$(MAKE) install
	bench/emulator/run
	bench/charge_throughput
