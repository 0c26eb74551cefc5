"""A minimal predict server for the serving benchmark: a raw ASGI app that decodes one JSON
row with orjson, runs onnxruntime and encodes the answer; no auth, limits, errors or
metrics. It shows what the model plus JSON cost on top of the floor."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import orjson
from starlette.types import Receive, Scope, Send

from bench.serving_floor import lifespan

_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
SESSION = ort.InferenceSession(
    os.environ.get("REFERENCE_MODEL", "model.onnx"), _options, providers=["CPUExecutionProvider"]
)
HEADERS = [(b"content-type", b"application/json")]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    rows = np.asarray(orjson.loads(body)["inputs"], dtype=np.float32)
    output = SESSION.run(None, {"input": rows})[0]
    answer = orjson.dumps(
        {"predictions": output.argmax(axis=1).tolist(), "probabilities": output.tolist()}
    )
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*HEADERS, (b"content-length", str(len(answer)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": answer})
