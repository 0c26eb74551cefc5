"""The floor of the serving benchmark: a raw ASGI app on the same uvicorn that reads the
whole body and answers a constant. Nothing a server can do per request costs less."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

ANSWER = b'{"model":"digits","version":1,"predictions":[0]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def lifespan(receive: Receive, send: Send) -> None:
    """Start-up and shut-down with nothing to do (what uvicorn's lifespan scope wants)."""
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})
