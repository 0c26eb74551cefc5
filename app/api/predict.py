"""POST /v1/models/{name}/predict: JSON rows in, original labels (or values) out."""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import InferAccess, MetricsDep, SessionCacheDep, SessionDep, SettingsDep
from app.api.resolve import load_for_request
from app.api.schemas import PredictRequest, PredictResponse
from app.errors import KilnError
from app.serving.predict import parse_rows, predict

router = APIRouter(prefix="/v1/models", tags=["predict"])

_BODY_SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": PredictRequest.model_json_schema()}}}}


@router.post("/{name}/predict", response_model=PredictResponse, dependencies=[InferAccess],
             openapi_extra=_BODY_SCHEMA, summary="Predict rows")
async def predict_rows(request: Request, session: SessionDep, settings: SettingsDep,
                       cache: SessionCacheDep, metrics: MetricsDep, name: str,
                       version: Annotated[int | None, Query(ge=1)] = None) -> Response:
    """Predict with the asked version, else the ``production`` alias, else the newest."""
    arrived = time.perf_counter()
    body = await request.body()

    def work() -> dict[str, Any]:
        started = time.perf_counter()
        row, model = load_for_request(session, cache, name, version)
        rows = parse_rows(body, n_features=model.n_features,
                          max_rows=settings.max_predict_rows)
        computing = time.perf_counter()
        answer = predict(model, rows)
        metrics.succeeded(name, row.version, "v1", queue_s=started - arrived,
                          compute_s=time.perf_counter() - computing)
        return {"model": name, "version": row.version, **answer}

    try:
        result = await run_in_threadpool(work)
    except KilnError as error:
        metrics.failed(name, version, "v1", error.status_code)
        raise
    return Response(orjson.dumps(result), media_type="application/json")
