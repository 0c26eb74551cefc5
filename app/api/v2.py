"""Open Inference Protocol (/v2), as KServe and Triton define it. Health and server
metadata are open; model metadata and readiness need any valid key; infer needs a key that
may predict. Errors are ``{"error": ...}``."""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from app.api.deps import AnyKey, DirectoryDep, InferAccess, SessionDep, SettingsDep
from app.api.errors_schema import V2_ERRORS
from app.api.fast_path import payload_of
from app.api.inference import meta_of
from app.api.params import IdPath, ModelName
from app.api.state import gateway_of
from app.contracts.enums import VersionStatus
from app.contracts.signature import TensorSpec
from app.core.config import Settings
from app.core.db import Session, ping
from app.jobs.broker_check import CachedProbe, broker_probe
from app.registry.service import list_versions, resolve_serving_version
from app.serving.codecs import INFER
from app.serving.directory import ServingDirectory
from app.serving.oip import HEADER_LENGTH
from app.serving.preload import Preload
from app.tables import ModelVersion

router = APIRouter(prefix="/v2", tags=["inference protocol"], responses=V2_ERRORS)


def package_version() -> str:
    try:
        return version("modelkiln")
    except PackageNotFoundError:
        return "0+unknown"


@router.get("")
def server_metadata() -> dict[str, object]:
    """Server name, version and supported protocol extensions."""
    return {"name": "modelkiln", "version": package_version(), "extensions": ["binary_tensor_data"]}


@router.get("/health/live")
def live() -> dict[str, bool]:
    """The process is up."""
    return {"live": True}


@functools.lru_cache(maxsize=32)
def _database_probe(url: str) -> CachedProbe:
    def unavailable(error: BaseException) -> str:
        reason = " ".join(str(error).split()) or type(error).__name__
        return f"database unavailable (KILN_DATABASE_URL): {reason}"[:500]

    return CachedProbe(functools.partial(ping, url), unavailable)


def not_ready_because(progress: Preload, settings: Settings) -> str | None:
    """Why the server is not ready (models still loading, the registry database or the
    broker not answering: each asked at most every couple of seconds), or None."""
    if not progress.done:
        return f"loading models: {len(progress.loaded)} of {len(progress.names) or '?'} loaded"
    return (
        _database_probe(settings.database_url).problem()
        or broker_probe(settings.broker_url).problem()
    )


@router.get("/health/ready")
def ready(request: Request, settings: SettingsDep) -> Response:
    """Ready when the registry database and the broker answer and the models named in
    ``KILN_PRELOAD_MODELS`` have been loaded and warmed up; else 503 with the reason."""
    reason = not_ready_because(gateway_of(request.app).preload, settings)
    if reason is not None:
        return JSONResponse({"ready": False, "error": reason}, status_code=503)
    return JSONResponse({"ready": True})


class TensorMetadata(BaseModel):
    """A tensor as the protocol's metadata describes it (the column details are on
    ``GET /v1/models/{name}/versions/{version}``)."""

    name: str
    datatype: str
    shape: list[int]

    @classmethod
    def of(cls, spec: TensorSpec) -> TensorMetadata:
        return cls(name=spec.name, datatype=spec.datatype, shape=spec.shape)


class ModelMetadata(BaseModel):
    """The protocol's model metadata (HTTP's JSON body, gRPC's ModelMetadataResponse)."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


def _metadata(row: ModelVersion, name: str, versions: list[int]) -> ModelMetadata:
    return ModelMetadata(
        name=name,
        versions=[str(number) for number in versions],
        platform="onnxruntime_onnx",
        inputs=[TensorMetadata.of(spec) for spec in row.signature.inputs if spec.required],
        outputs=[TensorMetadata.of(spec) for spec in row.signature.outputs],
    )


def _live_versions(session: Session, name: str) -> list[int]:
    rows, _ = list_versions(session, name, limit=500, offset=0)
    return sorted(row.version for row in rows if row.status == VersionStatus.LIVE)


def metadata_of(session: Session, name: str, version: int | None) -> ModelMetadata:
    """The protocol's model metadata: of the serving version and every live version, or
    of one version."""
    row = resolve_serving_version(session, name, version)
    return _metadata(row, name, [row.version] if version else _live_versions(session, name))


@router.get("/models/{name}", dependencies=[AnyKey])
def model_metadata(session: SessionDep, name: ModelName) -> Response:
    """Inputs and outputs with names, datatypes and shapes (-1 for the batch)."""
    return JSONResponse(metadata_of(session, name, None).model_dump())


@router.get("/models/{name}/versions/{version}", dependencies=[AnyKey])
def version_metadata(session: SessionDep, name: ModelName, version: IdPath) -> Response:
    """One version's inputs and outputs."""
    return JSONResponse(metadata_of(session, name, version).model_dump())


async def _ready(directory: ServingDirectory, name: str, version: int | None) -> Response:
    await run_in_threadpool(directory.check_servable, name, version)
    return JSONResponse({"name": name, "ready": True})


@router.get("/models/{name}/ready", dependencies=[AnyKey])
async def model_ready(directory: DirectoryDep, name: ModelName) -> Response:
    """Ready when the serving version resolves and its artifact is in place. This never
    loads a model (so a probe cannot evict others): models load on first inference, or at
    start with ``KILN_PRELOAD_MODELS``."""
    return await _ready(directory, name, None)


@router.get("/models/{name}/versions/{version}/ready", dependencies=[AnyKey])
async def version_ready(directory: DirectoryDep, name: ModelName, version: IdPath) -> Response:
    """Ready when that version is live and its artifact is in place (nothing is loaded)."""
    return await _ready(directory, name, version)


async def _infer(request: Request, name: str, version: int | None) -> Response:
    payload = payload_of(await request.body(), request.headers.get(HEADER_LENGTH))
    answer = await gateway_of(request.app).core.infer(
        INFER, name, version, payload, meta_of(request)
    )
    return Response(answer.body, headers=answer.headers)


@router.post("/models/{name}/infer", dependencies=[InferAccess])
async def infer(request: Request, name: ModelName) -> Response:
    """Run the model on tensors sent as JSON or with the binary tensor extension (served
    by the inference core, ahead of FastAPI's routing: ``app.api.fast_path``)."""
    return await _infer(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", dependencies=[InferAccess])
async def infer_version(request: Request, name: ModelName, version: IdPath) -> Response:
    """Run one version of the model (see ``infer``)."""
    return await _infer(request, name, version)
