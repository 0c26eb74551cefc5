"""MLServer's custom runtime serving an ONNX file with onnxruntime, as MLServer's docs show a
custom ``MLModel``. Loaded by ``mlserver start`` from the folder ``bench/serving_peers.py``
writes (model-settings.json names this class); imports nothing of ModelKiln."""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        path = self.settings.parameters.uri
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        rows = NumpyCodec.decode_input(payload.inputs[0])
        output = self.session.run(None, {"input": rows})[0]
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output("output", output)],
        )
