"""The scaler's figures for a Prometheus scraper; CloudWatch reads the decision log line.

Each scaler owns its registry, so several can live in one process (tests, the simulator)
without clashing in prometheus_client's global one.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class ScalerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.visible = Gauge("cloudide_scaler_queue_visible",
                             "Commands waiting in the queue", registry=self.registry)
        self.in_flight = Gauge("cloudide_scaler_queue_in_flight",
                               "Commands received by a worker and not yet deleted",
                               registry=self.registry)
        self.live = Gauge("cloudide_scaler_live_tasks",
                          "Workers this scaler started that are starting or running, "
                          "with the round's launches", registry=self.registry)
        self.desired = Gauge("cloudide_scaler_desired_tasks",
                             "Workers the backlog and the limits call for",
                             registry=self.registry)
        self.launched = Counter("cloudide_scaler_tasks_launched",
                                "Workers launched", registry=self.registry)
        self.launch_failures = Counter(
            "cloudide_scaler_launch_failures",
            "RunTask calls that failed, or tasks it could not place", registry=self.registry)
        self.start_failures = Counter(
            "cloudide_scaler_task_start_failures",
            "Launched workers that stopped before they ran", registry=self.registry)
        self._server = None

    def record_round(self, report: dict) -> None:
        self.visible.set(report["visible"])
        self.in_flight.set(report["inFlight"])
        self.live.set(report["live"] + report["launched"])
        self.desired.set(report["desired"])

    def serve(self, port: int, host: str) -> int:
        """Serve /metrics from a thread of prometheus_client's; returns the bound port."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        return self._server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
