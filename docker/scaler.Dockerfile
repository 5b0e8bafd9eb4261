# The scaler: `python -m scaler`, and `python -m scaler bootstrap` (hence ecs/).
# Build from the repository root: docker build -f docker/scaler.Dockerfile -t cloudide-scaler .

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# The project's dependencies at the versions constraints.txt pins, in a virtualenv that is
# copied whole into the image. The code is copied as source, not installed.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt -r requirements.txt

FROM python:3.11-slim-bookworm
# Versions come with the pinned Debian release; exact pins would break every build once a
# security update replaces them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --uid 10001 --no-create-home --shell /usr/sbin/nologin scaler
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY runtime/ runtime/
COPY scaler/ scaler/
COPY ecs/ ecs/
USER 10001:10001
ENV PYTHONDONTWRITEBYTECODE=1 \
    SCALER_METRICS_PORT=9100
EXPOSE 9100
STOPSIGNAL SIGTERM
# Alive means serving its figures for Prometheus (SCALER_METRICS_PORT).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['SCALER_METRICS_PORT'] + '/metrics', timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["/opt/venv/bin/python", "-m", "scaler"]
