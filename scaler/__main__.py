"""``python -m scaler``: keep the right number of workers running.

``--once`` does one observe-decide-act round, prints the decision as one JSON line and
exits 0. A missing or malformed setting stops it with one line naming the setting.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio

from runtime.aws.clients import make_client
from runtime.aws.queue import CommandQueue, QueueError
from runtime.contract.logs import configure_logging
from runtime.contract.settings import SettingError, load_environment

from .launchers import EcsLauncher, LaunchError, LocalLauncher
from .loop import Scaler, decision_line
from .settings import ScalerSettings

logger = logging.getLogger(__name__)


def build(settings: ScalerSettings) -> Scaler:
    queue = CommandQueue(
        make_client("sqs", endpoint_url=settings.aws_endpoint_url, read_timeout_s=10,
                    attempts=3),
        settings.sqs_queue_url, limiter=trio.CapacityLimiter(2),
    )
    if settings.launcher == "local":
        launcher = LocalLauncher(dict(settings.worker_environment))
    else:
        launcher = EcsLauncher(
            make_client("ecs", endpoint_url=settings.aws_endpoint_url, read_timeout_s=20,
                        attempts=4),
            settings.ecs, settings.started_by,
        )
    return Scaler(settings, queue, launcher)


async def once(settings: ScalerSettings) -> int:
    scaler = build(settings)
    try:
        report = await scaler.evaluate()
    except (QueueError, LaunchError) as exc:
        print(f"scaler: round failed: {exc}", file=sys.stderr)
        return 1
    print(decision_line(report), flush=True)
    return 0


async def serve(settings: ScalerSettings) -> int:
    scaler = build(settings)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(scaler.run)
                async for signum in signals:
                    logger.info("received %s; stopping", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
        finally:
            await scaler.close()
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["bootstrap"]:
        from .bootstrap import main as bootstrap
        return bootstrap(argv[1:])
    if argv[:1] == ["simulate"]:
        from .simulation import main as simulate
        return simulate(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m scaler")
    parser.add_argument("--once", action="store_true",
                        help="one round, printed as a JSON line, then exit")
    args = parser.parse_args(argv)
    # With --once, stdout carries the decision alone; the log goes to stderr.
    configure_logging(stream=sys.stderr if args.once else sys.stdout)
    try:
        settings = ScalerSettings.from_env(load_environment())
    except SettingError as exc:
        print(f"scaler: bad setting: {exc}", file=sys.stderr)
        return 2
    return trio.run(once if args.once else serve, settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
