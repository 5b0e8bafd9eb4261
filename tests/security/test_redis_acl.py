"""Redis ACLs: with the users of ``ecs/redis-acl.conf``, the worker, the gateway and the
scaler do all they need and nothing more, and a connection without a password nothing.

A real redis-server loaded with those lines, a real worker, gateway and subscriber each
logging in as its own user. Redis's ACL LOG shows every denial, so a permission the code
needs but the file lacks fails the first test, and one the file grants beyond the code's
needs fails the others.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
import redis
import trio
from trio_websocket import open_websocket_url

from runtime.bus.pubsub import Subscriber
from runtime.contract import keys
from tests.integration.harness import gateway_env, running_gateway, running_worker
from tests.integration.test_gateway import ORIGIN, receive_until, url
from tests.servers import RedisServer

ACL_FILE = Path(__file__).resolve().parents[2] / "ecs" / "redis-acl.conf"
USERS = {"worker": "WORKER", "gateway": "GATEWAY", "scaler": "SCALER"}


@pytest.fixture(scope="module")
def acl_redis():
    """A redis-server with the documented users, and an admin for the test's own look."""
    passwords = {user: secrets.token_hex(16) for user in USERS}
    text = ACL_FILE.read_text()
    for user, placeholder in USERS.items():
        text = text.replace(f"{{{{{placeholder}_REDIS_PASSWORD}}}}", passwords[user])
    admin = secrets.token_hex(16)
    server = RedisServer(
        config_lines=[*text.splitlines(), f"user test-admin on >{admin} ~* &* +@all"],
        user=f"test-admin:{admin}",
    ).start()
    urls = {user: f"redis://cloudide-{user}:{password}@127.0.0.1:{server.port}/0"
            for user, password in passwords.items()}
    yield server, urls
    server.stop()


def denials(admin: redis.Redis) -> list[dict]:
    # redis-py (the test's own client in ``refused``) labels each connection with CLIENT
    # SETINFO (Redis 7.2 on) and carries on when refused: not a permission the programs
    # need.
    return [{key: entry[key] for key in ("username", "reason", "object")}
            for entry in admin.acl_log() if entry["object"] != "client|setinfo"]


async def test_worker_gateway_and_scaler_work_with_their_own_users(acl_redis, aws, tmp_path):
    server, urls = acl_redis
    admin = server.client()
    admin.acl_log_reset()
    woken = trio.Event()
    scaler = Subscriber(urls["scaler"], on_message=lambda channel, data: woken.set())
    await scaler.subscribe(keys.SCALER_WAKE_CHANNEL)
    async with trio.open_nursery() as nursery:
        await nursery.start(scaler.run)
        async with (
            running_worker(aws.worker_env(urls["worker"], tmp_path)),
            running_gateway(gateway_env(aws, urls["gateway"])) as gateway,
            open_websocket_url(url(gateway), extra_headers=ORIGIN) as ws,
        ):
            await ws.send_message(json.dumps({"type": "resume", "after": 0}))
            await ws.send_message(json.dumps(
                {"type": "command", "command": "read line; echo \"got $line\""}))
            frames = await receive_until(ws, lambda f: f["type"] == "started")
            await ws.send_message(json.dumps({"type": "stdin", "data": "typed\r"}))
            frames += await receive_until(ws, lambda f: f["type"] == "exit")
            with trio.fail_after(10):
                await woken.wait()
        nursery.cancel_scope.cancel()
    assert "got typed" in "".join(f.get("data", "") for f in frames)
    assert frames[-1]["exitCode"] == 0
    assert denials(admin) == []


def refused(url: str, *command) -> bool:
    client = redis.Redis.from_url(url)
    try:
        client.execute_command(*command)
    except redis.exceptions.NoPermissionError:
        return True
    finally:
        client.close()
    return False


@pytest.mark.parametrize("command", [
    ("PSUBSCRIBE", "*"),
    ("PSUBSCRIBE", "terminal:*"),
    ("SUBSCRIBE", keys.SCALER_WAKE_CHANNEL),
    ("SUBSCRIBE", "__keyspace@0__:gateway:token:x"),
    ("GET", "other:secret"),
    ("GET", keys.used_token("x")),
    ("SET", keys.used_token("x"), "1"),
    ("XRANGE", keys.history_stream("p", "t"), "-", "+"),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("CONFIG", "GET", "*"),
    ("ACL", "LIST"),
    ("FLUSHALL",),
    ("CLIENT", "LIST"),
    ("EVAL", "return 1", "0"),
    ("MONITOR",),
], ids=lambda command: " ".join(command))
def test_the_workers_user_cannot_reach_beyond_its_keys_and_channels(acl_redis, command):
    _, urls = acl_redis
    assert refused(urls["worker"], *command)


def test_the_workers_user_can_see_who_holds_a_project_and_for_how_long(acl_redis):
    # Only a second delivery of a running command asks, so the first test never does.
    _, urls = acl_redis
    worker = redis.Redis.from_url(urls["worker"])
    pipe = worker.pipeline(transaction=True)
    pipe.get(keys.project_lease("p"))
    pipe.pttl(keys.project_lease("p"))
    assert pipe.execute() == [None, -2]
    worker.close()


def test_a_script_the_workers_user_loads_runs_under_its_rules(acl_redis):
    _, urls = acl_redis
    worker = redis.Redis.from_url(urls["worker"])
    sha = worker.script_load("return redis.call('GET', KEYS[1])")
    with pytest.raises(redis.exceptions.ResponseError, match=r"(?i)no permissions|noperm"):
        worker.evalsha(sha, 1, "other:secret")
    worker.close()


@pytest.mark.parametrize(("user", "command"), [
    ("gateway", ("PSUBSCRIBE", "*")),
    ("gateway", ("XADD", keys.history_stream("p", "t"), "*", "event", "{}")),
    ("gateway", ("SET", keys.project_lease("p"), "mine")),
    ("gateway", ("HSET", keys.command_record("p", "c"), "exited", "1")),
    ("gateway", ("EVALSHA", "0" * 40, "0")),
    ("scaler", ("PUBLISH", keys.input_channel("p", "t"), "{}")),
    ("scaler", ("SUBSCRIBE", keys.output_channel("p", "t"))),
    ("scaler", ("GET", keys.used_token("x"))),
], ids=lambda value: value if isinstance(value, str) else " ".join(value))
def test_the_gateway_and_scaler_users_are_limited_to_their_part(acl_redis, user, command):
    _, urls = acl_redis
    assert refused(urls[user], *command)


def test_a_connection_without_a_password_can_do_nothing(acl_redis):
    server, _ = acl_redis
    anonymous = redis.Redis(port=server.port)
    for command in (("PING",), ("SUBSCRIBE", keys.output_channel("p", "t")),
                    ("PUBLISH", keys.input_channel("p", "t"), "{}")):
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.execute_command(*command)
    anonymous.close()
