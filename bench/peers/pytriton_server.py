"""PyTriton: Triton's C++ front end (HTTP with the binary extension, gRPC) and its dynamic
batcher around an onnxruntime call in Python, as PyTriton's docs show ``@batch``. Run with
the Python of ``.bench/pytriton``; imports nothing of ModelKiln.

    python bench/peers/pytriton_server.py MODEL.onnx HTTP_PORT GRPC_PORT
"""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

model_path, http_port, grpc_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
features = session.get_inputs()[0].shape[1]
classes = session.get_outputs()[0].shape[1]


@batch
def infer(input: np.ndarray) -> dict[str, np.ndarray]:
    return {"output": session.run(None, {"input": input})[0]}


config = TritonConfig(
    http_port=http_port,
    grpc_port=grpc_port,
    http_address="127.0.0.1",
    grpc_address="127.0.0.1",
    allow_metrics=False,
    log_verbose=0,
)
with Triton(config=config) as triton:
    triton.bind(
        model_name="digits",
        infer_func=infer,
        inputs=[Tensor(name="input", dtype=np.float32, shape=(features,))],
        outputs=[Tensor(name="output", dtype=np.float32, shape=(classes,))],
        config=ModelConfig(max_batch_size=4096, batcher=DynamicBatcher()),
        strict=False,
    )
    triton.serve()
