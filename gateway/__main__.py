"""``python -m gateway``: serve terminals. ``python -m gateway token ...``: print a token."""

from __future__ import annotations

import argparse
import logging
import sys
import time

import trio

from runtime.aws.queue import QueueError
from runtime.bus.connection import RedisError
from runtime.contract.logs import configure_logging
from runtime.contract.messages import is_valid_id
from runtime.contract.settings import EnvReader, SettingError, load_environment
from runtime.contract.stopping import run_until_stopped

from .server import GatewayServer
from .settings import GatewaySettings
from .tokens import DEFAULT_TTL_S, mint_token

logger = logging.getLogger("gateway")


async def serve(settings: GatewaySettings) -> None:
    server = GatewayServer.from_settings(settings)
    await server.preflight()
    await run_until_stopped(server.run, server.drain)


def print_token(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway token",
                                     description="Print a single-use terminal token.")
    parser.add_argument("--project", required=True)
    parser.add_argument("--terminal", required=True)
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL_S, help="seconds (default 300)")
    parser.add_argument("--user", default="developer")
    args = parser.parse_args(argv)
    for name in ("project", "terminal"):
        if not is_valid_id(getattr(args, name)):
            parser.error(f"--{name} must match [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}")
    if not 1 <= args.ttl <= 86400:
        parser.error("--ttl must be between 1 and 86400 seconds")
    try:
        secret = EnvReader(load_environment()).text("GATEWAY_SECRET")
    except SettingError as exc:
        print(f"gateway: bad setting: {exc}", file=sys.stderr)
        return 2
    print(mint_token(secret, project_id=args.project, terminal_id=args.terminal,
                     user=args.user, ttl_s=args.ttl, now=time.time()))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["token"]:
        return print_token(argv[1:])
    configure_logging()
    try:
        settings = GatewaySettings.from_env(load_environment())
    except SettingError as exc:
        print(f"gateway: bad setting: {exc}", file=sys.stderr)
        return 2
    try:
        trio.run(serve, settings)
    except (RedisError, QueueError) as exc:
        logger.error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
