"""Signing in to the dashboard: the key is checked once, and the cookie then holds a
session token (``app.auth.ui_sessions``), never the API key. The cookie lives for the
browser session only (no expiry; the token itself ends after ``KILN_UI_SESSION_S``), is
sent only to ``/ui`` on this site (``SameSite=Strict``), is ``Secure`` when the site is
reached over https (as ``KILN_PUBLIC_URL`` says, behind a TLS proxy), and scripts cannot
read it (``HttpOnly``); it is never put in a URL. Every page checks the token again
against the registry, so a revoked key signs out at once. Forms that change something
also need the request to come from this site (``Origin``, or ``Sec-Fetch-Site``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.api.state import gateway_of
from app.auth import Principal, check_scope, hash_secret
from app.auth.ui_sessions import issue_token, session_principal
from app.contracts.enums import Scope
from app.core.db import session_scope
from app.core.errors import Forbidden, KilnError
from app.serving.directory import ServingDirectory

COOKIE = "kiln_ui_session"
PATH = "/ui"


class SignInNeeded(Exception):
    """No valid session in the cookie: the page sends the browser to the sign-in page."""


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


def _session_principal(request: Request, token: str) -> Principal:
    state = gateway_of(request.app)
    with session_scope(state.settings.database_url) as session:
        return session_principal(session, state.ui_secret, token)


async def viewer(request: Request) -> Viewer:
    """The signed-in viewer, who must be able to read; else SignInNeeded."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInNeeded
    try:
        principal = await run_in_threadpool(_session_principal, request, token)
    except KilnError:
        raise SignInNeeded from None
    check_scope(principal, Scope.READ)  # a key for inference only sees no pages
    return Viewer(principal)


def own_origins(request: Request) -> set[str]:
    """The origins this site is reached at: the request's own, and KILN_PUBLIC_URL's."""
    origins = {f"{request.url.scheme}://{request.url.netloc}"}
    public = gateway_of(request.app).settings.public_origin
    if public:
        origins.add(public)
    return origins


def same_site(request: Request) -> None:
    """Refuse a state-changing form sent from another site (403)."""
    origin = request.headers.get("origin")
    fetch_site = request.headers.get("sec-fetch-site")
    if origin is not None and origin not in own_origins(request):
        raise Forbidden(f"form sent from {origin[:80]!r}, not from this site")
    if origin is None and fetch_site not in (None, "same-origin", "none"):
        raise Forbidden("form sent from another site")


def start_session(response: Response, request: Request, principal: Principal, key: str) -> None:
    """Set the cookie to a new session token for the key that just signed in."""
    state = gateway_of(request.app)
    settings = state.settings
    token = issue_token(state.ui_secret, principal.key_id, hash_secret(key), settings.ui_session_s)
    public = settings.public_origin
    secure = public.startswith("https://") if public else request.url.scheme == "https"
    response.set_cookie(COOKIE, token, path=PATH, httponly=True, samesite="strict", secure=secure)


def end_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")


ViewerDep = Annotated[Viewer, Depends(viewer)]  # a page's logged-in viewer
