"""The whole system for end-to-end tests: real programs as separate processes.

By default each test gets its own moto server and redis-server; with ``AWS_ENDPOINT_URL``
and ``REDIS_URL`` set, the same tests run against those (LocalStack for SQS and S3, say:
the workers here are local processes, so no ECS is needed).
"""

from __future__ import annotations

import os

import pytest

from dev.system import LocalSystem

# Quick to react, so that a test spends its time on what it checks: workers that idle
# out after 5 s, a scaler that looks every 2 s, a message lease of 6 s.
E2E_SETTINGS = {
    "ECS_MIN_TASKS": "1", "ECS_MAX_TASKS": "4", "SCALER_INTERVAL_SECONDS": "2",
    "IDLE_TIMEOUT_SECONDS": "5", "RECEIVE_WAIT_SECONDS": "1", "LEASE_SECONDS": "6",
}


@pytest.fixture
def system(tmp_path):
    local = LocalSystem(tmp_path / "system", aws_endpoint=os.environ.get("AWS_ENDPOINT_URL"),
                        redis_url=os.environ.get("REDIS_URL"), settings=E2E_SETTINGS)
    with local:
        yield local
