"""The scaler's settings, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from runtime.contract.settings import EnvReader, SettingError

from .policy import ScalingLimits

LAUNCHERS = ("ecs", "local")
CAPACITY_PROVIDERS = ("FARGATE", "FARGATE_SPOT")


@dataclass(frozen=True)
class EcsSettings:
    cluster: str
    task_definition: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    container_name: str = "worker"
    assign_public_ip: bool = False
    capacity_provider: str = "FARGATE"


@dataclass(frozen=True)
class ScalerSettings:
    sqs_queue_url: str
    limits: ScalingLimits
    interval_s: float = 30
    launcher: str = "ecs"
    ecs: EcsSettings | None = None
    started_by: str = "cloudide"
    redis_url: str | None = None
    aws_endpoint_url: str | None = None
    # Seconds a launched task counts as live before ECS lists it (Fargate starts are slow).
    start_grace_s: float = 300
    # Where /metrics is served for a Prometheus scraper; None: not served.
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    # What local workers inherit: "the same settings" as the scaler.
    worker_environment: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ScalerSettings:
        env = EnvReader(environ)
        min_tasks = env.integer("ECS_MIN_TASKS", 0, minimum=0, maximum=1000)
        max_tasks = env.integer("ECS_MAX_TASKS", 10, minimum=1, maximum=1000)
        if min_tasks > max_tasks:
            raise SettingError(f"ECS_MIN_TASKS ({min_tasks}) must not exceed ECS_MAX_TASKS "
                               f"({max_tasks})")
        limits = ScalingLimits(
            min_tasks=min_tasks, max_tasks=max_tasks,
            messages_per_task=env.integer("ECS_MESSAGES_PER_TASK", 1, minimum=1),
        )
        launcher = env.text("SCALER_LAUNCHER", "ecs").lower()
        if launcher not in LAUNCHERS:
            raise SettingError(f"SCALER_LAUNCHER must be one of {', '.join(LAUNCHERS)}, "
                               f"got {launcher!r}")
        ecs = None
        if launcher == "ecs":
            provider = env.text("ECS_CAPACITY_PROVIDER", "FARGATE").upper()
            if provider not in CAPACITY_PROVIDERS:
                raise SettingError("ECS_CAPACITY_PROVIDER must be FARGATE or FARGATE_SPOT, "
                                   f"got {provider!r}")
            subnets = env.text_list("ECS_SUBNETS")
            if not subnets:
                raise SettingError("ECS_SUBNETS is required (comma-separated subnet ids)")
            ecs = EcsSettings(
                cluster=env.text("ECS_CLUSTER_NAME"),
                task_definition=env.text("ECS_TASK_DEFINITION"),
                subnets=subnets,
                security_groups=env.text_list("ECS_SECURITY_GROUPS"),
                container_name=env.text("ECS_CONTAINER_NAME", "worker"),
                assign_public_ip=env.boolean("ECS_ASSIGN_PUBLIC_IP", False),
                capacity_provider=provider,
            )
        started_by = env.text("SCALER_STARTED_BY", "cloudide")
        if len(started_by) > 30:
            raise SettingError("SCALER_STARTED_BY must be at most 30 characters (ECS allows 36 "
                               "and the scaler adds a suffix)")
        redis_url = env.optional_text("REDIS_URL")
        if redis_url is not None:
            redis_url = env.url("REDIS_URL", ("redis", "rediss", "unix"))
        metrics_port = None
        if env.optional_text("SCALER_METRICS_PORT") is not None:
            metrics_port = env.integer("SCALER_METRICS_PORT", minimum=1, maximum=65535)
        return cls(
            sqs_queue_url=env.url("SQS_QUEUE_URL", ("http", "https")),
            limits=limits,
            interval_s=env.number("SCALER_INTERVAL_SECONDS", 30, minimum=1),
            launcher=launcher,
            ecs=ecs,
            started_by=started_by,
            redis_url=redis_url,
            aws_endpoint_url=env.optional_text("AWS_ENDPOINT_URL"),
            start_grace_s=env.number("SCALER_START_GRACE_SECONDS", 300, minimum=1),
            metrics_port=metrics_port,
            metrics_host=env.text("SCALER_METRICS_HOST", "0.0.0.0"),
            worker_environment=dict(environ),
        )
