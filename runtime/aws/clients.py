"""boto3 clients configured for a long-running service."""

from __future__ import annotations

import boto3
from botocore.config import Config


def make_client(service: str, *, endpoint_url: str | None, pool_size: int = 32):
    """A client with standard retries (backoff on throttling and 5xx) and room for threads.

    ``endpoint_url`` (``AWS_ENDPOINT_URL``) points it at an emulator; region and
    credentials come from the standard AWS variables and the task role.
    """
    config = Config(
        retries={"mode": "standard", "max_attempts": 6},
        max_pool_connections=pool_size,
        connect_timeout=5,
        # Above SQS's 20 s long poll, so a long poll is never cut short by the socket.
        read_timeout=40,
        tcp_keepalive=True,
    )
    return boto3.session.Session().client(service, endpoint_url=endpoint_url, config=config)


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
