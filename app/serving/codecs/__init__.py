"""The protocols the gateway serves inference over, in one table. The inference fast path
and the documented routes find a request's codec here (``HTTP_CODECS``, by path), the gRPC
servicer takes ``GRPC``, the error handlers take each HTTP protocol's error shape by path
prefix (``error_key_for``), and the metrics label each request with its codec's name. A new
protocol (or verb) is a codec module and a line below."""

from __future__ import annotations

from typing import Any

from app.serving.codecs.base import Codec, HttpCodec
from app.serving.codecs.grpc import GrpcInferCodec
from app.serving.codecs.v1 import PredictCodec
from app.serving.codecs.v2 import InferCodec

PREDICT = PredictCodec()
INFER = InferCodec()
GRPC = GrpcInferCodec()

HTTP_CODECS: tuple[HttpCodec[Any], ...] = (PREDICT, INFER)
CODECS: dict[str, Codec[Any, Any]] = {codec.name: codec for codec in (PREDICT, INFER, GRPC)}


def error_key_for(path: str) -> str:
    """The key of an error body on ``path``: the protocol's own under its prefix (the
    inference protocol's ``error`` on /v2), else ``detail``."""
    for codec in HTTP_CODECS:
        if path.startswith(codec.prefix + "/") or path == codec.prefix:
            return codec.error_key
    return "detail"
