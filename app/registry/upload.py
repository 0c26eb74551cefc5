"""Validating an uploaded ONNX model before it becomes a version."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput
from app.evaluation.latency import latency_ms
from app.registry import MODEL_NAME_PATTERN
from app.registry.repository import ModelRepository
from app.registry.service import VersionDraft, register_version
from app.serving.runtime import open_session
from app.storage import ArtifactStore
from app.tables import ModelVersion

_ORT_TYPES = {"tensor(float)": "FP32"}
MAX_LABELS = 1000


@dataclass(frozen=True)
class CheckedModel:
    """What validation learned about an uploaded model."""

    signature: dict[str, Any]
    task: str
    class_labels: list[Any] | None
    n_params: int
    latency_p50_ms: float


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    """Every tensor stored in a graph, its nodes' attributes and subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _graph_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graph_tensors(subgraph)


def _refuse_external_data(model: onnx.ModelProto) -> None:
    for tensor in _graph_tensors(model.graph):
        if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
            where = next((entry.value for entry in tensor.external_data
                          if entry.key == "location"), "?")
            raise InvalidInput(f"model references external data (tensor {tensor.name!r} points "
                               f"at {where!r}); upload a single self-contained .onnx file")


def _parse_labels(labels: str | None) -> list[Any] | None:
    if labels is None or not labels.strip():
        return None
    try:
        parsed = json.loads(labels)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"labels: not valid JSON ({error.msg})") from None
    if (not isinstance(parsed, list) or not 2 <= len(parsed) <= MAX_LABELS
            or not all(isinstance(item, str | int) and not isinstance(item, bool)
                       for item in parsed)):
        raise InvalidInput(f"labels: expected a JSON list of 2 to {MAX_LABELS} strings or "
                           "integers")
    if len(set(parsed)) != len(parsed):
        raise InvalidInput("labels: repeated values")
    return parsed


def _dims(shape: list[Any]) -> list[int | None]:
    return [dim if isinstance(dim, int) and dim > 0 else None for dim in shape]


def check_onnx(path: Path, *, labels: str | None, task: str | None,
               threads: int) -> CheckedModel:
    """Decode, check, load on CPU and measure; InvalidInput names the first problem."""
    data = path.read_bytes()
    if not data:
        raise InvalidInput("file is empty: expected an ONNX model")
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise InvalidInput(f"file is not an ONNX model (or is truncated): {error}") from None
    if not model.graph.node:
        raise InvalidInput("file is not an ONNX model (or is truncated): the graph is empty")
    _refuse_external_data(model)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise InvalidInput(f"ONNX checker rejected the model: {str(error)[:500]}") from None
    try:
        session = open_session(data, threads)
    except Exception as error:
        raise InvalidInput(f"onnxruntime cannot load the model on CPU: {str(error)[:500]}") \
            from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise InvalidInput(f"model has {len(inputs)} inputs; exactly one is supported")
    source = inputs[0]
    if source.type not in _ORT_TYPES:
        raise InvalidInput(f"input {source.name!r} is {source.type}; float32 is supported")
    feature_dims = _dims(list(source.shape))[1:]
    if not feature_dims or None in feature_dims:
        raise InvalidInput(f"input {source.name!r} has shape {list(source.shape)}: every "
                           "dimension after the batch must be a fixed positive size")
    if outputs[0].type not in _ORT_TYPES:
        raise InvalidInput(f"output {outputs[0].name!r} is {outputs[0].type}; float32 scores "
                           "or values are supported")
    output_dims = _dims(list(outputs[0].shape))
    width = output_dims[1] if len(output_dims) == 2 else None
    if width is None:
        raise InvalidInput(f"output {outputs[0].name!r} has shape {list(outputs[0].shape)}; "
                           "expected [batch, classes or 1] with a fixed second dimension")
    class_labels = _parse_labels(labels)
    resolved = task or ("classification" if class_labels or width > 1 else "regression")
    if resolved == "classification":
        class_labels = class_labels or list(range(width))
        if len(class_labels) != width:
            raise InvalidInput(f"labels: {len(class_labels)} given but output "
                               f"{outputs[0].name!r} has {width} columns")
    elif class_labels is not None or width != 1:
        raise InvalidInput("a regression model takes no labels and must have one output "
                           f"column (output {outputs[0].name!r} has {width})")
    feature_shape = tuple(int(dim) for dim in feature_dims if dim is not None)
    probe = np.zeros((1, *feature_shape), dtype=np.float32)
    try:
        session.run(None, {source.name: probe})
    except Exception as error:
        raise InvalidInput(f"model fails on a zero input row: {str(error)[:500]}") from None
    signature = {
        "inputs": [{"name": source.name, "datatype": "FP32", "shape": [-1, *feature_shape]}],
        "outputs": [{"name": outputs[0].name, "datatype": "FP32", "shape": [-1, width]}],
    }
    n_params = sum(int(np.prod(tensor.dims)) for tensor in model.graph.initializer)
    latency = latency_ms(path, input_name=source.name, row_shape=feature_shape,
                         threads=threads, runs=50)
    return CheckedModel(signature=signature, task=resolved, class_labels=class_labels,
                        n_params=n_params, latency_p50_ms=latency["p50"])


def upload_version(session: Session, store: ArtifactStore, *, name: str, upload: Path,
                   labels: str | None, task: str | None, threads: int) -> ModelVersion:
    """Validate an uploaded ONNX file and register it as the next version of ``name``."""
    if not re.match(MODEL_NAME_PATTERN, name):
        raise InvalidInput(f"model name {name[:80]!r} must match {MODEL_NAME_PATTERN}")
    checked = check_onnx(upload, labels=labels, task=task, threads=threads)
    existing = ModelRepository(session).get_by_name(name)
    if existing is not None and existing.task != checked.task:
        raise Conflict(f"model {name!r} is a {existing.task} model; this upload is "
                       f"{checked.task}")
    artifact = store.put_file(f"uploads/{name}/{uuid.uuid4().hex}.onnx", upload)
    return register_version(session, name, VersionDraft(
        task=checked.task, source="upload", artifact=artifact, signature=checked.signature,
        n_params=checked.n_params, latency_p50_ms=checked.latency_p50_ms,
        class_labels=checked.class_labels))
