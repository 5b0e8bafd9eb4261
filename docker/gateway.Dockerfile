# The gateway: `python -m gateway`, the web terminal page and its websockets on one port.
# Build from the repository root: docker build -f docker/gateway.Dockerfile -t cloudide-gateway .

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# The project's dependencies at the versions constraints.txt pins, in a virtualenv that is
# copied whole into the image. The code is copied as source, not installed.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt -r requirements.txt

# xterm.js at the versions package-lock.json pins; only the three files the page loads
# reach the image (as `make web-assets` copies them).
FROM node:22-bookworm-slim AS web
WORKDIR /web
COPY gateway/web/package.json gateway/web/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim-bookworm
# Versions come with the pinned Debian release; exact pins would break every build once a
# security update replaces them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY runtime/ runtime/
COPY gateway/ gateway/
COPY --from=web /web/node_modules/@xterm/xterm/lib/xterm.js gateway/web/vendor/xterm.js
COPY --from=web /web/node_modules/@xterm/xterm/css/xterm.css gateway/web/vendor/xterm.css
COPY --from=web /web/node_modules/@xterm/addon-fit/lib/addon-fit.js gateway/web/vendor/addon-fit.js
USER 10001:10001
ENV PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_PORT=8080
EXPOSE 8080
# On SIGTERM it closes every websocket with 1012 ("reconnect") within GATEWAY_DRAIN_SECONDS.
STOPSIGNAL SIGTERM
# 200 while its Redis subscription is up, 503 otherwise.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['GATEWAY_PORT'] + '/healthz', timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["/opt/venv/bin/python", "-m", "gateway"]
