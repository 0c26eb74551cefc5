"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``), served next
to the HTTP gateway in the same process: the same session cache, key checks
(``authorization: Bearer <key>`` metadata), limits, inference path and metrics (protocol
``grpc``). Health and server metadata are open, as on ``/v2``.

The server is grpcio's threaded one, not its asyncio one on the gateway's event loop: each
call runs on a thread of its pool from start to end (the inference core's
``infer_blocking``, with the gRPC codec), and the event loop stays HTTP's. With the same
decode, run and encode of one row on one core, grpcio's threaded server made 3,372 calls/s
and its asyncio one (on uvloop) 2,610 on this machine; bench/results/serving_peers.md has
the floor of each protocol."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from app.api.inference import authorize_on_this_thread
from app.api.limits import MAX_ROUTE_KEY_CHARS
from app.api.state import GatewayState
from app.api.v2 import metadata_of, not_ready_because, package_version
from app.contracts.enums import Scope
from app.contracts.traffic import REQUEST_ID_HEADER, ROUTE_KEY_HEADER
from app.core.db import session_scope
from app.core.errors import BadRequest, NotFound, Unavailable
from app.core.failures import failure_of
from app.serving.codecs import GRPC
from app.serving.codecs.base import Payload, RequestMeta
from app.serving.grpc_schema import METHODS, SERVICE, message
from app.serving.request_log import valid_request_id
from app.serving.sandbox import SandboxDeadlinePassed, SandboxMemoryExceeded

logger = logging.getLogger(__name__)

CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}
Handler = Callable[[Any, grpc.ServicerContext], Any]


def _version(text: str) -> int | None:
    if not text:
        return None
    if (
        not text.isascii()  # str.isdigit takes '²' and '٣', which are no version numbers
        or not text.isdigit()
        or len(text) > 9
        or not 1 <= int(text) <= 999_999_999
        or text.startswith("0")
    ):
        raise BadRequest(f"model_version {text[:20]!r} is not a version number")
    return int(text)


def _authorization(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return str(value)
    return ""


def _meta(context: grpc.ServicerContext) -> RequestMeta:
    """The routing key and request id sent as metadata (the HTTP headers' names)."""
    found = {key: str(value) for key, value in context.invocation_metadata() or ()}
    route_key = found.get(ROUTE_KEY_HEADER)
    if route_key is not None and len(route_key) > MAX_ROUTE_KEY_CHARS:
        raise BadRequest(
            f"{ROUTE_KEY_HEADER}: at most {MAX_ROUTE_KEY_CHARS} characters, got {len(route_key)}"
        )
    return RequestMeta(route_key, valid_request_id(found.get(REQUEST_ID_HEADER)))


class InferenceService:
    """The service's calls; each failure is answered with the status code of its HTTP
    twin's status and the same message."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:
        return message("ServerLiveResponse")(live=True)

    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        reason = not_ready_because(self.state.preload, self.state.settings)
        return message("ServerReadyResponse")(ready=reason is None)

    def ServerMetadata(
        self,
        request: Any,
        context: grpc.ServicerContext,
    ) -> Any:
        return message("ServerMetadataResponse")(
            name="modelkiln", version=package_version(), extensions=["binary_tensor_data"]
        )

    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        authorize_on_this_thread(self.state.directory, _authorization(context), None)
        try:
            self.state.directory.check_servable(request.name, _version(request.version))
        except (NotFound, Unavailable):
            return message("ModelReadyResponse")(ready=False)
        return message("ModelReadyResponse")(ready=True)

    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        authorize_on_this_thread(self.state.directory, _authorization(context), None)
        version = _version(request.version)
        with session_scope(self.state.settings.database_url) as session:
            found = metadata_of(session, request.name, version)
        response = message("ModelMetadataResponse")(
            name=found.name, versions=found.versions, platform=found.platform
        )
        for tensors, described in (
            (response.inputs, found.inputs),
            (response.outputs, found.outputs),
        ):
            for tensor in described:
                tensors.add(**tensor.model_dump())
        return response

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        authorize_on_this_thread(self.state.directory, _authorization(context), Scope.INFER)
        return self.state.core.infer_blocking(
            GRPC,
            request.model_name,
            _version(request.model_version),
            Payload(request, request.ByteSize()),
            _meta(context),
        )


def _guarded(call: Handler) -> Handler:
    """``call`` with every failure turned into a gRPC status naming the problem."""

    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return call(request, context)
        except Exception as error:
            failure = failure_of(error)
            if failure.status >= 500 and not isinstance(error, Unavailable):
                logger.exception("gRPC call failed")
            code = CODES.get(failure.status, grpc.StatusCode.INTERNAL)
            if isinstance(error, SandboxDeadlinePassed):
                code = grpc.StatusCode.DEADLINE_EXCEEDED  # the run was stopped, not the call
            elif isinstance(error, SandboxMemoryExceeded):
                code = grpc.StatusCode.RESOURCE_EXHAUSTED
            context.abort(code, failure.message)

    return guarded


GRPC_THREADS = 8  # calls in progress at once (each holds its thread to the end)


def grpc_server(
    state: GatewayState,
    *,
    host: str,
    port: int,
    reuse_port: bool,
) -> grpc.Server:
    """The gRPC server (not started), on a pool of its own threads. ``reuse_port`` lets
    several gateway processes share the port; without it a port in use is an error."""
    limit = state.settings.max_request_bytes
    server = grpc.server(
        ThreadPoolExecutor(GRPC_THREADS, thread_name_prefix="kiln-grpc"),
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", 4 * limit),
            ("grpc.so_reuseport", int(reuse_port)),
        ],
    )
    service = InferenceService(state)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _guarded(getattr(service, name)),
            request_deserializer=message(request).FromString,
            response_serializer=message(response).SerializeToString,
        )
        for name, (request, response) in METHODS.items()
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    try:
        server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as error:
        raise RuntimeError(
            f"cannot serve gRPC on {host}:{port} (KILN_GRPC_PORT): {error}"
        ) from None
    return server
