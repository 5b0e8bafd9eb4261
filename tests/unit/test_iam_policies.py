"""ecs/iam-policies.json against the AWS calls the code makes: each allowed, nothing more.

The calls are found in the source, not listed by hand: every boto3 operation named in
runtime/, scaler/ and gateway/ (``client.op(...)``, ``_call("op", ...)``,
``get_paginator("op")``), attributed to the program that makes it. The worker is all of
runtime/; the scaler and the gateway are their own packages plus the adapter methods of
runtime/aws they call (``self._queue.send(...)`` calls ``CommandQueue.send``).
"""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from pathlib import Path

import boto3
import pytest
from parliament import analyze_policy_string

from scaler.bootstrap import fill

ROOT = Path(__file__).resolve().parents[2]
POLICIES = json.loads((ROOT / "ecs" / "iam-policies.json").read_text())
TASK_DEFINITION = json.loads((ROOT / "ecs" / "task-definition.json").read_text())
# Run by an operator with administrator credentials, never by a deployed program.
OPERATOR_MODULES = frozenset({"scaler/bootstrap.py", "scaler/provision.py"})
# Operations whose IAM action is not named after the operation.
ACTIONS = {
    ("s3", "list_objects_v2"): {"s3:ListBucket"},
    ("s3", "head_object"): {"s3:GetObject"},
    ("s3", "delete_objects"): {"s3:DeleteObject"},
    # boto3's managed transfer: a multipart upload, aborted when a part fails.
    ("s3", "upload_fileobj"): {"s3:PutObject", "s3:AbortMultipartUpload"},
    # RunTask hands the task definition's two roles to ECS.
    ("ecs", "run_task"): {"ecs:RunTask", "iam:PassRole"},
}
# Customisations boto3 adds to a client, which its API mapping does not list.
CLIENT_EXTRAS = {"s3": {"upload_fileobj"}}
SAMPLE = {
    "REGION": "us-east-1", "ACCOUNT_ID": "123456789012", "QUEUE_NAME": "cloudide-commands",
    "DEAD_LETTER_QUEUE_NAME": "cloudide-commands-dlq", "BUCKET": "projects-bucket",
    "S3_PREFIX": "projects/", "CLUSTER": "cloudide", "FAMILY": "cloudide-worker",
    "TASK_ROLE": "cloudide-task", "EXECUTION_ROLE": "cloudide-task-execution",
    "LOG_GROUP": "/ecs/cloudide-worker",
    "IMAGE_REPOSITORY_ARN": "arn:aws:ecr:us-east-1:123456789012:repository/cloudide-worker",
    "REDIS_SECRET_ARN":
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:cloudide/redis-url-AbCdEf",
}


# ---- the calls in the code ----------------------------------------------------------------

def api_names(service: str) -> dict[str, str]:
    """A client's method names, each with its API operation's name (the IAM action's)."""
    client = boto3.session.Session().client(service, region_name="us-east-1")
    return {**dict.fromkeys(CLIENT_EXTRAS.get(service, ())), **client.meta.method_to_api_mapping}


def client_services() -> set[str]:
    """Services the programs make clients for: ``make_client("sqs", ...)``."""
    found = set()
    for _, tree in modules():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "make_client" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                found.add(node.args[0].value)
    return found


def modules():
    for package in ("runtime", "scaler", "gateway"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative not in OPERATOR_MODULES:
                yield relative, ast.parse(path.read_text(), filename=relative)


class Function:
    def __init__(self, module: str, cls: str | None, node: ast.AST):
        self.module, self.cls, self.node = module, cls, node
        self.operations: set[str] = set()
        self.calls: list[tuple[str, str]] = []  # (receiver, method)
        self.passes_tags = False


def functions() -> list[Function]:
    found = []
    for module, tree in modules():
        for top in tree.body:
            if isinstance(top, ast.ClassDef):
                found.extend(Function(module, top.name, item) for item in top.body
                             if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef))
            elif isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append(Function(module, None, top))
    for function in found:
        scan_calls(function)
    return found


def scan_calls(function: Function) -> None:
    for node in ast.walk(function.node):
        if isinstance(node, ast.Dict) and any(
                isinstance(key, ast.Constant) and key.value == "tags" for key in node.keys):
            function.passes_tags = True
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method = node.func.attr
        receiver = ast.unparse(node.func.value)
        first = node.args[0] if node.args else None
        named = (first.value if isinstance(first, ast.Constant) and isinstance(first.value, str)
                 else None)
        if method in ("_call", "get_paginator") and named:
            function.operations.add(named)
        elif receiver.endswith("client"):
            function.operations.add(method)
        function.calls.append((receiver, method))


