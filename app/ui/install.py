"""Adding the dashboard to the gateway: its pages, its static files (our CSS and script,
and Plotly's browser bundle from the installed ``plotly`` package: nothing from a CDN),
and the sign-in redirect."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

from app.ui.pages import router
from app.ui.session import SignInNeeded

STATIC = Path(__file__).parent / "static"
PLOTLY_JS = Path(str(files("plotly").joinpath("package_data", "plotly.min.js")))


def install_ui(app: FastAPI) -> None:
    app.include_router(router)

    async def plotly_bundle(_: Request) -> FileResponse:
        return FileResponse(
            PLOTLY_JS,
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.add_route("/ui/static/plotly.min.js", plotly_bundle, include_in_schema=False)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

    @app.exception_handler(SignInNeeded)
    async def _sign_in(_request: Request, _error: SignInNeeded) -> RedirectResponse:
        return RedirectResponse("/ui/login", status_code=303)
