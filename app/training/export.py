"""torch -> ONNX export with a parity check against torch's own outputs."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from app.training.models import Network, Predictor

INPUT_NAME = "input"
OUTPUT_NAME = "output"
OPSET = 18
PARITY_TOLERANCE = 1e-4


class ExportMismatch(Exception):
    """onnxruntime and torch disagree beyond the tolerance."""


def export_onnx(network: Network, path: Path) -> None:
    """Write ``network.predict`` as ONNX: one input ``input`` [batch, features], one output
    ``output`` [batch, classes or 1], dynamic batch, weights inside the single file."""
    network.eval()
    example = torch.zeros(2, network.config.n_inputs)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    # The exporter narrates its progress on stdout; keep worker logs readable.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(Predictor(network).eval(), (example,), str(path),
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          opset_version=OPSET, dynamo=True, dynamic_shapes=({0: batch},),
                          external_data=False, verbose=False)


def check_parity(network: Network, path: Path, sample: np.ndarray) -> float:
    """Largest absolute difference between torch and onnxruntime on ``sample`` rows;
    raises ExportMismatch above the tolerance."""
    network.eval()
    with torch.no_grad():
        expected = network.predict(torch.from_numpy(sample)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run([OUTPUT_NAME], {INPUT_NAME: sample})[0]
    scale = np.maximum(1.0, np.abs(expected))  # relative for large regression values
    difference = float(np.max(np.abs(actual - expected) / scale))
    if not difference <= PARITY_TOLERANCE:
        raise ExportMismatch(f"ONNX output differs from torch by {difference:.2e} "
                             f"(tolerance {PARITY_TOLERANCE})")
    return difference
