"""Adding the dashboard to the gateway: its pages, its static files (our CSS and script,
and Plotly's browser bundle from the installed ``plotly`` package: nothing from a CDN),
the sign-in redirect, and the headers every ``/ui`` answer carries: a Content Security
Policy (``app.ui.policy``), ``X-Frame-Options: DENY`` for browsers that predate
``frame-ancestors``, no MIME sniffing, and no referrer beyond this site."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ui.explain_panel import router as explain_router
from app.ui.pages import router
from app.ui.policy import policy
from app.ui.session import SignInNeeded

STATIC = Path(__file__).parent / "static"
DASHBOARD_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class DashboardHeaders:
    """Adds DASHBOARD_HEADERS, and the strict policy unless the page set its own, to every
    answer under /ui (pages, redirects, static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/ui" or path.startswith("/ui/")):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"content-security-policy" for name, _ in headers):
                    headers.append((b"content-security-policy", policy(webgl=False).encode()))
                message["headers"] = [*headers, *DASHBOARD_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


PLOTLY_JS = Path(str(files("plotly").joinpath("package_data", "plotly.min.js")))


def install_ui(app: FastAPI) -> None:
    app.include_router(router)
    app.include_router(explain_router)
    app.add_middleware(DashboardHeaders)

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
