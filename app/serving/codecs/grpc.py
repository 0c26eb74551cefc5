"""``inference.GRPCInferenceService/ModelInfer``: the Open Inference Protocol over gRPC
(``app.serving.oip_grpc`` reads and writes the messages). Errors become gRPC status codes
in ``app.api.grpc_service``, with the message its HTTP twin would give."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from app.serving.codecs.base import Codec, Limits, Payload
from app.serving.codecs.tensors import infer_feeds
from app.serving.oip import InferRequest
from app.serving.oip_grpc import decode_grpc, encode_grpc
from app.serving.runtime import Feeds, LoadedModel


class GrpcInferCodec(Codec[InferRequest, Any]):
    """A ``ModelInferRequest`` in, a ``ModelInferResponse`` out."""

    name: ClassVar[str] = "grpc"

    def decode(
        self, payload: Payload, model: LoadedModel, limits: Limits
    ) -> tuple[InferRequest, Feeds]:
        request = decode_grpc(payload.body, max_elements=limits.elements(model))
        return request, infer_feeds(model, request, limits.max_rows)

    def encode(
        self,
        name: str,
        version: int,
        model: LoadedModel,
        parsed: InferRequest,
        output: np.ndarray,
        request_id: str | None,
    ) -> Any:
        # The answer names its version (model_version); a logged request without an id of
        # its own gets the one it was logged under (id), as HTTP's headers say both.
        if request_id is not None and not parsed.request_id:
            parsed = dataclasses.replace(parsed, request_id=request_id)
        return encode_grpc(name, version, parsed, {model.output_name: output})
