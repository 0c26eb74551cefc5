"""/v1/models/{name}: what serving measured: the traffic split and its shadows' agreement,
drift windows, events, and the sampled request log's Parquet parts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api.deps import LogsAccess, ReadAccess, SessionDep, StoreDep
from app.api.errors_schema import V1_ERRORS
from app.api.params import POSITIVE_DIGITS, IdPath, ModelName
from app.api.traffic_schemas import AliasRead, LogPartRead, TrafficRead
from app.contracts.traffic import DriftReport, ModelEvent
from app.core.errors import NotFound
from app.registry import monitoring, service, traffic

router = APIRouter(prefix="/v1/models", tags=["monitoring"], responses=V1_ERRORS)
PARQUET = "application/vnd.apache.parquet"
Limit = Annotated[
    int,
    Query(ge=1, le=500, description="Most entries returned, newest first."),
    POSITIVE_DIGITS,
]


@router.get("/{name}/traffic", response_model=TrafficRead, dependencies=[ReadAccess])
def traffic_of(session: SessionDep, name: ModelName) -> TrafficRead:
    """The production alias's versions and weights and its shadow, and every shadow
    comparison so far: rows compared, the share that agreed, the mean absolute difference
    of the outputs, copies dropped (queue full) and failures (written every
    KILN_MONITOR_FLUSH_S by each gateway)."""
    model = service.get_model(session, name)
    policy = traffic.serving_policy(session, model)
    alias = None
    if policy is not None:
        alias = AliasRead.of(name, service.PRODUCTION_ALIAS, policy)
    return TrafficRead(model=name, alias=alias, shadows=monitoring.shadow_stats(session, name))


@router.get("/{name}/drift", response_model=list[DriftReport], dependencies=[ReadAccess])
def drift_of(session: SessionDep, name: ModelName, limit: Limit = 20) -> list[DriftReport]:
    """The latest drift windows: each input column's PSI against the training profile,
    its share of gaps (and of unseen categories), and which columns passed the threshold."""
    return monitoring.latest_drift(session, name, limit)


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
