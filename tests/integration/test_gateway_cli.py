"""`python -m gateway` as a program: the token command and start-up errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.tokens import verify_token

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cli-test-secret-that-is-long-enough-for-hs256"


def run_gateway(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT,
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_token_command_prints_a_token_the_gateway_accepts():
    result = run_gateway("token", "--project", "abc123", "--terminal", "term-1", "--ttl", "60",
                         "--user", "ada", GATEWAY_SECRET=SECRET)
    assert result.returncode == 0, result.stderr
    grant = verify_token(SECRET, result.stdout.strip(), project_id="abc123",
                         terminal_id="term-1", now=time.time())
    assert grant.user == "ada"
    assert time.time() < grant.expires_at <= time.time() + 61


def test_token_command_refuses_a_bad_project_id():
    result = run_gateway("token", "--project", "../x", "--terminal", "t", GATEWAY_SECRET=SECRET)
    assert result.returncode == 2
    assert "--project" in result.stderr


@pytest.mark.parametrize(("env", "named"), [
    ({}, "GATEWAY_SECRET"),
    ({"GATEWAY_SECRET": "short"}, "GATEWAY_SECRET"),
    ({"GATEWAY_SECRET": SECRET, "GATEWAY_PORT": "http"}, "GATEWAY_PORT"),
    ({"GATEWAY_SECRET": SECRET, "SQS_QUEUE_URL": "http://q", "GATEWAY_ALLOWED_ORIGINS": "*"},
     "GATEWAY_ALLOWED_ORIGINS"),
])
def test_bad_setting_stops_start_with_one_line_naming_it(env, named):
    result = run_gateway(**{"SQS_QUEUE_URL": "http://127.0.0.1:1/q", **env})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert named in lines[0]
