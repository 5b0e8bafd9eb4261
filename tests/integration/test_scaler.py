"""The scaler against moto's ECS and SQS, and its local launcher with real workers."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import pytest
import trio
from botocore.exceptions import ReadTimeoutError

from runtime.contract.keys import SCALER_WAKE_CHANNEL
from scaler.__main__ import build
from scaler.settings import ScalerSettings
from tests.servers import TEST_CREDENTIALS, free_port

ROOT = Path(__file__).resolve().parents[2]


class EcsWorld:
    """A cluster, a Fargate task definition, and a VPC subnet on the moto server."""

    def __init__(self, endpoint: str, name: str):
        kwargs = {"endpoint_url": endpoint, "region_name": TEST_CREDENTIALS["AWS_REGION"]}
        self.ecs = boto3.client("ecs", **kwargs)
        ec2 = boto3.client("ec2", **kwargs)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        # As on AWS for Fargate; moto also needs it to name a task's network interface.
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        self.subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        self.security_group = ec2.create_security_group(
            GroupName=f"workers-{name}", Description="workers", VpcId=vpc)["GroupId"]
        self.cluster = f"cluster-{name}"
        self.ecs.create_cluster(clusterName=self.cluster)
        self.ecs.register_task_definition(
            family="worker", requiresCompatibilities=["FARGATE"], networkMode="awsvpc",
            cpu="512", memory="1024",
            containerDefinitions=[{"name": "worker", "image": "worker:latest",
                                   "essential": True, "cpu": 512, "memory": 1024}],
        )

    def tasks(self, started_by: str, status: str = "RUNNING") -> list[dict]:
        arns = self.ecs.list_tasks(cluster=self.cluster, startedBy=started_by,
                                   desiredStatus=status)["taskArns"]
        if not arns:
            return []
        return self.ecs.describe_tasks(cluster=self.cluster, tasks=arns)["tasks"]

    def ever_launched(self, started_by: str) -> int:
        return len(self.tasks(started_by)) + len(self.tasks(started_by, "STOPPED"))


@pytest.fixture
def world(aws, moto_server):
    moto_server.keep_ecs_tasks_running()
    return EcsWorld(moto_server.url, aws.bucket)


def scaler_env(aws, world, **overrides) -> dict[str, str]:
    env = {
        **TEST_CREDENTIALS,
        "AWS_ENDPOINT_URL": aws.endpoint,
        "SQS_QUEUE_URL": aws.queue_url,
        "ECS_CLUSTER_NAME": world.cluster,
        "ECS_TASK_DEFINITION": "worker",
        "ECS_SUBNETS": world.subnet,
        "ECS_SECURITY_GROUPS": world.security_group,
        "ECS_MIN_TASKS": "0",
        "ECS_MAX_TASKS": "10",
        "ECS_MESSAGES_PER_TASK": "1",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def launched_total(scaler) -> float:
    return scaler.metrics.registry.get_sample_value("cloudide_scaler_tasks_launched_total")


def fill_queue(aws, count: int) -> None:
    for n in range(count):
        aws.send({"projectId": f"p{n}", "terminalId": "t", "command": "true"})


class RecordingEcs:
    """The real moto client, with each RunTask's count noted (moto accepts any count)."""

    def __init__(self, client):
        self._client = client
        self.run_task_counts: list[int] = []

    def run_task(self, **kwargs):
        self.run_task_counts.append(kwargs["count"])
        return self._client.run_task(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


async def test_backlog_of_23_with_5_per_task_launches_5_then_nothing(aws, world):
    fill_queue(aws, 23)
    scaler = build(ScalerSettings.from_env(scaler_env(aws, world, ECS_MESSAGES_PER_TASK=5)))
    first = await scaler.evaluate()
    second = await scaler.evaluate()
    assert first == {"visible": 23, "inFlight": 0, "live": 0, "desired": 5, "launched": 5}
    assert second["launched"] == 0
    assert second["live"] == 5
    tasks = world.tasks("cloudide-burst")
    assert len(tasks) == 5
    assert {t["startedBy"] for t in tasks} == {"cloudide-burst"}


async def test_messages_in_flight_count_as_backlog(aws, world):
    fill_queue(aws, 4)
    aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=3,
                            VisibilityTimeout=600)
    scaler = build(ScalerSettings.from_env(scaler_env(aws, world)))
    report = await scaler.evaluate()
    assert (report["visible"], report["inFlight"], report["desired"]) == (1, 3, 4)


