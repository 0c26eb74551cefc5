"""torch -> ONNX export, and the parity check of any exported model against the fitted model's
own outputs (torch, or a table family's own code)."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from app.contracts.encoding import TableEncoding
from app.core.errors import BrokenInvariant
from app.preprocessing.encode import Raw, encode, feeds
from app.training.models import Network, Predictor
from app.training.onnx_io import INPUT_NAME, OPSET, OUTPUT_NAME, compact_onnx
from app.training.table_models import TableModel

PARITY_TOLERANCE = 1e-4


class ExportMismatch(Exception):
    """onnxruntime and torch disagree beyond the tolerance."""


class Predicts(Protocol):
    """What a parity check runs in torch: a network, or an ensemble of them."""

    def eval(self) -> Any: ...

    def predict(self, x: torch.Tensor) -> torch.Tensor: ...


def export_onnx(
    network: Network,
    path: Path,
    *,
    columns: np.ndarray | None = None,
    n_features: int | None = None,
    input_name: str = INPUT_NAME,
    output_name: str = OUTPUT_NAME,
) -> None:
    """Write ``network.predict`` as ONNX: one input ``input`` [batch, features], one output
    ``output`` [batch, classes or 1], dynamic batch, weights inside the single file. With
    ``columns`` the graph takes ``n_features`` columns and feeds the network those."""
    network.eval()
    width = n_features if columns is not None and n_features else network.config.n_inputs
    example = torch.zeros(2, width)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    # The exporter narrates its progress on stdout; keep worker logs readable.
    network = fold_batch_norm(network)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            Predictor(network, columns).eval(),
            (example,),
            str(path),
            input_names=[input_name],
            output_names=[output_name],
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
        )
    compact_onnx_file(path)


def fold_batch_norm(network: Network) -> Network:
    """A copy for export whose batch norms are folded into the Linear or Conv2d before them
    (exact in eval mode): the served graph has fewer operators and fp32 vectors, and int8
    quantization covers the folded weights. The network itself is left as it is."""
    norms = (nn.BatchNorm1d, nn.BatchNorm2d)
    if not any(isinstance(module, norms) for module in network.body):
        return network
    folded = copy.deepcopy(network).eval()
    body = folded.body
    for index in range(1, len(body)):
        norm, layer = body[index], body[index - 1]
        if not (isinstance(norm, norms) and isinstance(layer, nn.Linear | nn.Conv2d)):
            continue
        if norm.running_mean is None:
            raise BrokenInvariant("norm.running_mean is None")
        if norm.running_var is None:
            raise BrokenInvariant("norm.running_var is None")
        with torch.no_grad():
            gain = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            shape = (-1,) + (1,) * (layer.weight.dim() - 1)
            layer.weight.mul_(gain.reshape(shape))
            bias = layer.bias if layer.bias is not None else torch.zeros_like(gain)
            layer.bias = nn.Parameter((bias - norm.running_mean) * gain + norm.bias)
        body[index] = nn.Identity()
    return folded


def compact_onnx_file(path: Path) -> None:
    """Rewrite an exported file with ``compact_onnx``."""
    model = onnx.load(str(path))
    compact_onnx(model)
    onnx.save(model, str(path))


def predicted(model: Predicts | TableModel, rows: np.ndarray) -> np.ndarray:
    """What a fitted model predicts for ``rows`` (float32): torch for a network or an
    average holding one, the model's own code for a table family's model."""
    if isinstance(model, TableModel):
        return model.predict_rows(rows).astype(np.float32)
    model.eval()
    with torch.no_grad():
        return np.asarray(model.predict(torch.from_numpy(rows)).numpy())


def check_parity(
    network: Predicts | TableModel,
    path: Path,
    sample: np.ndarray,
    columns: np.ndarray | None = None,
) -> float:
    """Largest absolute difference between the fitted model and onnxruntime on ``sample``
    rows; raises ExportMismatch above the tolerance."""
    picked = sample if columns is None else np.ascontiguousarray(sample[:, columns])
    expected = predicted(network, picked)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run([OUTPUT_NAME], {INPUT_NAME: sample})[0]
    return _within_tolerance(actual, expected, "ONNX output differs from torch")


def _within_tolerance(actual: np.ndarray, expected: np.ndarray, what: str) -> float:
    """The largest difference (relative for large regression values); ExportMismatch
    above the tolerance."""
    scale = np.maximum(1.0, np.abs(expected))
    difference = float(np.max(np.abs(actual - expected) / scale))
    if not difference <= PARITY_TOLERANCE:
        raise ExportMismatch(f"{what} by {difference:.2e} (tolerance {PARITY_TOLERANCE})")
    return difference


def check_table_parity(
    network: Predicts | TableModel, served: bytes, encoding: TableEncoding, raw: Raw
) -> float:
    """Largest difference between the served file run on raw columns and the fitted model
    run on the numpy preprocessing of the same rows: the whole pipeline, gaps and unseen
    values included (``raw`` should hold such rows: ``stress_rows``)."""
    expected = predicted(network, encode(encoding, raw))
    session = ort.InferenceSession(served, providers=["CPUExecutionProvider"])
    actual = session.run([OUTPUT_NAME], feeds(encoding, raw))[0]
    return _within_tolerance(
        actual, expected, "ONNX output (from raw columns) differs from the preprocessing and torch"
    )
