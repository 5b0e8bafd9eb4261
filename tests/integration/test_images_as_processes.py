"""What each image runs, run as plain processes: the files an image copies, its command, and
its healthcheck against the real program (moto server and redis-server behind it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.dockerfiles import DOCKERFILES, ROOT, DockerIgnore, app_sources, parse
from tests.servers import TEST_CREDENTIALS, free_port

VENV_PYTHON = "/opt/venv/bin/python"
PROGRAMS = {"worker": "runtime", "scaler": "scaler", "gateway": "gateway"}
# Imports the program's entry module and names any module of ours found outside the folder
# (the repository's own copy is importable too, through the development install).
PROBE = """
import importlib, os, sys
importlib.import_module(sys.argv[1] + ".__main__")
outside = sorted(name for name, module in sys.modules.items()
                 if name.split(".")[0] in ("runtime", "scaler", "gateway")
                 and not (getattr(module, "__file__", None) or "").startswith(os.getcwd()))
sys.exit(f"imported from outside the image: {outside}" if outside else 0)
"""
# How long a healthcheck may take to pass after start (the images' start period, and more).
START_LIMIT_S = 30


def image_app(dockerfile: Path, into: Path) -> Path:
    """The image's /app: what its final stage copies from the build context."""
    ignore = DockerIgnore()
    app = into / "app"
    for source in app_sources(dockerfile):
        origin = ROOT / source
        for path in [origin, *origin.rglob("*")] if origin.is_dir() else [origin]:
            relative = path.relative_to(ROOT)
            if path.is_file() and not ignore.excludes(relative.as_posix()):
                (app / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, app / relative)
    return app


def on_this_machine(command: list[str]) -> list[str]:
    return [sys.executable if word == VENV_PYTHON else word for word in command]


def bare_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **extra}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.stem)
def test_the_image_command_starts_its_program_from_only_what_the_image_copies(
    dockerfile, tmp_path
):
    app = image_app(dockerfile, tmp_path)
    program = PROGRAMS[dockerfile.stem]
    probe = subprocess.run([sys.executable, "-c", PROBE, program], cwd=app, env=bare_env(),
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    # With no settings, the program stops at once with one line naming what is missing:
    # the command reached the program's own start, not an import error.
    command = on_this_machine(parse(dockerfile)[-1].exec_form("CMD"))
    result = subprocess.run(command, cwd=app, env=bare_env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"{program}: bad setting: ")
    assert len(result.stderr.strip().splitlines()) == 1


def healthcheck(dockerfile: Path, env: dict[str, str]) -> int:
    command = on_this_machine(parse(dockerfile)[-1].exec_form("HEALTHCHECK"))
    return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode


def passes_within(dockerfile: Path, env: dict[str, str], process: subprocess.Popen) -> bool:
    deadline = time.monotonic() + START_LIMIT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "the program exited while starting"
        if healthcheck(dockerfile, env) == 0:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize(("image", "settings"), [
    ("gateway", lambda aws, redis_url, port: {
        "GATEWAY_PORT": port, "GATEWAY_HOST": "127.0.0.1", "GATEWAY_SECRET": "s" * 32,
        "REDIS_URL": redis_url, "SQS_QUEUE_URL": aws.queue_url,
    }),
    ("scaler", lambda aws, redis_url, port: {
        "SCALER_METRICS_PORT": port, "SCALER_METRICS_HOST": "127.0.0.1",
        "SCALER_LAUNCHER": "local", "ECS_MAX_TASKS": "1", "SQS_QUEUE_URL": aws.queue_url,
    }),
])
def test_the_healthcheck_passes_while_the_program_serves_and_fails_once_it_stops(
    image, settings, aws, redis_server, tmp_path
):
    dockerfile = ROOT / "docker" / f"{image}.Dockerfile"
    app = image_app(dockerfile, tmp_path)
    env = bare_env(**TEST_CREDENTIALS, AWS_ENDPOINT_URL=aws.endpoint,
                   **settings(aws, redis_server.url, str(free_port())))
    process = subprocess.Popen(on_this_machine(parse(dockerfile)[-1].exec_form("CMD")),
                               cwd=app, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        assert passes_within(dockerfile, env, process)
    finally:
        process.terminate()  # the image's STOPSIGNAL
        assert process.wait(timeout=30) == 0
    assert healthcheck(dockerfile, env) != 0
