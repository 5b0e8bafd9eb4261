"""Running a component until it finishes, asking it to stop on SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable

import trio

logger = logging.getLogger(__name__)


async def run_until_stopped(run: Callable[[], Awaitable[None]],
                            stop: Callable[[], None]) -> None:
    """Await ``run()``; each SIGTERM/SIGINT calls ``stop()``, which begins a graceful end."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            async def on_signal():
                async for signum in signals:
                    logger.info("received %s", signal.Signals(signum).name)
                    stop()

            nursery.start_soon(on_signal)
            await run()
            nursery.cancel_scope.cancel()
