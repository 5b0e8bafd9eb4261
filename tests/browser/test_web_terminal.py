"""The web terminal page in real headless Chromium, against the real programs.

The gateway (``python -m gateway``) and a worker (``python -m runtime``) run as separate
processes against the session's moto server and redis-server. Chromium is Debian's
(``/usr/bin/chromium``, installed by ``make test``), driven by Playwright; Playwright's
own browser downloads are never used. A screenshot of the page after the test is kept in
the test's ``tmp_path`` and copied to ``tests/browser/output/`` for a person to look at.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.browser.pages import (
    WAIT_LIMIT_S,
    chromium,
    needs_chromium,
    save_screenshot,
    wait_for_lines,
    wait_for_status,
)
from tests.integration.harness import gateway_env
from tests.integration.processes import WorkerProcesses, is_serving
from tests.servers import TEST_CREDENTIALS, free_port

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, needs_chromium]


class GatewayProcess:
    """``python -m gateway`` on a free port; its output goes to files for diagnosis."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.port = int(env["GATEWAY_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = log_dir / "gateway.stdout"
        self.stderr_path = log_dir / "gateway.stderr"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            # Run outside the repository, so a developer's .env cannot change the setup.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway"], env=self.env, cwd=self.log_dir,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            )
        self.wait_healthy()

    def output(self) -> str:
        return (f"stdout:\n{self.stdout_path.read_text(errors='replace')}\n"
                f"stderr:\n{self.stderr_path.read_text(errors='replace')}")

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + WAIT_LIMIT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the gateway exited with {self.process.returncode}\n"
                                     + self.output())
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if json.load(response).get("ok"):
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise AssertionError("the gateway did not become healthy\n" + self.output())

    def stop(self) -> None:
        """SIGTERM: the gateway drains (clients are told to reconnect) and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def system(aws, redis_server, redis_client, tmp_path):
    """A gateway serving the page with dev tokens, and one worker, both as processes."""
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    env = {
        **TEST_CREDENTIALS,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        **gateway_env(aws, redis_server.url, GATEWAY_PORT=port, GATEWAY_DEV_TOKENS="true",
                      GATEWAY_ALLOWED_ORIGINS=f"http://127.0.0.1:{port}"),
    }
    gateway = GatewayProcess(env, logs)
    workers = WorkerProcesses(logs)
    try:
        worker = workers.start(aws.worker_env(redis_server.url, tmp_path / "workspaces"))
        gateway.start()
        wait_for_worker(worker)
        yield gateway
    finally:
        gateway.stop()
        workers.close()


@pytest.fixture
def browser():
    with chromium() as (browser,):
        yield browser


def wait_for_worker(worker) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not any(is_serving(line) for line in worker.logs()):
        if worker.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{worker} is not serving\nstdout:\n{worker.stdout()}\n"
                                 f"stderr:\n{worker.stderr()}")
        time.sleep(0.1)


def test_page_runs_commands_and_feeds_them_input(system, browser, tmp_path):
    page = browser.new_page(viewport={"width": 900, "height": 420})
    problems = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: message.type == "error"
            and problems.append(f"console error: {message.text}"))
    page.on("response", lambda response: response.status >= 400
            and problems.append(f"HTTP {response.status} for {response.url}"))
    try:
        page.goto(f"{system.url}/?project=demo&terminal=t1")
        wait_for_status(page, "connected")
        assert page.title() == "demo / t1"
        wait_for_lines(page, lambda lines: lines[0] == "$", "the prompt")

        page.locator(".xterm-helper-textarea").focus()
        page.keyboard.type("echo hello")
        page.keyboard.press("Enter")
        lines = wait_for_lines(page, lambda lines: "[exit 0]" in lines, "echo's exit")
        assert lines[:4] == ["$ echo hello", "hello", "[exit 0]", "$"], lines

        page.keyboard.type("read x; echo got $x")
        page.keyboard.press("Enter")
        # The command is now running: keys go to it as stdin, and its terminal echoes them.
        wait_for_status(page, "command running")
        page.keyboard.type("abc")
        page.keyboard.press("Enter")
        lines = wait_for_lines(page, lambda lines: lines.count("[exit 0]") == 2,
                               "read's exit")
        assert lines[3:8] == ["$ read x; echo got $x", "abc", "got abc", "[exit 0]", "$"], lines

        # Back at the prompt: history recalls the last line.
        page.keyboard.press("ArrowUp")
        wait_for_lines(page, lambda lines: lines[7] == "$ read x; echo got $x",
                       "the recalled line")
        assert problems == []
    finally:
        save_screenshot(page, tmp_path)
        page.close()



def test_page_reconnects_after_a_gateway_restart_and_misses_nothing(system, browser, tmp_path):
    page = browser.new_page(viewport={"width": 900, "height": 720})
    try:
        page.goto(f"{system.url}/?project=demo&terminal=t2")
        wait_for_status(page, "connected")
        wait_for_lines(page, lambda lines: lines[0] == "$", "the prompt")
        page.locator(".xterm-helper-textarea").focus()
        page.keyboard.type("for i in $(seq 1 20); do echo line $i; sleep 0.15; done")
        page.keyboard.press("Enter")
        wait_for_lines(page, lambda lines: "line 2" in lines, "the first lines")

        # The command keeps streaming while the gateway restarts on the same port.
        system.stop()
        page.wait_for_function(
            "document.getElementById('status').dataset.state !== 'connected'",
            timeout=WAIT_LIMIT_S * 1000,
        )
        system.start()
        wait_for_status(page, "connected")
        lines = wait_for_lines(page, lambda lines: "[exit 0]" in lines, "the loop's exit")
        streamed = [line for line in lines if line.startswith("line ")]
        assert streamed == [f"line {i}" for i in range(1, 21)], lines

        # A new page load shows the terminal's kept history again (resume after 0).
        page.reload()
        wait_for_status(page, "connected")
        lines = wait_for_lines(page, lambda lines: "[exit 0]" in lines, "the history")
        streamed = [line for line in lines if line.startswith("line ")]
        assert streamed == [f"line {i}" for i in range(1, 21)], lines
        assert lines[lines.index("[exit 0]") + 1] == "$"
    finally:
        save_screenshot(page, tmp_path, "web-terminal-reconnect.png")
        page.close()
