"""The environment a user's command sees: an allowlist, never the worker's secrets."""

from __future__ import annotations

import pytest

from runtime.policy.environment import (
    DEFAULT_PATH,
    PASSED_THROUGH,
    command_environment,
    for_user,
)

WORKER_ENV = {
    "PATH": "/opt/node/bin:/usr/bin",
    "HOME": "/home/app",
    "LANG": "en_US.UTF-8",
    "LC_ALL": "en_US.UTF-8",
    "TZ": "Europe/Paris",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
    "AWS_SESSION_TOKEN": "token",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc",
    "AWS_ENDPOINT_URL": "http://localhost:5000",
    "REDIS_URL": "redis://:hunter2@cache:6379/0",
    "GATEWAY_SECRET": "s3cr3t",
    "SQS_QUEUE_URL": "https://sqs/q",
    "S3_BUCKET": "bucket",
    "ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/x",
    "COLUMNS": "80",
    "LINES": "24",
    "TERM": "dumb",
}


def test_allowlisted_variables_pass_through():
    env = command_environment(WORKER_ENV)
    for name in PASSED_THROUGH:
        assert env[name] == WORKER_ENV[name]


def test_only_the_allowlist_and_term_pass():
    assert set(command_environment(WORKER_ENV)) == {*PASSED_THROUGH, "TERM"}


@pytest.mark.parametrize(
    "secret",
    [name for name in WORKER_ENV if name.startswith(("AWS_", "ECS_"))]
    + ["REDIS_URL", "GATEWAY_SECRET", "SQS_QUEUE_URL", "S3_BUCKET"],
)
def test_secrets_never_pass(secret):
    env = command_environment(WORKER_ENV)
    assert secret not in env
    assert WORKER_ENV[secret] not in env.values()


def test_size_variables_do_not_pass():
    env = command_environment(WORKER_ENV)
    assert "COLUMNS" not in env
    assert "LINES" not in env


def test_term_is_always_xterm():
    assert command_environment(WORKER_ENV)["TERM"] == "xterm-256color"
    assert command_environment({})["TERM"] == "xterm-256color"


def test_defaults_for_a_bare_environment():
    assert command_environment({}) == {
        "PATH": DEFAULT_PATH, "LANG": "C.UTF-8", "TERM": "xterm-256color",
    }


def test_worker_environment_is_not_modified():
    worker_env = dict(WORKER_ENV)
    command_environment(worker_env)
    assert worker_env == WORKER_ENV


def test_a_command_user_gets_its_own_home_and_name_and_nothing_else_changes():
    base = command_environment(WORKER_ENV)
    env = for_user(base, name="cloudide", home="/ws/.homes/20000")
    assert env == {**base, "HOME": "/ws/.homes/20000", "USER": "cloudide",
                   "LOGNAME": "cloudide"}
    assert base["HOME"] == WORKER_ENV["HOME"]  # not modified
