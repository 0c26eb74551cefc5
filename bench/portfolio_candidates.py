"""The candidate configurations the portfolio learner tries on every suite table, and one
fit of one of them as a search's trial fits it (``bench/learn_portfolio.py``).

Per family: ``gbdt``: LightGBM's defaults, the family's declared starting points and
seeded random draws of its space (the platform's own sampler); ``mlp``: small and cheap
networks (a layer or two of 32 to 128 units, the search's fewest epochs) and a few bigger
ones; ``linear``: regularisation strengths; ``forest``: its declared starting point and a
few sizes of both kinds. A candidate is a trial's stored parameters (flat, by dimension
name), so a search can enqueue it as it is."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np
import optuna

from app.contracts.params import ParamValue
from app.evaluation.metrics import quality_score
from app.search.portfolio import clipped
from app.search.space import default_space, suggest
from app.training.families.registry import FAMILIES, Family, table_family
from app.training.table_models import FitOptions, TableData
from bench.portfolio_suite import PreparedTable, constant_output

GBDT_DRAWS = 20
DRAW_SEED = 45  # the random draws of the GBDT space (issue #45)
MAX_EPOCHS = 60  # a search's default max_epochs: the MLP candidates' epochs fit inside
Params = dict[str, ParamValue]


@dataclass(frozen=True)
class CandidateConfig:
    family: str
    params: Params

    @property
    def id(self) -> str:
        """``family-<digest of the parameters>``: the same candidate keeps its id."""
        digest = hashlib.sha256(json.dumps(self.params, sort_keys=True).encode()).hexdigest()
        return f"{self.family}-{digest[:8]}"


def _declared(family: str) -> list[Params]:
    declared = FAMILIES[family]
    return [declared.stored(start) for start in declared.starting_points]


def _gbdt() -> list[Params]:
    defaults = FAMILIES["gbdt"].stored(FAMILIES["gbdt"].params_model())
    space = default_space(None, MAX_EPOCHS, families=(Family("gbdt"),))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=DRAW_SEED))
    draws = [suggest(study.ask(), space) for _ in range(GBDT_DRAWS)]
    return [defaults, *_declared("gbdt"), *draws]


def _mlp(
    widths: tuple[int, ...],
    *,
    epochs: int,
    activation: str = "relu",
    learning_rate: float = 3e-3,
    batch_size: int = 128,
    dropout: float = 0.0,
    batch_norm: bool = False,
    optimizer: str = "adamw",
    patience: int = 4,
    schedule: str = "none",
    scaling: str = "standard",
    embedding: str = "none",
    category_width: int = 0,
) -> Params:
    """An MLP's stored parameters, with a table's front (``TABLE_MLP_SPACE``)."""
    return {
        "n_layers": len(widths),
        **{f"width_{layer}": width for layer, width in enumerate(widths)},
        "activation": activation,
        "dropout": dropout,
        "batch_norm": batch_norm,
        "scaling": scaling,
        "numeric_embedding": embedding,
        "embedding_width": 8,
        "embedding_size": 8,
        "embedding_sigma": 0.1,
        "category_width": category_width,
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "weight_decay": 1e-5,
        "l1": 0.0,
        "batch_size": batch_size,
        "epochs": epochs,
        "lr_schedule": schedule,
        "patience": patience,
    }


FEW_EPOCHS = 10  # the fewest a search's default space trains (min(10, max_epochs))


def _mlps() -> list[Params]:
    cheap = [
        _mlp((32,), epochs=FEW_EPOCHS, batch_size=128),
        _mlp((64, 64), epochs=FEW_EPOCHS, batch_size=256, learning_rate=2e-3),
        _mlp((64, 64), epochs=FEW_EPOCHS, activation="silu", dropout=0.1, learning_rate=1e-3),
        _mlp((128,), epochs=FEW_EPOCHS, activation="gelu", scaling="robust"),
        _mlp((64, 64, 64), epochs=FEW_EPOCHS, batch_norm=True, batch_size=256),
        _mlp((64, 64), epochs=FEW_EPOCHS, embedding="periodic", batch_size=256),
        _mlp((32, 32), epochs=FEW_EPOCHS, activation="tanh", optimizer="adam", batch_size=64),
    ]
    bigger = [
        _mlp((128, 128), epochs=30, dropout=0.1, learning_rate=1e-3, patience=6, schedule="cosine"),
        _mlp(
            (256, 256, 256),
            epochs=30,
            activation="gelu",
            dropout=0.2,
            batch_norm=True,
            learning_rate=5e-4,
            batch_size=256,
            patience=6,
        ),
        _mlp((256, 128), epochs=30, embedding="piecewise", category_width=8, patience=6),
        _mlp(
            (128, 128, 128),
            epochs=30,
            activation="silu",
            optimizer="adam",
            learning_rate=2e-3,
            batch_size=64,
            patience=8,
            schedule="step",
            scaling="robust",
        ),
    ]
    return cheap + bigger


def _linear() -> list[Params]:
    return [{"linear_c": c} for c in (0.01, 0.1, 1.0, 10.0)]


def _forest() -> list[Params]:
    stored = FAMILIES["forest"].stored
    params = FAMILIES["forest"].params_model
    return [
        *_declared("forest"),
        stored(params()),
        stored(params(kind="extra_trees", trees=200, max_features=0.8, min_samples_leaf=2)),
        stored(params(kind="random_forest", trees=200, max_features=0.3, max_leaves=2048)),
    ]


def candidates() -> dict[str, list[CandidateConfig]]:
    """Every family's candidates inside its default space (LightGBM's zero regularisation
    is the space's least, 1e-8), duplicates removed (the first kept)."""
    made = {"gbdt": _gbdt(), "mlp": _mlps(), "linear": _linear(), "forest": _forest()}
    chosen: dict[str, list[CandidateConfig]] = {}
    for family, configs in made.items():
        space = default_space(None, MAX_EPOCHS, families=(Family(family),), table=True)
        dimensions = space.dimensions_of(Family(family))
        unique: dict[str, CandidateConfig] = {}
        for config in configs:
            candidate = CandidateConfig(family, clipped(config, dimensions))
            unique.setdefault(candidate.id, candidate)
        chosen[family] = list(unique.values())
    return chosen


