"""boto3 clients configured for a long-running service."""

from __future__ import annotations

import threading
from datetime import datetime

import boto3
import botocore.session
from botocore.config import Config
from botocore.utils import parse_timestamp

# One session per process: a session loads the service models anew, some 10 MB for each
# client made from a session of its own, while clients of one session share them.
# Creating clients from a shared session is not thread-safe (using them is): the lock.
_session_lock = threading.Lock()
_session: boto3.session.Session | None = None


def make_client(service: str, *, endpoint_url: str | None, pool_size: int = 32,
                read_timeout_s: float = 60, attempts: int = 6):
    """A client with standard retries (backoff on throttling and 5xx) and room for threads.

    ``endpoint_url`` (``AWS_ENDPOINT_URL``) points it at an emulator; region and
    credentials come from the standard AWS variables and the task role. Callers whose
    calls must end within a deadline (lease extensions) ask for short timeouts and few
    attempts, since a call in a thread is never abandoned.
    """
    global _session
    config = Config(
        retries={"mode": "standard", "max_attempts": attempts},
        max_pool_connections=pool_size,
        connect_timeout=min(5, read_timeout_s),
        read_timeout=read_timeout_s,
        tcp_keepalive=True,
    )
    with _session_lock:
        if _session is None:
            core = botocore.session.get_session()
            core.get_component("response_parser_factory").set_parser_defaults(
                timestamp_parser=parse_timestamp_quickly)
            _session = boto3.session.Session(botocore_session=core)
        return _session.client(service, endpoint_url=endpoint_url, config=config)


def parse_timestamp_quickly(value):
    """botocore's timestamp parser, with a shortcut for the ISO 8601 form of XML
    responses: its general parser (dateutil's) took over half the CPU of reading an S3
    listing, which holds one timestamp per key."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return parse_timestamp(value)


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