class CountingTwice:
    """The moto SQS client, but the next depth reading counts one message twice, as a
    message received while SQS counts can be (waiting, then in flight)."""

    def __init__(self, client):
        self._client = client
        self.double_counts = 1

    def get_queue_attributes(self, **kwargs):
        answer = self._client.get_queue_attributes(**kwargs)
        attributes = answer["Attributes"]
        if self.double_counts and "ApproximateNumberOfMessagesNotVisible" in attributes:
            self.double_counts -= 1
            attributes["ApproximateNumberOfMessagesNotVisible"] = str(
                int(attributes["ApproximateNumberOfMessagesNotVisible"]) + 1)
        return answer

    def __getattr__(self, name):
        return getattr(self._client, name)


async def test_a_message_counted_twice_launches_nothing_beside_live_tasks(aws, world):
    fill_queue(aws, 5)
    scaler = build(ScalerSettings.from_env(scaler_env(aws, world)))
    assert (await scaler.evaluate())["launched"] == 5
    aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=2,
                            VisibilityTimeout=600)
    scaler._queue._client = CountingTwice(scaler._queue._client)
    report = await scaler.evaluate()
    assert scaler._queue._client.double_counts == 0
    assert (report["visible"], report["inFlight"], report["launched"]) == (3, 2, 0)
    assert launched_total(scaler) == 5


async def test_max_caps_and_launches_go_ten_per_call(aws, world):
    fill_queue(aws, 23)
    scaler = build(ScalerSettings.from_env(scaler_env(aws, world, ECS_MAX_TASKS=23)))
    recorder = RecordingEcs(scaler._launcher._client)
    scaler._launcher._client = recorder
    assert (await scaler.evaluate())["launched"] == 23
    assert recorder.run_task_counts == [10, 10, 3]
    fill_queue(aws, 30)
    assert (await scaler.evaluate())["launched"] == 0  # 23 live is the max
    assert len(world.tasks("cloudide-burst")) == 23


async def test_warm_floor_is_held_by_tasks_that_never_idle_out(aws, world):
    scaler = build(ScalerSettings.from_env(scaler_env(aws, world, ECS_MIN_TASKS=2)))
    first = await scaler.evaluate()
    second = await scaler.evaluate()
    assert (first["desired"], first["launched"]) == (2, 2)
    assert second["launched"] == 0
    floor = world.tasks("cloudide-floor")
    assert len(floor) == 2
    overrides = floor[0]["overrides"]["containerOverrides"][0]["environment"]
    assert {"name": "IDLE_TIMEOUT_SECONDS", "value": "0"} in overrides


async def test_launches_that_ecs_does_not_list_yet_are_not_repeated(aws, world):
    fill_queue(aws, 6)
    scaler = build(ScalerSettings.from_env(scaler_env(aws, world)))
    launcher = scaler._launcher
    real_observe = launcher.observe

    async def observe_with_lag(watch):
        live = await real_observe(watch)
        live.ids = {kind: set() for kind in live.ids}  # ECS's listing lags RunTask
        return live

    launcher.observe = observe_with_lag
    assert (await scaler.evaluate())["launched"] == 6
    assert (await scaler.evaluate())["launched"] == 0


