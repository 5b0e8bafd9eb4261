# make run        - the system on this machine: emulated AWS, a local Redis, a worker
# make test       - everything the tests need, then ruff, the page's node tests and the suite
# make web-assets - xterm.js from the npm registry, copied where the gateway serves it
# make bench      - every benchmark beside its peer, then a summary (see bench/RESULTS.md)
# make test-localstack - the end-to-end cases again, against LocalStack run without Docker

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
WEB := gateway/web
VENDOR := $(WEB)/vendor
NPM_INSTALLED := $(WEB)/node_modules/.installed
VENDORED := $(VENDOR)/xterm.js $(VENDOR)/xterm.css $(VENDOR)/addon-fit.js

.PHONY: run test test-web test-localstack lint bench system-deps web-assets constraints clean

# constraints.txt pins every Python package (a known-good set, and no slow resolution
# between awscli's and boto3's pins of botocore); refresh it with `make constraints`.
$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

constraints: $(INSTALLED)
	$(BIN)/pip freeze --exclude-editable > constraints.txt

# From Debian's packages when missing: redis-server (tests start their own), node and npm
# (the page's assets and tests), chromium (the browser test drives /usr/bin/chromium).
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	}
	@command -v npm >/dev/null 2>&1 || { \
		echo "installing nodejs and npm"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	}
	@test -x /usr/bin/chromium || { \
		echo "installing chromium"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	}

# node_modules stays out of what the gateway serves (see StaticFiles); only the three files
# the page loads are copied into vendor/.
$(NPM_INSTALLED): $(WEB)/package.json $(WEB)/package-lock.json | system-deps
	cd $(WEB) && npm ci --no-audit --no-fund
	touch $@

$(VENDOR)/xterm.js: $(NPM_INSTALLED)
	install -D -m 644 $(WEB)/node_modules/@xterm/xterm/lib/xterm.js $@

$(VENDOR)/xterm.css: $(NPM_INSTALLED)
	install -D -m 644 $(WEB)/node_modules/@xterm/xterm/css/xterm.css $@

$(VENDOR)/addon-fit.js: $(NPM_INSTALLED)
	install -D -m 644 $(WEB)/node_modules/@xterm/addon-fit/lib/addon-fit.js $@

web-assets: $(VENDORED)

# The line editor's tests (node's own runner; no DOM, no browser).
test-web: | system-deps
	node --test --test-reporter=spec $(WEB)/*.test.js

lint: $(INSTALLED)
	$(BIN)/ruff check .

test: system-deps $(INSTALLED) web-assets lint test-web
	$(BIN)/pytest
	@if [ -n "$(LOCALSTACK_PYTHON)" ]; then \
		$(MAKE) --no-print-directory test-localstack LOCALSTACK_PYTHON="$(LOCALSTACK_PYTHON)"; \
	else \
		echo "skipped the LocalStack run: it needs Python 3.13 or newer, none found" \
			"(set LOCALSTACK_PYTHON)"; \
	fi

# LocalStack (SQS and S3) as a process on this machine, no Docker: its runtime needs Python
# 3.13 or newer, found on PATH or among pyenv's versions, in a virtualenv of its own so its
# pins (dev/localstack-constraints.txt) never meet the project's. The end-to-end cases that
# start a LocalSystem from AWS_ENDPOINT_URL run against it; the others start their own moto.
LOCALSTACK_VENV := .venv-localstack
LOCALSTACK_INSTALLED := $(LOCALSTACK_VENV)/.installed
LOCALSTACK_PYTHON ?= $(shell for p in python3.14 python3.13 \
	$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[3-9]*/bin/python3 2>/dev/null | sort -rV); do \
	"$$p" -c 'import sys; assert sys.version_info >= (3, 13)' >/dev/null 2>&1 \
	&& { command -v "$$p"; break; }; done)
LOCALSTACK_CASES := not make_run and not fakeredis

$(LOCALSTACK_INSTALLED): dev/localstack-constraints.txt
	@test -n "$(LOCALSTACK_PYTHON)" || { \
		echo "LocalStack needs Python 3.13 or newer: none found; set LOCALSTACK_PYTHON"; exit 1; }
	rm -rf $(LOCALSTACK_VENV)
	$(LOCALSTACK_PYTHON) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCALSTACK_VENV)/bin/pip install --quiet -c dev/localstack-constraints.txt \
		'localstack-core[base-runtime]' service-identity
	touch $@

test-localstack: system-deps $(INSTALLED) web-assets $(LOCALSTACK_INSTALLED)
	$(BIN)/python dev/localstack.py --python $(LOCALSTACK_VENV)/bin/python -- \
		$(BIN)/pytest tests/e2e/test_whole_system.py -k '$(LOCALSTACK_CASES)'

# Figures, never pass/fail: each script starts its own servers on free ports and stops them.
bench: system-deps $(INSTALLED)
	$(BIN)/python -m bench.all

run: system-deps $(INSTALLED) web-assets
	$(BIN)/python dev/stack.py

clean:
	rm -rf $(VENV) $(LOCALSTACK_VENV) .pytest_cache .ruff_cache *.egg-info $(VENDOR) \
		$(WEB)/node_modules tests/browser/output
