"""Queue attacks: whoever can send to the queue cannot make the worker run anything but a
valid command in a valid terminal.

Every hostile message goes to the dead-letter queue with its reason and never runs;
real worker against a moto server (with a dead-letter queue) and redis-server. Each case
fails if the check that refuses it is removed.
"""

from __future__ import annotations

import json

import trio

from runtime.contract.messages import MAX_COMMAND_BYTES
from tests.integration.harness import has_exit, history, running_worker, wait_for_events

# Each would run `echo RAN` if the worker let it through.
VALID = {"projectId": "victim", "terminalId": "t", "command": "echo RAN"}


def hostile(**changes) -> str:
    return json.dumps({**VALID, **changes})


ATTACKS = {
    # Wrong types
    "a list, not an object": (json.dumps(list(VALID.values())), "JSON object"),
    "project id a number": (hostile(projectId=7), "projectId must match"),
    "command a list": (hostile(command=["echo", "RAN"]), "command must be a non-empty string"),
    "cols a string": (hostile(cols="80"), "cols must be a whole number"),
    "rows a float": (hostile(rows=24.5), "rows must be a whole number"),
    "timeout a string": (hostile(timeoutSeconds="60"), "timeoutSeconds must be a number"),
    "timeout a boolean": (hostile(timeoutSeconds=True), "timeoutSeconds must be a number"),
    "resize to a million": (hostile(cols=10**6, rows=10**6), "cols must be between"),
    # Huge commands
    "command over 64 KiB": (hostile(command="echo RAN #" + "x" * MAX_COMMAND_BYTES),
                            "longer than 65536 bytes"),
    "command with NUL": (hostile(command="echo RAN\x00rm -rf /"), "NUL"),
    # Ids that would be paths, patterns or terminal escapes in keys and channels
    "project id with a slash": (hostile(projectId="victim/../other"), "projectId must match"),
    "project id ..": (hostile(projectId=".."), "projectId must match"),
    "project id a pattern": (hostile(projectId="*"), "projectId must match"),
    "terminal id a pattern": (hostile(terminalId="t*"), "terminalId must match"),
    "terminal id naming a channel": (hostile(terminalId="t:input"), "terminalId must match"),
    "terminal id with a newline": (hostile(terminalId="t\nx"), "terminalId must match"),
    "command id with an escape": (hostile(commandId="c\x1b[2J"), "commandId must match"),
    "command id with a slash": (hostile(commandId="../c"), "commandId must match"),
    # Fields the contract does not have
    "an environment": (hostile(env={"LD_PRELOAD": "/tmp/x.so"}), "unknown field(s) 'env'"),
    "a user and a folder": (hostile(user="root", cwd="/"), "unknown field(s) 'cwd', 'user'"),
}


def dead_letters(aws, expected: int) -> list[dict]:
    found = []
    while len(found) < expected:
        batch = aws.sqs.receive_message(
            QueueUrl=aws.dead_letter_url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        assert batch, f"only {len(found)} of {expected} messages were dead-lettered"
        found.extend(batch)
    return found


async def test_hostile_messages_are_dead_lettered_with_their_reason_and_never_run(
    aws, redis_server, redis_client, tmp_path
):
    for body, _ in ATTACKS.values():
        aws.send(body)
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)) as worker:
        with trio.fail_after(60):
            while worker.handled < len(ATTACKS):
                await trio.sleep(0.05)
        # The worker is unharmed: a valid command after them all runs.
        aws.send({**VALID, "projectId": "after", "commandId": "ok"})
        after = await wait_for_events(redis_client, "after", "t", has_exit("ok"))

    reasons = {message["Body"]: message["MessageAttributes"]["reason"]["StringValue"]
               for message in dead_letters(aws, len(ATTACKS))}
    for case, (body, reason) in ATTACKS.items():
        assert reason in reasons[body], case
    assert aws.queue_counts() == (0, 0)
    assert after[-1]["exitCode"] == 0
    # Never run: no project folder, and the only terminal told anything is told why.
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["after"]
    told = history(redis_client, "victim", "t")
    assert told, "the terminal whose ids could be read hears why"
    assert {event["type"] for event in told} == {"error"}
    assert {event["code"] for event in told} == {"invalid_command"}
