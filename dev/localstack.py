"""LocalStack without Docker: its runtime as a process on this machine, SQS and S3 only.

    python dev/localstack.py -- pytest tests/e2e/test_whole_system.py

starts LocalStack on a free port of 127.0.0.1, waits until it says it is ready, runs the
command with ``AWS_ENDPOINT_URL`` pointing at it, then stops LocalStack (killing whatever is
left of it) and removes its files; it exits with the command's status. Without a command
it serves until Ctrl-C. ``make test-localstack`` builds the virtualenv it runs from
(``.venv-localstack``: Python 3.13 or newer, the pins of ``dev/localstack-constraints.txt``)
and runs the end-to-end cases this way.

Only the standard library here: this file runs under the project's Python, LocalStack
under its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv-localstack" / "bin" / "python"
# Guards against a runtime that never comes up or never goes, not timings.
START_LIMIT_S = 120
STOP_LIMIT_S = 20

# Run by LocalStack's Python. Its S3 keeps bucket folders under a fixed
# /tmp/localstack-s3-storage that nothing removes: this run's own folder instead. Then
# what `python -m localstack.runtime.main` does.
LAUNCH = """
import sys
try:
    from localstack.services.s3 import provider
    provider.DEFAULT_S3_TMP_DIR = sys.argv[1]
except ImportError:
    pass
from localstack.runtime.main import main
main()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalStack:
    def __init__(self, python: Path = VENV_PYTHON, port: int | None = None):
        self.python = Path(python).absolute()  # not resolved: a venv's python is a link
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir: Path | None = None
        self._process: subprocess.Popen | None = None
        self._log = None

    @property
    def pid(self) -> int:
        return self._process.pid

    def environment(self) -> dict[str, str]:
        home = self._dir
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": str(home),  # its plugin cache goes there, not to the user's
            "SERVICES": "sqs,s3",
            "EAGER_SERVICE_LOADING": "1",  # both loaded before it says it is ready
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "LOCALSTACK_HOST": f"127.0.0.1:{self.port}",
            # Queue URLs http://127.0.0.1:<port>/queue/<region>/<account>/<name>: no
            # *.localhost.localstack.cloud name to resolve.
            "SQS_ENDPOINT_STRATEGY": "path",
            # This machine may itself be a container: without this LocalStack would take
            # itself for its own image and write to /var/lib/localstack and /tmp/localstack.
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(home / "filesystem"),
            # Nothing fetched from outside: no analytics, no TLS certificate download (it
            # makes a self-signed one), no DNS server of its own.
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DNS_ADDRESS": "0",
        }

    def start(self) -> LocalStack:
        if not self.python.exists():
            raise RuntimeError(f"{self.python} is missing; `make test-localstack` builds it")
        self._dir = Path(tempfile.mkdtemp(prefix="localstack-"))
        self._log = open(self._dir / "localstack.log", "wb")  # noqa: SIM115 - closed in stop()
        try:
            self._process = subprocess.Popen(
                [str(self.python), "-c", LAUNCH, str(self._dir / "s3")],
                env=self.environment(), cwd=self._dir, stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=subprocess.STDOUT, process_group=0,
            )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_LIMIT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"LocalStack exited with {self._process.returncode}:\n"
                                   f"{self.log_tail()}")
            with (contextlib.suppress(OSError, ValueError),
                  urllib.request.urlopen(f"{self.url}/_localstack/init", timeout=2) as page):
                if json.load(page).get("completed", {}).get("READY"):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"LocalStack was not ready within {START_LIMIT_S} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if self._dir is None or not (self._dir / "localstack.log").exists():
            return ""
        text = (self._dir / "localstack.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (LocalStack stops its services), SIGKILL to its whole process group
        if it is not gone in time or left anything behind, then its files go."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(STOP_LIMIT_S)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def run(command: list[str], env: dict[str, str]) -> int:
    child = subprocess.Popen(command, env=env)
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                # The command got the Ctrl-C too (one process group): let it end its own
                # way (pytest tears its fixtures down) before LocalStack goes.
                continue
    finally:
        if child.poll() is None:  # this process was told to stop: so is the command
            child.terminate()
            try:
                child.wait(STOP_LIMIT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", type=Path, default=VENV_PYTHON,
                        help="LocalStack's Python (default: .venv-localstack/bin/python)")
    parser.add_argument("command", nargs="*", help="run with AWS_ENDPOINT_URL set, then stop")
    args = parser.parse_args(argv)
    # A SIGTERM to this process stops LocalStack too, as a Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    with LocalStack(args.python) as localstack:
        print(f"LocalStack (SQS, S3) ready at {localstack.url} in "
              f"{time.monotonic() - started:.1f} s", flush=True)
        try:
            if not args.command:
                print("Ctrl-C stops it", flush=True)
                while True:
                    time.sleep(3600)
            return run(args.command, {**os.environ, "AWS_ENDPOINT_URL": localstack.url})
        except KeyboardInterrupt:
            return 130
        finally:
            stopping = time.monotonic()
            localstack.stop()
            print(f"LocalStack stopped in {time.monotonic() - stopping:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
