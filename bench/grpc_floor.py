"""The floor of gRPC serving in Python: grpcio's threaded server answering every
ModelInfer with one prebuilt response (no decoding, no model). Nothing a grpcio server can
do per call costs less; bench/serving_peers.py puts it beside the servers it measures.

    python bench/grpc_floor.py PORT
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app.serving.grpc_schema import METHODS, SERVICE, message

response = message("ModelInferResponse")(model_name="digits", model_version="1")
response.outputs.add(name="output", datatype="FP32", shape=[1, 10])
response.raw_output_contents.append(bytes(40))
ANSWER = response.SerializeToString()


def answer(request: bytes, context: Any) -> bytes:
    return ANSWER


if __name__ == "__main__":
    server = grpc.server(ThreadPoolExecutor(8))
    handlers = {name: grpc.unary_unary_rpc_method_handler(answer) for name in METHODS}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    server.add_insecure_port(f"127.0.0.1:{int(sys.argv[1])}")
    server.start()
    server.wait_for_termination()
