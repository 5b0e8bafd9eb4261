"""Warm dispatch: a ``command`` frame sent on the websocket until its first output byte.

The worker is warm (it has run a command of the project) and the project is cached (its
files are in the workspace, so the sync before each command finds nothing to fetch).
Each sample is one command, ``echo ready``, waited for to its ``exit`` before the next:
commands of one project never overlap. There is no peer: terminado runs no queue.

    python -m bench.dispatch [--quick] [--commands 50] [--profile DIR]
"""

from __future__ import annotations

import json
import time

import trio

from bench.common import ROOT, Stack, arguments, percentile, receive_frame, report

PROJECT = "bench"
SAMPLE_PROJECT = ROOT / "dev" / "sample-project"
WARM_UP_COMMANDS = 2
TARGET_P50_MS = 50


def upload_sample(stack: Stack) -> int:
    s3 = stack.client("s3")
    count = 0
    for path in sorted(SAMPLE_PROJECT.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), stack.bucket,
                           f"projects/{PROJECT}/{path.relative_to(SAMPLE_PROJECT).as_posix()}")
            count += 1
    return count


async def run_command(ws) -> tuple[float, float]:
    """Seconds to the first output byte, and to the ``exit`` event."""
    started = time.perf_counter()
    await ws.send_message(json.dumps({"type": "command", "command": "echo ready"}))
    first = None
    while True:
        frame = await receive_frame(ws, 60)
        if frame["type"] == "output" and frame["data"] and first is None:
            first = time.perf_counter() - started
        elif frame["type"] == "exit":
            return first, time.perf_counter() - started
        elif frame["type"] == "error":
            raise RuntimeError(f"the command failed: {frame}")


async def measure(commands: int, profile: str | None) -> dict:
    with Stack(profile=profile) as stack:
        files = upload_sample(stack)
        firsts, exits = [], []
        async with stack.open_terminal(PROJECT, "dispatch") as ws:
            for index in range(WARM_UP_COMMANDS + commands):
                first, done = await run_command(ws)
                if index >= WARM_UP_COMMANDS:
                    firsts.append(1000 * first)
                    exits.append(1000 * done)
    return {
        "commands": commands, "projectFiles": files,
        "p50Ms": round(percentile(firsts, 0.5), 1), "p99Ms": round(percentile(firsts, 0.99), 1),
        "exitP50Ms": round(percentile(exits, 0.5), 1),
        "exitP99Ms": round(percentile(exits, 0.99), 1),
    }


def main() -> None:
    args = arguments(__doc__.splitlines()[0], lambda parser: parser.add_argument(
        "--commands", type=int, default=50, help="commands timed (50)"))
    commands = 3 if args.quick else args.commands
    figures = trio.run(measure, commands, args.profile)
    rows = [["", "p50 ms", "p99 ms"],
            ["ours: frame to first output byte", f"{figures['p50Ms']:.1f}",
             f"{figures['p99Ms']:.1f}"],
            ["ours: frame to exit event", f"{figures['exitP50Ms']:.1f}",
             f"{figures['exitP99Ms']:.1f}"]]
    report("warm dispatch", rows, {
        "bench": "dispatch", "quick": args.quick, "ours": figures,
        "meets": {"p50": figures["p50Ms"] <= TARGET_P50_MS},
    }, [f"{commands} commands of a cached {figures['projectFiles']}-file project on a warm "
        f"worker (target: p50 <= {TARGET_P50_MS} ms); no peer"])


if __name__ == "__main__":
    main()
