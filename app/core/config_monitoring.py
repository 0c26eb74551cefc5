"""The settings of serving's traffic loop: request logging, the shadow's queue, drift
windows and thresholds, how often the gateway writes what it measured, and how much a
labelled promotion gate may read. ``Settings`` (``app.core.config``) inherits them."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class MonitoringSettings(BaseSettings):
    """Request logs, shadows, drift, promotion (see the module docstring)."""

    log_sample: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of inference requests written to the model's request log "
        "(inputs, outputs, version, latency; never a key or a header). 0: none. A model's "
        "serving options (log_sample) override it.",
    )
    log_max_mb: float = Field(
        default=256.0,
        gt=0,
        le=1_048_576,
        description="Request-log bytes kept per model, counted uncompressed (what reading "
        "the log unpacks, not the smaller compressed Parquet files in the artifact store); "
        "the oldest parts go first.",
    )
    log_buffer_mb: float = Field(
        default=16.0,
        gt=0,
        le=4096,
        description="Bytes of sampled requests a gateway process holds before writing them "
        "(arrays by their size, text by its length); past it, requests are not logged "
        "(counted in kiln_request_log_dropped_total).",
    )
    monitor_flush_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="How often a gateway writes its request-log part, shadow comparisons "
        "and drift counts.",
    )
    monitor_queue_mb: float = Field(
        default=64.0,
        gt=0,
        le=65_536,
        description="Bytes of answered requests a gateway process holds for its shadow "
        "copies, request log and drift (arrays by their size, text by its length); when "
        "full, a request is not watched (counted per watcher), never delayed.",
    )
    drift_sample: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of inference requests whose rows are compared with the "
        "training profile. 0: no drift measured.",
    )
    drift_window_rows: int = Field(
        default=2000,
        ge=10,
        le=10_000_000,
        description="Live rows per drift window (each window is one report).",
    )
    drift_threshold: float = Field(
        default=0.2,
        gt=0,
        le=100,
        description="Population stability index past which a column has drifted (0.1 "
        "to 0.25: some shift; above 0.25: a large one); a window with such a column raises "
        "a 'drift' event. A model's serving options (drift_threshold) override it.",
    )
    promote_max_rows: int = Field(
        default=100_000,
        ge=10,
        le=10_000_000,
        description="Rows of a labelled dataset a promotion gate runs both versions on.",
    )
