# make run  - the system on this machine: emulated AWS, a local Redis, a worker
# make test - everything the tests need, then ruff and the whole suite

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint system-deps clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# redis-server from Debian's packages when it is not on PATH (tests start their own).
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	}

lint: $(INSTALLED)
	$(BIN)/ruff check .

test: system-deps $(INSTALLED) lint
	$(BIN)/pytest

run: system-deps $(INSTALLED)
	$(BIN)/python dev/stack.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
