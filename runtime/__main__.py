"""``python -m runtime``: the worker, as the Fargate task's entrypoint.

Exits 0 when idle for IDLE_TIMEOUT_SECONDS or after a graceful SIGTERM; exits 2 with one
line naming the setting when a setting is missing or malformed, or when the worker is
not root and was not told to run commands as its own user.
"""

from __future__ import annotations

import logging
import os
import sys

import trio

from runtime.aws.queue import QueueError
from runtime.bus.connection import RedisError
from runtime.contract.logs import configure_logging
from runtime.contract.settings import SettingError, load_environment
from runtime.contract.stopping import run_until_stopped
from runtime.worker.confinement import ConfinementUnavailable, isolation_problem
from runtime.worker.settings import WorkerSettings
from runtime.worker.worker import Worker

logger = logging.getLogger("runtime")


async def serve(settings: WorkerSettings) -> None:
    worker = Worker.from_settings(settings)
    await worker.preflight()
    await run_until_stopped(worker.run, worker.stop)


def main() -> int:
    configure_logging()
    try:
        settings = WorkerSettings.from_env(load_environment())
    except SettingError as exc:
        print(f"runtime: bad setting: {exc}", file=sys.stderr)
        return 2
    problem = isolation_problem(settings, os.geteuid())
    if problem is not None:
        print(f"runtime: refusing to run commands: {problem}", file=sys.stderr)
        return 2
    try:
        trio.run(serve, settings)
    except (QueueError, RedisError, ConfinementUnavailable) as exc:
        logger.error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
