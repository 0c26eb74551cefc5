"""Signing in to the dashboard: the API key goes in a cookie that lives for the browser
session only (no expiry), is sent only to ``/ui`` on this site (``SameSite=Strict``), and
that scripts cannot read (``HttpOnly``); it is never put in a URL. Every page checks the
key again, with the same cache and registry lookup as the API, so a revoked key signs
out at once. Forms that change something also need the request to come from this site
(``Origin``, or ``Sec-Fetch-Site``)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.api.state import gateway_of
from app.auth import Principal, check_scope
from app.contracts.enums import Scope
from app.core.errors import Forbidden, KilnError
from app.serving.directory import ServingDirectory

COOKIE = "kiln_ui_key"
PATH = "/ui"


class SignInNeeded(Exception):
    """No valid key in the cookie: the page sends the browser to the sign-in page."""


@dataclass(frozen=True)
class Viewer:
    """Who is looking, and what their key allows the pages to offer."""

    principal: Principal

    @property
    def can_write(self) -> bool:
        return self._grants(Scope.WRITE)

    @property
    def can_infer(self) -> bool:
        return self._grants(Scope.INFER)

    def _grants(self, scope: Scope) -> bool:
        try:
            check_scope(self.principal, scope)
        except Forbidden:
            return False
        return True


async def principal_for(directory: ServingDirectory, secret: str) -> Principal:
    """The key's principal (raises Unauthorized), through the API's key cache."""
    principal = directory.cached_principal(secret)
    if principal is None:
        principal = await run_in_threadpool(directory.authenticate, secret)
    return principal


async def viewer(request: Request) -> Viewer:
    """The signed-in viewer, who must be able to read; else SignInNeeded."""
    secret = request.cookies.get(COOKIE)
    if not secret:
        raise SignInNeeded
    try:
        principal = await principal_for(gateway_of(request.app).directory, secret)
    except KilnError:
        raise SignInNeeded from None
    check_scope(principal, Scope.READ)  # a key for inference only sees no pages
    return Viewer(principal)


def same_site(request: Request) -> None:
    """Refuse a state-changing form sent from another site (403)."""
    origin = request.headers.get("origin")
    fetch_site = request.headers.get("sec-fetch-site")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin != own:
        raise Forbidden(f"form sent from {origin!r}, not from this site")
    if origin is None and fetch_site not in (None, "same-origin", "none"):
        raise Forbidden("form sent from another site")


def keep_key(response: Response, request: Request, secret: str) -> None:
    response.set_cookie(
        COOKIE,
        secret,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def forget_key(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")
