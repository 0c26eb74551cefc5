"""The contract every registered compressor passes, for both tasks: it leaves its input
alone, keeps the ONNX signature, stays close to its parent, reports in JSON, and refuses a
candidate it cannot work on with a CompressionError that says what to do."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from pydantic import TypeAdapter

from app.compression.base import COMPRESSORS, Candidate, CompressionData, CompressionError
from app.compression.base import get_compressor as compressor_for
from app.compression.measure import agreement
from app.compression.steps import METHOD_NAMES, MethodStep
from app.evaluation.sessions import open_session

STEP = TypeAdapter(MethodStep)
QUICK: dict[str, dict[str, Any]] = {  # fewer epochs than the defaults, same code paths
    "prune_structured": {"fine_tune_epochs": 3},
    "prune_unstructured": {"fine_tune_epochs": 3, "sparsity": 0.6},
    "distill": {"epochs": 30, "learning_rate": 5e-3},
    "select_features": {"fine_tune_epochs": 3, "keep": 0.6},
    "quantize_static": {"calibration_rows": 64},
    "share_weights": {"fine_tune_epochs": 3},
    "binarize": {"fine_tune_epochs": 10, "learning_rate": 3e-3},
    "qat": {"fine_tune_epochs": 3, "calibration_rows": 64},
}


def method_step(name: str, **settings: Any) -> Any:
    return STEP.validate_python({"method": name, **QUICK.get(name, {}), **settings})


def outputs(candidate: Candidate, rows: np.ndarray) -> np.ndarray:
    session = open_session(candidate.onnx, 1)
    return np.asarray(session.run([candidate.output_name], {candidate.input_name: rows})[0])


def signature(onnx_bytes: bytes) -> tuple[Any, ...]:
    session = open_session(onnx_bytes, 1)
    (source,), (target,) = session.get_inputs(), session.get_outputs()
    return source.name, source.shape[1:], source.type, target.name, target.shape[1:]


def test_every_method_of_the_spec_is_registered() -> None:
    compressor_for(method_step("fp16"))  # loads the methods
    assert set(COMPRESSORS) == set(METHOD_NAMES)


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("name", sorted(METHOD_NAMES))
def test_compressor_contract(name: str, task: str, request: pytest.FixtureRequest) -> None:
    parent, data = request.getfixturevalue(task)
    assert isinstance(data, CompressionData)
    before_onnx = parent.onnx
    before_state = {key: value.clone() for key, value in parent.network.state_dict().items()}
    compressor = compressor_for(method_step(name))
    checks: list[int] = []

    result = compressor.apply(parent, data, lambda: checks.append(1))

    assert parent.onnx == before_onnx
    assert all(
        torch.equal(before_state[key], value) for key, value in parent.network.state_dict().items()
    )
    onnx.checker.check_model(onnx.load_model_from_string(result.onnx))
    assert signature(result.onnx) == signature(parent.onnx)
    assert result.params is not None and result.params > 0
    json.dumps(result.report)
    got, expected = outputs(result, data.x_test), outputs(parent, data.x_test)
    assert np.isfinite(got).all()
    assert agreement(task, got, expected) >= (0.8 if task == "classification" else 0.6)
    if compressor.needs_network:
        assert checks, "long methods call check() so a cancelled job stops"
        graph_only = Candidate(
            onnx=parent.onnx,
            input_name=parent.input_name,
            output_name=parent.output_name,
            n_features=parent.n_features,
            params=parent.params,
        )
        with pytest.raises(CompressionError, match="distill"):
            compressor.apply(graph_only, data, lambda: None)


@pytest.mark.parametrize("name", sorted(set(METHOD_NAMES) - {"select_features"}))
def test_convolutional_networks_compress_too(
    name: str, images: tuple[Candidate, CompressionData]
) -> None:
    parent, data = images
    result = compressor_for(method_step(name)).apply(parent, data, lambda: None)
    assert signature(result.onnx) == signature(parent.onnx)
    assert (
        agreement("classification", outputs(result, data.x_test), outputs(parent, data.x_test))
        >= 0.6
    )


def test_feature_selection_refuses_images(images: tuple[Candidate, CompressionData]) -> None:
    parent, data = images
    with pytest.raises(CompressionError, match="convolutional"):
        compressor_for(method_step("select_features")).apply(parent, data, lambda: None)
