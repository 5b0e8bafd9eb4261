"""The scaler's round: observe the queue and our workers, decide, launch.

Every ``SCALER_INTERVAL_SECONDS``, and at once (rate-limited) when the gateway says a
command was enqueued. One JSON log line per decision.
"""

from __future__ import annotations

import json
import logging
import uuid

import trio

from runtime.aws.queue import CommandQueue, QueueError
from runtime.bus.pubsub import Subscriber
from runtime.contract.keys import SCALER_WAKE_CHANNEL
from runtime.policy.backoff import backoff_delay

from .launchers import BURST, FLOOR, LaunchError
from .policy import FailureBreaker, LaunchLedger, Observation, decide, run_task_batches
from .settings import ScalerSettings

logger = logging.getLogger(__name__)

# Wake-ups closer together than this are merged into one evaluation.
MIN_WAKE_GAP_S = 2


class Scaler:
    def __init__(self, settings: ScalerSettings, queue: CommandQueue, launcher):
        self.settings = settings
        self._queue = queue
        self._launcher = launcher
        self._ledgers = {kind: LaunchLedger(grace_s=settings.start_grace_s)
                         for kind in (FLOOR, BURST)}
        self._watch: set[str] = set()
        self.breaker = FailureBreaker()
        self._launch_failures = 0
        self._launch_blocked_until = float("-inf")
        # A RunTask whose answer was lost: repeated with the same token, it returns the
        # tasks it launched instead of launching more.
        self._unanswered: tuple[str, int, str] | None = None
        self._wake = trio.Event()
        self.launched_total = 0

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        await self._launcher.close()

    async def evaluate(self) -> dict:
        """One observe-decide-act round; returns the decision as logged."""
        now = trio.current_time()
        visible, in_flight = await self._queue.depth()
        live = await self._launcher.observe(set(self._watch))
        for reason in live.failed_starts.values():
            if self.breaker.task_failed(reason, now):
                logger.error("workers keep failing to start (%s); no launches for %.0f s",
                             reason, self.breaker.cooldown_s)
        if live.running & self._watch:
            self.breaker.task_started()
        self._watch -= live.running | live.stopped

        recovered = await self._retry_unanswered()
        live_counts = {}
        for kind in (FLOOR, BURST):
            self._ledgers[kind].record(recovered.get(kind, []), now)
            unlisted = self._ledgers[kind].unlisted(live.ids[kind], live.stopped, now)
            live_counts[kind] = len(live.ids[kind]) + unlisted
        observation = Observation(visible=visible, in_flight=in_flight,
                                  live_floor=live_counts[FLOOR], live_burst=live_counts[BURST])
        decision = decide(observation, self.settings.limits)

        launched, held_back = 0, None
        if decision.launch and self.breaker.is_open(now):
            held_back = f"start failures: {self.breaker.last_reason}"
        elif decision.launch and now < self._launch_blocked_until:
            held_back = "backing off after launch failures"
        else:
            for kind, count in ((FLOOR, decision.floor), (BURST, decision.burst)):
                launched += await self._launch(kind, count, now)
        report = {
            "visible": visible, "inFlight": in_flight, "live": observation.live,
            "desired": decision.desired, "launched": launched,
        }
        if held_back:
            report["heldBack"] = held_back
        logger.info("scaling decision", extra=report)
        return report

    async def _launch(self, kind: str, count: int, now: float) -> int:
        launched = 0
        round_id = uuid.uuid4().hex[:12]
        for index, batch in enumerate(run_task_batches(count)):
            token = f"{round_id}-{kind}-{index}"
            try:
                result = await self._launcher.launch(batch, kind=kind, client_token=token)
            except LaunchError as exc:
                self._unanswered = (token, batch, kind)
                self._back_off(now, str(exc))
                break
            self._ledgers[kind].record(result.ids, now)
            self._watch.update(result.ids)
            launched += len(result.ids)
            self.launched_total += len(result.ids)
            if result.failures:
                logger.warning("RunTask failures: %s", "; ".join(result.failures[:5]))
            if result.short_of_capacity or (result.failures and not result.ids):
                self._back_off(now, "no capacity")
                break
        else:
            self._launch_failures = 0
        return launched

    async def _retry_unanswered(self) -> dict[str, list[str]]:
        if self._unanswered is None:
            return {}
        token, batch, kind = self._unanswered
        try:
            result = await self._launcher.launch(batch, kind=kind, client_token=token)
        except LaunchError:
            return {}  # still unknown; asked again next round
        self._unanswered = None
        self._watch.update(result.ids)
        self.launched_total += len(result.ids)
        return {kind: result.ids}

    def _back_off(self, now: float, why: str) -> None:
        self._launch_failures += 1
        delay = backoff_delay(self._launch_failures, base_s=self.settings.interval_s,
                              cap_s=10 * self.settings.interval_s, rand=lambda: 1.0)
        self._launch_blocked_until = now + delay
        logger.warning("launches paused for %.0f s: %s", delay, why)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
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
