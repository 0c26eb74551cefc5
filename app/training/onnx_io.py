"""The interface every exported model shares, torch-free: one input ``input`` [batch,
features], one output ``output`` [batch, classes or 1], the default-domain opset, and the
clean-up every exported graph gets. The table families' graphs (built without torch) and
the torch export (``app.training.export``) both use it."""

from __future__ import annotations

import onnx

INPUT_NAME = "input"
OUTPUT_NAME = "output"
OPSET = 18


def compact_onnx(model: onnx.ModelProto) -> None:
    """Drop what exporters and tools record for debugging (per-node stack traces with this
    machine's paths, value infos, doc strings, node names) and give internal tensors short
    names. On a small model that is a tenth of the file, and it keeps source paths out of
    artifacts that users download. Graph inputs and outputs keep their names."""
    graph = model.graph
    for number, node in enumerate(graph.node):
        del node.metadata_props[:]
        node.doc_string = ""
        node.name = f"n{number:x}"  # unique: onnxruntime's quantizer keys nodes by name
    del graph.value_info[:]
    model.doc_string = ""
    del model.metadata_props[:]
    public = {value.name for value in [*graph.input, *graph.output]}
    renamed: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in public:
            return name
        return renamed.setdefault(name, f"t{len(renamed):x}")

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
        tensor.doc_string = ""
    for node in graph.node:
        node.input[:] = [short(name) for name in node.input]
        node.output[:] = [short(name) for name in node.output]
