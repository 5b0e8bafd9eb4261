"""The worker's settings, read once from the environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runtime.bus.connection import connection_options
from runtime.contract.settings import EnvReader, SettingError
from runtime.policy.environment import command_environment
from runtime.policy.limits import MIB, CommandLimits
from runtime.policy.visibility import LeasePolicy

# Fargate sends SIGKILL at most 120 s after SIGTERM.
FARGATE_MAX_STOP_S = 120
# Time an interrupted command needs after its kill: upload what changed, hand back.
HAND_BACK_BUDGET_S = 5
# Below this, ids belong to the system's own users, whose files a command could then touch.
LOWEST_COMMAND_UID = 1000
# How far above COMMAND_UID_BASE a worker looks for ids no other worker on the machine holds.
COMMAND_UID_SPAN = 1024
# Linux's highest user id ((uid_t) -1 means "no change").
HIGHEST_UID = 2 ** 32 - 2


@dataclass(frozen=True)
class WorkerSettings:
    sqs_queue_url: str
    s3_bucket: str
    s3_prefix: str = "projects/"
    redis_url: str = "redis://localhost:6379/0"
    workspace_root: Path = Path("/tmp/workspaces")
    concurrency: int = 1
    idle_timeout_s: float = 60
    receive_wait_s: int = 20
    command_timeout_s: float = 3600
    lease: LeasePolicy = field(default_factory=LeasePolicy)
    upload_interval_s: float = 30
    shutdown_grace_s: float = 15
    kill_grace_s: float = 3
    stop_timeout_s: float = 30
    aws_endpoint_url: str | None = None
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    command_env: Mapping[str, str] = field(default_factory=dict)
    # Each slot runs its commands as a uid (and the same gid) of its own, the first ids
    # from command_uid_base up that no other worker on the machine holds.
    command_uid_base: int = 20000
    # Only where the worker cannot switch user ids (not root): commands then run as the
    # worker's own user and can read everything it holds, credentials included.
    commands_as_worker_user: bool = False
    limits: CommandLimits = field(default_factory=CommandLimits)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerSettings:
        env = EnvReader(environ)
        # A lease is how late a dead worker's command comes back: minutes, not hours.
        lease_s = env.number("LEASE_SECONDS", 60, minimum=3, maximum=900)
        lease = LeasePolicy(lease_s=lease_s, extend_every_s=lease_s / 3)
        bucket = env.text("S3_BUCKET")
        if "/" in bucket:
            raise SettingError(f"S3_BUCKET must be a bucket name, not a path, got {bucket!r}")
        prefix = env.text("S3_PREFIX", "projects/")
        if prefix.startswith("/") or not prefix.endswith("/"):
            raise SettingError(f"S3_PREFIX must be relative and end with '/', got {prefix!r}")
        # The task's stopTimeout: SIGKILL follows SIGTERM after this long (ECS: 30 s).
        stop_timeout_s = env.number("STOP_TIMEOUT_SECONDS", 30, minimum=5,
                                    maximum=FARGATE_MAX_STOP_S)
        shutdown_grace_s = env.number("SHUTDOWN_GRACE_SECONDS", 15, minimum=0)
        kill_grace_s = env.number("KILL_GRACE_SECONDS", 3, minimum=0.1, maximum=60)
        if shutdown_grace_s + kill_grace_s + HAND_BACK_BUDGET_S > stop_timeout_s:
            raise SettingError(
                "SHUTDOWN_GRACE_SECONDS plus KILL_GRACE_SECONDS must leave "
                f"{HAND_BACK_BUDGET_S} s of STOP_TIMEOUT_SECONDS ({stop_timeout_s:g}) to save "
                "and hand back interrupted commands"
            )
        worker_id = env.optional_text("WORKER_ID")
        default = CommandLimits()
        limits = CommandLimits(
            max_processes=env.integer("COMMAND_MAX_PROCESSES", default.max_processes,
                                      minimum=8),
            max_file_bytes=env.integer("COMMAND_MAX_FILE_BYTES", default.max_file_bytes,
                                       minimum=MIB),
            max_open_files=env.integer("COMMAND_MAX_OPEN_FILES", default.max_open_files,
                                       minimum=64, maximum=1024 * 1024),
            workspace_max_bytes=env.integer("WORKSPACE_MAX_BYTES", default.workspace_max_bytes,
                                            minimum=MIB),
            workspace_max_files=env.integer("WORKSPACE_MAX_FILES", default.workspace_max_files,
                                            minimum=100),
            workspace_check_s=env.number("WORKSPACE_CHECK_SECONDS", default.workspace_check_s,
                                         minimum=0.1, maximum=3600),
        )
        return cls(
            sqs_queue_url=env.url("SQS_QUEUE_URL", ("http", "https")),
            s3_bucket=bucket,
            s3_prefix=prefix,
            redis_url=env.url("REDIS_URL", ("redis", "rediss", "unix"), cls.redis_url,
                              check=connection_options),
            workspace_root=Path(env.text("WORKSPACE_ROOT", "/tmp/workspaces")),
            concurrency=env.integer("WORKER_CONCURRENCY", 1, minimum=1, maximum=64),
            idle_timeout_s=env.number("IDLE_TIMEOUT_SECONDS", 60, minimum=0),
            # Shorter long polls make shutdown quicker at the cost of more requests.
            receive_wait_s=env.integer("RECEIVE_WAIT_SECONDS", 20, minimum=1, maximum=20),
            command_timeout_s=env.number(
                "COMMAND_TIMEOUT_SECONDS", 3600, minimum=1, maximum=lease.longest_command_s()
            ),
            lease=lease,
            upload_interval_s=env.number("UPLOAD_INTERVAL_SECONDS", 30, minimum=1),
            shutdown_grace_s=shutdown_grace_s,
            kill_grace_s=kill_grace_s,
            stop_timeout_s=stop_timeout_s,
            aws_endpoint_url=env.optional_text("AWS_ENDPOINT_URL"),
            command_env=command_environment(environ),
            command_uid_base=env.integer("COMMAND_UID_BASE", 20000, minimum=LOWEST_COMMAND_UID,
                                         maximum=HIGHEST_UID - COMMAND_UID_SPAN),
            commands_as_worker_user=env.boolean("COMMANDS_AS_WORKER_USER", False),
            limits=limits,
            **({"worker_id": worker_id} if worker_id else {}),
        )
