"""The scaler's round: observe the queue and our workers, decide, launch.

Every ``SCALER_INTERVAL_SECONDS``, and at once (rate-limited) when the gateway says a
command was enqueued. One JSON log line per decision.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, replace

import trio

from runtime.aws.queue import CommandQueue, QueueError
from runtime.bus.pubsub import Subscriber
from runtime.contract.keys import SCALER_WAKE_CHANNEL
from runtime.contract.metrics import embedded_metrics
from runtime.policy.backoff import backoff_delay

from .launchers import BURST, FLOOR, LaunchError
from .metrics import ScalerMetrics
from .policy import FailureBreaker, LaunchLedger, Observation, decide, run_task_batches
from .settings import ScalerSettings

logger = logging.getLogger(__name__)

# Wake-ups closer together than this are merged into one evaluation.
MIN_WAKE_GAP_S = 2


@dataclass(frozen=True)
class UnansweredLaunch:
    """A RunTask whose answer was lost: it may or may not have launched ``count`` tasks."""

    token: str
    count: int
    kind: str


class Scaler:
    def __init__(self, settings: ScalerSettings, queue: CommandQueue, launcher):
        self.settings = settings
        self._queue = queue
        self._launcher = launcher
        self._ledgers = {kind: LaunchLedger(grace_s=settings.start_grace_s)
                         for kind in (FLOOR, BURST)}
        self._watch: set[str] = set()
        self.breaker = FailureBreaker()
        self._consecutive_launch_failures = 0
        self._launch_blocked_until = float("-inf")
        self._unanswered: UnansweredLaunch | None = None
        self._wake = trio.Event()
        self.metrics = ScalerMetrics()

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        self.metrics.close()
        await self._launcher.close()

    async def evaluate(self) -> dict:
        """One observe-decide-act round; returns the decision as logged."""
        now = trio.current_time()
        visible, in_flight = await self._queue.depth()
        live = await self._launcher.observe(set(self._watch))
        self.metrics.start_failures.inc(len(live.failed_starts))
        for reason in live.failed_starts.values():
            if self.breaker.task_failed(reason, now):
                logger.error("workers keep failing to start (%s); no launches for %.0f s",
                             reason, self.breaker.cooldown_s)
        if live.running & self._watch:
            self.breaker.task_started()
        self._watch -= live.running | live.stopped

        recovered, unknown = await self._settle_unanswered(now)
        live_counts = {}
        for kind in (FLOOR, BURST):
            unlisted = self._ledgers[kind].unlisted(live.ids[kind], live.stopped, now)
            live_counts[kind] = len(live.ids[kind]) + unlisted + unknown.get(kind, 0)
        observation = Observation(visible=visible, in_flight=in_flight,
                                  live_floor=live_counts[FLOOR], live_burst=live_counts[BURST])
        decision = decide(observation, self.settings.limits)
        if decision.launch and observation.live:
            # SQS counts waiting and in-flight messages apart, so one that live workers
            # receive while it counts can be counted in both. A launch beside live tasks
            # is decided on the lower of two readings.
            again = await self._queue.depth()
            if sum(again) < visible + in_flight:
                visible, in_flight = again
                observation = replace(observation, visible=visible, in_flight=in_flight)
                decision = decide(observation, self.settings.limits)

        launched, failures, held_back = 0, 0, None
        if decision.launch and self.breaker.is_open(now):
            held_back = f"start failures: {self.breaker.last_reason}"
        elif decision.launch and now < self._launch_blocked_until:
            held_back = "backing off after launch failures"
        else:
            for kind, count in ((FLOOR, decision.floor), (BURST, decision.burst)):
                kind_launched, kind_failed = await self._launch(kind, count, now)
                launched += kind_launched
                failures += kind_failed
        report = {
            "visible": visible, "inFlight": in_flight, "live": observation.live,
            "desired": decision.desired, "launched": launched,
        }
        self.metrics.record_round(report)
        figures = {name: (value, "Count") for name, value in report.items()}
        figures["startFailures"] = (len(live.failed_starts), "Count")
        figures["launchFailures"] = (failures, "Count")
        extra = embedded_metrics("scaler", figures)
        if recovered:
            extra["recovered"] = recovered
        if held_back:
            extra["heldBack"] = held_back
        logger.info("scaling decision", extra=extra)
        return report

    async def _launch(self, kind: str, count: int, now: float) -> tuple[int, int]:
        """Launch ``count`` tasks ten a call; returns (launched, failed calls)."""
        launched = 0
        round_id = uuid.uuid4().hex[:12]
        for index, batch in enumerate(run_task_batches(count)):
            token = f"{round_id}-{kind}-{index}"
            try:
                result = await self._launcher.launch(batch, kind=kind, client_token=token)
            except LaunchError as exc:
                self._unanswered = UnansweredLaunch(token, batch, kind)
                self._back_off(now, str(exc))
                return launched, 1
            self._record_launched(kind, result.ids, now)
            launched += len(result.ids)
            if result.failures:
                logger.warning("RunTask failures: %s", "; ".join(result.failures[:5]))
            if result.short_of_capacity or (result.failures and not result.ids):
                self._back_off(now, "no capacity")
                return launched, 1
        self._consecutive_launch_failures = 0
        return launched, 0

    def _record_launched(self, kind: str, task_ids: list[str], now: float) -> None:
        self._ledgers[kind].record(task_ids, now)
        self._watch.update(task_ids)
        self.metrics.launched.inc(len(task_ids))

    async def _settle_unanswered(self, now: float) -> tuple[int, dict[str, int]]:
        """Find out what a RunTask with a lost answer launched.

        Its tasks carry its token, so the listing tells; where the listing lags, the call
        is repeated with the same token, which ECS answers with the first call's tasks
        instead of launching again. Returns (tasks recovered, tasks still unknown by kind):
        an unknown launch counts as live, so the scaler never passes its max.
        """
        unanswered = self._unanswered
        if unanswered is None:
            return 0, {}
        try:
            found = await self._launcher.find_launched(unanswered.token, kind=unanswered.kind)
            if not found:
                result = await self._launcher.launch(
                    unanswered.count, kind=unanswered.kind, client_token=unanswered.token)
                found = result.ids
        except LaunchError as exc:
            logger.warning("launch %s still unanswered: %s", unanswered.token, exc)
            return 0, {unanswered.kind: unanswered.count}
        self._unanswered = None
        self._record_launched(unanswered.kind, found, now)
        return len(found), {}

    def _back_off(self, now: float, why: str) -> None:
        self._consecutive_launch_failures += 1
        self.metrics.launch_failures.inc()
        delay = backoff_delay(self._consecutive_launch_failures,
                              base_s=self.settings.interval_s,
                              cap_s=10 * self.settings.interval_s, rand=lambda: 1.0)
        self._launch_blocked_until = now + delay
        logger.warning("launches paused for %.0f s: %s", delay, why)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        if self.settings.metrics_port is not None:
            port = self.metrics.serve(self.settings.metrics_port, self.settings.metrics_host)
            logger.info("metrics for Prometheus at http://%s:%d/metrics",
                        self.settings.metrics_host, port)
        async with trio.open_nursery() as nursery:
            if self.settings.redis_url:
                subscriber = Subscriber(self.settings.redis_url,
                                        on_message=lambda channel, data: self.wake())
                await subscriber.subscribe(SCALER_WAKE_CHANNEL)
                await nursery.start(subscriber.run)
            task_status.started()
            while True:
                self._wake = trio.Event()
                try:
                    await self.evaluate()
                except (QueueError, LaunchError) as exc:
                    logger.warning("scaling round failed: %s", exc)
                await trio.sleep(MIN_WAKE_GAP_S)
                with trio.move_on_after(self.settings.interval_s - MIN_WAKE_GAP_S):
                    await self._wake.wait()


def decision_line(report: dict) -> str:
    return json.dumps(report, separators=(",", ":"))
