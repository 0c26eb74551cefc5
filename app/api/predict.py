"""POST /v1/models/{name}/predict: JSON rows in, original labels (or values) out.

The work is the inference core's with the ``/v1`` codec (``app.serving.codecs``); the fast
path (``app.api.fast_path``) serves this route ahead of FastAPI's routing, and this
declaration documents it and handles what the fast path leaves to FastAPI."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.api.deps import InferAccess
from app.api.errors_schema import V1_ERRORS
from app.api.fast_path import payload_of
from app.api.inference import meta_of
from app.api.params import ModelName, VersionQuery
from app.api.schemas import PredictRequest, PredictResponse
from app.api.state import gateway_of
from app.serving.codecs import PREDICT

router = APIRouter(prefix="/v1/models", tags=["predict"], responses=V1_ERRORS)

_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
    }
}


@router.post(
    "/{name}/predict",
    response_model=PredictResponse,
    dependencies=[InferAccess],
    openapi_extra=_BODY_SCHEMA,
    summary="Predict rows",
)
async def predict_rows(request: Request, name: ModelName, version: VersionQuery = None) -> Response:
    """Predict with the asked version, else the ``production`` alias (a model's first
    version takes it; a later one serves once promoted). A model without the alias (it was
    deleted) is served by its newest live version a search or an upload registered, never
    by a compression variant on its own. A classifier's answer names the class of each
    column of ``probabilities`` in ``classes``."""
    answer = await gateway_of(request.app).core.infer(
        PREDICT, name, version, payload_of(await request.body(), None), meta_of(request)
    )
    return Response(answer.body, headers=answer.headers)
