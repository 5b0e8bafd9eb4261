"""Driving the web terminal page in Debian's headless Chromium (never Playwright's own
browser downloads), shared by the browser and end-to-end suites."""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

import pytest

from tests.integration.harness import WAIT_LIMIT_S

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
OUTPUT = Path(__file__).parent / "output"

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing; `make test` installs Debian's chromium")


@contextlib.contextmanager
def chromium(count: int = 1):
    """``count`` separate Chromium browsers (one Playwright driver can hold several)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browsers = []
        try:
            for _ in range(count):
                browsers.append(playwright.chromium.launch(
                    executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS))
            yield browsers
        finally:
            for browser in browsers:
                browser.close()


def terminal_lines(page) -> list[str]:
    """The terminal's visible rows, read from xterm's DOM renderer."""
    text = page.locator(".xterm-rows").inner_text()
    return [line.replace("\u00a0", " ").rstrip() for line in text.split("\n")]


def wait_for_lines(page, predicate, what: str) -> list[str]:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while True:
        lines = terminal_lines(page)
        if predicate(lines):
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"the terminal never showed {what}; it shows:\n"
                                 + "\n".join(lines))
        page.wait_for_timeout(100)


def wait_for_status(page, text: str) -> None:
    page.wait_for_function(
        "text => document.getElementById('status').textContent.includes(text)",
        arg=text, timeout=WAIT_LIMIT_S * 1000,
    )


def save_screenshot(page, tmp_path: Path, name: str = "web-terminal.png") -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    OUTPUT.mkdir(exist_ok=True)
    shutil.copy(shot, OUTPUT / shot.name)
    return shot
