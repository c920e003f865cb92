# tenantry: `make demo` runs the local platform demo, `make test` the tests.
GO ?= go
BIN := bin/tenantry

.PHONY: all build demo up test fuzz bench postgres chromium screenshots vet clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/tenantry

postgres:
	@./scripts/ensure-postgres.sh >/dev/null
	@./scripts/ensure-pguser.sh

demo: postgres build
	./$(BIN) demo

up: postgres build
	./$(BIN) up

# Fuzz targets: package and target name. `make test` runs each for
# FUZZTIME_TEST after the unit tests (seed corpora in each package's
# testdata/fuzz run with the unit tests already); `make fuzz` for FUZZTIME.
# FUZZTIME_TEST is a count of inputs, not a duration: with a duration, Go
# 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" as the time runs out (go.dev/issue/75804, fixed in Go 1.27); a
# count has no deadline to race.
FUZZ_TARGETS := registry:FuzzValidateName registry:FuzzParseMemberSpec tenantsig:FuzzVerify oms:FuzzDecodeRequest jsonapi:FuzzDecode gateway:FuzzGateway_ServeHTTP
FUZZTIME_TEST ?= 20000x
FUZZTIME ?= 2m

# The dashboard's browser tests drive headless Chromium.
chromium:
	@./scripts/ensure-chromium.sh >/dev/null

test: postgres chromium
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_TEST)

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) ./$$pkg; \
	done

# Regenerates the README's screenshots of the dashboard's move and rollout views.
screenshots: postgres chromium
	$(GO) test -count=1 -run 'TestDashboard' ./platform -screenshots $(CURDIR)/docs

bench: postgres build
	./$(BIN) bench route

clean:
	rm -rf bin
