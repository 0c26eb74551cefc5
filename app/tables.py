"""The registry schema. Alembic migrations are generated from, and checked against, these tables."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.contracts.encoding import TableEncoding
from app.contracts.enums import JobStatus, Scope, Task, TrialState, VersionStatus
from app.contracts.profile import DatasetProfile
from app.contracts.signature import Signature, VersionConfig
from app.contracts.traffic import TrafficSplit
from app.core.db import Base, PydanticJSON, UTCDateTime, utcnow


def _one_of(column: str, enum: type[StrEnum]) -> CheckConstraint:
    values = ", ".join(f"'{member.value}'" for member in enum)
    return CheckConstraint(f"{column} IN ({values})", name=f"{column}_valid")


class ApiKey(Base):
    """An API key, stored only as the SHA-256 of the secret."""

    __tablename__ = "api_keys"
    __table_args__ = (_one_of("scope", Scope),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Dataset(Base):
    """An uploaded CSV, parsed and stored as arrays next to the original file."""

    __tablename__ = "datasets"
    __table_args__ = (_one_of("task", Task),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255))
    target: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(16))
    n_rows: Mapped[int] = mapped_column(Integer)
    feature_names: Mapped[list[str]] = mapped_column(JSON)
    class_labels: Mapped[list[Any] | None] = mapped_column(JSON)
    input_shape: Mapped[list[int] | None] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))  # of the original CSV
    # Of the parsed arrays and the raw columns (None: recorded before digests were kept).
    arrays_sha256: Mapped[str | None] = mapped_column(String(64))
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    profile: Mapped[DatasetProfile | None] = mapped_column(PydanticJSON(DatasetProfile))
    encoding: Mapped[TableEncoding | None] = mapped_column(PydanticJSON(TableEncoding))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When its files were deleted (the row stays: versions name it in their lineage).
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Job(Base):
    """A unit of background work. The database, not the broker, is its source of truth."""

    __tablename__ = "jobs"
    __table_args__ = (
        _one_of("status", JobStatus),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
        # The retention sweep looks for the few jobs not yet swept, every housekeeping pass.
        Index("ix_jobs_scratch_deleted_at", "scratch_deleted_at"),
        Index("ix_jobs_files_deleted_at", "files_deleted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"))
    model_name: Mapped[str | None] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker: Mapped[str | None] = mapped_column(String(255))
    # Work done and planned, in the unit its kind counts in (trials, steps, rows).
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    trial_slots: Mapped[int] = mapped_column(Integer, default=0)  # trials started (budget)
    # What a running job is doing now, in words (a search: "trials", "refit on every row").
    phase: Mapped[str | None] = mapped_column(String(64))
    best_value: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # What a running job has stored so far that a later attempt may reuse (a batch
    # prediction's finished chunks); written with the lease renewal that reports it.
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    sends: Mapped[int] = mapped_column(Integer, default=0)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # When its files were deleted: every one (by hand or by output retention), or only the
    # scratch a running job needs (batch parts, data-parallel work files; by retention).
    files_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scratch_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Trial(Base):
    """One evaluated configuration of a search job."""

    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("job_id", "number"),
        _one_of("state", TrialState),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    value: Mapped[float | None] = mapped_column(Float)  # the first objective
    values: Mapped[list[float] | None] = mapped_column(JSON)  # every objective, in order
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # measured on validation
    # Digests of its stored weights and held-out outputs (None: not stored).
    checkpoint_sha256: Mapped[str | None] = mapped_column(String(64))
    predictions_sha256: Mapped[str | None] = mapped_column(String(64))
    retry_of: Mapped[int | None] = mapped_column(Integer)  # number of the trial it re-runs
    intermediate: Mapped[list[float]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_s: Mapped[float | None] = mapped_column(Float)


class Model(Base):
    """A named model; its versions count up from 1."""

    __tablename__ = "models"
    __table_args__ = (_one_of("task", Task),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    task: Mapped[str] = mapped_column(String(16))
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Serving options, e.g. dynamic batching: {"max_batch_size": 64, "max_queue_delay_ms": 2}
    serving: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ModelVersion(Base):
    """One immutable ONNX artifact with what was measured on it and where it came from."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        _one_of("status", VersionStatus),
        _one_of("task", Task),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=VersionStatus.LIVE)
    source: Mapped[str] = mapped_column(String(16))
    task: Mapped[str] = mapped_column(String(16))
    artifact_key: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    n_params: Mapped[int | None] = mapped_column(BigInteger)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    signature: Mapped[Signature] = mapped_column(PydanticJSON(Signature))
    class_labels: Mapped[list[Any] | None] = mapped_column(JSON)
    config: Mapped[VersionConfig | None] = mapped_column(PydanticJSON(VersionConfig))
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("trials.id"))
    parent_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    method: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    artifact_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # archived first


