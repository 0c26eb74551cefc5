"""KServe's Python ModelServer serving an ONNX file with onnxruntime (OIP v2 REST, binary
extension included, and gRPC), as its docs show a custom predictor. Run with the Python of
``.bench/kserve`` (``make bench-venvs``); imports nothing of ModelKiln.

    python bench/peers/kserve_server.py MODEL.onnx HTTP_PORT GRPC_PORT
"""

from __future__ import annotations

import sys

import onnxruntime as ort

model_path, http_port, grpc_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# kserve parses the command line at import: no per-request log lines (as every server in
# the benchmark runs: ModelKiln with --no-access-log), the rest its defaults.
sys.argv = [sys.argv[0], "--configure_logging", "false", "--enable_latency_logging", "false"]

from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer  # noqa: E402


class OnnxModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.ready = True

    def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        rows = payload.inputs[0].as_numpy()
        output = self.session.run(None, {"input": rows})[0]
        tensor = InferOutput(name="output", shape=list(output.shape), datatype="FP32")
        tensor.set_data_from_numpy(output, binary_data=payload.use_binary_outputs)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[tensor],
            from_grpc=payload.from_grpc,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


if __name__ == "__main__":
    ModelServer(
        http_port=http_port,
        grpc_port=grpc_port,
        workers=1,
        enable_latency_logging=False,
    ).start([OnnxModel("digits", model_path)])
