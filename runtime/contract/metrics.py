"""Figures in CloudWatch's Embedded Metric Format, carried by the JSON log lines.

A log line with an ``_aws`` block is turned into CloudWatch metrics by CloudWatch Logs
itself (the awslogs driver ships the line; no agent, no PutMetricData permission). The
figures stay readable in the line as plain fields.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

NAMESPACE = "CloudIDE"


def embedded_metrics(component: str, figures: Mapping[str, tuple[float, str]]) -> dict:
    """Fields to merge into a log record's ``extra``: each figure is (value, unit).

    Units are CloudWatch's: ``Count``, ``Seconds``, ``Bytes``, ``Milliseconds``.
    """
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Component"]],
                "Metrics": [{"Name": name, "Unit": unit}
                            for name, (_, unit) in figures.items()],
            }],
        },
        "Component": component,
        **{name: value for name, (value, _) in figures.items()},
    }