def run_scaler_once(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scaler", "--once"], cwd=ROOT,
                          env={**env, "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=120)


def test_once_prints_its_decision_as_one_json_line(aws, world):
    fill_queue(aws, 3)
    result = run_scaler_once(scaler_env(aws, world))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"visible": 3, "inFlight": 0, "live": 0,
                                         "desired": 3, "launched": 3}


def test_bad_setting_stops_the_scaler_with_one_line_naming_it(aws, world):
    result = run_scaler_once(scaler_env(aws, world, ECS_MIN_TASKS=5, ECS_MAX_TASKS=2))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "ECS_MIN_TASKS" in result.stderr


async def test_local_launcher_starts_workers_that_drain_the_queue_and_exit(
    aws, redis_server, redis_client, tmp_path
):
    for n in range(4):
        aws.send({"projectId": f"p{n}", "terminalId": "t", "command": f"echo {n}"})
    env = aws.worker_env(redis_server.url, tmp_path, IDLE_TIMEOUT_SECONDS=2,
                         SCALER_LAUNCHER="local", ECS_MAX_TASKS=2, SCALER_INTERVAL_SECONDS=1)
    scaler = build(ScalerSettings.from_env(env))
    first = await scaler.evaluate()
    assert first["launched"] == 2
    with trio.fail_after(90):
        while aws.queue_counts() != (0, 0):
            await trio.sleep(0.2)
            await scaler.evaluate()
        # Idle workers exit by themselves, with status 0.
        while (await scaler._launcher.observe(set())).ids["burst"]:
            await trio.sleep(0.2)
    for n in range(4):
        assert redis_client.xlen(f"terminal:p{n}:t:history") >= 3
    await scaler.close()


async def test_a_wake_message_makes_the_scaler_evaluate_at_once(
    aws, world, redis_server, redis_client
):
    env = scaler_env(aws, world, REDIS_URL=redis_server.url, SCALER_INTERVAL_SECONDS=3600)
    scaler = build(ScalerSettings.from_env(env))
    async with trio.open_nursery() as nursery:
        await nursery.start(scaler.run)
        await trio.sleep(0.5)  # the first round has run: nothing queued, nothing launched
        assert launched_total(scaler) == 0
        fill_queue(aws, 2)
        with trio.fail_after(30):
            while launched_total(scaler) < 2:
                redis_client.publish(SCALER_WAKE_CHANNEL, "command")
                await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert launched_total(scaler) == 2


NO_CAPACITY = ("Capacity is unavailable at this time. Please try again later or in a "
               "different availability zone")


class UnreliableEcs:
    """The moto client, but RunTask answers "no capacity" every other call, and the answer
    of one call that did launch its tasks is lost on the way back."""

    def __init__(self, client, lose_answer_of_call: int):
        self._client = client
        self._lose = lose_answer_of_call
        self.calls = 0
        self.answers_lost = 0

    def run_task(self, **kwargs):
        self.calls += 1
        if self.calls % 2 == 1:
            return {"tasks": [], "failures": [{"arn": "", "reason": NO_CAPACITY}]}
        response = self._client.run_task(**kwargs)
        if self.calls == self._lose:
            self.answers_lost += 1
            raise ReadTimeoutError(endpoint_url="ecs")
        return response

    def __getattr__(self, name):
        return getattr(self._client, name)


async def test_capacity_failures_and_a_lost_answer_never_pass_max_nor_launch_twice(
    aws, world, autojump_clock, caplog
):
    fill_queue(aws, 30)
    scaler = build(ScalerSettings.from_env(scaler_env(aws, world, ECS_MAX_TASKS=7)))
    scaler._launcher._client = UnreliableEcs(scaler._launcher._client, lose_answer_of_call=2)
    rounds = 0
    while len(world.tasks("cloudide-burst")) < 7 and rounds < 60:
        report = await scaler.evaluate()
        assert len(world.tasks("cloudide-burst")) <= 7
        assert report["live"] <= 7
        rounds += 1
        await trio.sleep(scaler.settings.interval_s)
    for _ in range(3):  # nothing changed: nothing more is launched
        await scaler.evaluate()
        await trio.sleep(scaler.settings.interval_s)
    assert scaler._launcher._client.answers_lost == 1
    assert world.ever_launched("cloudide-burst") == 7
    assert launched_total(scaler) == 7
    paused = [r.getMessage() for r in caplog.records if "launches paused" in r.getMessage()]
    assert any("no capacity" in line for line in paused)
    assert any("ReadTimeout" in line or "timeout" in line.lower() for line in paused)


async def test_50_commands_on_tasks_slow_to_start_launch_no_more_than_50(
    aws, world, autojump_clock
):
    """1 command per task, tasks that take 121 s to start, a check every 30 s, for 10
    minutes: the scaler launches no task for commands that starting tasks will take."""
    fill_queue(aws, 50)
    scaler = build(ScalerSettings.from_env(scaler_env(aws, world, ECS_MAX_TASKS=200)))
    # Starting a second after a round: a worker acting at a round's own instant would
    # race its queue readings in real time (SQS may count a message being received
    # twice, which the scaler's second reading covers, though not always).
    start_delay_s, command_s, idle_exit_s = 121, 60, 60
    # Each virtual instant at which the simulation waits costs the clock's threshold.
    idle_poll_s = 5

    async def simulated_worker(task_arn: str) -> None:
        await trio.sleep(start_delay_s)
        idle_since = trio.current_time()
        while trio.current_time() - idle_since < idle_exit_s:
            received = await trio.to_thread.run_sync(lambda: aws.sqs.receive_message(
                QueueUrl=aws.queue_url, MaxNumberOfMessages=1, VisibilityTimeout=900))
            for message in received.get("Messages", []):
                await trio.sleep(command_s)
                await trio.to_thread.run_sync(lambda m=message: aws.sqs.delete_message(
                    QueueUrl=aws.queue_url, ReceiptHandle=m["ReceiptHandle"]))
                idle_since = trio.current_time()
            await trio.sleep(idle_poll_s)
        await trio.to_thread.run_sync(lambda: world.ecs.stop_task(
            cluster=world.cluster, task=task_arn, reason="idle"))

    started = set()
    async with trio.open_nursery() as nursery:
        for _ in range(10 * 60 // 30):
            # A round takes no virtual time: moto answers in real time, and a jump while
            # the scaler waits between reading the queue and listing its tasks would let
            # workers finish and idle out in between, as no real round would.
            autojump_clock.autojump_threshold = math.inf
            await scaler.evaluate()
            for task in world.tasks("cloudide-burst"):
                if task["taskArn"] not in started:
                    started.add(task["taskArn"])
                    nursery.start_soon(simulated_worker, task["taskArn"])
            autojump_clock.autojump_threshold = 0
            await trio.sleep(30)
    assert launched_total(scaler) == 50
    assert world.ever_launched("cloudide-burst") == 50
    assert aws.queue_counts() == (0, 0)


async def test_figures_are_served_for_prometheus_and_logged_for_cloudwatch(
    aws, world, caplog
):
    caplog.set_level(logging.INFO, logger="scaler")
    fill_queue(aws, 3)
    port = free_port()
    env = scaler_env(aws, world, SCALER_METRICS_PORT=port, SCALER_METRICS_HOST="127.0.0.1")
    scaler = build(ScalerSettings.from_env(env))

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
            return page.read().decode()

    async with trio.open_nursery() as nursery:
        await nursery.start(scaler.run)
        with trio.fail_after(30):
            while launched_total(scaler) < 3:
                await trio.sleep(0.1)
        text = await trio.to_thread.run_sync(scrape)
        nursery.cancel_scope.cancel()
    await scaler.close()
    for line in ("cloudide_scaler_queue_visible 3.0", "cloudide_scaler_live_tasks 3.0",
                 "cloudide_scaler_desired_tasks 3.0", "cloudide_scaler_tasks_launched_total 3.0",
                 "cloudide_scaler_launch_failures_total 0.0"):
        assert line in text.splitlines()
    decision = next(r for r in caplog.records if r.getMessage() == "scaling decision")
    metrics = decision._aws["CloudWatchMetrics"][0]
    assert metrics["Namespace"] == "CloudIDE"
    assert {m["Name"] for m in metrics["Metrics"]} >= {
        "visible", "inFlight", "live", "desired", "launched", "launchFailures"}
    assert (decision.visible, decision.launched, decision.Component) == (3, 3, "scaler")


async def test_tasks_that_cannot_pull_their_image_stop_launches_and_say_so(
    aws, world, autojump_clock, caplog
):
    fill_queue(aws, 3)
    scaler = build(ScalerSettings.from_env(scaler_env(aws, world)))
    assert (await scaler.evaluate())["launched"] == 3
    for task in world.tasks("cloudide-burst"):
        world.ecs.stop_task(cluster=world.cluster, task=task["taskArn"],
                            reason="CannotPullContainerError: pull image manifest has been "
                                   "retried 5 time(s): not found")
    await trio.sleep(scaler.settings.interval_s)
    held = await scaler.evaluate()
    assert (held["live"], held["desired"], held["launched"]) == (0, 3, 0)
    assert any("keep failing to start" in r.getMessage() and "CannotPull" in r.getMessage()
               for r in caplog.records)
    await trio.sleep(scaler.breaker.cooldown_s)
    assert (await scaler.evaluate())["launched"] == 3  # tried again after the cool-down
