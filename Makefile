# Two commands set up a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SERVER_STAMP := $(VENV)/.installed-server

.PHONY: install install-server run test test-fast test-python test-node soak lint format clean

# The development install (the server, the CLI and the tools `make test` runs). Reinstalls
# only when pyproject.toml changes.
install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The official Julep client, for the compatibility tests (see pyproject's julep-compat).
	$(BIN)/python -m pip install --quiet --no-deps --group julep-compat
	touch $(STAMP)

# The server and the CLI alone, for `make run`: no test or lint tools. A current development
# install holds them already, so after `make test` this installs nothing (pip never
# downgrades what satisfies a requirement anyway); `make test` after it installs the tools.
install-server: $(SERVER_STAMP)

$(SERVER_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if [ ! $(STAMP) -nt pyproject.toml ]; then \
		$(BIN)/python -m pip install --quiet --upgrade pip && \
		$(BIN)/python -m pip install --quiet -e '.[server]'; \
	fi
	touch $(SERVER_STAMP)

# The embedded default: SQLite in ./data, a generated development master key, and a
# bootstrap API key printed on first start.
run: install-server
	mkdir -p -m 700 data
	$(BIN)/strongroom migrate
	$(BIN)/strongroom serve --dev

lint: install
	$(BIN)/ruff check src tests bench examples deploy
	$(BIN)/ruff format --check src tests bench examples deploy
	$(BIN)/mypy
	$(BIN)/mypy examples deploy/healthcheck.py

format: install
	$(BIN)/ruff format src tests bench examples deploy
	$(BIN)/ruff check --fix src tests bench examples deploy

# Python tests run on SQLite and on PostgreSQL (STRONGROOM_TEST_POSTGRES_URL, by default
# postgresql://postgres@127.0.0.1:5432/postgres); under CI=true a missing server fails.
# Two workers (pytest-xdist), a test file each at a time: most tests wait on a server
# process or a database, so two halve the wall time even on two cores. Each worker has
# its own PostgreSQL database and temporary directories.
PYTEST_WORKERS ?= 2
test-python: install
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

# The Node.js SDK (clients/node): npm ci installs only its devDependencies (TypeScript and
# Node's types); its tests start the server from .venv, hence `install`.
test-node: install
	cd clients/node && npm ci --no-audit --no-fund && npm test

test: lint test-python test-node

# The in-process tests only (no server, CLI or database cluster processes: those are marked
# e2e, and an unmarked test that starts one fails): a few minutes, for the edit-test loop.
test-fast: install
	$(BIN)/pytest -m 'not e2e and not soak'

# The long fault tests (more kills, longer write streams; docs/faults.md), which `make
# test` leaves out. Several minutes; the same PostgreSQL as test-python.
soak: install
	$(BIN)/pytest -m soak tests/test_faults.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
