"""The figures the programs put in their log lines (CloudWatch's Embedded Metric Format), and
the dashboard in ecs/ that charts them: it may name only metrics the code really emits."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import trio

from scaler.__main__ import build
from scaler.settings import ScalerSettings
from tests.integration.harness import WAIT_LIMIT_S, has_exit, running_worker, wait_for_events
from tests.servers import TEST_CREDENTIALS

ROOT = Path(__file__).resolve().parents[2]
UNITS = {"Count", "Seconds", "Milliseconds", "Bytes"}
# Metrics of AWS's own that the dashboard may chart besides ours.
AWS_NAMESPACES = {"AWS/SQS", "ECS/ContainerInsights"}


def figures(record: logging.LogRecord) -> tuple[str, dict[str, float]]:
    """The component and the figures of an EMF log record, checking the format on the way."""
    [directive] = record._aws["CloudWatchMetrics"]
    assert directive["Namespace"] == "CloudIDE"
    assert directive["Dimensions"] == [["Component"]]
    found = {}
    for metric in directive["Metrics"]:
        assert metric["Unit"] in UNITS
        value = getattr(record, metric["Name"])  # CloudWatch reads the value beside the block
        assert isinstance(value, int | float)
        found[metric["Name"]] = value
    assert isinstance(record._aws["Timestamp"], int)
    return record.Component, found


async def outcome_line(caplog, outcome: str) -> logging.LogRecord:
    """The worker's last line about a command, written once the command is settled."""
    with trio.fail_after(WAIT_LIMIT_S):
        while True:
            for record in caplog.records:
                if getattr(record, "outcome", None) == outcome and hasattr(record, "_aws"):
                    return record
            await trio.sleep(0.05)


async def test_a_finished_command_logs_its_duration_and_counts_as_run(
    aws, redis_server, redis_client, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="runtime")
    aws.send({"projectId": "p1", "terminalId": "t1", "command": "sleep 0.3; exit 3",
              "commandId": "c1"})
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)):
        await wait_for_events(redis_client, "p1", "t1", has_exit("c1"))
        record = await outcome_line(caplog, "finished")
    component, found = figures(record)
    assert component == "worker"
    # A command that exits non-zero still ran: its failure is the user's, not the worker's.
    assert found["commandsRun"] == 1
    assert found["commandsFailed"] == 0
    assert found["commandSeconds"] >= 0.3
    assert found["commandSeconds"] == record.durationS
    assert record.commandId == "c1"


async def test_a_command_the_worker_could_not_complete_counts_as_failed_without_a_duration(
    aws, redis_server, redis_client, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="runtime")
    aws.send({"projectId": "p2", "terminalId": "t1", "command": "true", "commandId": "c2"})
    env = aws.worker_env(redis_server.url, tmp_path, S3_BUCKET="no-such-bucket")
    async with running_worker(env):
        record = await outcome_line(caplog, "sync_failed")
    assert record.levelno == logging.WARNING
    _, found = figures(record)
    assert found == {"commandsRun": 0, "commandsFailed": 1}


async def test_the_dashboard_charts_only_metrics_the_code_emits(
    aws, redis_server, redis_client, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    aws.send({"projectId": "p3", "terminalId": "t1", "command": "true", "commandId": "c3"})
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)):
        await outcome_line(caplog, "finished")
    scaler = build(ScalerSettings.from_env({
        **TEST_CREDENTIALS, "AWS_ENDPOINT_URL": aws.endpoint, "SQS_QUEUE_URL": aws.queue_url,
        "SCALER_LAUNCHER": "local", "ECS_MAX_TASKS": "1",
    }))
    await scaler.evaluate()
    await scaler.close()
    emitted = {(component, name) for component, names in
               (figures(r) for r in caplog.records if hasattr(r, "_aws")) for name in names}
    assert {("scaler", "launchFailures"), ("worker", "commandSeconds")} <= emitted

    dashboard = json.loads((ROOT / "ecs" / "dashboard.json").read_text())
    charted = set()
    for widget in dashboard["widgets"]:
        for row in widget["properties"]["metrics"]:
            namespace, name, *dimensions = [part for part in row if isinstance(part, str)]
            assert "." not in (namespace, name), "write rows out in full"
            if namespace in AWS_NAMESPACES:
                continue
            assert namespace == "CloudIDE", namespace
            assert dimensions[0] == "Component"
            assert len(dimensions) == 2  # the only dimension the code emits
            charted.add((dimensions[1], name))
    assert charted <= emitted, charted - emitted
    # The seed's key figures are all on it: failures and command duration among them.
    assert {("worker", "commandSeconds"), ("worker", "commandsFailed"),
            ("scaler", "startFailures"), ("scaler", "launchFailures"),
            ("scaler", "live")} <= charted
