"""/v1/models/{name}: what serving measured: the traffic split and its shadows' agreement,
drift windows, events, and the sampled request log's Parquet parts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.api.deps import LogsAccess, ReadAccess, SessionDep, StoreDep
from app.api.errors_schema import V1_ERRORS
from app.api.params import POSITIVE_DIGITS, IdPath, ModelName
from app.api.serving_stats import DEFAULT_SECONDS, ServingStats, read_stats
from app.api.state import gateway_of
from app.api.traffic_schemas import AliasRead, LogPartRead, TrafficRead
from app.contracts.traffic import DriftProgress, DriftReport, ModelEvent
from app.core.errors import NotFound
from app.registry import drift_progress, monitoring, service, traffic
from app.serving.seconds import KEPT_S

router = APIRouter(prefix="/v1/models", tags=["monitoring"], responses=V1_ERRORS)
PARQUET = "application/vnd.apache.parquet"
Limit = Annotated[
    int,
    Query(ge=1, le=500, description="Most entries returned, newest first."),
    POSITIVE_DIGITS,
]
Seconds = Annotated[
    int,
    Query(ge=1, le=KEPT_S, description=f"The last this many seconds (at most {KEPT_S})."),
    POSITIVE_DIGITS,
]


@router.get("/{name}/traffic", response_model=TrafficRead, dependencies=[ReadAccess])
def traffic_of(session: SessionDep, name: ModelName) -> TrafficRead:
    """The production alias's versions and weights and its shadow, and how that shadow
    compares with each version answering beside it: rows compared, the share that agreed,
    the mean absolute difference of the outputs, copies dropped (queue full) and failures
    (written every KILN_MONITOR_FLUSH_S by each gateway). A shadow promoted or replaced is
    not listed (its promotion event keeps the numbers it passed on)."""
    model = service.get_model(session, name)
    policy = traffic.serving_policy(session, model)
    alias = None
    if policy is not None:
        alias = AliasRead.of(name, service.PRODUCTION_ALIAS, policy)
    shadows = monitoring.current_shadow_stats(session, name, policy)
    return TrafficRead(model=name, alias=alias, shadows=shadows)


@router.get("/{name}/serving/stats", response_model=ServingStats, dependencies=[ReadAccess])
def serving_stats_of(
    request: Request, session: SessionDep, name: ModelName, seconds: Seconds = DEFAULT_SECONDS
) -> ServingStats:
    """Requests, client and server errors and p50/p95/p99 latency per second of each
    version (its shadow copies apart), over the last ``seconds`` seconds, from the
    gateways' own per-second counters (every process of `kiln serve --gateways N`,
    summed); beside the production alias's weights and shadow."""
    policy = traffic.serving_policy(session, service.get_model(session, name))
    return read_stats(gateway_of(request.app).seconds, name, policy, seconds)


@router.get("/{name}/drift", response_model=list[DriftReport], dependencies=[ReadAccess])
def drift_of(session: SessionDep, name: ModelName, limit: Limit = 20) -> list[DriftReport]:
    """The latest drift windows: each input column's PSI against the training profile,
    its share of gaps (and of unseen categories), and which columns passed the threshold."""
    return monitoring.latest_drift(session, name, limit)


@router.get("/{name}/drift/progress", response_model=list[DriftProgress], dependencies=[ReadAccess])
def drift_progress_of(session: SessionDep, name: ModelName) -> list[DriftProgress]:
    """How far each gateway process's open drift window of each version has got: sampled
    rows so far, the rows a window needs, the share of requests sampled, and about how
    many more predicted rows that process must answer before its window is full (each
    gateway writes it every KILN_MONITOR_FLUSH_S as it changes; a process gone for 3
    minutes is left out)."""
    return drift_progress.progress(session, name)


@router.get("/{name}/events", response_model=list[ModelEvent], dependencies=[ReadAccess])
def events_of(session: SessionDep, name: ModelName, limit: Limit = 50) -> list[ModelEvent]:
    """What serving noticed about the model (drift past its threshold), newest first."""
    return monitoring.events(session, name, limit)


@router.get("/{name}/logs", response_model=list[LogPartRead], dependencies=[LogsAccess])
def log_parts(session: SessionDep, name: ModelName) -> list[LogPartRead]:
    """The request log's Parquet parts, oldest first (KILN_LOG_SAMPLE, or the model's
    log_sample, decides what is kept; KILN_LOG_MAX_MB how much, counted uncompressed:
    each part's raw_bytes). The log holds clients' inputs: a key needs the 'logs' scope."""
    return [
        LogPartRead(
            id=part.id,
            rows=part.rows,
            size_bytes=part.size_bytes,
            raw_bytes=part.raw_bytes,
            first_at=part.first_at,
            last_at=part.last_at,
        )
        for part in monitoring.log_parts(session, name)
    ]


@router.get(
    "/{name}/logs/{part}",
    response_class=Response,
    dependencies=[LogsAccess],
    responses={200: {"content": {PARQUET: {}}, "description": "The Parquet file."}},
)
def log_part(session: SessionDep, store: StoreDep, name: ModelName, part: IdPath) -> Response:
    """One part of the request log as Parquet (a key needs the 'logs' scope): request_id
    (the gateway's, unique), client_request_id (the client's x-request-id, if it sent one),
    row, at, model, version, protocol, latency_ms, inputs (JSON per row), output,
    prediction."""
    found = next((p for p in monitoring.log_parts(session, name) if p.id == part), None)
    if found is None:
        raise NotFound(f"model {name!r} has no request-log part {part}")
    return Response(
        store.read_bytes(found.key, found.sha256),
        media_type=PARQUET,
        headers={"content-disposition": f'attachment; filename="{name}-log-{part}.parquet"'},
    )
