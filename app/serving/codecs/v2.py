"""``POST /v2/models/{name}[/versions/{v}]/infer``: the Open Inference Protocol over HTTP,
JSON or with the binary tensor extension (``app.serving.oip`` reads and writes the bodies;
``app.serving.codecs.tensors`` checks the tensors against the model)."""

from __future__ import annotations

import re
from typing import ClassVar

import numpy as np

from app.contracts.traffic import REQUEST_ID_HEADER, VERSION_HEADER
from app.serving.codecs.base import Answer, HttpCodec, Limits, Payload
from app.serving.codecs.tensors import infer_feeds
from app.serving.oip import InferRequest, decode, encode
from app.serving.runtime import Feeds, LoadedModel

_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([1-9][0-9]{0,8}))?/infer")


class InferCodec(HttpCodec[InferRequest]):
    """Tensors in and out; errors are ``{"error": ...}`` on every ``/v2`` path."""

    name: ClassVar[str] = "v2"
    prefix: ClassVar[str] = "/v2"
    error_key: ClassVar[str] = "error"
    path: ClassVar[re.Pattern[str]] = _PATH

    def match(self, path: str, query: bytes) -> tuple[str, int | None] | None:
        found = _PATH.fullmatch(path)
        if found is None or query:
            return None
        return found[1], int(found[2]) if found[2] else None

    def decode(
        self, payload: Payload, model: LoadedModel, limits: Limits
    ) -> tuple[InferRequest, Feeds]:
        request = decode(payload.body, payload.header_length, max_elements=limits.elements(model))
        return request, infer_feeds(model, request, limits.max_rows)

    def encode(
        self,
        name: str,
        version: int,
        model: LoadedModel,
        parsed: InferRequest,
        output: np.ndarray,
        request_id: str | None,
    ) -> Answer:
        body, headers = encode(name, version, parsed, {model.output_name: output})
        headers[VERSION_HEADER] = str(version)
        if request_id is not None:
            headers[REQUEST_ID_HEADER] = request_id
        return Answer(body, headers)
