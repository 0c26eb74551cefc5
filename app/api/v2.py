"""Open Inference Protocol (/v2), as KServe and Triton define it. Health and server
metadata are open; model metadata and readiness need any valid key; infer needs a key that
may predict. Errors are ``{"error": ...}``."""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.api.deps import AnyKey, DirectoryDep, InferAccess, SessionDep, SettingsDep
from app.api.metrics import ServingMetrics
from app.api.resolve import find_target, parse_body, run_model
from app.config import Settings
from app.db import get_engine
from app.errors import BadRequest, KilnError
from app.registry.service import list_versions, resolve_serving_version
from app.serving.oip import HEADER_LENGTH, NAMES, InferRequest, decode, encode
from app.serving.preload import Preload
from app.serving.runtime import LoadedModel
from app.tables import ModelVersion, VersionStatus

router = APIRouter(prefix="/v2", tags=["inference protocol"])


def _package_version() -> str:
    try:
        return version("modelkiln")
    except PackageNotFoundError:
        return "0+unknown"


@router.get("")
def server_metadata() -> dict[str, object]:
    """Server name, version and supported protocol extensions."""
    return {"name": "modelkiln", "version": _package_version(),
            "extensions": ["binary_tensor_data"]}


@router.get("/health/live")
def live() -> dict[str, bool]:
    """The process is up."""
    return {"live": True}


@router.get("/health/ready")
def ready(request: Request, settings: SettingsDep) -> Response:
    """Ready when the registry database answers and the models named in
    ``KILN_PRELOAD_MODELS`` have been loaded and warmed up."""
    progress: Preload = request.app.state.preload
    if not progress.done:
        return JSONResponse({"ready": False, "error": f"loading models: {len(progress.loaded)} "
                             f"of {len(progress.names) or '?'} loaded"}, status_code=503)
    try:
        with get_engine(settings.database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        return JSONResponse({"ready": False, "error": f"database unavailable: {error}"[:500]},
                            status_code=503)
    return JSONResponse({"ready": True})


def _metadata(row: ModelVersion, name: str, versions: list[int]) -> dict[str, Any]:
    return {"name": name, "versions": [str(number) for number in versions],
            "platform": "onnxruntime_onnx", "inputs": row.signature["inputs"],
            "outputs": row.signature["outputs"]}


def _live_versions(session: Session, name: str) -> list[int]:
    rows, _ = list_versions(session, name, limit=500, offset=0)
    return sorted(row.version for row in rows if row.status == VersionStatus.LIVE)


@router.get("/models/{name}", dependencies=[AnyKey])
@router.get("/models/{name}/versions/{version}", dependencies=[AnyKey])
def model_metadata(session: SessionDep, name: str, version: int | None = None) -> Response:
    """Inputs and outputs with names, datatypes and shapes (-1 for the batch)."""
    row = resolve_serving_version(session, name, version)
    versions = [row.version] if version is not None else _live_versions(session, name)
    return JSONResponse(_metadata(row, name, versions))


@router.get("/models/{name}/ready", dependencies=[AnyKey])
@router.get("/models/{name}/versions/{version}/ready", dependencies=[AnyKey])
async def model_ready(directory: DirectoryDep, name: str, version: int | None = None) -> Response:
    """Ready once the version's session is loaded and warmed up (this loads it)."""
    await find_target(directory, name, version)
    return JSONResponse({"name": name, "ready": True})


def _check_inputs(model: LoadedModel, request: InferRequest, max_rows: int) -> np.ndarray:
    unknown = sorted(set(request.inputs) - {model.input_name})
    if unknown:
        raise BadRequest(f"unknown input(s) {unknown}; the model takes ['{model.input_name}']")
    if model.input_name not in request.inputs:
        raise BadRequest(f"missing input '{model.input_name}'")
    array = request.inputs[model.input_name]
    datatype = NAMES[array.dtype]
    if datatype != model.input_datatype:
        raise BadRequest(f"input '{model.input_name}' has datatype {datatype}; the model "
                         f"expects {model.input_datatype}")
    if tuple(array.shape[1:]) != model.input_shape or not 1 <= array.shape[0] <= max_rows:
        raise BadRequest(f"input '{model.input_name}' has shape {list(array.shape)}; the model "
                         f"expects [1 to {max_rows}, {', '.join(map(str, model.input_shape))}]")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BadRequest(f"input '{model.input_name}' contains NaN or Inf")
    return array


def _decode_checked(body: bytes, header_length: str | None, model: LoadedModel,
                    settings: Settings) -> InferRequest:
    limit = min(settings.max_tensor_elements, settings.max_predict_rows * model.n_features)
    decoded = decode(body, header_length, max_elements=limit)
    _check_inputs(model, decoded, settings.max_predict_rows)
    wanted = decoded.outputs if decoded.outputs is not None else [model.output_name]
    unknown = sorted(set(wanted) - {model.output_name})
    if unknown:
        raise BadRequest(f"unknown output(s) {unknown}; the model has ['{model.output_name}']")
    return decoded


@router.post("/models/{name}/infer", dependencies=[InferAccess])
@router.post("/models/{name}/versions/{version}/infer", dependencies=[InferAccess])
async def infer(request: Request, name: str, version: int | None = None) -> Response:
    """Run the model on tensors sent as JSON or with the binary tensor extension."""
    state = request.app.state
    metrics: ServingMetrics = state.metrics
    arrived = time.perf_counter()
    body = await request.body()
    header_length = request.headers.get(HEADER_LENGTH)
    try:
        target = await find_target(state.directory, name, version)
        started = time.perf_counter()
        model = target.model
        decoded = await parse_body(len(body), lambda: _decode_checked(
            body, header_length, model, state.settings))
        computing = time.perf_counter()
        output = await run_model(target, decoded.inputs[model.input_name])
        computed = time.perf_counter()
        content, headers = encode(name, target.version, decoded, {model.output_name: output})
        metrics.succeeded(name, target.version, "v2", queue_s=started - arrived,
                          compute_s=computed - computing)
    except KilnError as error:
        metrics.failed(name, version, "v2", error.status_code)
        raise
    return Response(content, headers=headers)
