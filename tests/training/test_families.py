"""The family registry and the protocol every family keeps: what a family file declares is
what the search, the request's schema and the docs use; the declarations load no heavy
library; every family (networks too) fits, exports and passes the parity check through
the protocol; the forest family's own promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from app.search.spec import SearchSpec
from app.training.export import check_parity
from app.training.families.base import SpaceContext, TableFamily
from app.training.families.forest import Forest, ForestParams, rounded_down
from app.training.families.gbdt import GbdtParams
from app.training.families.networks import NetworkFamily
from app.training.families.registry import (
    FAMILIES,
    NETWORK_FAMILIES,
    TABLE_FAMILIES,
    Family,
    cheapest_first,
    default_families,
)
from app.training.table_models import FitOptions, TableData, fit_table_model

DECLARATIONS_ONLY = """
import sys
import app.search.spec, app.search.plan, app.search.space
import app.training.families.registry
heavy = sorted(m for m in ("torch", "lightgbm", "sklearn", "onnxmltools") if m in sys.modules)
print(",".join(heavy))
"""


def test_reading_the_families_loads_no_heavy_library() -> None:
    """The gateway imports the declarations (the spec, the plan, the space): torch,
    LightGBM and scikit-learn stay on the workers, loaded by a fit."""
    found = subprocess.run(
        [sys.executable, "-c", DECLARATIONS_ONLY], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == ""


def test_the_names_and_defaults_come_from_the_registered_families() -> None:
    # the first four in the order they had before families were registered (the API's
    # enum keeps its order); the forest, the family this registry was proven with, next
    assert list(FAMILIES)[:5] == ["mlp", "cnn", "gbdt", "linear", "forest"]
    assert all(Family(name) == name for name in FAMILIES)
    assert NETWORK_FAMILIES == ("mlp", "cnn")
    assert set(TABLE_FAMILIES) == set(FAMILIES) - {"mlp", "cnn"}
    for shape in ("rows", "images"):
        wanted = [name for name, family in FAMILIES.items() if shape in family.default_on]
        assert default_families(shape) == wanted
    # forest is searched when a request names it (a budget-only search's families: #45)
    assert default_families("rows") == ["mlp", "gbdt", "linear"]
    assert default_families("images") == ["cnn"]
    assert [family.name for family in cheapest_first()][:3] == ["linear", "gbdt", "forest"]
    description = SearchSpec.model_fields["families"].description or ""
    for name, family in FAMILIES.items():
        assert f"'{name}'" in description and family.summary in description
    schema = SearchSpec.model_json_schema()
    assert schema["$defs"]["Family"]["enum"] == list(FAMILIES)


def test_a_family_s_parameters_are_typed_with_their_defaults_written_once() -> None:
    gbdt = FAMILIES["gbdt"]
    assert gbdt.params({}) == GbdtParams() and GbdtParams().num_leaves == 31
    stored = {"gbdt_num_leaves": 15, "gbdt_rounds": 300, "family": "gbdt", "linear_c": 2.0}
    typed = gbdt.params(stored)
    assert isinstance(typed, GbdtParams)
    assert (typed.num_leaves, typed.rounds, typed.learning_rate) == (15, 300, 0.1)
    assert gbdt.stored(typed)["gbdt_num_leaves"] == 15  # the keys stored studies hold
    assert list(gbdt.space(SpaceContext(max_epochs=10, category_codes=True))) == list(
        gbdt.stored(typed)
    )
    assert "gbdt_cat_smooth" not in gbdt.space(SpaceContext(max_epochs=10))  # no code to split


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_fits_exports_and_passes_the_parity_check(tmp_path: Path, name: str) -> None:
    """The protocol, for every registered family: the networks through torch (a tiny
    network, two epochs), the table families in one fit; the export is checked against
    the fitted model as the search's finalize checks it."""
    family = FAMILIES[name]
    rng = np.random.default_rng(0)
    images = "rows" not in family.runs_on
    shape = (1, 4, 4) if images else (5,)
    x = rng.normal(size=(120, int(np.prod(shape)))).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    data = TableData(x[:90], y[:90], x[90:], y[90:])
    stored = {}
    if isinstance(family, NetworkFamily):  # the smallest point of its space
        space = family.space(SpaceContext(max_epochs=2))
        for key, dimension in space.items():
            low = dimension.choices[0] if dimension.kind == "categorical" else dimension.low
            stored[key if not dimension.per_layer else f"{key}_0"] = low
        stored.update(n_layers=1, n_blocks=1, width_0=4, channels_0=4, epochs=2, batch_size=32)
    options = FitOptions(seed=0, input_shape=shape if images else None)
    typed = family.params(stored)
    assert family.params(family.stored(typed)) == typed  # stored keys and typed fields agree
    model = family.fit(typed, data, 2, options)
    path = tmp_path / f"{name}.onnx"
    onnx.save(family.export(model), str(path))
    assert check_parity(model, path, x[90:]) < 1e-4
    assert family.describe(model).family == name
    assert isinstance(family, NetworkFamily | TableFamily)


def test_forest_thresholds_round_down_so_the_graph_splits_as_the_forest_does() -> None:
    # Adjacent float32 values: a split between two sits at their double midpoint, which
    # float32 rounding could put onto the upper one; rounded down, it never does.
    rng = np.random.default_rng(0)
    steps = rng.integers(0, 400, size=(2000, 3))
    x = (np.float32(1) + steps.astype(np.float32) * np.finfo(np.float32).eps).astype(np.float32)
    y = ((steps[:, 0] % 7 > 3) ^ (steps[:, 1] > 200)).astype(np.float32)
    data = TableData(x[:1500], y[:1500], x[1500:], y[1500:])
    for kind in ("random_forest", "extra_trees"):
        params = {"forest_kind": kind, "forest_trees": 50, "forest_max_leaves": 2048}
        model = fit_table_model("forest", params, data, 2, FitOptions())
        assert isinstance(model, Forest) and model.describe().trees == 50
        session_output = _served(model.to_onnx(), x)
        np.testing.assert_allclose(session_output, model.predict_rows(x), atol=1e-6)
    midpoints = np.array([1.0 + 0.5 * float(np.finfo(np.float32).eps)])
    assert rounded_down(midpoints)[0] == np.float32(1.0)


def test_a_forest_never_predicts_a_class_no_training_row_had() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)  # classes 0 and 1 of 3
    model = fit_table_model("forest", {}, TableData(x, y), 3, FitOptions())
    predicted = model.predict_rows(x)
    assert predicted.shape == (200, 3) and np.all(predicted[:, 2] == 0)
    np.testing.assert_allclose(_served(model.to_onnx(), x), predicted, atol=1e-6)


def test_a_check_stops_a_forest_between_its_trees() -> None:
    calls = []

    def stop() -> None:
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("stop")

    x = np.random.default_rng(2).normal(size=(100, 3)).astype(np.float32)
    with pytest.raises(RuntimeError, match="stop"):
        fit_table_model(
            "forest", {"forest_trees": 400}, TableData(x, x[:, 0]), 1, FitOptions(check=stop)
        )
    assert len(calls) == 3  # two chunks of trees grown, the third refused


def test_the_forest_starts_from_extra_trees() -> None:
    forest = FAMILIES["forest"]
    assert forest.starting_points == (ForestParams(kind="extra_trees"),)
    assert forest.stored(forest.starting_points[0])["forest_kind"] == "extra_trees"


def _served(graph: onnx.ModelProto, rows: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["output"], {"input": rows})[0])
