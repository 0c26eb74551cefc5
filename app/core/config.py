"""Typed settings, read from ``KILN_*`` environment variables, validated at start-up."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.config_bounds import BoundsSettings
from app.core.config_footprint import FootprintSettings
from app.core.config_monitoring import MonitoringSettings
from app.core.field_errors import FieldError
from app.core.names import QUEUE_NAME, S3_BUCKET, S3_PREFIX, QueueNameStr

ENV_PREFIX = "KILN_"
DEFAULT_MAX_PARAMS = 50_000_000
# fp32 weight, gradient, two Adam moments and the best epoch's copy: 5 x 4 bytes per parameter.
TRAINING_BYTES_PER_PARAM = 20


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


class Settings(BoundsSettings, MonitoringSettings, FootprintSettings, BaseSettings):
    """Every knob of ModelKiln. Defaults give the embedded, server-less configuration."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    data_dir: Path = Field(
        default=Path("./kiln-data"),
        description="Where SQLite files, artifacts and the admin key live.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the registry database; "
        "default: SQLite file in the data dir.",
    )
    broker_url: str = Field(
        default="",
        description="Celery broker URL; default: kombu's "
        "SQLAlchemy transport on a SQLite file in the data dir.",
    )
    artifact_url: str = Field(
        default="",
        description="Artifact store URL: file://PATH, or "
        "s3://BUCKET[/PREFIX] for S3-compatible object storage shared "
        "by machines with no common disk; default: DATA_DIR/artifacts.",
    )
    s3_endpoint_url: str = Field(
        default="",
        description="Endpoint of the S3-compatible "
        "service (such as http://minio:9000); empty: AWS S3.",
    )
    s3_region: str = Field(default="us-east-1", description="Region of the S3 bucket.")
    s3_access_key_id: str = Field(
        default="",
        description="S3 access key id; empty: boto3's "
        "usual chain (AWS_* variables, instance role).",
    )
    s3_secret_access_key: SecretStr = Field(
        default=SecretStr(""), description="S3 secret access key (never logged or shown)."
    )
    artifact_cache_mb: float = Field(
        default=2048.0,
        gt=0,
        description="Bound on the local "
        "cache of artifacts read from object storage "
        "(DATA_DIR/cache/artifacts).",
    )
    queue_name: QueueNameStr = Field(
        default="kiln", description=f"Broker queue for jobs: {QUEUE_NAME.rule}."
    )
    max_upload_mb: float = Field(default=512.0, gt=0, description="Largest accepted upload.")
    max_request_mb: float = Field(default=16.0, gt=0, description="Largest non-upload body.")
    max_predict_rows: int = Field(default=10_000, gt=0, description="Rows per predict request.")
    max_tensor_elements: int = Field(
        default=4_000_000,
        gt=0,
        description="Elements in one /v2 input tensor (also bounded by rows x features).",
    )
    job_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A running job whose worker has not renewed its lease for this long is reaped.",
    )
    job_max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Attempts before a job whose worker keeps disappearing is failed.",
    )
    queued_resend_s: float = Field(
        default=60.0,
        gt=0,
        description="A job still queued after this long is sent to the broker again (backing off).",
    )
    broker_visibility_s: float = Field(
        default=3600.0,
        gt=0,
        le=7 * 86_400,
        description=(
            "Redis broker: a message taken but not acknowledged for this long is delivered "
            "again (a job's message is acknowledged when the job ends; a second delivery of a "
            "running job is ignored, its lease decides)."
        ),
    )
    broker_startup_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long a starting worker waits for its broker (KILN_BROKER_URL) "
        "to answer; then it exits, naming it, rather than retry in silence.",
    )
    reaper_interval_s: float = Field(
        default=5.0, gt=0, description="How often the gateway checks for lost jobs."
    )
    ort_threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="onnxruntime intra-op threads for serving and latency measurement.",
    )
    train_threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="torch threads per worker "
        "process; 0 divides the CPUs between worker processes.",
    )
    session_cache_size: int = Field(default=32, ge=1, description="ONNX sessions kept loaded.")
    session_cache_mb: float = Field(
        default=1024.0, gt=0, description="Bound on the bytes of the ONNX models kept loaded."
    )

    study_url: str = Field(
        default="",
        description="Where Optuna keeps shared studies; "
        "default: the registry's PostgreSQL database (schema optuna) or "
        "DATA_DIR/studies.db.",
    )
    trial_heartbeat_s: float = Field(
        default=5.0,
        ge=1,
        le=600,
        description="How often a "
        "running trial proves its worker is alive; after 3 "
        "missed beats it is failed and retried.",
    )
    serving_cache_s: float = Field(
        default=2.0,
        ge=0,
        le=3600,
        description="How long the "
        "gateway reuses a key check or a name -> version "
        "resolution; writes through this gateway show at once, "
        "this bounds how long other processes' writes take.",
    )
    coalesce: bool = Field(
        default=True,
        description="Requests for one model ModelKiln made (not an upload, which may mix "
        "rows) that reach their run in the same turn of the gateway's event loop run as "
        "one onnxruntime call; nobody waits for a request that has not arrived.",
    )
    max_job_s: float = Field(
        default=86_400.0,
        gt=0,
        le=30 * 86_400,
        description="Hard wall "
        "time of one job from its first start: its training stops, even "
        "inside an epoch, and the job fails. search.timeout_s may ask "
        "for less.",
    )
    max_trial_s: float = Field(
        default=3_600.0,
        gt=0,
        le=30 * 86_400,
        description="Wall time "
        "of one search trial; a trial still training then is stopped "
        "inside its epoch. search.trial_timeout_s may ask for less.",
    )
    max_parallelism: int = Field(
        default=8, ge=1, le=256, description="Most trials one search may run at once."
    )
    max_data_parallel: int = Field(
        default=8,
        ge=1,
        le=16,
        description="Most worker processes one trial may train on (search.data_parallel).",
    )
    data_parallel_join_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long a "
        "data-parallel trial waits for its helper processes "
        "before it trains alone.",
    )
    advertise_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9.:\-\[\]]+$",
        description="Address other "
        "workers reach this one at, for data-parallel training's "
        "rendezvous (its port is picked free); set it on machines "
        "that train together, and GLOO_SOCKET_IFNAME if they have "
        "several interfaces.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Where "
        "workers train: the first CUDA device "
        "when there is one (auto), or always "
        "cpu or cuda. Each version records it.",
    )
    worker_memory_mb: float = Field(
        default=0.0,
        ge=0,
        description="Memory one worker "
        "process may plan for one network's training (weights, "
        "gradients, optimizer state, one batch's activations); "
        "0: half the machine's memory divided by its CPUs.",
    )
    max_params: int = Field(
        default=0,
        ge=0,
        description="Most trainable parameters of any "
        "network a job builds; 0: what KILN_WORKER_MEMORY_MB allows, at "
        "most 50 million. Estimated before a network is built.",
    )
    serving_generation_file: str = Field(
        default="",
        description="Set by `kiln serve "
        "--gateways N`: the file through which its gateway "
        "processes tell each other of writes.",
    )
    serving_seconds_dir: str = Field(
        default="",
        description="Set by `kiln serve "
        "--gateways N`: where each gateway process leaves its per-second serving counters "
        "for the others to sum.",
    )
    port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description="Port of the HTTP API, "
        "dashboard and /v2 in `kiln serve` (`--port` sets it too).",
    )
    embedded_workers: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="Set by `kiln "
        "serve`: the worker processes it runs beside the gateway "
        "(0: the workers run elsewhere, their number unknown "
        "here). A time-only search runs at most this many trials "
        "at once.",
    )
    grpc_port: int = Field(
        default=8001,
        ge=0,
        le=65535,
        description="Port of the Open Inference Protocol's gRPC service in `kiln serve` (0: off).",
    )
    grpc_host: str = Field(
        default="127.0.0.1",
        description="Address the gRPC service binds (`kiln serve --host` sets it).",
    )
    preload_models: str = Field(
        default="",
        description="Models to load and warm up at "
        "start, before /v2/health/ready says ready: comma-separated "
        "names, or * for every model (their serving versions).",
    )

    @field_validator("database_url", "broker_url", "artifact_url", "study_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        data_dir = self.data_dir.expanduser().resolve()
        object.__setattr__(self, "data_dir", data_dir)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{data_dir / 'kiln.db'}")
        if not self.broker_url:
            object.__setattr__(self, "broker_url", f"sqla+sqlite:///{data_dir / 'broker.db'}")
        if not self.artifact_url:
            object.__setattr__(self, "artifact_url", f"file://{data_dir / 'artifacts'}")
        if "://" not in self.database_url:
            raise ValueError(
                "database_url: expected a SQLAlchemy URL such as postgresql+psycopg://user@host/db"
            )
        if "://" not in self.broker_url:
            raise ValueError("broker_url: expected a URL such as redis://host:6379/0")
        if self.artifact_url.startswith("s3://"):
            _check_s3_url(self.artifact_url)
        elif not self.artifact_url.startswith("file://"):
            raise ValueError("artifact_url: expected file://PATH or s3://BUCKET[/PREFIX]")
        return self

    @property
    def artifact_cache_bytes(self) -> int:
        return int(self.artifact_cache_mb * 1024 * 1024)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)

    @property
    def worker_memory_bytes(self) -> int:
        """Training memory one worker process may plan for (see ``worker_memory_mb``)."""
        if self.worker_memory_mb > 0:
            return int(self.worker_memory_mb * 1024 * 1024)
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return int(total / 2 / max(1, os.cpu_count() or 1))

    @property
    def params_ceiling(self) -> int:
        """The most parameters a network may have (see ``max_params``)."""
        if self.max_params > 0:
            return self.max_params
        return min(DEFAULT_MAX_PARAMS, self.worker_memory_bytes // TRAINING_BYTES_PER_PARAM)

    @property
    def admin_key_path(self) -> Path:
        return self.data_dir / "admin.key"

    @property
    def ui_secret_path(self) -> Path:
        return self.data_dir / "ui_session.secret"


def _check_s3_url(url: str) -> None:
    """s3://BUCKET[/PREFIX] with a bucket name S3 accepts and no credentials inside."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket or ":" in bucket:
        raise ValueError(
            "artifact_url: credentials do not belong in the URL; set "
            "KILN_S3_ACCESS_KEY_ID and KILN_S3_SECRET_ACCESS_KEY"
        )
    if problem := S3_BUCKET.problem(bucket):
        raise ValueError(f"artifact_url: {problem}")
    if prefix.strip("/") and (problem := S3_PREFIX.problem(prefix.strip("/"))):
        raise ValueError(f"artifact_url: {problem}")


def _describe(error: ValidationError) -> str:
    """Turn a pydantic error into lines that name the environment variable at fault."""
    lines = []
    for item in map(FieldError.of, error.errors()):
        field = str(item.loc[0]) if item.loc else ""
        message = item.msg.removeprefix("Value error, ")
        if not field and ":" in message:  # raised by the model validator as "field: message"
            field, message = message.split(":", 1)
        lines.append(f"{ENV_PREFIX}{field.upper()}: {message.strip()}")
    return "invalid settings: " + "; ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (plus overrides); SettingsError names the culprit."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
