"""Every registered compressor on a network behind a table's preprocessing: the network
part is compressed, the preprocessing stays exact, and the served file keeps the table's
inputs (select_features may only leave whole source columns out)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.compression.base import COMPRESSORS, Candidate, CompressionData
from app.compression.base import get_compressor as compressor_for
from app.contracts.networks import MLPConfig
from app.contracts.params import ParamValue
from app.evaluation.sessions import open_session
from app.preprocessing.encode import encode
from app.preprocessing.fit import fit_encoding
from app.search.build import front_for
from tests.compression.conftest import trained
from tests.compression.test_contract import method_step
from tests.preprocessing.test_encoding import typed_table

compressor_for(method_step("fp16"))  # registers every method


EMBEDDINGS: dict[str, ParamValue] = {
    "numeric_embedding": "piecewise",
    "embedding_width": 4,
    "embedding_size": 6,
    "category_width": 3,
}


@pytest.fixture(scope="module", params=["plain", "embedded"])
def table(request: pytest.FixtureRequest) -> tuple[Candidate, CompressionData]:
    """A network of the table's features as they are, or behind feature embeddings
    (piecewise numbers and dates, the many-valued category embedded, robust scaling)."""
    columns = typed_table(rows=480, seed=4)
    encoding = fit_encoding(columns)
    raw = {c.name: c.numbers if c.numbers is not None else c.text for c in columns}
    features = encode(encoding, raw)
    island = np.asarray(raw["island"].to_pylist())  # type: ignore[union-attr]
    length = np.nan_to_num(np.asarray(raw["length"]), nan=40.0)
    target = ((island == "Dream").astype(int) + (length > 41).astype(int)).astype(np.int64)
    cut1, cut2 = 288, 384
    data = CompressionData(
        task="classification",
        x_train=features[:cut1],
        y_train=target[:cut1],
        x_val=features[cut1:cut2],
        y_val=target[cut1:cut2],
        x_test=features[cut2:],
        y_test=target[cut2:],
        seed=0,
        encoding=encoding,
        raw_test={name: values[cut2:] for name, values in raw.items() if values is not None},
    )
    front = front_for(EMBEDDINGS, encoding) if request.param == "embedded" else None
    config = MLPConfig(
        n_inputs=encoding.width,
        n_outputs=3,
        hidden=(32, 16),
        scaling="robust" if front else "standard",
        front=front,
    )
    network = trained(config, data)
    return Candidate.from_network(network, n_features=encoding.width), data


def served_inputs(onnx: bytes) -> set[str]:
    return {value.name for value in open_session(onnx, 1).get_inputs()}


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_compressing_keeps_the_table_inputs_and_exact_preprocessing(
    name: str, table: tuple[Candidate, CompressionData]
) -> None:
    parent, data = table
    result = compressor_for(method_step(name)).apply(parent, data, lambda: None)
    served = data.served(result)
    inputs = served_inputs(served)
    assert inputs == data.used_columns(result)
    if name == "select_features":
        assert inputs < served_inputs(data.served(parent))
    else:
        assert inputs == served_inputs(data.served(parent))
    from_raw = open_session(served, 1).run(None, data.test_feeds(result))[0]
    network: Any = open_session(result.onnx, 1)
    from_features = network.run(None, {result.input_name: data.x_test})[0]
    assert np.allclose(from_raw, from_features, atol=1e-5)
