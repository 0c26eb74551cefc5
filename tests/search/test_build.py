"""A trial's parameters as a network: the feature embeddings a table's parameters ask for,
placed by the table's encoding."""

from __future__ import annotations

from app.contracts.networks import MLPConfig
from app.contracts.params import ParamValue
from app.preprocessing.fit import fit_encoding
from app.search.build import candidate, front_for
from tests.preprocessing.test_encoding import typed_table

NETWORK = {
    "n_layers": 1,
    "width_0": 16,
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
    "epochs": 3,
    "learning_rate": 1e-3,
    "batch_size": 32,
    "weight_decay": 0.0,
    "l1": 0.0,
    "optimizer": "adam",
    "lr_schedule": "none",
    "patience": 0,
}


def test_embeddings_land_on_numbers_dates_and_many_valued_categories() -> None:
    encoding = fit_encoding(typed_table(rows=480, seed=4))
    # island (4 slots), length (+ gap flag), count, many (14 slots, frequency, code),
    # when (6 date parts)
    params: dict[str, ParamValue] = {
        "numeric_embedding": "periodic",
        "category_width": 8,
        "embedding_width": 4,
    }
    front = front_for(params, encoding)
    assert front is not None
    assert front.numeric == (4, 6, 23, 24, 25, 26, 27)  # values, not the gap flags
    assert front.categories == ((7, 21),)  # many: 14 slots; island's 4 pass through
    assert front.width == 4 and front.category_width == 8
    point = candidate(
        {**NETWORK, **params, "scaling": "robust"},
        n_inputs=encoding.width,
        n_outputs=2,
        input_shape=None,
        seed=0,
        encoding=encoding,
    )
    assert isinstance(point.network, MLPConfig)
    assert point.network.front == front and point.network.scaling == "robust"


def test_no_embedding_asked_or_no_table_means_no_front() -> None:
    encoding = fit_encoding(typed_table(rows=480, seed=4))
    assert front_for({"numeric_embedding": "none", "category_width": 0}, encoding) is None
    assert front_for({"numeric_embedding": "piecewise"}, None) is None
    only_categories = front_for({"numeric_embedding": "none", "category_width": 4}, encoding)
    assert only_categories is not None and only_categories.numeric == ()
