# pg_eventbus: PGXS build, plus the two set-up commands of the README:
#   make demo   installs what is missing, builds, runs a short example
#   make test   installs what is missing, builds, runs every test suite

EXTENSION  = pg_eventbus
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = pg_eventbus
OBJS       = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA       = $(wildcard sql/$(EXTENSION)--*--*.sql)
PG_CPPFLAGS = -I$(srcdir)/src
SHLIB_LINK  = -lrdkafka
EXTRA_CLEAN = test/mock_kafka

# PostgreSQL 15 is the supported server; prefer its pg_config.
PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

.PHONY: deps demo test bench

ifneq ($(PGXS),)
include $(PGXS)
else
all:
	@echo "PostgreSQL 15 server development files are missing: run 'make deps', 'make demo' or 'make test'." >&2
	@exit 1
endif

$(EXTENSION)--$(EXTVERSION).sql: $(sort $(wildcard src/sql/*.sql))
	cat $^ > $@

# Test helper: librdkafka's mock Kafka cluster.
test/mock_kafka: test/mock_kafka.c
	$(CC) -O2 -Wall -Wextra $(EB_CFLAGS) -o $@ $< -lrdkafka

deps:
	@scripts/deps.sh

demo: deps
	@scripts/demo.sh

test: deps
	@scripts/test.sh

bench: deps
	@bench/run.sh