class Alias(Base):
    """A movable name (such as ``production``) that points at one version of a model, or
    at several by weight (``split``; ``version_id`` is then the largest share), with an
    optional shadow version that sees a copy of the traffic and answers no one."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("model_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    name: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    split: Mapped[TrafficSplit | None] = mapped_column(PydanticJSON(TrafficSplit))
    shadow_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AliasHistory(Base):
    """Which version held an alias, from when until when (``removed_at`` null: still holds)."""

    __tablename__ = "alias_history"
    __table_args__ = (Index("ix_alias_history_model_alias", "model_id", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    alias: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    split: Mapped[TrafficSplit | None] = mapped_column(PydanticJSON(TrafficSplit))
    shadow_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IdempotentRequest(Base):
    """The answer to a request sent with an ``Idempotency-Key``: a repeat of it (same key,
    same caller, same route, same body) gets this answer again instead of a second job or
    dataset. ``fingerprint`` is the SHA-256 of the body as the route understood it."""

    __tablename__ = "idempotent_requests"
    __table_args__ = (
        UniqueConstraint("api_key_id", "route", "key"),
        Index("ix_idempotent_requests_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    route: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ShadowComparison(Base):
    """Running totals of a shadow version's answers against the version that answered the
    client; gateways add to them (conditional increments), never overwrite."""

    __tablename__ = "shadow_comparisons"
    __table_args__ = (
        UniqueConstraint(
            "model_id",
            "primary_version_id",
            "shadow_version_id",
            name="uq_shadow_comparisons_versions",  # the convention's name passes 63 bytes
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    primary_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    shadow_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    agreed: Mapped[int] = mapped_column(BigInteger, default=0)
    abs_diff_sum: Mapped[float] = mapped_column(Float, default=0.0)
    dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    failures: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RequestLogPart(Base):
    """One Parquet file of sampled requests of a model in the artifact store."""

    __tablename__ = "request_log_parts"
    __table_args__ = (Index("ix_request_log_parts_model_created", "model_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    key: Mapped[str] = mapped_column(String(512), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)  # the Parquet file (compressed)
    # Its columns uncompressed (what a reader unpacks); None: recorded before it was measured.
    raw_bytes: Mapped[int | None] = mapped_column(BigInteger)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DriftWindow(Base):
    """One window of live rows of a version compared with its training profile."""

    __tablename__ = "drift_windows"
    __table_args__ = (Index("ix_drift_windows_model_ended", "model_id", "ended_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    rows: Mapped[int] = mapped_column(Integer)
    max_psi: Mapped[float | None] = mapped_column(Float)
    drifted: Mapped[bool] = mapped_column(default=False)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DriftProgressRow(Base):
    """How far one gateway process's open drift window of a version has got (each process
    fills its own); the process rewrites it as it changes and deletes it when it stops."""

    __tablename__ = "drift_progress"
    __table_args__ = (UniqueConstraint("version_id", "gateway"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    gateway: Mapped[str] = mapped_column(String(255))
    rows: Mapped[int] = mapped_column(Integer)
    window_rows: Mapped[int] = mapped_column(Integer)
    sample: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelEventRow(Base):
    """Something serving noticed about a model, for people and alerting to read."""

    __tablename__ = "model_events"
    __table_args__ = (Index("ix_model_events_model_created", "model_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
