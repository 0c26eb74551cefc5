"""POST /v1/models/{name}/predict: JSON rows in, original labels (or values) out."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import InferAccess, SessionCacheDep, SessionDep, SettingsDep
from app.api.resolve import load_for_request
from app.api.schemas import PredictRequest, PredictResponse
from app.serving.predict import parse_rows, predict

router = APIRouter(prefix="/v1/models", tags=["predict"])

_BODY_SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": PredictRequest.model_json_schema()}}}}


@router.post("/{name}/predict", response_model=PredictResponse, dependencies=[InferAccess],
             openapi_extra=_BODY_SCHEMA, summary="Predict rows")
async def predict_rows(request: Request, session: SessionDep, settings: SettingsDep,
                       cache: SessionCacheDep, name: str,
                       version: Annotated[int | None, Query(ge=1)] = None) -> Response:
    """Predict with the asked version, else the ``production`` alias, else the newest."""
    body = await request.body()

    def work() -> dict[str, Any]:
        row, model = load_for_request(session, cache, name, version)
        rows = parse_rows(body, n_features=model.n_features,
                          max_rows=settings.max_predict_rows)
        return {"model": name, "version": row.version, **predict(model, rows)}

    result = await run_in_threadpool(work)
    return Response(orjson.dumps(result), media_type="application/json")