def needed_actions() -> dict[str, set[str]]:
    """IAM actions each program's code needs: {"worker": {...}, "scaler": ..., "gateway": ...}."""
    services = {service: api_names(service) for service in client_services()}
    everything = functions()

    def actions(function: Function) -> set[str]:
        found = set()
        for operation in function.operations:
            owners = [s for s, ops in services.items() if operation in ops]
            if not owners:
                continue  # a Redis client's method, not an AWS operation
            assert len(owners) == 1, f"{operation} in {function.module} is ambiguous: {owners}"
            service = owners[0]
            default = {f"{service}:{services[service][operation]}"}
            found |= ACTIONS.get((service, operation), default)
            if (service, operation) == ("ecs", "run_task") and function.passes_tags:
                found.add("ecs:TagResource")
        return found

    # Adapter classes of runtime/aws, by the name their holders give them: a CommandQueue
    # is held as `queue` or `self._queue`, a ProjectStorage as `storage`.
    adapters = defaultdict(dict)
    for function in everything:
        if function.module.startswith("runtime/aws/") and function.cls:
            adapters[function.cls][function.node.name] = function

    def reached_in(adapter: str, method: str, seen: set) -> set[str]:
        if (adapter, method) in seen or method not in adapters[adapter]:
            return set()
        seen.add((adapter, method))
        function = adapters[adapter][method]
        found = actions(function)
        for receiver, called in function.calls:
            if receiver == "self":
                found |= reached_in(adapter, called, seen)
        return found

    needed = {"worker": set(), "scaler": set(), "gateway": set()}
    for function in everything:
        program = {"runtime": "worker"}.get(function.module.split("/")[0],
                                            function.module.split("/")[0])
        needed[program] |= actions(function)
        if program == "worker":
            continue
        for receiver, called in function.calls:
            for adapter in adapters:
                holder = re.findall(r"[A-Z][a-z]+", adapter)[-1].lower()
                if receiver.split(".")[-1].lstrip("_") == holder:
                    needed[program] |= reached_in(adapter, called, set())
    return needed


NEEDED = needed_actions()


