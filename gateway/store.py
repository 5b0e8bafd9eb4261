"""The gateway's Redis calls that are not the live subscription."""

from __future__ import annotations

import json
import math

from runtime.bus.connection import RedisClient
from runtime.contract import keys

HISTORY_PAGE = 500
CLOCK_SKEW_MARGIN_S = 60


class GatewayStore:
    def __init__(self, url: str):
        self._redis = RedisClient(url)

    async def ping(self) -> None:
        await self._redis.call("PING")

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def claim_token(self, token_id: str, expires_at: float, now: float) -> bool:
        """True the first time a token is used; False for every later use.

        Remembered relative to our clock, with a margin, so Redis's clock running ahead
        cannot forget a token that our check still accepts.
        """
        remember_s = max(1, math.ceil(expires_at - now)) + CLOCK_SKEW_MARGIN_S
        return await self._redis.call(
            "SET", keys.used_token(token_id), 1, "NX", "EX", remember_s
        ) is not None

    async def wake_scaler(self) -> None:
        """A command was enqueued: a scaler with no live worker should not wait."""
        await self._redis.call("PUBLISH", keys.SCALER_WAKE_CHANNEL, "command")

    async def send_input(self, project_id: str, terminal_id: str, message: dict) -> None:
        await self._redis.call(
            "PUBLISH", keys.input_channel(project_id, terminal_id), json.dumps(message)
        )

    async def newest_seq(self, project_id: str, terminal_id: str) -> int:
        """The seq of the newest kept event; 0 when the terminal has no history."""
        newest = await self._redis.call(
            "XREVRANGE", keys.history_stream(project_id, terminal_id), "+", "-", "COUNT", 1
        )
        return int(newest[0][0].split(b"-")[0]) if newest else 0

    async def history_page(self, project_id: str, terminal_id: str, after: int,
                           count: int = HISTORY_PAGE) -> list[tuple[int, str]]:
        """Up to ``count`` kept events with a seq above ``after``, oldest first."""
        page = await self._redis.call(
            "XRANGE", keys.history_stream(project_id, terminal_id),
            f"{after + 1}-0", "+", "COUNT", count,
        )
        # Each entry is [id, [field, value, ...]]; the worker writes one field, "event".
        return [(int(entry_id.split(b"-")[0]), dict(zip(fields[::2], fields[1::2],
                                                        strict=True))[b"event"].decode())
                for entry_id, fields in page]
