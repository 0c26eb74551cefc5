"""``/docs`` (Swagger UI) and ``/redoc`` with their scripts, styles and icon served by the
gateway itself, from the ``fastapi-offline`` package's copy of them: the pages work on a
machine with no way out to a CDN. And the OpenAPI document they read, with form fields
described as FastAPI reads them."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS_PATH = "/static/docs"
ASSETS = Path(str(files("fastapi_offline").joinpath("static")))


_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


def forms_as_read(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with its form bodies' fields as FastAPI reads a form, which pydantic's
    schemas do not know: a form has no null (an absent field is how it says None, and the
    text ``null`` is a value), and an empty text field counts as absent (so a required one
    needs a character). Changed in place; returned."""
    schemas = document.get("components", {}).get("schemas", {})
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            content = (
                operation.get("requestBody", {}).get("content", {})
                if isinstance(operation, dict)
                else {}
            )
            for media in _FORMS:
                ref = content.get(media, {}).get("schema", {}).get("$ref", "")
                body = schemas.get(ref.rsplit("/", 1)[-1])
                if body is not None:
                    _form_fields(body)
    return document


def _form_fields(body: dict[str, Any]) -> None:
    required = set(body.get("required", ()))
    for name, field in body.get("properties", {}).items():
        branches = field.get("anyOf")
        if branches is not None:
            kept = [branch for branch in branches if branch != {"type": "null"}]
            del field["anyOf"]
            field.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
        if (
            name in required
            and field.get("type") == "string"
            and "contentMediaType" not in field
            and field.get("minLength", 0) < 1
        ):
            field["minLength"] = 1


def install_docs(app: FastAPI) -> None:
    """Serve the two docs pages and their assets; the app is made with ``docs_url=None``
    and ``redoc_url=None`` so that FastAPI's CDN-loading pages are not there. The OpenAPI
    document describes forms as they are read (``forms_as_read``)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = forms_as_read(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's way to extend it
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger_ui(_: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
            # No badge fetched from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
        )

    async def redoc(_: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )

    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
