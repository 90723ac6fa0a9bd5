# Two commands on a fresh machine: `make run` and `make test`. Everything else installs itself.
PYTHON ?= python3
PORT   ?= 9000
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: install run test bench lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "bounce-operator needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1). Try: make PYTHON=python3.11 ..." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## The service on an embedded PostgreSQL with the example config, on http://127.0.0.1:$(PORT) (make run PORT=9001)
run: $(STAMP)
	$(BIN)/bounce-service dev --config examples/bounceconfig.yaml --secrets-dir examples/secrets --port $(PORT)

## The whole suite against real parts (embedded PostgreSQL unless TEST_DATABASE_URL is set)
test: $(STAMP)
	scripts/install-system-deps.sh
	$(BIN)/python -m pytest

## Benchmarks (not part of the tests; bench/_*.py are their shared parts); figures go to BENCHMARKS.md
bench: $(STAMP)
	@for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .tmp .pytest_cache
