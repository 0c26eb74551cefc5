"""What a protocol is to the inference core: a codec that decodes a request into the
model's feeds and encodes the model's output as that protocol's answer. The core
(``app.serving.core``) does everything else once, for every protocol: resolve the version,
run it, count it, hand it to the monitors."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import orjson

from app.contracts.traffic import REQUEST_ID_HEADER, VERSION_HEADER
from app.serving.runtime import Feeds, LoadedModel

Parsed = TypeVar("Parsed")
Out = TypeVar("Out")
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Limits:
    """The gateway's bounds on one request (settings, read once)."""

    max_rows: int
    max_tensor_elements: int

    def elements(self, model: LoadedModel) -> int:
        """The most elements one input tensor of a request to ``model`` may declare."""
        return min(self.max_tensor_elements, self.max_rows * model.n_features)


@dataclass(frozen=True, slots=True)
class Payload:
    """A request as it arrived: an HTTP body (bytes) or a gRPC message, its size in bytes
    (what the monitors account it at), and how much of it is JSON (decoded on the event
    loop when small)."""

    body: Any
    size: int
    json_bytes: int = 0
    header_length: str | None = None  # the binary tensor extension's JSON header length


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What headers (or gRPC metadata) say about routing and logging: the key a split
    routes by (the same key, the same version) and the client's request id."""

    route_key: str | None = None
    request_id: str | None = None


NO_META = RequestMeta()


@dataclass(slots=True)
class Answer:
    """An HTTP response body with its headers."""

    body: bytes
    headers: dict[str, str]


def answer_headers(content_type: str, version: int, request_id: str | None) -> dict[str, str]:
    """The headers every HTTP answer carries: its type, the version that answered, and the
    id a logged request was kept under."""
    headers = {"content-type": content_type, VERSION_HEADER: str(version)}
    if request_id is not None:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


class Codec(ABC, Generic[Parsed, Out]):
    """One protocol: decode a request for a loaded model, encode its output. Stateless and
    thread-safe; ``name`` labels its metrics and its request-log rows."""

    name: ClassVar[str]

    @abstractmethod
    def decode(self, payload: Payload, model: LoadedModel, limits: Limits) -> tuple[Parsed, Feeds]:
        """What the client asked (kept for ``encode``) and the feeds; a 4xx names what is
        wrong."""

    @abstractmethod
    def encode(
        self,
        name: str,
        version: int,
        model: LoadedModel,
        parsed: Parsed,
        output: np.ndarray,
        request_id: str | None,
    ) -> Out:
        """The answer for ``output``, naming the version and the id it was logged under."""


class HttpCodec(Codec[Parsed, Answer]):
    """A protocol served over HTTP: which paths it answers (``match``) and the shape of its
    errors on every path under ``prefix``."""

    prefix: ClassVar[str]
    error_key: ClassVar[str]
    path: ClassVar[re.Pattern[str]]

    @abstractmethod
    def match(self, path: str, query: bytes) -> tuple[str, int | None] | None:
        """(model name, version or None) when this codec serves ``path`` with ``query``;
        None leaves the request to the documented routes, which explain what is wrong."""

    def error_body(self, message: str) -> bytes:
        return orjson.dumps({self.error_key: message})
