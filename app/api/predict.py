"""POST /v1/models/{name}/predict: JSON rows in, original labels (or values) out."""

from __future__ import annotations

import time
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response

from app.api.deps import InferAccess
from app.api.metrics import ServingMetrics
from app.api.resolve import find_target, parse_body, run_model
from app.api.schemas import PredictRequest, PredictResponse
from app.errors import KilnError
from app.serving.predict import answer, parse_rows

router = APIRouter(prefix="/v1/models", tags=["predict"])

_BODY_SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": PredictRequest.model_json_schema()}}}}


@router.post("/{name}/predict", response_model=PredictResponse, dependencies=[InferAccess],
             openapi_extra=_BODY_SCHEMA, summary="Predict rows")
async def predict_rows(request: Request, name: str,
                       version: Annotated[int | None, Query(ge=1)] = None) -> Response:
    """Predict with the asked version, else the ``production`` alias, else the newest."""
    state = request.app.state
    metrics: ServingMetrics = state.metrics
    arrived = time.perf_counter()
    body = await request.body()
    try:
        target = await find_target(state.directory, name, version)
        started = time.perf_counter()
        rows = await parse_body(len(body), lambda: parse_rows(
            body, n_features=target.model.n_features, max_rows=state.settings.max_predict_rows))
        computing = time.perf_counter()
        output = await run_model(target, rows)
        computed = time.perf_counter()
        result = {"model": name, "version": target.version, **answer(target.model, output)}
        metrics.succeeded(name, target.version, "v1", queue_s=started - arrived,
                          compute_s=computed - computing)
    except KilnError as error:
        metrics.failed(name, version, "v1", error.status_code)
        raise
    return Response(orjson.dumps(result), media_type="application/json")
