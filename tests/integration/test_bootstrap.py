"""``python -m scaler bootstrap`` and the task definition it registers, against the moto server."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from runtime.worker.settings import FARGATE_MAX_STOP_S, WorkerSettings
from scaler.bootstrap import DEAD_LETTER_RETENTION_S, BootstrapSettings, fill, load_template
from tests.servers import TEST_CREDENTIALS

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cloudide-worker"
REDIS_URL = "rediss://:secret-password@redis.internal:6379/0"


class Deployment:
    """One bootstrap deployment's settings and clients; a fresh name for every test."""

    def __init__(self, endpoint: str):
        self.name = f"t{secrets.token_hex(4)}"
        self.env = {
            **TEST_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "PATH": "/usr/bin:/bin",
            "DEPLOY_NAME": self.name, "WORKER_IMAGE": f"{IMAGE}:1",
            "S3_BUCKET": f"{self.name}-projects", "REDIS_URL": REDIS_URL,
        }
        self.names = BootstrapSettings.from_env(self.env).names()
        self._kwargs = {"endpoint_url": endpoint, "region_name": TEST_CREDENTIALS["AWS_REGION"]}

    def client(self, service: str):
        return boto3.client(service, **self._kwargs)

    def run(self, **overrides: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "scaler", "bootstrap"], env={**self.env, **overrides},
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )

    def queue_attributes(self, name: str) -> dict:
        sqs = self.client("sqs")
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    def task_definition(self) -> dict:
        return self.client("ecs").describe_task_definition(
            taskDefinition=self.names["FAMILY"])["taskDefinition"]


@pytest.fixture
def deployment(moto_server):
    return Deployment(moto_server.url)


def resource_lines(output: str) -> dict[str, str]:
    """``{"queue x": "created", ...}`` from bootstrap's progress lines."""
    lines = {}
    for line in output.splitlines():
        subject, sep, outcome = line.rpartition(": ")
        if sep and (outcome in ("created", "unchanged") or outcome.startswith("updated")):
            lines[subject] = outcome
    return lines


def test_the_task_definition_registers_on_ecs_as_a_fargate_task(moto_server):
    values = {
        "REGION": "us-east-1", "ACCOUNT_ID": "123456789012", "FAMILY": "cloudide-worker",
        "TASK_ROLE": "cloudide-task", "EXECUTION_ROLE": "cloudide-task-execution",
        "WORKER_IMAGE": f"{IMAGE}:1", "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q",
        "BUCKET": "projects", "S3_PREFIX": "projects/", "LOG_GROUP": "/ecs/cloudide-worker",
        "REDIS_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:r-AbCdEf",
    }
    ecs = boto3.client("ecs", endpoint_url=moto_server.url, region_name="us-east-1")
    registered = ecs.register_task_definition(
        **fill(load_template("task-definition.json"), values))["taskDefinition"]
    described = ecs.describe_task_definition(
        taskDefinition=registered["taskDefinitionArn"])["taskDefinition"]
    assert described["requiresCompatibilities"] == ["FARGATE"]
    assert described["networkMode"] == "awsvpc"
    assert (described["cpu"], described["memory"]) == ("512", "1024")
    [container] = described["containerDefinitions"]
    assert container["name"] == "worker"  # the scaler's ECS_CONTAINER_NAME default
    assert container["image"] == f"{IMAGE}:1"
    assert container["secrets"] == [{"name": "REDIS_URL", "valueFrom": values["REDIS_SECRET_ARN"]}]
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/ecs/cloudide-worker"
    assert "{{" not in json.dumps(described)


def test_the_workers_settings_are_valid_and_the_stop_timeout_covers_the_sigterm_grace():
    [container] = load_template("task-definition.json")["containerDefinitions"]
    environment = {item["name"]: item["value"] for item in container["environment"]}
    environment.update(SQS_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/1/q",
                       S3_BUCKET="projects", S3_PREFIX="projects/", REDIS_URL=REDIS_URL)
    # from_env refuses a grace that leaves no time to save and hand back before SIGKILL.
    settings = WorkerSettings.from_env(environment)
    assert settings.stop_timeout_s == container["stopTimeout"] <= FARGATE_MAX_STOP_S
    assert settings.shutdown_grace_s + settings.kill_grace_s < container["stopTimeout"]
    # The worker's own SIGTERM handling is what the image's STOPSIGNAL triggers.
    assert settings.idle_timeout_s > 0


