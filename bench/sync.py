"""S3 sync of a 2,000-file, ~30 MB project: ours beside ``aws s3 sync``, same emulator.

The emulator is a moto server, then LocalStack when its runtime is installed: each
serves requests in Python, so both clients are measured against each.

Ours is the worker's own ``Workspace`` (pull before a command, push after it) with the
worker's transfer threads; the peer is the AWS CLI, started once per sync as a user
would, so its figures include the CLI's start-up (reported on its own line). Steps, each
timed for both: full upload of a fresh folder; cold download into an empty folder; a
no-change re-sync (down, then up: what every command costs when it changed nothing); a
40-file delta upload (what a command that edits 40 files costs).

    python -m bench.sync [--quick] [--files 2000] [--emulator moto|localstack|all]
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import trio

from bench.common import Stack, arguments, report
from dev.localstack import VENV_PYTHON as LOCALSTACK_PYTHON
from dev.localstack import LocalStack
from dev.system import emulator_client
from runtime.aws.clients import make_client
from runtime.aws.storage import ProjectStorage
from runtime.worker.worker import TRANSFER_THREADS
from runtime.worker.workspace import Workspace
from tests.servers import TEST_CREDENTIALS

PREFIX = "projects/"
TARGET_COLD_AND_FULL = 2
TARGET_NO_CHANGE = 20


def make_project(folder: Path, files: int, seed: int = 9) -> int:
    """A node-like tree: mostly small sources, a few larger files, ~15 KB a file on
    average (30 MB for 2,000); returns its size in bytes."""
    rng = random.Random(seed)
    total = 0
    for index in range(files):
        depth = index % 4
        parts = [f"pkg{index % 37}", f"lib{index % 11}", f"d{index % 5}"][:depth]
        size = rng.randint(40_000, 400_000) if index % 40 == 0 else rng.randint(200, 19_000)
        path = folder.joinpath(*parts, f"file{index}.js")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        total += size
    return total


def edit(folder: Path, count: int) -> list[str]:
    """Rewrite ``count`` files spread over the tree (new content, new size)."""
    paths = sorted(p for p in folder.rglob("*.js"))
    step = max(1, len(paths) // count)
    edited = []
    for path in paths[::step][:count]:
        path.write_bytes(path.read_bytes() + b"// edited\n")
        edited.append(path.relative_to(folder).as_posix())
    return edited


@dataclass(frozen=True)
class Emulator:
    """An S3 endpoint both clients sync with, and the process whose CPU it spends."""

    name: str
    url: str
    bucket: str
    pid: int

    def cpu_seconds(self) -> float:
        process = psutil.Process(self.pid)
        return sum(sum(p.cpu_times()[:2]) for p in [process, *process.children(recursive=True)])


@contextlib.contextmanager
def moto() -> Iterator[Emulator]:
    with Stack(worker=False, gateway=False) as stack:
        yield Emulator("moto", stack.moto.url, stack.bucket, stack.moto.process.pid)


@contextlib.contextmanager
def localstack() -> Iterator[Emulator]:
    with LocalStack() as server:
        bucket = f"bench-{secrets.token_hex(3)}"
        emulator_client("s3", server.url).create_bucket(Bucket=bucket)
        yield Emulator("LocalStack", server.url, bucket, server.pid)


def cpu_of_self_and_children() -> float:
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


class Ours:
    def __init__(self, emulator: Emulator, root: Path, project: str):
        client = make_client("s3", endpoint_url=emulator.url, pool_size=TRANSFER_THREADS)
        self.workspace = Workspace(root, project, ProjectStorage(client, emulator.bucket, PREFIX),
                                   limiter=trio.CapacityLimiter(TRANSFER_THREADS))

    def _timed(self, method) -> tuple[float, int]:
        async def run():
            started = time.perf_counter()
            sync_report = await method()
            return time.perf_counter() - started, sync_report.transferred

        return trio.run(run)

    def pull(self) -> tuple[float, int]:
        return self._timed(self.workspace.pull)

    def push(self) -> tuple[float, int]:
        return self._timed(self.workspace.push)


class AwsCli:
    def __init__(self, emulator: Emulator):
        self._env = {**os.environ, **TEST_CREDENTIALS, "AWS_CONFIG_FILE": os.devnull,
                     "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        self._base = [sys.executable, "-m", "awscli", "--endpoint-url", emulator.url]
        self._bucket = emulator.bucket

    def run(self, *args: str) -> tuple[float, int]:
        """Seconds, and files the CLI said it transferred."""
        started = time.perf_counter()
        done = subprocess.run([*self._base, *args], env=self._env, capture_output=True,
                              text=True, check=False)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"aws {' '.join(args)}: {done.stderr.strip()[-500:]}")
        lines = done.stdout.replace("\r", "\n").splitlines()
        return seconds, sum(1 for line in lines if line.startswith(("upload:", "download:")))

    def up(self, folder: Path, project: str) -> tuple[float, int]:
        return self.run("s3", "sync", "--no-progress",
                        str(folder), f"s3://{self._bucket}/{PREFIX}{project}/")

    def down(self, project: str, folder: Path) -> tuple[float, int]:
        return self.run("s3", "sync", "--no-progress", f"s3://{self._bucket}/{PREFIX}{project}/",
                        str(folder))

    def start_up_s(self) -> float:
        return self.run("--version")[0]


def measure(emulator: Emulator, files: int, delta: int) -> tuple[dict, dict, dict]:
    work = Path(tempfile.mkdtemp(prefix="cloudide-bench-sync-"))
    try:
        source = work / "source"
        size = make_project(source, files)
        cli = AwsCli(emulator)
        ours, peer = {}, {}
        emulator_cpu: dict[str, float] = {}

        client_cpu: dict[str, float] = {}

        def busy(name: str, step):
            """Run a step; note the CPU seconds the emulator and the client spent on it
            (ours runs in this process, the CLI as its child)."""
            before, client_before = emulator.cpu_seconds(), cpu_of_self_and_children()
            outcome = step()
            emulator_cpu[name] = round(emulator.cpu_seconds() - before, 2)
            client_cpu[name] = round(cpu_of_self_and_children() - client_before, 2)
            return outcome

        # Full upload: a fresh folder, nothing in S3 yet.
        shutil.copytree(source, work / "up" / "ours")
        ours["fullUpload"] = busy("oursFullUpload", Ours(emulator, work / "up", "ours").push)
        peer["fullUpload"] = busy("peerFullUpload", lambda: cli.up(source, "peer"))
        # Cold download: an empty folder.
        mine = Ours(emulator, work / "down", "ours")
        ours["coldDownload"] = busy("oursColdDownload", mine.pull)
        peer_folder = work / "peer-down"
        peer["coldDownload"] = busy("peerColdDownload", lambda: cli.down("peer", peer_folder))
        # No change: down then up, as before and after a command that changed nothing.
        def pull_and_push() -> tuple[float, int]:
            (down_s, down_n), (up_s, up_n) = mine.pull(), mine.push()
            return down_s + up_s, down_n + up_n

        ours["noChange"] = busy("oursNoChange", pull_and_push)
        down_s, down_n = cli.down("peer", peer_folder)
        up_s, up_n = cli.up(peer_folder, "peer")
        peer["noChange"] = (down_s + up_s, down_n + up_n)
        # A command edited some files: upload the delta.
        edit(work / "down" / "ours", delta)
        ours["deltaUpload"] = busy("oursDeltaUpload", mine.push)
        time.sleep(1.1)  # the CLI compares modification times in whole seconds
        edit(peer_folder, delta)
        peer["deltaUpload"] = cli.up(peer_folder, "peer")
        start_up = cli.start_up_s()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ({k: {"seconds": round(s, 3), "files": n} for k, (s, n) in ours.items()},
            {k: {"seconds": round(s, 3), "files": n} for k, (s, n) in peer.items()},
            {"files": files, "bytes": size, "delta": delta, "cliStartUpS": round(start_up, 3),
             "emulatorCpuSeconds": emulator_cpu, "clientCpuSeconds": client_cpu})


STEPS = (("fullUpload", "full upload", TARGET_COLD_AND_FULL),
         ("coldDownload", "cold download", TARGET_COLD_AND_FULL),
         ("noChange", "no-change re-sync (down + up)", TARGET_NO_CHANGE),
         ("deltaUpload", "delta upload", None))


def compare(emulator: Emulator, files: int, delta: int) -> tuple[dict, list[list[str]]]:
    ours, peer, project = measure(emulator, files, delta)
    rows = []
    meets = {}
    for key, label, target in STEPS:
        speed_up = peer[key]["seconds"] / ours[key]["seconds"] if ours[key]["seconds"] else 0
        ours[key]["speedUp"] = round(speed_up, 1)
        # The emulator serves on one core (Python), so no client making these requests
        # finishes before the emulator has spent its CPU time on them.
        emulator_s = project["emulatorCpuSeconds"][f"ours{key[0].upper()}{key[1:]}"]
        ceiling = peer[key]["seconds"] / emulator_s if emulator_s else 0
        ours[key]["emulatorBoundSpeedUp"] = round(ceiling, 1)
        if target is not None:
            meets[key] = speed_up >= target
        label = f"{label} ({delta} files)" if key == "deltaUpload" else label
        rows.append([f"{emulator.name}: {label}", f"{ours[key]['seconds']:.2f}",
                     f"{peer[key]['seconds']:.2f}", f"{speed_up:.1f}x",
                     f"{ceiling:.1f}x" if ceiling else "-",
                     f"{ours[key]['files']}/{peer[key]['files']}"])
    return {"project": project, "ours": ours, "awsCli": peer, "meets": meets}, rows


def main() -> None:
    def options(parser):
        parser.add_argument("--files", type=int, default=2000, help="files in the project (2000)")
        parser.add_argument("--emulator", choices=("moto", "localstack", "all"), default="all",
                            help="where to sync: all = moto, and LocalStack when its runtime "
                                 "is installed (`make test-localstack` installs it)")

    args = arguments(__doc__.splitlines()[0], options, profile=False)
    files = 40 if args.quick else args.files
    delta = max(1, files // 50)
    wanted = {"moto": [moto], "localstack": [localstack],
              "all": [moto, *([localstack] if LOCALSTACK_PYTHON.exists() else [])]}
    rows = [["", "ours s", "aws s3 sync s", "speed-up", "reachable", "files ours/peer"]]
    notes = [f"{files} files; the CLI's start-up is part of each of its figures (target: "
             f">= {TARGET_COLD_AND_FULL}x cold and full, >= {TARGET_NO_CHANGE}x no-change)",
             "reachable: the CLI's time over the emulator's CPU time serving our requests, "
             "the most a client sending them could gain against this emulator"]
    results = {}
    for start in wanted[args.emulator]:
        with start() as emulator:
            result, emulator_rows = compare(emulator, files, delta)
        results[emulator.name] = result
        rows += emulator_rows
        project = result["project"]
        server, client = project["emulatorCpuSeconds"], project["clientCpuSeconds"]
        notes.append(
            f"{emulator.name}, CPU seconds of full upload and cold download: emulator "
            f"{server['oursFullUpload']:.1f} and {server['oursColdDownload']:.1f} for ours, "
            f"{server['peerFullUpload']:.1f} and {server['peerColdDownload']:.1f} for the CLI;"
            f" client: ours {client['oursFullUpload']:.1f} and {client['oursColdDownload']:.1f}"
            f", the CLI {client['peerFullUpload']:.1f} and {client['peerColdDownload']:.1f}; "
            f"the CLI's start-up alone {project['cliStartUpS']:.2f} s")
    if args.emulator == "all" and "LocalStack" not in results:
        notes.append("LocalStack: not installed, not measured")
    first = next(iter(results.values()))
    report("S3 sync", rows, {
        "bench": "sync", "quick": args.quick, "project": first["project"], "emulators": results,
        "meets": {f"{name}.{key}": met for name, result in results.items()
                  for key, met in result["meets"].items()},
    }, notes)


if __name__ == "__main__":
    main()
