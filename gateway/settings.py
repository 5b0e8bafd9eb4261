"""The gateway's settings, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from runtime.bus.connection import connection_options
from runtime.contract.settings import EnvReader, SettingError

MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class GatewaySettings:
    host: str
    port: int
    secret: str
    allowed_origins: frozenset[str]
    redis_url: str
    sqs_queue_url: str
    aws_endpoint_url: str | None = None
    token_ttl_s: int = 300
    dev_tokens: bool = False
    drain_grace_s: float = 10
    frames_per_s: float = 200
    client_buffer_bytes: int = 4 * 1024 * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> GatewaySettings:
        env = EnvReader(environ)
        port = env.integer("GATEWAY_PORT", 8080, minimum=0, maximum=65535)
        secret = env.text("GATEWAY_SECRET")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise SettingError(
                f"GATEWAY_SECRET must be at least {MIN_SECRET_BYTES} bytes (HS256 keys shorter "
                "than the hash are guessable)"
            )
        origins = env.text_list(
            "GATEWAY_ALLOWED_ORIGINS", (f"http://localhost:{port}", f"http://127.0.0.1:{port}")
        )
        for origin in origins:
            scheme, sep, rest = origin.partition("://")
            if (origin == "*" or not sep or scheme not in ("http", "https") or not rest
                    or "/" in rest):
                raise SettingError(
                    "GATEWAY_ALLOWED_ORIGINS must list origins like https://ide.example.com, "
                    f"got {origin!r}"
                )
        return cls(
            host=env.text("GATEWAY_HOST", "0.0.0.0"),
            port=port,
            secret=secret,
            allowed_origins=frozenset(origins),
            redis_url=env.url("REDIS_URL", ("redis", "rediss", "unix"), "redis://localhost:6379/0",
                              check=connection_options),
            sqs_queue_url=env.url("SQS_QUEUE_URL", ("http", "https")),
            aws_endpoint_url=env.optional_text("AWS_ENDPOINT_URL"),
            token_ttl_s=env.integer("GATEWAY_TOKEN_TTL_SECONDS", 300, minimum=10, maximum=3600),
            dev_tokens=env.boolean("GATEWAY_DEV_TOKENS", False),
            drain_grace_s=env.number("GATEWAY_DRAIN_SECONDS", 10, minimum=0, maximum=300),
            frames_per_s=env.number("GATEWAY_FRAMES_PER_SECOND", 200, minimum=1),
            client_buffer_bytes=env.integer(
                "GATEWAY_CLIENT_BUFFER_BYTES", 4 * 1024 * 1024, minimum=64 * 1024
            ),
        )
