"""Scaler: 50 commands at once, one per task, tasks that start in 120 s, a round every
30 s (simulated on a mock clock by ``python -m scaler simulate``), beside the seed's
naive rule in the same run.

    python -m bench.scaler [--quick] [--commands 50]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, arguments, report

START_DELAY_S = 120
INTERVAL_S = 30
COMMAND_S = 60


def simulate(commands: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="cloudide-bench-scaler-") as folder:
        trace = Path(folder) / "all-at-once.csv"
        trace.write_text("arrival_s,duration_s\n" + f"0,{COMMAND_S}\n" * commands)
        done = subprocess.run(
            [sys.executable, "-m", "scaler", "simulate", "--trace", str(trace),
             "--start-delay", str(START_DELAY_S), "--interval", str(INTERVAL_S),
             "--max-tasks", str(max(commands, 1)), "--messages-per-task", "1", "--json"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = arguments(__doc__.splitlines()[0], lambda parser: parser.add_argument(
        "--commands", type=int, default=50, help="commands arriving at once (50)"),
        profile=False)
    commands = 10 if args.quick else args.commands
    simulated = simulate(commands)
    by_policy = {r["policy"]: r for r in simulated["results"]}
    ours, naive = by_policy["scaler"], by_policy["naive"]
    for figures in (ours, naive):
        figures["overLaunch"] = figures["launched"] - commands
    rows = [["", "tasks launched", "over-launch", "peak live", "p95 wait s", "cost USD"]]
    for name, figures in (("ours", ours), ("seed's naive rule", naive)):
        rows.append([name, str(figures["launched"]), str(figures["overLaunch"]),
                     str(figures["peakLive"]), f"{figures['waitP95S']:.1f}",
                     f"{figures['costUsd']:.4f}"])
    meets = {
        "noOverLaunch": ours["overLaunch"] == 0,
        "lowerCost": ours["costUsd"] < naive["costUsd"],
        "waitNoWorse": ours["waitP95S"] <= naive["waitP95S"],
    }
    report("scaler (simulated)", rows, {
        "bench": "scaler", "quick": args.quick, "commands": commands,
        "startDelayS": START_DELAY_S, "intervalS": INTERVAL_S, "ours": ours, "naive": naive,
        "meets": meets,
    }, [f"{commands} commands of {COMMAND_S} s at once, 1 per task, tasks start in "
        f"{START_DELAY_S} s, a round every {INTERVAL_S} s (target: no over-launch, lower cost "
        "at equal or better wait)"])


if __name__ == "__main__":
    main()
