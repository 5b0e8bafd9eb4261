"""Warm dispatch: a ``command`` frame sent on the websocket until its first output byte.

The worker is warm (it has run a command of the project) and the project is cached (its
files are in the workspace, so the sync before each command finds nothing to fetch).
Each sample is one command, ``echo ready``, waited for to its ``exit`` before the next:
commands of one project never overlap. There is no peer: terminado runs no queue.

The target's row is a small project (the 3-file sample). The same is measured again
with a project of the sync row's size (2,000 files, 31 MB), where the sync before and
after each command, though it transfers nothing, has every file to look at.

    python -m bench.dispatch [--quick] [--commands 50] [--profile DIR]
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import trio

from bench.common import Stack, arguments, percentile, receive_frame, report
from bench.sync import make_project
from dev.system import SAMPLE_PROJECT, upload_project

LARGE_PROJECT_FILES = 2000
WARM_UP_COMMANDS = 2
TARGET_P50_MS = 50


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


async def time_commands(stack: Stack, project: str, files: int, commands: int) -> dict:
    firsts, exits = [], []
    async with stack.open_terminal(project, "dispatch") as ws:
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


async def measure(commands: int, large_files: int, profile: str | None) -> tuple[dict, dict]:
    with Stack(profile=profile) as stack:
        files = upload_project(stack.client("s3"), stack.bucket, "sample", SAMPLE_PROJECT)
        small = await time_commands(stack, "sample", files, commands)
        folder = Path(tempfile.mkdtemp(prefix="cloudide-bench-dispatch-"))
        try:
            make_project(folder, large_files)
            files = upload_project(stack.client("s3"), stack.bucket, "large", folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        large = await time_commands(stack, "large", files, commands)
    return small, large


def main() -> None:
    args = arguments(__doc__.splitlines()[0], lambda parser: parser.add_argument(
        "--commands", type=int, default=50, help="commands timed (50)"))
    commands = 3 if args.quick else args.commands
    small, large = trio.run(measure, commands, 40 if args.quick else LARGE_PROJECT_FILES,
                            args.profile)
    rows = [["", "p50 ms", "p99 ms"]]
    for figures in (small, large):
        project = f"{figures['projectFiles']:,}-file project"
        rows += [[f"ours, {project}: frame to first output byte", f"{figures['p50Ms']:.1f}",
                  f"{figures['p99Ms']:.1f}"],
                 [f"ours, {project}: frame to exit event", f"{figures['exitP50Ms']:.1f}",
                  f"{figures['exitP99Ms']:.1f}"]]
    report("warm dispatch", rows, {
        "bench": "dispatch", "quick": args.quick, "ours": small, "largeProject": large,
        "meets": {"p50": small["p50Ms"] <= TARGET_P50_MS},
    }, [f"{commands} commands of each cached project on a warm worker (target, for the "
        f"small one: p50 <= {TARGET_P50_MS} ms); no peer"])


if __name__ == "__main__":
    main()