def test_bootstrap_creates_everything_and_a_second_run_changes_nothing(deployment):
    first = deployment.run()
    assert first.returncode == 0, first.stderr
    names = deployment.names
    created = resource_lines(first.stdout)
    assert created == {
        f"secret {deployment.name}/redis-url": "created",
        f"log group {names['LOG_GROUP']}": "created",
        f"queue {names['DEAD_LETTER_QUEUE_NAME']}": "created",
        f"queue {names['QUEUE_NAME']}": "created",
        f"bucket {names['BUCKET']}": "created",
        f"cluster {names['CLUSTER']}": "created",
        f"role {names['TASK_ROLE']}": "created",
        f"role {names['EXECUTION_ROLE']}": "created",
        f"policy {deployment.name}-scaler": "created",
        f"policy {deployment.name}-gateway": "created",
        f"task definition {names['FAMILY']}": "created",
        f"dashboard {deployment.name}": "created",
    }
    assert "12 change(s) made" in first.stdout

    # The queue: leased like the worker leases, dead letters after five receives, kept
    # long enough for five full-length attempts, and shorter than its dead-letter queue.
    queue = deployment.queue_attributes(names["QUEUE_NAME"])
    dead_letter = deployment.queue_attributes(names["DEAD_LETTER_QUEUE_NAME"])
    assert queue["VisibilityTimeout"] == "60"
    redrive = json.loads(queue["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dead_letter["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 5
    assert 5 * (3600 + 60) < int(queue["MessageRetentionPeriod"]) < DEAD_LETTER_RETENTION_S
    assert int(dead_letter["MessageRetentionPeriod"]) == DEAD_LETTER_RETENTION_S
    queue_url = deployment.client("sqs").get_queue_url(QueueName=names["QUEUE_NAME"])["QueueUrl"]
    assert f"SQS_QUEUE_URL={queue_url}" in first.stdout.splitlines()

    s3 = deployment.client("s3")
    assert s3.get_public_access_block(Bucket=names["BUCKET"])[
        "PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": True,
        "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    [rule] = s3.get_bucket_encryption(
        Bucket=names["BUCKET"])["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    secret_arn = deployment.client("secretsmanager").describe_secret(
        SecretId=f"{deployment.name}/redis-url")["ARN"]
    assert deployment.client("secretsmanager").get_secret_value(
        SecretId=secret_arn)["SecretString"] == REDIS_URL

    definition = deployment.task_definition()
    assert definition["revision"] == 1
    assert "{{" not in json.dumps(definition)
    [container] = definition["containerDefinitions"]
    environment = {item["name"]: item["value"] for item in container["environment"]}
    assert environment["SQS_QUEUE_URL"] == queue_url
    assert environment["S3_BUCKET"] == names["BUCKET"]
    assert container["image"] == f"{IMAGE}:1"
    assert container["secrets"] == [{"name": "REDIS_URL", "valueFrom": secret_arn}]

    iam = deployment.client("iam")
    for role in ("TASK_ROLE", "EXECUTION_ROLE"):
        found = iam.get_role(RoleName=names[role])["Role"]
        assert found["Arn"] in (definition["taskRoleArn"], definition["executionRoleArn"])
        [statement] = found["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        inline = iam.get_role_policy(RoleName=names[role], PolicyName=names[role])
        assert "{{" not in json.dumps(inline["PolicyDocument"])
    task_policy = iam.get_role_policy(RoleName=names["TASK_ROLE"],
                                      PolicyName=names["TASK_ROLE"])["PolicyDocument"]
    assert f"arn:aws:s3:::{names['BUCKET']}/projects/*" in json.dumps(task_policy)

    [cluster] = deployment.client("ecs").describe_clusters(
        clusters=[names["CLUSTER"]], include=["SETTINGS"])["clusters"]
    assert {"name": "containerInsights", "value": "enabled"} in cluster["settings"]
    assert {"FARGATE", "FARGATE_SPOT"} <= set(cluster["capacityProviders"])

    dashboard = deployment.client("cloudwatch").get_dashboard(DashboardName=deployment.name)
    assert "{{" not in dashboard["DashboardBody"]
    assert names["QUEUE_NAME"] in dashboard["DashboardBody"]

    second = deployment.run()
    assert second.returncode == 0, second.stderr
    assert resource_lines(second.stdout) == dict.fromkeys(created, "unchanged")
    assert "nothing changed: everything was up to date" in second.stdout.splitlines()
    assert deployment.task_definition()["revision"] == 1


def test_bootstrap_puts_back_what_drifted_and_registers_a_new_image(deployment):
    assert deployment.run().returncode == 0
    names = deployment.names
    sqs = deployment.client("sqs")
    sqs.set_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=names["QUEUE_NAME"])["QueueUrl"],
                             Attributes={"VisibilityTimeout": "30"})
    deployment.client("s3").delete_public_access_block(Bucket=names["BUCKET"])

    rerun = deployment.run(WORKER_IMAGE=f"{IMAGE}:2")
    assert rerun.returncode == 0, rerun.stderr
    changed = {subject: outcome for subject, outcome in resource_lines(rerun.stdout).items()
               if outcome != "unchanged"}
    assert changed == {
        f"queue {names['QUEUE_NAME']}": "updated (VisibilityTimeout)",
        f"bucket {names['BUCKET']}": "updated (public access block)",
        f"task definition {names['FAMILY']}": "updated (revision 2)",
    }
    assert deployment.queue_attributes(names["QUEUE_NAME"])["VisibilityTimeout"] == "60"
    assert deployment.task_definition()["containerDefinitions"][0]["image"] == f"{IMAGE}:2"


def test_bootstrap_stops_on_a_bad_setting_with_one_line_naming_it(deployment):
    result = deployment.run(WORKER_IMAGE="cloudide-worker:latest")
    assert result.returncode == 2
    assert result.stderr.startswith("bootstrap: bad setting: WORKER_IMAGE must be an image in ECR")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
