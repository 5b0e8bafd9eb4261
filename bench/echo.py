"""Keystroke echo: one character sent on the websocket into a running ``cat``, until the
terminal's echo of it comes back on the same websocket.

Ours: browser frame -> gateway -> Redis input channel -> worker -> PTY, and the echo back
through worker -> Redis -> gateway. Peer: terminado. Keys go one at a time (the next
after the previous echo, and no sooner than KEY_GAP_S after the previous key: a fast
typist's pace, well inside the gateway's frame rate limit), after a few unmeasured ones
that show the command is reading. The terminal's own echo is off, so each key comes
back once, written by `cat`: the round trip through the command.

    python -m bench.echo [--quick] [--keys 1000] [--profile DIR]
"""

from __future__ import annotations

import json
import string
import time

import trio

from bench.common import (
    Stack,
    arguments,
    open_terminado,
    percentile,
    receive_frame,
    report,
    terminado_server,
)

WARM_UP_KEYS = 20
# Until the command reads its input, keys typed are lost to nobody but may go unanswered.
FIRST_ECHO_WAIT_S = 0.5
TARGET_P50_MS, TARGET_P99_MS = 3, 15
# 100 keys a second: ten times a fast typist, half the gateway's default frame rate.
KEY_GAP_S = 0.01
# Each key comes back once, written by `cat`, with the terminal's own echo off.
COMMAND = "stty -icanon -echo; cat"


def summary(latencies_s: list[float]) -> dict:
    ms = [1000 * s for s in latencies_s]
    return {"keys": len(ms), "p50Ms": round(percentile(ms, 0.50), 2),
            "p99Ms": round(percentile(ms, 0.99), 2), "maxMs": round(max(ms), 2)}


async def type_keys(send, next_echo, keys: int) -> list[float]:
    """Wait until a key is echoed (the command is reading), then time ``keys`` keys."""
    letters = string.ascii_lowercase
    with trio.fail_after(60):
        while True:
            await send("a")
            with trio.move_on_after(FIRST_ECHO_WAIT_S):
                await next_echo()
                break
    # Echoes of unanswered tries may still arrive: let them, then start clean.
    await drain(next_echo)
    latencies = []
    for index in range(WARM_UP_KEYS + keys):
        await trio.sleep_until(trio.current_time() + KEY_GAP_S)
        started = time.perf_counter()
        await send(letters[index % len(letters)])
        await next_echo()
        if index >= WARM_UP_KEYS:
            latencies.append(time.perf_counter() - started)
    return latencies


async def drain(next_echo) -> None:
    while True:
        with trio.move_on_after(0.3):
            await next_echo()
            continue
        return


async def terminado(keys: int) -> list[float]:
    with terminado_server(COMMAND) as url:
        async with open_terminado(url) as ws:
            async def send(key: str) -> None:
                await ws.send_message(json.dumps(["stdin", key]))

            async def next_echo() -> None:
                while True:
                    frame = await receive_frame(ws)
                    if frame[0] == "stdout" and frame[1]:
                        return

            return await type_keys(send, next_echo, keys)


async def ours(keys: int, profile: str | None) -> list[float]:
    with Stack(profile=profile) as stack:
        async with stack.open_terminal("bench", "echo") as ws:
            await ws.send_message(json.dumps({"type": "command", "command": COMMAND}))

            async def send(key: str) -> None:
                await ws.send_message(json.dumps({"type": "stdin", "data": key}))

            async def next_echo() -> None:
                while True:
                    frame = await receive_frame(ws)
                    if frame["type"] == "output" and frame["data"]:
                        return
                    if frame["type"] in ("exit", "error"):
                        raise RuntimeError(f"the command ended early: {frame}")

            latencies = await type_keys(send, next_echo, keys)
            await ws.send_message(json.dumps({"type": "signal", "name": "SIGINT"}))
            with trio.move_on_after(10):
                while (await receive_frame(ws))["type"] != "exit":
                    pass
    return latencies


def main() -> None:
    args = arguments(__doc__.splitlines()[0], lambda parser: parser.add_argument(
        "--keys", type=int, default=1000, help="keys timed (1000)"))
    keys = 20 if args.quick else args.keys
    peer = summary(trio.run(terminado, keys))
    mine = summary(trio.run(ours, keys, args.profile))
    rows = [["", "p50 ms", "p99 ms", "max ms"]]
    for name, figures in (("ours: ws > gateway > Redis > worker > PTY and back", mine),
                          ("terminado: ws > PTY and back", peer)):
        rows.append([name, f"{figures['p50Ms']:.2f}", f"{figures['p99Ms']:.2f}",
                     f"{figures['maxMs']:.2f}"])
    meets = {"p50": mine["p50Ms"] <= TARGET_P50_MS, "p99": mine["p99Ms"] <= TARGET_P99_MS}
    report("keystroke echo", rows, {
        "bench": "echo", "quick": args.quick, "ours": mine, "terminado": peer, "meets": meets,
    }, [f"{keys} keys, one at a time, into `cat` (target: p50 <= {TARGET_P50_MS} ms, "
        f"p99 <= {TARGET_P99_MS} ms)"])


if __name__ == "__main__":
    main()