def statements(policy: dict) -> list[dict]:
    return [{**s, "Action": [s["Action"]] if isinstance(s["Action"], str) else s["Action"],
             "Resource": [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"]}
            for s in policy["Statement"]]


def allowed(policy: dict) -> set[str]:
    return {action for s in statements(policy) for action in s["Action"]}


# ---- the tests ----------------------------------------------------------------------------

def test_the_scan_finds_the_calls_each_program_is_known_to_make():
    assert {"sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "s3:PutObject",
            "s3:ListBucket", "sqs:GetQueueUrl"} <= NEEDED["worker"]
    assert {"ecs:RunTask", "ecs:TagResource", "sqs:GetQueueAttributes"} <= NEEDED["scaler"]
    assert "sqs:SendMessage" in NEEDED["gateway"]
    # The scaler never receives commands, and the gateway never launches tasks.
    assert "sqs:ReceiveMessage" not in NEEDED["scaler"]
    assert not any(action.startswith("ecs:") for action in NEEDED["gateway"])


@pytest.mark.parametrize(("program", "policy"), [
    ("worker", "taskRole"), ("scaler", "scaler"), ("gateway", "gateway"),
])
def test_each_program_is_allowed_exactly_the_actions_its_code_calls(program, policy):
    assert allowed(POLICIES[policy]) == NEEDED[program]


def test_the_execution_role_only_pulls_the_image_writes_logs_and_reads_the_redis_secret():
    assert allowed(POLICIES["taskExecutionRole"]) == {
        "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:GetAuthorizationToken",
        "logs:CreateLogStream", "logs:PutLogEvents", "secretsmanager:GetSecretValue",
    }
    readable = {resource for s in statements(POLICIES["taskExecutionRole"])
                if "secretsmanager:GetSecretValue" in s["Action"] for resource in s["Resource"]}
    wanted = {secret["valueFrom"] for container in TASK_DEFINITION["containerDefinitions"]
              for secret in container.get("secrets", [])}
    assert wanted
    assert wanted <= readable
    assert any(container["logConfiguration"]["options"]["awslogs-group"] == "{{LOG_GROUP}}"
               for container in TASK_DEFINITION["containerDefinitions"])


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_no_wildcard_actions_and_star_resources_only_where_aws_offers_nothing_narrower(policy):
    for statement in statements(POLICIES[policy]):
        assert statement["Effect"] == "Allow"
        assert not any("*" in action for action in statement["Action"]), statement
        for resource in statement["Resource"]:
            if resource != "*":
                # A wildcard only at the end, after a fixed bucket, prefix, cluster or family.
                assert "*" not in resource.rstrip("*"), statement
                assert resource.startswith("arn:aws:") or resource.startswith("{{"), statement
                continue
            if statement["Action"] == ["ecr:GetAuthorizationToken"]:
                continue  # a registry sign-in has no resource to name
            # ListTasks over a cluster is authorised on "*"; the condition keeps it to ours.
            assert statement["Action"] == ["ecs:ListTasks"], statement
            assert statement["Condition"] == {"ArnEquals": {
                "ecs:cluster": "arn:aws:ecs:{{REGION}}:{{ACCOUNT_ID}}:cluster/{{CLUSTER}}"}}


def test_the_worker_reaches_only_its_bucket_prefix_and_its_two_queues():
    queue = "arn:aws:sqs:{{REGION}}:{{ACCOUNT_ID}}:{{QUEUE_NAME}}"
    dead_letter = "arn:aws:sqs:{{REGION}}:{{ACCOUNT_ID}}:{{DEAD_LETTER_QUEUE_NAME}}"
    for statement in statements(POLICIES["taskRole"]):
        services = {action.split(":")[0] for action in statement["Action"]}
        if services == {"sqs"}:
            assert statement["Resource"] in ([queue], [dead_letter])
            if statement["Resource"] == [dead_letter]:
                # Invalid commands are put there; nothing is ever taken from it.
                assert set(statement["Action"]) == {"sqs:SendMessage", "sqs:GetQueueUrl"}
        elif statement["Action"] == ["s3:ListBucket"]:
            assert statement["Resource"] == ["arn:aws:s3:::{{BUCKET}}"]
            assert statement["Condition"] == {"StringLike": {"s3:prefix": "{{S3_PREFIX}}*"}}
        else:
            assert services == {"s3"}
            assert statement["Resource"] == ["arn:aws:s3:::{{BUCKET}}/{{S3_PREFIX}}*"]


def test_the_scaler_launches_only_the_family_on_its_cluster_and_passes_only_the_two_roles():
    by_action = {action: s for s in statements(POLICIES["scaler"]) for action in s["Action"]}
    cluster = "arn:aws:ecs:{{REGION}}:{{ACCOUNT_ID}}:cluster/{{CLUSTER}}"
    assert by_action["ecs:RunTask"]["Resource"] == [
        "arn:aws:ecs:{{REGION}}:{{ACCOUNT_ID}}:task-definition/{{FAMILY}}:*"]
    assert by_action["ecs:RunTask"]["Condition"] == {"ArnEquals": {"ecs:cluster": cluster}}
    # Tagging is allowed only as part of RunTask, on this cluster's tasks.
    assert by_action["ecs:TagResource"]["Condition"] == {
        "StringEquals": {"ecs:CreateAction": "RunTask"}}
    assert by_action["ecs:DescribeTasks"]["Resource"] == [
        "arn:aws:ecs:{{REGION}}:{{ACCOUNT_ID}}:task/{{CLUSTER}}/*"]
    assert sorted(by_action["iam:PassRole"]["Resource"]) == [
        "arn:aws:iam::{{ACCOUNT_ID}}:role/{{EXECUTION_ROLE}}",
        "arn:aws:iam::{{ACCOUNT_ID}}:role/{{TASK_ROLE}}",
    ]
    assert by_action["iam:PassRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    # The roles the scaler passes are the ones the task definition names.
    assert TASK_DEFINITION["taskRoleArn"] in by_action["iam:PassRole"]["Resource"]
    assert TASK_DEFINITION["executionRoleArn"] in by_action["iam:PassRole"]["Resource"]


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_parliament_finds_nothing_but_the_cluster_wide_list_it_cannot_see_scoped(policy):
    findings = analyze_policy_string(json.dumps(fill(POLICIES[policy], SAMPLE))).findings
    found = [(f.issue, f.detail) for f in findings]
    # Parliament does not weigh the ecs:cluster condition that scopes ListTasks (see above).
    assert [f for f in found if f != ("RESOURCE_STAR", ["ecs:ListTasks"])] == []
