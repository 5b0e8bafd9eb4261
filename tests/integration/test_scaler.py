"""The scaler against moto's ECS and SQS, and its local launcher with real workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import trio

from runtime.contract.keys import SCALER_WAKE_CHANNEL
from scaler.__main__ import build
from scaler.settings import ScalerSettings
from tests.servers import TEST_CREDENTIALS

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

    def tasks(self, started_by: str) -> list[dict]:
        arns = self.ecs.list_tasks(cluster=self.cluster, startedBy=started_by,
                                   desiredStatus="RUNNING")["taskArns"]
        if not arns:
            return []
        return self.ecs.describe_tasks(cluster=self.cluster, tasks=arns)["tasks"]


@pytest.fixture
def world(aws, moto_server):
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
        assert scaler.launched_total == 0
        fill_queue(aws, 2)
        with trio.fail_after(30):
            while scaler.launched_total < 2:
                redis_client.publish(SCALER_WAKE_CHANNEL, "command")
                await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert scaler.launched_total == 2
