# pg_eventbus: PGXS build, plus the two set-up commands of the README:
#   make demo   installs what is missing, builds, runs a short example
#   make test   installs what is missing, builds, runs every test suite
#
# PG=N picks the PostgreSQL major (15 by default, the host's).  Majors the
# host's Debian does not package run in a chroot of a newer Debian suite
# (scripts/chroot.sh, docs/development.md):
#   make test PG=18   every test suite against PostgreSQL 18
#   make test-all     every test suite against every supported major

EXTENSION  = pg_eventbus
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)

MODULE_big = pg_eventbus
OBJS       = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA       = $(wildcard sql/$(EXTENSION)--*.sql)
# The regression suite (sql/, expected/) for PGXS's installcheck: what the
# Debian package's test runs against the installed package
# (debian/tests/installcheck).  make test runs it too, with the others.
REGRESS    = $(sort $(basename $(notdir $(filter-out sql/$(EXTENSION)--%,$(wildcard sql/*.sql)))))
PG_CPPFLAGS = -I$(srcdir)/src
SHLIB_LINK  = -lrdkafka
EXTRA_CLEAN = test/mock_kafka .pg_built_for

# Supported majors; those in CHROOT_MAJORS are tested in a chroot.
MAJORS        = 15 17 18 19
CHROOT_MAJORS = 17 18 19
PG ?= $(or $(PG_MAJOR),15)
export PG_MAJOR := $(PG)

# Debian's pg_config for that major; for the default major, any pg_config
# in PATH otherwise.
PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/$(PG)/bin/pg_config) \
	$(if $(filter 15,$(PG)),pg_config))
PGXS := $(if $(PG_CONFIG),$(shell $(PG_CONFIG) --pgxs 2>/dev/null))

.PHONY: deps demo test test-all bench compat-check dist

ifneq ($(PGXS),)
include $(PGXS)
# Objects built for another PostgreSQL (another PG=, or a build in a
# chroot), or with other PG_CFLAGS (CI's assertion checks, which a
# benchmark must not measure), are rebuilt rather than linked into this
# one's module.
EB_BUILT_FOR := $(shell $(PG_CONFIG) --version) flags: $(PG_CFLAGS)
ifneq ($(EB_BUILT_FOR),$(shell cat .pg_built_for 2>/dev/null))
$(shell echo '$(EB_BUILT_FOR)' > .pg_built_for)
endif
$(OBJS): .pg_built_for
# PGXS tracks no header dependencies: every object is rebuilt when a header
# changes (shared-memory structs must agree across files).
$(OBJS): $(wildcard src/*.h)
else
all:
	@echo "PostgreSQL $(PG) server development files are missing: run 'make deps PG=$(PG)' or 'make test PG=$(PG)' (a chroot for $(CHROOT_MAJORS))." >&2
	@exit 1
endif

$(EXTENSION)--$(EXTVERSION).sql: $(sort $(wildcard src/sql/*.sql))
	cat $^ > $@

# Test helper: librdkafka's mock Kafka cluster.
test/mock_kafka: test/mock_kafka.c
	$(CC) -O2 -Wall -Wextra $(EB_CFLAGS) -o $@ $< -lrdkafka

# src/compat.h compiles against this major, warning-free (its inline
# functions included).  Another major: scripts/chroot.sh make 18 compat-check
compat-check:
	@printf '#include "compat.h"\n' | \
		$(CC) $(CFLAGS) $(CPPFLAGS) -Wextra -Wno-unused-parameter -Werror -fsyntax-only -x c - && \
		echo "src/compat.h compiles against $$($(PG_CONFIG) --version)"

deps:
	@scripts/deps.sh

# The PGXN distribution (META.json): the committed tree at HEAD.
dist:
	git archive --format zip --prefix=$(EXTENSION)-$(EXTVERSION)/ \
		-o $(EXTENSION)-$(EXTVERSION).zip HEAD

demo: deps
	@scripts/demo.sh

# In a chroot (EB_CHROOT is set there) every major is local.
ifneq ($(and $(filter $(PG),$(CHROOT_MAJORS)),$(if $(EB_CHROOT),,host)),)
test:
	@scripts/chroot.sh test $(PG)
else
test: deps
	@scripts/test.sh
endif

test-all:
	@failed=; for v in $(MAJORS); do \
		$(MAKE) --no-print-directory test PG=$$v || failed="$$failed $$v"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test-all: failed on PostgreSQL$$failed" >&2; exit 1; fi; \
	echo "make test-all: passed on PostgreSQL $(MAJORS)"

bench: deps
	@bench/run.sh
