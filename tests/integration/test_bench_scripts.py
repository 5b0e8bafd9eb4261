"""Each benchmark's smallest run works and ends with its JSON line, so the scripts do
not rot. Nothing here asserts a figure: benchmarks report, they are never timed tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.all import SCRIPTS

ROOT = Path(__file__).resolve().parents[2]
# A guard against a hung script, not a timing assertion.
RUN_LIMIT_S = 180


@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_run_prints_a_table_and_its_json_line(script):
    done = subprocess.run([sys.executable, "-m", f"bench.{script}", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=RUN_LIMIT_S, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["bench"] == script
    assert figures["quick"] is True
    assert isinstance(figures["meets"], dict)
    assert figures["meets"]
    assert "error" not in json.dumps(figures.get("ours", {})), figures
    assert len(lines) > 2  # the table for a person came first
