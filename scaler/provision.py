"""Idempotent AWS steps for ``python -m scaler bootstrap``: read, compare, change what differs.

Each step prints one line, ``<kind> <name>: created | updated (what) | unchanged``, and
counts its changes. These are one-shot blocking calls made by an operator, so they run
directly rather than in worker threads.
"""

from __future__ import annotations

import contextlib
import json

from botocore.exceptions import BotoCoreError, ClientError

from runtime.aws.clients import error_code, make_client

TASKS_SERVICE = "ecs-tasks.amazonaws.com"
# The capacity providers the scaler's ECS_CAPACITY_PROVIDER may name; RunTask refuses a
# provider that is not associated with the cluster.
CAPACITY_PROVIDERS = ("FARGATE", "FARGATE_SPOT")
# IAM keeps at most this many versions of a managed policy.
MAX_POLICY_VERSIONS = 5
BLOCK_ALL_PUBLIC_ACCESS = {
    "BlockPublicAcls": True, "IgnorePublicAcls": True,
    "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
}
NOT_FOUND = frozenset({
    "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NoSuchEntity",
    "ResourceNotFoundException", "ResourceNotFound", "NoSuchPublicAccessBlockConfiguration",
    "ServerSideEncryptionConfigurationNotFoundError", "404", "NoSuchBucket", "NotFound",
})


class BootstrapFailed(Exception):
    """A step could not be carried out; the message names the resource and the reason."""


def _missing(exc: ClientError) -> bool:
    return error_code(exc) in NOT_FOUND


def covers(actual, wanted) -> bool:
    """Whether ``actual`` (as AWS describes it) holds everything ``wanted`` says.

    AWS adds defaults of its own to what it describes, so only the wanted keys count.
    Lists of named entries (containers, environment, secrets) are compared by name, since
    their order carries no meaning.
    """
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(covers(actual.get(k), v)
                                                for k, v in wanted.items())
    if isinstance(wanted, list):
        if not isinstance(actual, list) or len(actual) != len(wanted):
            return False
        if all(isinstance(item, dict) and "name" in item for item in wanted + actual):
            actual = sorted(actual, key=lambda item: item["name"])
            wanted = sorted(wanted, key=lambda item: item["name"])
        return all(covers(a, w) for a, w in zip(actual, wanted, strict=True))
    return actual == wanted


