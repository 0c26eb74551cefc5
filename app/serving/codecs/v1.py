"""``POST /v1/models/{name}/predict``: JSON rows or records in, labels and probabilities (or
values) out (``app.serving.predict`` reads and writes the bodies)."""

from __future__ import annotations

import re
from typing import ClassVar

import numpy as np
import orjson

from app.serving.codecs.base import JSON, Answer, HttpCodec, Limits, Payload, answer_headers
from app.serving.predict import answer, parse_feeds
from app.serving.runtime import Feeds, LoadedModel

_PATH = re.compile(r"/v1/models/([^/]+)/predict")
_VERSION_QUERY = re.compile(rb"version=([1-9][0-9]{0,8})")


class PredictCodec(HttpCodec[None]):
    """The simple predict protocol; errors are ``{"detail": ...}`` like every ``/v1`` route."""

    name: ClassVar[str] = "v1"
    prefix: ClassVar[str] = "/v1"
    error_key: ClassVar[str] = "detail"
    path: ClassVar[re.Pattern[str]] = _PATH

    def match(self, path: str, query: bytes) -> tuple[str, int | None] | None:
        found = _PATH.fullmatch(path)
        if found is None:
            return None
        if not query:
            return found[1], None
        version = _VERSION_QUERY.fullmatch(query)
        return None if version is None else (found[1], int(version[1]))

    def decode(self, payload: Payload, model: LoadedModel, limits: Limits) -> tuple[None, Feeds]:
        return None, parse_feeds(payload.body, model, max_rows=limits.max_rows)

    def encode(
        self,
        name: str,
        version: int,
        model: LoadedModel,
        parsed: None,
        output: np.ndarray,
        request_id: str | None,
    ) -> Answer:
        body = orjson.dumps({"model": name, "version": version, **answer(model, output)})
        return Answer(body, answer_headers(JSON, version, request_id))
