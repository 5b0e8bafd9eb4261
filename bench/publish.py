"""The worker's Redis publish, three ways: which costs least per byte and per keystroke.

Publishing output is the worker's hottest Redis call (``TerminalBus.publish``: one Lua
script numbers the events, appends them to the terminal's history and publishes them).
redis-py blocks, so it must run in a worker thread; the alternatives measured here:

- **thread**: redis-py, one thread hop per publish (how the worker published before);
- **thread, pipelined**: redis-py, one thread hop carrying several publishes in one round
  trip (pipelining, so the hop and the round trip are paid once per group);
- **trio-native**: RESP over a trio stream with hiredis parsing (``runtime.bus.connection``,
  what the worker uses now).

Each publishes the same output events to its own redis-server: in bulk (32 KiB events in
batches of 16, as a flood of output makes them) and one small event at a time (a
keystroke's echo). Figures: MB/s, this process's CPU seconds per 100 MB, and the latency
of a small publish.

    python -m bench.publish [--quick]
"""

from __future__ import annotations

import resource
import time

import redis
import trio

from bench.common import MB, arguments, percentile, report
from runtime.bus.terminal_bus import PUBLISH_EVENTS, TerminalBus, publish_events_arguments
from runtime.contract import events
from tests.servers import RedisServer

EVENT_CHARS = 32 * 1024
EVENTS_PER_BATCH = 16
PIPELINE_DEPTH = 4


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Threaded:
    """redis-py in a worker thread; ``depth`` publishes share one hop and round trip."""

    def __init__(self, url: str, depth: int = 1):
        self._client = redis.Redis.from_url(url)
        self._script = self._client.register_script(PUBLISH_EVENTS.body)
        self._depth = depth
        self._limiter = trio.CapacityLimiter(1)

    def _publish_all(self, batches: list[list[str]]) -> None:
        if self._depth == 1:
            for batch in batches:
                keys_, args = publish_events_arguments("bench", "t", batch, 0)
                self._script(keys=keys_, args=args)
            return
        pipe = self._client.pipeline(transaction=False)
        for batch in batches:
            keys_, args = publish_events_arguments("bench", "t", batch, 0)
            self._script(keys=keys_, args=args, client=pipe)
        pipe.execute()

    async def publish_groups(self, batches: list[list[str]]) -> None:
        for start in range(0, len(batches), self._depth):
            group = batches[start:start + self._depth]
            await trio.to_thread.run_sync(self._publish_all, group, limiter=self._limiter)

    async def aclose(self) -> None:
        self._client.close()


class TrioNative:
    def __init__(self, url: str):
        self._bus = TerminalBus(url)

    async def publish_groups(self, batches: list[list[str]]) -> None:
        for batch in batches:
            await self._bus.publish("bench", "t", batch)

    async def aclose(self) -> None:
        await self._bus.aclose()


async def measure(publisher, total_bytes: int, keystrokes: int) -> dict:
    event = events.output("c1", "a" * EVENT_CHARS)
    batches = [[event] * EVENTS_PER_BATCH
               for _ in range(max(1, total_bytes // (EVENT_CHARS * EVENTS_PER_BATCH)))]
    sent = len(batches) * EVENTS_PER_BATCH * len(event)
    await publisher.publish_groups(batches[:2])  # connections and scripts in place
    started, cpu_before = time.perf_counter(), cpu_s()
    await publisher.publish_groups(batches)
    seconds, cpu = time.perf_counter() - started, cpu_s() - cpu_before
    small = [events.output("c1", "x")]
    latencies = []
    for _ in range(keystrokes):
        began = time.perf_counter()
        await publisher.publish_groups([small])
        latencies.append((time.perf_counter() - began) * 1e6)
    await publisher.aclose()
    return {"mbPerS": round(sent / seconds / MB, 1),
            "cpuSPer100Mb": round(cpu / (sent / 100e6), 3),
            "smallP50Us": round(percentile(latencies, 0.5)),
            "smallP99Us": round(percentile(latencies, 0.99))}


def main() -> None:
    args = arguments(__doc__.splitlines()[0], profile=False)
    total = 8 * MB if args.quick else 200 * MB
    keystrokes = 100 if args.quick else 2_000
    makers = {
        "thread": lambda url: Threaded(url),
        "threadPipelined": lambda url: Threaded(url, depth=PIPELINE_DEPTH),
        "trioNative": TrioNative,
    }
    figures = {}
    for name, make in makers.items():
        server = RedisServer().start()  # each its own, so none inherits another's memory
        try:
            figures[name] = trio.run(measure, make(server.url), total, keystrokes)
        finally:
            server.stop()
    labels = {"thread": "redis-py, a thread hop per publish",
              "threadPipelined": f"redis-py, a thread hop per {PIPELINE_DEPTH} (pipelined)",
              "trioNative": "trio-native, hiredis parser"}
    rows = [["", "MB/s", "CPU s per 100 MB", "small p50 us", "small p99 us"]]
    for name, f in figures.items():
        rows.append([labels[name], f"{f['mbPerS']:.0f}", f"{f['cpuSPer100Mb']:.3f}",
                     str(f["smallP50Us"]), str(f["smallP99Us"])])
    native = figures["trioNative"]
    # What the choice rests on: the path the worker uses beats the one it replaced on
    # CPU, and every alternative on a keystroke's latency.
    meets = {
        "lessCpuThanThread": native["cpuSPer100Mb"] < figures["thread"]["cpuSPer100Mb"],
        "fastestSmall": all(native["smallP50Us"] <= f["smallP50Us"] for f in figures.values()),
    }
    report("Redis publish: output events into history and pub/sub", rows, {
        "bench": "publish", "quick": args.quick, "bytes": total, **figures, "meets": meets,
    }, [f"bulk: {EVENT_CHARS // 1024} KiB events, {EVENTS_PER_BATCH} per publish; small: one "
        f"1-character event per publish, {keystrokes:,} in turn; CPU of the publishing "
        "process only"])


if __name__ == "__main__":
    main()
