"""Open Inference Protocol (/v2), as KServe and Triton define it. Health and server
metadata are open; model metadata and readiness need any valid key; infer needs a key that
may predict. Errors are ``{"error": ...}``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.api.deps import AnyKey, DirectoryDep, InferAccess, SessionDep, SettingsDep
from app.api.inference import find_target, infer_answer
from app.db import get_engine
from app.registry.service import list_versions, resolve_serving_version
from app.serving.oip import HEADER_LENGTH
from app.serving.preload import Preload
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


@router.post("/models/{name}/infer", dependencies=[InferAccess])
@router.post("/models/{name}/versions/{version}/infer", dependencies=[InferAccess])
async def infer(request: Request, name: str, version: int | None = None) -> Response:
    """Run the model on tensors sent as JSON or with the binary tensor extension (served
    by ``app.api.inference``, ahead of FastAPI's routing)."""
    answer = await infer_answer(request.app.state, name, version, await request.body(),
                                request.headers.get(HEADER_LENGTH))
    return Response(answer.body, headers=answer.headers)