@dataclass(frozen=True)
class Evaluation:
    """One candidate on one table: its validation scores and fit seconds (None: failed)."""

    scores: dict[str, float] | None
    seconds: float
    error: str = ""


def scores_of(table: PreparedTable, output: np.ndarray) -> dict[str, float]:
    """The default metric and the proper score of validation outputs."""
    task = table.parsed.task
    names = ("accuracy", "log_loss") if table.n_outputs > 1 else ("rmse",)
    return {name: quality_score(name, task, output, table.data.y_val) for name in names}


def baseline_scores(table: PreparedTable) -> dict[str, float]:
    return scores_of(table, constant_output(table.data, table.n_outputs))


def _fit_network(table: PreparedTable, params: Params, seed: int) -> np.ndarray:
    import torch

    from app.search.build import candidate
    from app.training.models import Network
    from app.training.train import train

    point = candidate(
        params,
        n_inputs=table.data.x_train.shape[1],
        n_outputs=table.n_outputs,
        input_shape=None,
        seed=seed,
        metric="accuracy" if table.n_outputs > 1 else "rmse",
        encoding=table.parsed.encoding,
    )
    network = Network(point.network, classification=table.n_outputs > 1, seed=seed)
    train(network, table.data, point.training)
    with torch.no_grad():
        output: np.ndarray = network.predict(torch.from_numpy(table.data.x_val)).numpy()
    return output


def evaluate(table: PreparedTable, config: CandidateConfig, seed: int = 0) -> Evaluation:
    """``config`` fitted on the table's training rows (one thread, watching the validation
    rows as a holdout trial does) and scored on its validation rows."""
    started = time.perf_counter()
    try:
        if FAMILIES[config.family].trains_network:
            output = _fit_network(table, config.params, seed)
        else:
            fitter = table_family(config.family)
            data = table.data
            model = fitter.fit(
                fitter.params(config.params),
                TableData(data.x_train, data.y_train, data.x_val, data.y_val),
                table.n_outputs,
                FitOptions(seed=seed, threads=1),
            )
            output = model.predict_rows(data.x_val).astype(np.float32)
        scores = scores_of(table, output)
    except Exception as error:  # an infeasible or failing candidate counts as failed
        return Evaluation(None, time.perf_counter() - started, f"{type(error).__name__}: {error}")
    if not all(np.isfinite(list(scores.values()))):
        return Evaluation(None, time.perf_counter() - started, "non-finite scores")
    return Evaluation(scores, time.perf_counter() - started)
