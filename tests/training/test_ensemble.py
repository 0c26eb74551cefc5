"""Networks averaged into one ONNX graph: the graph gives the torch ensemble's mean,
from raw table columns too, and members that do not fit together are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from app.contracts.networks import MLPConfig
from app.training.ensemble import Ensemble, export_model
from app.training.export import INPUT_NAME, OUTPUT_NAME, check_parity
from app.training.models import Network


def members(count: int, *, classification: bool = True, outputs: int = 3) -> list[Network]:
    return [
        Network(MLPConfig(4, outputs, (8 + index,)), classification=classification, seed=index)
        for index in range(count)
    ]


@pytest.mark.parametrize("classification", [True, False])
def test_the_graph_is_the_members_mean(tmp_path: Path, classification: bool) -> None:
    networks = members(3, classification=classification, outputs=3 if classification else 1)
    ensemble = Ensemble(networks).eval()
    path = tmp_path / "ensemble.onnx"
    export_model(ensemble, path)
    rows = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    assert check_parity(ensemble, path, rows) < 1e-5
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    served = session.run([OUTPUT_NAME], {INPUT_NAME: rows})[0]
    singles = []
    for index, network in enumerate(networks):
        single = tmp_path / f"single-{index}.onnx"
        export_model(network, single)
        singles.append(
            ort.InferenceSession(str(single), providers=["CPUExecutionProvider"]).run(
                [OUTPUT_NAME], {INPUT_NAME: rows}
            )[0]
        )
    np.testing.assert_allclose(served, np.mean(singles, axis=0), atol=1e-6)
    graph = onnx.load(str(path)).graph
    assert [node.op_type for node in graph.node].count("Mean") == 1
    assert [i.name for i in graph.input] == [INPUT_NAME]
    assert [o.name for o in graph.output] == [OUTPUT_NAME]
    if classification:
        np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-5)


def test_members_that_do_not_fit_together_are_refused() -> None:
    with pytest.raises(ValueError, match="at least two"):
        Ensemble(members(1))
    mixed = [*members(1), Network(MLPConfig(4, 2, (8,)), classification=True)]
    with pytest.raises(ValueError, match="differ in inputs, outputs or task"):
        Ensemble(mixed)


def test_an_ensemble_serves_behind_a_tables_preprocessing(tmp_path: Path) -> None:
    """The averaged graph takes the preprocessing front like one network: the served file
    fed raw columns (gaps and unseen values) matches torch on the numpy encoding."""
    from app.preprocessing.fit import fit_encoding
    from app.search.finalize import served_form
    from tests.preprocessing.test_encoding import typed_table

    columns = typed_table(rows=200)
    encoding = fit_encoding(columns)
    raw = {c.name: c.numbers if c.numbers is not None else c.text for c in columns}
    networks = [
        Network(MLPConfig(encoding.width, 2, (8,)), classification=True, seed=seed)
        for seed in range(3)
    ]
    ensemble = Ensemble(networks).eval()
    path = tmp_path / "network.onnx"
    export_model(ensemble, path)
    served = served_form(ensemble, path, encoding, np.zeros((0, encoding.width), np.float32), raw)
    assert served.parity < 1e-4
    assert {spec.name for spec in served.signature.inputs} == {c.name for c in columns}
