"""The resources the walking tests point their paths at: a model ``walked`` whose graph
serves in the gateway, and a value for every path parameter of the API."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from app.core.config import Settings
from tests.conftest import register

SAMPLE = {
    "name": "walked",
    "alias": "production",
    "version": "1",
    "dataset_id": "1",
    "job_id": "1",
    "key_id": "999999",
    "part": "1",
}


def url(template: str, **values: str) -> str:
    """``template`` with each path parameter filled from ``values``, else ``SAMPLE``."""
    return re.sub(r"\{(\w+)\}", lambda match: values.get(match[1], SAMPLE[match[1]]), template)


def walked_graph(path: Path) -> Path:
    """A 4-input, 3-class dense graph named as ``register`` signs it (input, output)."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["output"])],
        "walked",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.ones((4, 3), np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.write_bytes(model.SerializeToString())
    return path


def register_walked(settings: Settings, folder: Path) -> int:
    """Register ``walked_graph`` as the next version of ``walked``; its number."""
    return register(
        settings, walked_graph(folder / "walked.onnx"), name="walked", labels=["a", "b", "c"]
    )
