"""WorkerSettings.from_env: defaults, and one clear error per bad value."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runtime.contract.settings import SettingError
from runtime.policy.limits import GIB, CommandLimits
from runtime.policy.visibility import SQS_MAX_VISIBILITY_S, LeasePolicy
from runtime.worker.confinement import isolation_problem
from runtime.worker.settings import WorkerSettings

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/commands"
REQUIRED = {"SQS_QUEUE_URL": QUEUE_URL, "S3_BUCKET": "ide-projects"}


def settings(**extra: str) -> WorkerSettings:
    return WorkerSettings.from_env({**REQUIRED, **extra})


def test_defaults():
    s = settings()

    assert s.sqs_queue_url == QUEUE_URL
    assert s.s3_bucket == "ide-projects"
    assert s.s3_prefix == "projects/"
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.workspace_root == Path("/tmp/workspaces")
    assert s.concurrency == 1
    assert s.idle_timeout_s == 60
    assert s.receive_wait_s == 20
    assert s.command_timeout_s == 3600
    assert s.lease == LeasePolicy(lease_s=60, extend_every_s=20)
    assert s.upload_interval_s == 30
    assert s.shutdown_grace_s == 15
    assert s.stop_timeout_s == 30
    assert s.kill_grace_s == 3
    assert s.aws_endpoint_url is None
    assert s.worker_id
    assert s.command_uid_base == 20000
    assert s.commands_as_worker_user is False
    assert s.limits == CommandLimits(max_processes=512, max_file_bytes=4 * GIB,
                                     max_open_files=4096, workspace_max_bytes=10 * GIB,
                                     workspace_check_s=5)


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings().concurrency = 4  # type: ignore[misc]


def test_every_setting_is_read():
    s = settings(
        S3_PREFIX="tenants/a/",
        REDIS_URL="rediss://cache.example:6380/2",
        WORKSPACE_ROOT="/srv/ws",
        WORKER_CONCURRENCY="4",
        IDLE_TIMEOUT_SECONDS="0",
        RECEIVE_WAIT_SECONDS="5",
        COMMAND_TIMEOUT_SECONDS="7200",
        LEASE_SECONDS="90",
        UPLOAD_INTERVAL_SECONDS="10",
        SHUTDOWN_GRACE_SECONDS="30",
        KILL_GRACE_SECONDS="5",
        STOP_TIMEOUT_SECONDS="60",
        AWS_ENDPOINT_URL="http://localhost:5000",
        WORKER_ID="worker-a",
        COMMAND_UID_BASE="30000",
        COMMANDS_AS_WORKER_USER="true",
        COMMAND_MAX_PROCESSES="64",
        COMMAND_MAX_FILE_BYTES="1048576",
        COMMAND_MAX_OPEN_FILES="256",
        WORKSPACE_MAX_BYTES="2097152",
        WORKSPACE_CHECK_SECONDS="0.5",
    )

    assert s.s3_prefix == "tenants/a/"
    assert s.redis_url == "rediss://cache.example:6380/2"
    assert s.workspace_root == Path("/srv/ws")
    assert s.concurrency == 4
    assert s.idle_timeout_s == 0
    assert s.receive_wait_s == 5
    assert s.command_timeout_s == 7200
    assert s.lease == LeasePolicy(lease_s=90, extend_every_s=30)
    assert s.upload_interval_s == 10
    assert s.shutdown_grace_s == 30
    assert s.kill_grace_s == 5
    assert s.aws_endpoint_url == "http://localhost:5000"
    assert s.worker_id == "worker-a"
    assert s.command_uid_base == 30000
    assert s.commands_as_worker_user is True
    assert s.limits == CommandLimits(max_processes=64, max_file_bytes=1048576,
                                     max_open_files=256, workspace_max_bytes=2097152,
                                     workspace_check_s=0.5)


def test_lease_is_extended_three_times_per_lease():
    s = settings(LEASE_SECONDS="45")
    assert s.lease.lease_s == 45
    assert s.lease.extend_every_s == 15


@pytest.mark.parametrize("missing", ["SQS_QUEUE_URL", "S3_BUCKET"])
def test_required_setting_missing_names_it(missing):
    environ = {k: v for k, v in REQUIRED.items() if k != missing}
    with pytest.raises(SettingError, match=f"{missing} is required"):
        WorkerSettings.from_env(environ)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SQS_QUEUE_URL", "commands"),
        ("SQS_QUEUE_URL", "sqs://us-east-1/commands"),
        ("SQS_QUEUE_URL", "https://"),
        ("S3_BUCKET", "bucket/projects"),
        ("S3_PREFIX", "projects"),
        ("S3_PREFIX", "/projects/"),
        ("REDIS_URL", "localhost:6379"),
        ("REDIS_URL", "http://localhost:6379"),
        ("REDIS_URL", "rediss://cache:6380/0?ssl_certfile=/client.pem"),  # not honoured
        ("WORKER_CONCURRENCY", "0"),
        ("WORKER_CONCURRENCY", "65"),
        ("WORKER_CONCURRENCY", "two"),
        ("IDLE_TIMEOUT_SECONDS", "-1"),
        ("RECEIVE_WAIT_SECONDS", "0"),
        ("RECEIVE_WAIT_SECONDS", "21"),
        ("COMMAND_TIMEOUT_SECONDS", "0"),
        ("COMMAND_TIMEOUT_SECONDS", str(SQS_MAX_VISIBILITY_S)),  # the 12-hour ceiling
        ("COMMAND_TIMEOUT_SECONDS", str(SQS_MAX_VISIBILITY_S + 1)),
        ("COMMAND_TIMEOUT_SECONDS", "soon"),
        ("LEASE_SECONDS", "2"),
        ("LEASE_SECONDS", str(SQS_MAX_VISIBILITY_S + 1)),
        ("UPLOAD_INTERVAL_SECONDS", "0.5"),
        ("SHUTDOWN_GRACE_SECONDS", "-1"),
        ("SHUTDOWN_GRACE_SECONDS", "23"),  # 23 + 3 leaves less than 5 s of the 30 s stop
        ("STOP_TIMEOUT_SECONDS", "121"),  # beyond what Fargate allows
        ("SHUTDOWN_GRACE_SECONDS", "nan"),
        ("KILL_GRACE_SECONDS", "0"),
        ("KILL_GRACE_SECONDS", "61"),
        ("COMMAND_UID_BASE", "0"),  # root
        ("COMMAND_UID_BASE", "999"),  # the system's own users
        ("COMMAND_UID_BASE", str(2 ** 32)),
        ("COMMANDS_AS_WORKER_USER", "maybe"),
        ("COMMAND_MAX_PROCESSES", "0"),
        ("COMMAND_MAX_FILE_BYTES", "1000"),
        ("COMMAND_MAX_OPEN_FILES", "3"),
        ("WORKSPACE_MAX_BYTES", "-1"),
        ("WORKSPACE_CHECK_SECONDS", "0"),
    ],
)
def test_bad_value_stops_with_a_message_naming_the_variable(name, value):
    with pytest.raises(SettingError) as caught:
        settings(**{name: value})
    message = str(caught.value)
    assert message.startswith(name), message
    assert "\n" not in message


def test_command_timeout_up_to_the_ceiling_minus_one_lease_is_accepted():
    longest = LeasePolicy().longest_command_s()
    assert settings(COMMAND_TIMEOUT_SECONDS=str(longest)).command_timeout_s == longest
    with pytest.raises(SettingError, match="COMMAND_TIMEOUT_SECONDS must be at most"):
        settings(COMMAND_TIMEOUT_SECONDS=str(longest + 1))


def test_shutdown_grace_limit_counts_the_kill_grace_and_the_stop_timeout():
    assert settings(SHUTDOWN_GRACE_SECONDS="22").shutdown_grace_s == 22
    assert settings(STOP_TIMEOUT_SECONDS="120", SHUTDOWN_GRACE_SECONDS="100",
                    KILL_GRACE_SECONDS="15").kill_grace_s == 15
    with pytest.raises(SettingError, match="SHUTDOWN_GRACE_SECONDS plus KILL_GRACE_SECONDS"):
        settings(STOP_TIMEOUT_SECONDS="120", SHUTDOWN_GRACE_SECONDS="100",
                 KILL_GRACE_SECONDS="16")


def test_command_env_never_carries_worker_secrets():
    s = settings(
        AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_SESSION_TOKEN="token",
        AWS_ENDPOINT_URL="http://localhost:5000",
        AWS_CONTAINER_CREDENTIALS_RELATIVE_URI="/v2/credentials/x",
        REDIS_URL="redis://:password@cache:6379/0",
        PATH="/opt/bin:/usr/bin",
        HOME="/home/worker",
    )

    leaked = {k for k in s.command_env if k.startswith("AWS_") or k == "REDIS_URL"}
    assert leaked == set()
    assert "SQS_QUEUE_URL" not in s.command_env
    assert "S3_BUCKET" not in s.command_env
    assert not any("secret" in v or "password" in v for v in s.command_env.values())
    # The allowlisted variables do pass, so the check above is not vacuous.
    assert s.command_env["PATH"] == "/opt/bin:/usr/bin"
    assert s.command_env["HOME"] == "/home/worker"


def test_blank_worker_id_falls_back_to_the_generated_one():
    assert settings(WORKER_ID="  ").worker_id.strip() != ""


@pytest.mark.parametrize("lease_s", ["901", "40000", str(SQS_MAX_VISIBILITY_S)])
def test_lease_of_hours_is_refused_so_every_command_timeout_stays_valid(lease_s):
    with pytest.raises(SettingError, match=r"^LEASE_SECONDS"):
        settings(LEASE_SECONDS=lease_s)


def test_default_command_timeout_fits_the_longest_lease():
    s = settings(LEASE_SECONDS="900")
    assert s.command_timeout_s <= s.lease.longest_command_s()


def test_a_worker_that_is_not_root_must_be_told_to_run_commands_as_itself():
    problem = isolation_problem(settings(), euid=1000)
    assert problem is not None
    assert "uid 1000, not root" in problem
    assert "COMMANDS_AS_WORKER_USER=true" in problem
    assert "\n" not in problem
    assert isolation_problem(settings(COMMANDS_AS_WORKER_USER="true"), euid=1000) is None
    assert isolation_problem(settings(), euid=0) is None
