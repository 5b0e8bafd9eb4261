"""Where workers come from: ECS Fargate tasks, or local processes for development.

Both answer the same two questions: which of our workers are live (and which recent
launches failed to start), and launch N more, either to hold the warm floor (those never
take the idle exit) or for the backlog.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

import trio
from botocore.exceptions import BotoCoreError, ClientError

from runtime.aws.clients import error_code

from .settings import EcsSettings

logger = logging.getLogger(__name__)

FLOOR, BURST = "floor", "burst"
# Each task carries the token of the RunTask that launched it, so a call whose answer was
# lost can be found in the listing.
LAUNCH_TAG = "cloudide:launch"
# Reasons in RunTask's `failures` that mean "no capacity now": back off and retry later.
CAPACITY_HINTS = ("capacity", "RESOURCE:", "AGENT")
DESCRIBE_BATCH = 100
# stoppedReason texts of tasks that never got to run.
START_FAILURE_HINTS = ("CannotPullContainer", "ResourceInitializationError",
                       "CannotStartContainer")


class LaunchError(Exception):
    """Launching failed as a whole (throttled, unreachable); nothing is known launched."""


@dataclass
class LiveTasks:
    ids: dict[str, set[str]] = field(default_factory=lambda: {FLOOR: set(), BURST: set()})
    failed_starts: dict[str, str] = field(default_factory=dict)  # task id -> why
    stopped: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)


@dataclass
class LaunchResult:
    ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def short_of_capacity(self) -> bool:
        return any(hint.lower() in reason.lower() for reason in self.failures
                   for hint in CAPACITY_HINTS)


class EcsLauncher:
    """Fargate tasks tagged ``startedBy=<prefix>-floor`` or ``<prefix>-burst``."""

    def __init__(self, client, settings: EcsSettings, started_by: str):
        self._client = client
        self._settings = settings
        self._started_by = started_by
        self._limiter = trio.CapacityLimiter(4)

    def _tag(self, kind: str) -> str:
        return f"{self._started_by}-{kind}"

    async def _call(self, method: str, **kwargs):
        fn = getattr(self._client, method)
        try:
            return await trio.to_thread.run_sync(lambda: fn(**kwargs), limiter=self._limiter)
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(f"{method} failed: {error_code(exc) or exc}") from exc

    async def _listed(self, kind: str) -> set[str]:
        """Ids of our tasks of this kind that ECS means to keep running."""
        ids, token = set(), None
        while True:
            kwargs = {"cluster": self._settings.cluster, "startedBy": self._tag(kind),
                      "desiredStatus": "RUNNING"}
            if token:
                kwargs["nextToken"] = token
            page = await self._call("list_tasks", **kwargs)
            ids.update(arn.rsplit("/", 1)[-1] for arn in page["taskArns"])
            token = page.get("nextToken")
            if not token:
                return ids

    async def observe(self, watch: set[str]) -> LiveTasks:
        live = LiveTasks()
        for kind in (FLOOR, BURST):
            live.ids[kind] = await self._listed(kind)
        # How did the recent launches fare? A task that stopped before running failed to
        # start (an image that cannot be pulled, a missing role).
        pending = sorted(watch)
        for start in range(0, len(pending), DESCRIBE_BATCH):
            described = await self._call(
                "describe_tasks", cluster=self._settings.cluster,
                tasks=pending[start:start + DESCRIBE_BATCH],
            )
            for task in described.get("tasks", []):
                task_id = task["taskArn"].rsplit("/", 1)[-1]
                if task.get("lastStatus") == "RUNNING":
                    live.running.add(task_id)
                elif task.get("lastStatus") == "STOPPED":
                    live.stopped.add(task_id)
                    reason = task.get("stoppedReason", "")
                    if (task.get("stopCode") == "TaskFailedToStart"
                            or any(hint in reason for hint in START_FAILURE_HINTS)):
                        live.failed_starts[task_id] = reason or "failed to start"
        return live

    async def find_launched(self, client_token: str, *, kind: str) -> list[str]:
        """Ids of the listed tasks that the RunTask with this token launched."""
        listed = sorted(await self._listed(kind))
        found = []
        for start in range(0, len(listed), DESCRIBE_BATCH):
            described = await self._call(
                "describe_tasks", cluster=self._settings.cluster,
                tasks=listed[start:start + DESCRIBE_BATCH], include=["TAGS"],
            )
            found.extend(
                task["taskArn"].rsplit("/", 1)[-1] for task in described.get("tasks", [])
                if {"key": LAUNCH_TAG, "value": client_token} in task.get("tags", [])
            )
        return found

    async def launch(self, count: int, *, kind: str, client_token: str) -> LaunchResult:
        """One RunTask call (at most ten tasks). The same ``client_token`` on a retry
        returns the tasks of the first call instead of launching again."""
        settings = self._settings
        kwargs = {
            "cluster": settings.cluster,
            "taskDefinition": settings.task_definition,
            "count": count,
            "startedBy": self._tag(kind),
            "clientToken": client_token,
            "tags": [{"key": LAUNCH_TAG, "value": client_token}],
            "networkConfiguration": {"awsvpcConfiguration": {
                "subnets": list(settings.subnets),
                "securityGroups": list(settings.security_groups),
                "assignPublicIp": "ENABLED" if settings.assign_public_ip else "DISABLED",
            }},
            "capacityProviderStrategy": [
                {"capacityProvider": settings.capacity_provider, "weight": 1}
            ],
        }
        if kind == FLOOR:
            kwargs["overrides"] = {"containerOverrides": [{
                "name": settings.container_name,
                "environment": [{"name": "IDLE_TIMEOUT_SECONDS", "value": "0"}],
            }]}
        response = await self._call("run_task", **kwargs)
        return LaunchResult(
            ids=[task["taskArn"].rsplit("/", 1)[-1] for task in response.get("tasks", [])],
            failures=[f"{failure.get('arn', '')}: {failure.get('reason', 'unknown')}"
                      for failure in response.get("failures", [])],
        )

    async def close(self) -> None:
        """ECS tasks outlive the scaler; nothing to stop."""


class LocalLauncher:
    """Workers as local processes (``python -m runtime``) with the scaler's settings."""

    def __init__(self, environment: dict[str, str], command: list[str] | None = None):
        self._environment = environment
        self._command = command or [sys.executable, "-m", "runtime"]
        self._processes: dict[str, tuple[str, trio.Process]] = {}
        self._launched = 0

    async def observe(self, watch: set[str]) -> LiveTasks:
        live = LiveTasks()
        for task_id, (kind, process) in list(self._processes.items()):
            code = process.returncode
            if code is None:
                live.ids[kind].add(task_id)
                live.running.add(task_id)
                continue
            del self._processes[task_id]
            live.stopped.add(task_id)
            if code != 0 and task_id in watch:
                live.failed_starts[task_id] = f"worker exited with status {code}"
        return live

    async def find_launched(self, client_token: str, *, kind: str) -> list[str]:
        """A local launch always answers (it raises no LaunchError): nothing to find."""
        return []

    async def launch(self, count: int, *, kind: str, client_token: str) -> LaunchResult:
        result = LaunchResult()
        environment = dict(self._environment)
        if kind == FLOOR:
            environment["IDLE_TIMEOUT_SECONDS"] = "0"
        for _ in range(count):
            self._launched += 1
            task_id = f"local-{os.getpid()}-{self._launched}"
            environment["WORKER_ID"] = task_id
            try:
                process = await trio.lowlevel.open_process(self._command, env=dict(environment))
            except OSError as exc:
                result.failures.append(f"{task_id}: {exc}")
                continue
            self._processes[task_id] = (kind, process)
            result.ids.append(task_id)
        return result

    async def close(self) -> None:
        """Stop the workers we started; they hand their commands back on SIGTERM."""
        for _, process in self._processes.values():
            if process.returncode is None:
                process.terminate()
        with trio.move_on_after(40, shield=True):
            for _, process in self._processes.values():
                await process.wait()
        for _, process in self._processes.values():
            if process.returncode is None:
                process.kill()
