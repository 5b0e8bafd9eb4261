# make run        - the system on this machine: emulated AWS, a local Redis, a worker
# make test       - everything the tests need, then ruff, the page's node tests and the suite
# make web-assets - xterm.js from the npm registry, copied where the gateway serves it

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
WEB := gateway/web
VENDOR := $(WEB)/vendor
NPM_INSTALLED := $(WEB)/node_modules/.installed
VENDORED := $(VENDOR)/xterm.js $(VENDOR)/xterm.css $(VENDOR)/addon-fit.js

.PHONY: run test test-web lint system-deps web-assets constraints clean

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

run: system-deps $(INSTALLED) web-assets
	$(BIN)/python dev/stack.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info $(VENDOR) $(WEB)/node_modules \
		tests/browser/output
