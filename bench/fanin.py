"""Gateway fan-in: idle browser terminals connected to one gateway process.

Clients connect in steps, each to a terminal of its own (so each is also one Redis
subscription), and then say nothing. After each step the gateway's resident memory
(RSS) and its CPU use while everyone idles are read. It goes on past the target until
``--max`` clients, a refused connection, or the memory budget.

    python -m bench.fanin [--quick] [--max 8000] [--step 1000] [--profile DIR]
"""

from __future__ import annotations

import json
import time
import urllib.request

import psutil
import trio
from trio_websocket import ConnectionRejected, HandshakeError, connect_websocket_url

from bench.common import MB, Stack, arguments, report

TARGET_CLIENTS = 2000
BUDGET_MB = 500
CONNECTING_AT_ONCE = 32
IDLE_SAMPLE_S = 3


def healthz_connections(stack: Stack) -> int:
    with urllib.request.urlopen(f"{stack.origin}/healthz", timeout=10) as page:
        return json.load(page)["connections"]


async def connect_clients(stack: Stack, nursery: trio.Nursery, first: int, count: int,
                          failures: list[str], connections: list) -> None:
    """Open ``count`` websockets whose reader tasks live in ``nursery``."""
    limiter = trio.CapacityLimiter(CONNECTING_AT_ONCE)

    async def client(index: int) -> None:
        async with limiter:
            try:
                connections.append(await connect_websocket_url(
                    nursery, stack.terminal_url("fanin", f"t{index}"),
                    extra_headers=[("Origin", stack.origin)]))
            except (OSError, HandshakeError, ConnectionRejected) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    async with trio.open_nursery() as connecting:
        for index in range(first, first + count):
            connecting.start_soon(client, index)


async def measure(steps: list[int], profile: str | None) -> dict:
    with Stack(worker=False, profile=profile) as stack:
        gateway = psutil.Process(stack.gateway.pid)
        await trio.sleep(1)
        baseline = gateway.memory_info().rss / MB
        samples, failures, connections = [], [], []
        async with trio.open_nursery() as nursery:
            clients = 0
            for target in steps:
                started = time.perf_counter()
                await connect_clients(stack, nursery, clients, target - clients, failures,
                                      connections)
                connect_s = time.perf_counter() - started
                clients = target
                await trio.sleep(1)
                gateway.cpu_percent()
                await trio.sleep(IDLE_SAMPLE_S)
                cpu = gateway.cpu_percent()
                rss = gateway.memory_info().rss / MB
                serving = await trio.to_thread.run_sync(healthz_connections, stack)
                samples.append({"clients": target, "serving": serving, "rssMb": round(rss, 1),
                                "idleCpuPercent": round(cpu, 1),
                                "connectPerS": round((target - (samples[-1]["clients"]
                                                                if samples else 0))
                                                     / connect_s, 1)})
                if failures or serving < target or rss > BUDGET_MB:
                    break
            closed = sum(1 for ws in connections if ws.closed)
            nursery.cancel_scope.cancel()
    return {"baselineRssMb": round(baseline, 1), "samples": samples,
            "failures": failures[:3], "failureCount": len(failures),
            "closedByGateway": closed}


def main() -> None:
    def extra(parser):
        parser.add_argument("--max", type=int, default=8000, help="clients at most (8000)")
        parser.add_argument("--step", type=int, default=1000, help="clients per step (1000)")

    args = arguments(__doc__.splitlines()[0], extra)
    steps = [50] if args.quick else list(range(args.step, args.max + 1, args.step))
    figures = measure_and_summarise(steps, args.profile)
    rows = [["clients", "serving", "gateway RSS MB", "idle CPU %", "connects/s"]]
    rows.append(["0", "0", f"{figures['baselineRssMb']:.1f}", "", ""])
    for sample in figures["samples"]:
        rows.append([f"{sample['clients']:,}", f"{sample['serving']:,}",
                     f"{sample['rssMb']:.1f}", f"{sample['idleCpuPercent']:.1f}",
                     f"{sample['connectPerS']:.0f}"])
    notes = [f"{figures['mbPer1000']:.1f} MB per 1,000 idle clients; {figures['maxReached']:,} "
             f"reached (target: {TARGET_CLIENTS:,} under {BUDGET_MB} MB)"]
    if figures["failures"]:
        notes.append(f"stopped by {figures['failureCount']} failure(s), first: "
                     f"{figures['failures'][0]}")
    report("gateway fan-in", rows, {"bench": "fanin", "quick": args.quick, "ours": figures,
                                    "meets": {"target": figures["meetsTarget"]}}, notes)


def measure_and_summarise(steps: list[int], profile: str | None) -> dict:
    figures = trio.run(measure, steps, profile)
    good = [s for s in figures["samples"] if s["serving"] >= s["clients"]
            and s["rssMb"] <= BUDGET_MB]
    last = good[-1] if good else {"clients": 0, "rssMb": figures["baselineRssMb"]}
    figures["maxReached"] = last["clients"]
    figures["mbPer1000"] = round(1000 * (last["rssMb"] - figures["baselineRssMb"])
                                 / last["clients"], 1) if last["clients"] else 0.0
    at_target = [s for s in good if s["clients"] >= TARGET_CLIENTS]
    figures["meetsTarget"] = bool(at_target)
    return figures


if __name__ == "__main__":
    main()
