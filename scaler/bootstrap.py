"""``python -m scaler bootstrap``: create or update what a deployment on AWS needs.

An operator runs it with administrator credentials, once and again after any change of
image or settings. Each step reads what exists and changes only what differs, printing one
line per resource, so a second run changes nothing and says so. The templates in ``ecs/``
hold ``{{NAME}}`` placeholders, filled here from the settings and from what the earlier
steps created (the queue's URL, the secret's ARN).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runtime.contract.settings import EnvReader, SettingError, load_environment
from runtime.policy.visibility import LeasePolicy
from runtime.worker.settings import WorkerSettings

from .provision import BootstrapFailed, Provisioner

ECS_DIR = Path(__file__).resolve().parent.parent / "ecs"
PLACEHOLDER = re.compile(r"\{\{([A-Z][A-Z0-9_]*)\}\}")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,27}$")
ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/"
    r"(?P<repository>[a-z0-9][a-z0-9._/-]*)(?::[\w.-]+|@sha256:[0-9a-f]{64})$"
)
# Values CloudWatch Logs accepts for a log group's retention.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)
# SQS's ceiling: the dead-letter queue keeps what it gets for as long as SQS allows, since a
# redriven message keeps its first enqueue time and must not expire on arrival.
DEAD_LETTER_RETENTION_S = 14 * 24 * 3600
# The command queue's retention stays well below it, for the same reason.
MAX_COMMAND_RETENTION_S = 7 * 24 * 3600
# How long a command may wait for a worker at all, on top of the time its attempts take.
QUEUE_WAIT_ALLOWANCE_S = 24 * 3600


@dataclass(frozen=True)
class BootstrapSettings:
    name: str
    worker_image: str
    bucket: str
    s3_prefix: str = "projects/"
    redis_url: str | None = None
    max_receives: int = 5
    log_retention_days: int = 30
    aws_endpoint_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> BootstrapSettings:
        env = EnvReader(environ)
        name = env.text("DEPLOY_NAME", "cloudide")
        if not NAME_PATTERN.match(name):
            raise SettingError("DEPLOY_NAME must be lower-case letters, digits and dashes, "
                               f"starting with a letter, at most 28 characters; got {name!r}")
        image = env.text("WORKER_IMAGE")
        if not ECR_IMAGE.match(image):
            raise SettingError(
                "WORKER_IMAGE must be an image in ECR with a tag or digest, like "
                f"123456789012.dkr.ecr.us-east-1.amazonaws.com/cloudide-worker:1; got {image!r}"
            )
        prefix = env.text("S3_PREFIX", "projects/")
        if prefix.startswith("/") or not prefix.endswith("/"):
            raise SettingError(f"S3_PREFIX must be relative and end with '/', got {prefix!r}")
        redis_url = env.optional_text("REDIS_URL")
        if redis_url is not None:
            redis_url = env.url("REDIS_URL", ("redis", "rediss"))
        retention = env.integer("LOG_RETENTION_DAYS", 30)
        if retention not in LOG_RETENTION_DAYS:
            raise SettingError("LOG_RETENTION_DAYS must be one of "
                               f"{', '.join(map(str, LOG_RETENTION_DAYS))}; got {retention}")
        return cls(
            name=name,
            worker_image=image,
            bucket=env.text("S3_BUCKET"),
            s3_prefix=prefix,
            redis_url=redis_url,
            max_receives=env.integer("SQS_MAX_RECEIVES", 5, minimum=1, maximum=1000),
            log_retention_days=retention,
            aws_endpoint_url=env.optional_text("AWS_ENDPOINT_URL"),
        )

    def names(self) -> dict[str, str]:
        """Every resource's name, as the templates' placeholders call them."""
        family = f"{self.name}-worker"
        return {
            "QUEUE_NAME": f"{self.name}-commands",
            "DEAD_LETTER_QUEUE_NAME": f"{self.name}-commands-dlq",
            "CLUSTER": self.name,
            "FAMILY": family,
            "TASK_ROLE": f"{self.name}-task",
            "EXECUTION_ROLE": f"{self.name}-task-execution",
            "LOG_GROUP": f"/ecs/{family}",
            "BUCKET": self.bucket,
            "S3_PREFIX": self.s3_prefix,
            "WORKER_IMAGE": self.worker_image,
        }


def load_template(name: str) -> dict:
    return json.loads((ECS_DIR / name).read_text())


def fill(template, values: Mapping[str, str]):
    """``template`` with every ``{{NAME}}`` in its strings replaced by ``values[NAME]``."""
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(item, values) for item in template]
    if not isinstance(template, str):
        return template

    def value(match: re.Match) -> str:
        if match.group(1) not in values:
            raise BootstrapFailed(f"a template names {{{{{match.group(1)}}}}}, "
                                  "which bootstrap has no value for")
        return values[match.group(1)]

    return PLACEHOLDER.sub(value, template)


def image_repository_arn(image: str) -> str:
    match = ECR_IMAGE.match(image)
    return (f"arn:aws:ecr:{match['region']}:{match['account']}:repository/"
            f"{match['repository']}")


def worker_timings(environment: list[dict]) -> tuple[float, float]:
    """The lease and the longest command the task definition gives its workers."""
    env = EnvReader({item["name"]: item["value"] for item in environment})
    return (env.number("LEASE_SECONDS", LeasePolicy.lease_s),
            env.number("COMMAND_TIMEOUT_SECONDS", WorkerSettings.command_timeout_s))


def queue_attributes(*, lease_s: float, command_timeout_s: float, max_receives: int,
                     dead_letter_arn: str) -> dict[str, str]:
    # A command is received at most max_receives times, each attempt holding it for up to
    # its timeout plus a lease; it must not expire while a worker still runs it.
    retention_s = min(MAX_COMMAND_RETENTION_S,
                      max_receives * (command_timeout_s + lease_s) + QUEUE_WAIT_ALLOWANCE_S)
    return {
        # What a receiver that asks for no visibility of its own gets: one worker lease.
        "VisibilityTimeout": str(int(lease_s)),
        "MessageRetentionPeriod": str(int(retention_s)),
        "ReceiveMessageWaitTimeSeconds": "20",
        "SqsManagedSseEnabled": "true",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_letter_arn,
                                     "maxReceiveCount": max_receives}),
    }


def dead_letter_attributes() -> dict[str, str]:
    return {"MessageRetentionPeriod": str(DEAD_LETTER_RETENTION_S),
            "SqsManagedSseEnabled": "true"}


def bootstrap(settings: BootstrapSettings, provisioner: Provisioner) -> dict[str, str]:
    """Bring every resource up to date; returns the values the templates were filled with."""
    region, account = provisioner.whereabouts()
    values = {"REGION": region, "ACCOUNT_ID": account, **settings.names(),
              "IMAGE_REPOSITORY_ARN": image_repository_arn(settings.worker_image)}
    task_definition = load_template("task-definition.json")
    lease_s, command_timeout_s = worker_timings(
        task_definition["containerDefinitions"][0]["environment"])

    values["REDIS_SECRET_ARN"] = provisioner.secret(f"{settings.name}/redis-url",
                                                    settings.redis_url)
    provisioner.log_group(values["LOG_GROUP"], settings.log_retention_days)
    _, dead_letter_arn = provisioner.queue(values["DEAD_LETTER_QUEUE_NAME"],
                                           dead_letter_attributes())
    values["QUEUE_URL"], _ = provisioner.queue(values["QUEUE_NAME"], queue_attributes(
        lease_s=lease_s, command_timeout_s=command_timeout_s,
        max_receives=settings.max_receives, dead_letter_arn=dead_letter_arn,
    ))
    provisioner.bucket(settings.bucket)
    provisioner.cluster(values["CLUSTER"])
    policies = fill(load_template("iam-policies.json"), values)
    provisioner.task_role(values["TASK_ROLE"], policies["taskRole"])
    provisioner.task_role(values["EXECUTION_ROLE"], policies["taskExecutionRole"])
    provisioner.managed_policy(f"{settings.name}-scaler", policies["scaler"])
    provisioner.managed_policy(f"{settings.name}-gateway", policies["gateway"])
    provisioner.task_definition(fill(task_definition, values))
    provisioner.dashboard(settings.name, fill(load_template("dashboard.json"), values))
    return values


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scaler bootstrap",
        description="Create or update the queue, bucket, roles, task definition and "
                    "dashboard of a deployment. Settings come from the environment.",
    )
    parser.parse_args(argv)
    try:
        settings = BootstrapSettings.from_env(load_environment())
    except SettingError as exc:
        print(f"bootstrap: bad setting: {exc}", file=sys.stderr)
        return 2
    provisioner = Provisioner(settings.aws_endpoint_url)
    try:
        values = bootstrap(settings, provisioner)
    except BootstrapFailed as exc:
        print(f"bootstrap: {exc}", file=sys.stderr)
        return 1
    if provisioner.changes:
        print(f"{provisioner.changes} change(s) made")
    else:
        print("nothing changed: everything was up to date")
    print("\nfor the scaler (add ECS_SUBNETS and ECS_SECURITY_GROUPS) and the gateway:")
    print(f"SQS_QUEUE_URL={values['QUEUE_URL']}")
    print(f"ECS_CLUSTER_NAME={values['CLUSTER']}")
    print(f"ECS_TASK_DEFINITION={values['FAMILY']}")
    return 0
