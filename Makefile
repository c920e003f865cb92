# tenantry: `make demo` runs the local platform demo, `make test` the tests.
GO ?= go
BIN := bin/tenantry

.PHONY: all build demo up test bench postgres vet clean

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

test: postgres
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

bench: postgres build
	./$(BIN) bench route

clean:
	rm -rf bin