def same_queue_attribute(name: str, current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    if name == "RedrivePolicy":
        # SQS may give maxReceiveCount back as a string.
        current_policy, wanted_policy = json.loads(current), json.loads(wanted)
        return (current_policy.get("deadLetterTargetArn") == wanted_policy["deadLetterTargetArn"]
                and int(current_policy.get("maxReceiveCount", 0))
                == int(wanted_policy["maxReceiveCount"]))
    return current.lower() == wanted.lower()


class Provisioner:
    def __init__(self, endpoint_url: str | None):
        def client(service: str):
            return make_client(service, endpoint_url=endpoint_url, read_timeout_s=30,
                               attempts=5)

        self._client = client
        self.changes = 0
        self._account = ""

    def _report(self, kind: str, name: str, changed: list[str] | None) -> None:
        """``changed`` is None for a resource just created, else what was brought up to date."""
        if changed is None:
            outcome = "created"
        elif changed:
            outcome = f"updated ({', '.join(changed)})"
        else:
            outcome = "unchanged"
        self.changes += changed is None or bool(changed)
        print(f"{kind} {name}: {outcome}", flush=True)

    @contextlib.contextmanager
    def _step(self, kind: str, name: str):
        try:
            yield
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message", "")
            raise BootstrapFailed(f"{kind} {name}: {error_code(exc)}: {message}") from exc
        except BotoCoreError as exc:
            raise BootstrapFailed(f"{kind} {name}: {exc}") from exc

    def whereabouts(self) -> tuple[str, str]:
        """The region and account the credentials point at."""
        with self._step("account", "of the credentials"):
            sts = self._client("sts")
            self._account = sts.get_caller_identity()["Account"]
            print(f"account {self._account}, region {sts.meta.region_name}", flush=True)
            return sts.meta.region_name, self._account

    def secret(self, name: str, value: str | None) -> str:
        """The secret's ARN; its value is set to ``value`` unless that is None."""
        with self._step("secret", name):
            secrets = self._client("secretsmanager")
            try:
                arn = secrets.describe_secret(SecretId=name)["ARN"]
            except ClientError as exc:
                if not _missing(exc):
                    raise
                if value is None:
                    raise BootstrapFailed(f"secret {name} does not exist; set REDIS_URL so "
                                          "bootstrap can create it") from exc
                arn = secrets.create_secret(
                    Name=name, SecretString=value,
                    Description="REDIS_URL of the CloudIDE workers, password included",
                )["ARN"]
                self._report("secret", name, None)
                return arn
            changed = []
            if (value is not None
                    and secrets.get_secret_value(SecretId=arn)["SecretString"] != value):
                secrets.put_secret_value(SecretId=arn, SecretString=value)
                changed.append("value")
            self._report("secret", name, changed)
            return arn

    def log_group(self, name: str, retention_days: int) -> None:
        with self._step("log group", name):
            logs = self._client("logs")
            found = [group for group in
                     logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
                     if group["logGroupName"] == name]
            if not found:
                logs.create_log_group(logGroupName=name)
                logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)
                self._report("log group", name, None)
                return
            changed = []
            if found[0].get("retentionInDays") != retention_days:
                logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)
                changed.append("retention")
            self._report("log group", name, changed)

    def queue(self, name: str, attributes: dict[str, str]) -> tuple[str, str]:
        """The queue's URL and ARN."""
        with self._step("queue", name):
            sqs = self._client("sqs")
            changed = None
            try:
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            except ClientError as exc:
                if not _missing(exc):
                    raise
                url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            else:
                current = sqs.get_queue_attributes(QueueUrl=url,
                                                   AttributeNames=["All"])["Attributes"]
                differing = {key: value for key, value in attributes.items()
                             if not same_queue_attribute(key, current.get(key), value)}
                if differing:
                    sqs.set_queue_attributes(QueueUrl=url, Attributes=differing)
                changed = sorted(differing)
            arn = sqs.get_queue_attributes(QueueUrl=url,
                                           AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            self._report("queue", name, changed)
            return url, arn

    def bucket(self, name: str) -> None:
        """The bucket, with public access blocked and default encryption on."""
        with self._step("bucket", name):
            s3 = self._client("s3")
            changed = None
            try:
                s3.head_bucket(Bucket=name)
            except ClientError as exc:
                if not _missing(exc):
                    raise
                region = s3.meta.region_name
                location = ({} if region == "us-east-1"
                            else {"CreateBucketConfiguration": {"LocationConstraint": region}})
                s3.create_bucket(Bucket=name, **location)
            else:
                changed = []
            try:
                blocked = s3.get_public_access_block(
                    Bucket=name)["PublicAccessBlockConfiguration"]
            except ClientError as exc:
                if not _missing(exc):
                    raise
                blocked = {}
            if any(blocked.get(key) is not True for key in BLOCK_ALL_PUBLIC_ACCESS):
                s3.put_public_access_block(Bucket=name,
                                           PublicAccessBlockConfiguration=BLOCK_ALL_PUBLIC_ACCESS)
                if changed is not None:
                    changed.append("public access block")
            try:
                rules = s3.get_bucket_encryption(
                    Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
            except ClientError as exc:
                if not _missing(exc):
                    raise
                rules = []
            # A key of the operator's own (aws:kms) is kept; only no encryption is changed.
            if not any("ApplyServerSideEncryptionByDefault" in rule for rule in rules):
                s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                               "BucketKeyEnabled": True}],
                })
                if changed is not None:
                    changed.append("encryption")
            self._report("bucket", name, changed)

    def cluster(self, name: str) -> None:
        """The cluster, with Container Insights (the dashboard's CPU and memory) and Fargate."""
        with self._step("cluster", name):
            ecs = self._client("ecs")
            insights = [{"name": "containerInsights", "value": "enabled"}]
            found = [cluster for cluster in
                     ecs.describe_clusters(clusters=[name], include=["SETTINGS"])["clusters"]
                     if cluster.get("status") == "ACTIVE"]
            if not found:
                ecs.create_cluster(clusterName=name, settings=insights,
                                   capacityProviders=list(CAPACITY_PROVIDERS))
                self._report("cluster", name, None)
                return
            changed = []
            settings = {item["name"]: item["value"] for item in found[0].get("settings", [])}
            if settings.get("containerInsights") not in ("enabled", "enhanced"):
                ecs.update_cluster_settings(cluster=name, settings=insights)
                changed.append("container insights")
            providers = found[0].get("capacityProviders", [])
            if not set(CAPACITY_PROVIDERS) <= set(providers):
                ecs.put_cluster_capacity_providers(
                    cluster=name,
                    capacityProviders=sorted(set(providers) | set(CAPACITY_PROVIDERS)),
                    defaultCapacityProviderStrategy=found[0].get(
                        "defaultCapacityProviderStrategy", []),
                )
                changed.append("capacity providers")
            self._report("cluster", name, changed)

    def task_role(self, name: str, policy: dict) -> None:
        """A role ECS tasks of this account assume, with ``policy`` as its only policy."""
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": TASKS_SERVICE},
            "Action": "sts:AssumeRole",
            # Only ECS acting for this account may hand the role out.
            "Condition": {"StringEquals": {"aws:SourceAccount": self._account}},
        }]}
        with self._step("role", name):
            iam = self._client("iam")
            try:
                role = iam.get_role(RoleName=name)["Role"]
            except ClientError as exc:
                if not _missing(exc):
                    raise
                iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                                Description="CloudIDE worker tasks")
                iam.put_role_policy(RoleName=name, PolicyName=name,
                                    PolicyDocument=json.dumps(policy))
                self._report("role", name, None)
                return
            changed = []
            if role["AssumeRolePolicyDocument"] != trust:
                iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
                changed.append("trust")
            try:
                current = iam.get_role_policy(RoleName=name, PolicyName=name)["PolicyDocument"]
            except ClientError as exc:
                if not _missing(exc):
                    raise
                current = None
            if current != policy:
                iam.put_role_policy(RoleName=name, PolicyName=name,
                                    PolicyDocument=json.dumps(policy))
                changed.append("policy")
            self._report("role", name, changed)

    def managed_policy(self, name: str, document: dict) -> None:
        """A policy for whatever runs the scaler or the gateway (a host's role, a user)."""
        with self._step("policy", name):
            iam = self._client("iam")
            arn = f"arn:aws:iam::{self._account}:policy/{name}"
            try:
                default_version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            except ClientError as exc:
                if not _missing(exc):
                    raise
                iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document),
                                  Description="CloudIDE: attach to what runs this program")
                self._report("policy", name, None)
                return
            current = iam.get_policy_version(
                PolicyArn=arn, VersionId=default_version)["PolicyVersion"]["Document"]
            if current == document:
                self._report("policy", name, [])
                return
            versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
            if len(versions) >= MAX_POLICY_VERSIONS:
                oldest = min((v for v in versions if not v["IsDefaultVersion"]),
                             key=lambda v: v["CreateDate"])
                iam.delete_policy_version(PolicyArn=arn, VersionId=oldest["VersionId"])
            iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(document),
                                      SetAsDefault=True)
            self._report("policy", name, ["document"])

    def task_definition(self, definition: dict) -> str:
        """The ARN of the latest revision, registering one only when something differs."""
        family = definition["family"]
        with self._step("task definition", family):
            ecs = self._client("ecs")
            try:
                current = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
            except ClientError as exc:
                # ECS answers ClientException for a family with no active revision.
                if error_code(exc) != "ClientException":
                    raise
                current = None
            if current is not None and covers(current, definition):
                self._report("task definition", family, [])
                return current["taskDefinitionArn"]
            registered = ecs.register_task_definition(**definition)["taskDefinition"]
            self._report("task definition", family,
                         None if current is None else [f"revision {registered['revision']}"])
            return registered["taskDefinitionArn"]

    def dashboard(self, name: str, body: dict) -> None:
        with self._step("dashboard", name):
            cloudwatch = self._client("cloudwatch")
            try:
                current = json.loads(cloudwatch.get_dashboard(
                    DashboardName=name)["DashboardBody"])
            except ClientError as exc:
                if not _missing(exc):
                    raise
                current = None
            if current == body:
                self._report("dashboard", name, [])
                return
            answer = cloudwatch.put_dashboard(DashboardName=name, DashboardBody=json.dumps(body))
            for problem in answer.get("DashboardValidationMessages", []):
                print(f"dashboard {name}: {problem.get('Message')}", flush=True)
            self._report("dashboard", name, None if current is None else ["widgets"])
