"""GatewaySettings.from_env: defaults, a secret long enough for HS256, and exact origins."""

from __future__ import annotations

import pytest

from gateway.settings import MIN_SECRET_BYTES, GatewaySettings
from runtime.contract.settings import SettingError

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/commands.fifo"
SECRET = "k" * MIN_SECRET_BYTES
REQUIRED = {"GATEWAY_SECRET": SECRET, "SQS_QUEUE_URL": QUEUE_URL}


def settings(**extra: str) -> GatewaySettings:
    return GatewaySettings.from_env({**REQUIRED, **extra})


def setting_error(environ: dict[str, str]) -> str:
    with pytest.raises(SettingError) as info:
        GatewaySettings.from_env(environ)
    return str(info.value)


def test_defaults():
    s = settings()

    assert s.host == "0.0.0.0"
    assert s.port == 8080
    assert s.secret == SECRET
    assert s.allowed_origins == frozenset({"http://localhost:8080", "http://127.0.0.1:8080"})
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.sqs_queue_url == QUEUE_URL
    assert s.aws_endpoint_url is None
    assert s.token_ttl_s == 300
    assert s.dev_tokens is False
    assert s.drain_grace_s == 10
    assert s.frames_per_s == 200
    assert s.client_buffer_bytes == 4 * 1024 * 1024


def test_default_origins_follow_the_port():
    s = settings(GATEWAY_PORT="9000")

    assert s.port == 9000
    assert s.allowed_origins == frozenset({"http://localhost:9000", "http://127.0.0.1:9000"})


def test_values_from_the_environment():
    s = settings(
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_ALLOWED_ORIGINS="https://ide.example.com, http://localhost:3000",
        REDIS_URL="rediss://cache:6380/2",
        AWS_ENDPOINT_URL="http://localhost:4566",
        GATEWAY_TOKEN_TTL_SECONDS="60",
        GATEWAY_DEV_TOKENS="true",
        GATEWAY_DRAIN_SECONDS="2.5",
        GATEWAY_FRAMES_PER_SECOND="50",
        GATEWAY_CLIENT_BUFFER_BYTES="131072",
    )

    assert s.host == "127.0.0.1"
    assert s.allowed_origins == frozenset({"https://ide.example.com", "http://localhost:3000"})
    assert s.redis_url == "rediss://cache:6380/2"
    assert s.aws_endpoint_url == "http://localhost:4566"
    assert s.token_ttl_s == 60
    assert s.dev_tokens is True
    assert s.drain_grace_s == 2.5
    assert s.frames_per_s == 50
    assert s.client_buffer_bytes == 131072


def test_settings_are_frozen():
    s = settings()

    with pytest.raises(AttributeError):
        s.secret = "x"  # type: ignore[misc]


# The secret.


@pytest.mark.parametrize("value", [None, "", "   "])
def test_secret_is_required(value):
    environ = {"SQS_QUEUE_URL": QUEUE_URL}
    if value is not None:
        environ["GATEWAY_SECRET"] = value

    assert setting_error(environ) == "GATEWAY_SECRET is required but not set"


def test_secret_one_byte_short_is_refused():
    message = setting_error({**REQUIRED, "GATEWAY_SECRET": "k" * (MIN_SECRET_BYTES - 1)})

    assert message.startswith(f"GATEWAY_SECRET must be at least {MIN_SECRET_BYTES} bytes")


def test_secret_length_is_measured_in_bytes():
    # 16 two-byte characters: 32 bytes, long enough.
    assert settings(GATEWAY_SECRET="é" * 16).secret == "é" * 16
    assert "GATEWAY_SECRET" in setting_error({**REQUIRED, "GATEWAY_SECRET": "é" * 15})


def test_queue_url_is_required():
    assert setting_error({"GATEWAY_SECRET": SECRET}) == "SQS_QUEUE_URL is required but not set"


# Origins.


@pytest.mark.parametrize("origin", [
    "*",
    "ide.example.com",
    "http://x/path",
    "https://ide.example.com/",
    "ftp://ide.example.com",
    "null",
    "//ide.example.com",
    "https://",
])
def test_bad_origin_is_refused_naming_the_variable(origin):
    message = setting_error({**REQUIRED, "GATEWAY_ALLOWED_ORIGINS": origin})

    assert message.startswith("GATEWAY_ALLOWED_ORIGINS must list origins like")
    assert repr(origin) in message


def test_one_bad_origin_in_a_list_is_refused():
    message = setting_error(
        {**REQUIRED, "GATEWAY_ALLOWED_ORIGINS": "https://ide.example.com,*"}
    )

    assert "GATEWAY_ALLOWED_ORIGINS" in message
    assert "'*'" in message


@pytest.mark.parametrize("origin", [
    "https://ide.example.com",
    "http://localhost:3000",
    "http://127.0.0.1:8080",
])
def test_good_origin_is_accepted(origin):
    assert settings(GATEWAY_ALLOWED_ORIGINS=origin).allowed_origins == frozenset({origin})


def test_blank_origins_fall_back_to_the_defaults():
    s = settings(GATEWAY_ALLOWED_ORIGINS="  ")

    assert s.allowed_origins == frozenset({"http://localhost:8080", "http://127.0.0.1:8080"})


# Ranges.


@pytest.mark.parametrize(("name", "value"), [
    ("GATEWAY_PORT", "70000"),
    ("GATEWAY_PORT", "http"),
    ("GATEWAY_TOKEN_TTL_SECONDS", "5"),
    ("GATEWAY_TOKEN_TTL_SECONDS", "7200"),
    ("GATEWAY_DRAIN_SECONDS", "-1"),
    ("GATEWAY_FRAMES_PER_SECOND", "0"),
    ("GATEWAY_CLIENT_BUFFER_BYTES", "1024"),
    ("GATEWAY_DEV_TOKENS", "maybe"),
    ("REDIS_URL", "http://cache:6379"),
    ("SQS_QUEUE_URL", "sqs.us-east-1.amazonaws.com/commands"),
])
def test_bad_value_is_refused_naming_the_variable(name, value):
    assert setting_error({**REQUIRED, name: value}).startswith(f"{name} must")


def test_a_tls_option_the_client_does_not_honour_is_refused():
    message = setting_error({**REQUIRED,
                             "REDIS_URL": "rediss://cache:6380/0?ssl_keyfile=/client.key"})
    assert message == "REDIS_URL: unsupported option(s) in the Redis URL: ssl_keyfile"
