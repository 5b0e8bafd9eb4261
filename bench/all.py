"""Every benchmark, one after another, then one summary table beside the targets.

    python -m bench.all [--quick] [--markdown FILE]

Each script runs as its own process (its own servers, stopped when it ends) and its
table is shown as it comes; the summary is built from the JSON line each one prints last.
``--markdown`` also writes the summary and the machine as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, machine
from bench.sync import STEPS as SYNC_STEPS

SCRIPTS = ("throughput", "echo", "publish", "dispatch", "sync", "scaler", "fanin", "worker_idle")


def run(script: str, quick: bool) -> dict:
    command = [sys.executable, "-m", f"bench.{script}", *(["--quick"] if quick else [])]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    print("\n".join(lines[:-1]), flush=True)
    print(f"  ({time.monotonic() - started:.0f} s)\n", flush=True)
    if done.returncode != 0 or not lines:
        return {"bench": script, "failed": done.returncode}
    return json.loads(lines[-1])


def yes(value: bool) -> str:
    return "yes" if value else "no"


def summary_rows(results: dict[str, dict]) -> list[list[str]]:
    rows = [["what", "ours", "peer in the same run", "target", "met"]]
    r = results.get("throughput")
    if r and "failed" not in r:
        rows.append([f"output throughput ({r['bytes'] / 2**20:g} MiB)",
                     f"{r['ours']['mbPerS']:.1f} MB/s",
                     f"terminado {r['terminado']['mbPerS']:.1f} MB/s; raw PTY "
                     f"{r['raw']['mbPerS']:.1f} MB/s",
                     ">= terminado; >= 30% of raw", yes(all(r["meets"].values()))])
    r = results.get("echo")
    if r and "failed" not in r:
        rows.append([f"keystroke echo ({r['ours']['keys']:,} keys)",
                     f"p50 {r['ours']['p50Ms']:.1f} ms, p99 {r['ours']['p99Ms']:.1f} ms",
                     f"terminado p50 {r['terminado']['p50Ms']:.1f} ms, "
                     f"p99 {r['terminado']['p99Ms']:.1f} ms",
                     "p50 <= 3 ms, p99 <= 15 ms", yes(all(r["meets"].values()))])
    r = results.get("publish")
    if r and "failed" not in r:
        native, thread = r["trioNative"], r["thread"]
        rows.append(["Redis publish, in the worker",
                     f"trio-native: {native['cpuSPer100Mb']:.2f} CPU s per 100 MB, small "
                     f"p50 {native['smallP50Us']} us",
                     f"redis-py in a thread: {thread['cpuSPer100Mb']:.2f} CPU s per 100 MB, "
                     f"small p50 {thread['smallP50Us']} us", "-", "-"])
    r = results.get("dispatch")
    if r and "failed" not in r:
        for figures, target, met in ((r["ours"], "p50 <= 50 ms", yes(all(r["meets"].values()))),
                                     (r["largeProject"], "-", "-")):
            rows.append([f"warm dispatch ({figures['commands']} commands, "
                         f"{figures['projectFiles']:,}-file project)",
                         f"p50 {figures['p50Ms']:.0f} ms, p99 {figures['p99Ms']:.0f} ms", "-",
                         target, met])
    r = results.get("sync")
    if r and "failed" not in r:
        for emulator, result in r["emulators"].items():
            project = result["project"]
            for key, label, target in SYNC_STEPS:
                if key == "deltaUpload":
                    label = f"{project['delta']}-file {label}"
                ours = result["ours"][key]
                reachable = (f"; {ours['emulatorBoundSpeedUp']:.1f}x reachable"
                             if ours["emulatorBoundSpeedUp"] else "")
                rows.append([f"S3 sync on {emulator}, {project['files']:,} files, "
                             f"{project['bytes'] / 1e6:.0f} MB: {label}",
                             f"{ours['seconds']:.2f} s ({ours['speedUp']:.1f}x{reachable})",
                             f"aws s3 sync {result['awsCli'][key]['seconds']:.2f} s",
                             f">= {target}x faster" if target else "-",
                             yes(result["meets"][key]) if key in result["meets"] else "-"])
    r = results.get("scaler")
    if r and "failed" not in r:
        ours, naive = r["ours"], r["naive"]
        rows.append([f"scaler, {r['commands']} commands (simulated)",
                     f"{ours['launched']} launched, p95 wait {ours['waitP95S']:.0f} s, "
                     f"${ours['costUsd']:.4f}",
                     f"naive rule: {naive['launched']} launched, p95 wait "
                     f"{naive['waitP95S']:.0f} s, ${naive['costUsd']:.4f}",
                     "0 over-launch, lower cost, wait no worse", yes(all(r["meets"].values()))])
    r = results.get("fanin")
    if r and "failed" not in r:
        ours = r["ours"]
        rows.append(["gateway fan-in, idle clients",
                     f"{ours['mbPer1000']:.1f} MB per 1,000; {ours['maxReached']:,} reached", "-",
                     "2,000 under 500 MB", yes(r["meets"]["target"])])
    r = results.get("worker_idle")
    if r and "failed" not in r:
        rows.append(["worker idle footprint",
                     f"RSS {r['ours']['started']['rssMb']:.0f} MB "
                     f"({r['ours']['afterCommand']['rssMb']:.0f} MB after a command)", "-",
                     "under 80 MB", yes(r["meets"]["rss"])])
    for name, r in results.items():
        if "failed" in r:
            rows.append([name, f"failed (exit {r['failed']})", "", "", ""])
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="run every benchmark")
    parser.add_argument("--quick", action="store_true", help="each script's smallest run")
    parser.add_argument("--markdown", metavar="FILE", help="write the summary table here")
    args = parser.parse_args()
    started = time.monotonic()
    system = machine()
    results = {script: run(script, args.quick) for script in SCRIPTS}
    rows = summary_rows(results)
    width = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print("summary")
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True)).rstrip())
    took = time.monotonic() - started
    about = (f"{system['cpu']}, {system['cores']} cores, {system['memoryGiB']:g} GiB, "
             f"{system['os']}, Python {system['python']}; load {system['load1']:g} at start; "
             f"{took:.0f} s in all")
    print(about)
    if args.markdown:
        Path(args.markdown).write_text(markdown(rows) + f"\n\n{about}\n")
    print(json.dumps({"bench": "all", "quick": args.quick, "machine": system,
                      "seconds": round(took), "results": results}, separators=(",", ":")))
    return 1 if any("failed" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
