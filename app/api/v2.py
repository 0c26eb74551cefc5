"""Open Inference Protocol (/v2): server health and metadata, open without a key."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.deps import SettingsDep
from app.db import get_engine

router = APIRouter(prefix="/v2", tags=["inference protocol"])


def _package_version() -> str:
    try:
        return version("modelkiln")
    except PackageNotFoundError:
        return "0+unknown"


@router.get("")
def server_metadata() -> dict[str, object]:
    """Server name, version and supported protocol extensions."""
    return {"name": "modelkiln", "version": _package_version(), "extensions": []}


@router.get("/health/live")
def live() -> dict[str, bool]:
    """The process is up."""
    return {"live": True}


@router.get("/health/ready")
def ready(settings: SettingsDep) -> Response:
    """Ready when the registry database answers."""
    try:
        with get_engine(settings.database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        return JSONResponse({"ready": False, "error": f"database unavailable: {error}"[:500]},
                            status_code=503)
    return JSONResponse({"ready": True})
