# The worker: `python -m runtime`, the Fargate task's entrypoint.
# Build from the repository root: docker build -f docker/worker.Dockerfile -t cloudide-worker .

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# The project's dependencies at the versions constraints.txt pins, in a virtualenv that is
# copied whole into the image. The code is copied as source, not installed.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt -r requirements.txt
COPY runtime/ /app/runtime/
# The worker's code and libraries are root's alone: a user's command, under an id of its
# own, cannot read them to look for how the worker holds its credentials. Done here, so
# the final image carries the files once, with these modes.
RUN chmod -R go= /opt/venv /app

FROM python:3.11-slim-bookworm
# What users' commands expect (bash, git, node and npm; python3 is the base image's), and
# tini. Versions come with the pinned Debian release; exact pins would break every build
# once a security update replaces them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bash ca-certificates git nodejs npm tini \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
# No USER: the worker starts as root so that it can run each user's command under a user
# id of its own, dropping root for every command it spawns. The virtualenv stays off PATH,
# which commands inherit: their python3 and pip are the system's, not the worker's.
ENV PYTHONDONTWRITEBYTECODE=1
# tini is PID 1: it hands SIGTERM to the worker (which then drains for
# SHUTDOWN_GRACE_SECONDS) and reaps what users' commands leave orphaned.
STOPSIGNAL SIGTERM
# The worker serves nothing to probe. A dead worker ends the task (tini exits with it), and
# a stuck one loses its leases, so its commands come back to the queue.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["/opt/venv/bin/python", "-m", "runtime"]
