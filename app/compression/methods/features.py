"""Feature selection: keep the input columns that matter, retrain on them, and put the
column selection inside the ONNX graph (a Gather) so callers still send every column."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from app.compression.base import Candidate, CompressionData, CompressionError, Compressor, register
from app.compression.methods.pruning import fine_tune
from app.compression.steps import SelectFeatures
from app.contracts.networks import MLPConfig
from app.core.errors import BrokenInvariant
from app.evaluation.metrics import quality_score
from app.evaluation.names import HIGHER_IS_BETTER, default_metric
from app.evaluation.sessions import open_session
from app.training.models import Network
from app.training.table_front import narrowed_front


def units_of(current: np.ndarray, data: CompressionData) -> list[np.ndarray]:
    """What is kept or dropped as one: each feature column, or (for a table with a
    preprocessing) every feature of one source column. Positions are within ``current``."""
    groups = data.groups()
    if groups is None:
        return [np.array([position]) for position in range(len(current))]
    position = {int(column): index for index, column in enumerate(current)}
    units = [
        np.array([position[int(c)] for c in group if int(c) in position], dtype=np.int64)
        for group in groups
    ]
    return [unit for unit in units if len(unit)]


def permutation_importance(
    candidate: Candidate, data: CompressionData, columns: np.ndarray, units: list[np.ndarray]
) -> np.ndarray:
    """Per unit of ``columns``: how much the validation score worsens (in onnxruntime)
    when that unit's values are shuffled across rows (together, for a source column)."""
    session = open_session(candidate.onnx, data.threads)
    metric = default_metric(data.task)
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0

    def score(rows: np.ndarray) -> float:
        output = session.run([candidate.output_name], {candidate.input_name: rows})[0]
        return sign * quality_score(metric, data.task, output, data.y_val)

    baseline = score(data.x_val)
    rng = np.random.default_rng(data.seed)
    drops = np.empty(len(units))
    shuffled = data.x_val.copy()
    for index, unit in enumerate(units):
        picked = columns[unit]
        shuffled[:, picked] = data.x_val[rng.permutation(len(data.x_val))][:, picked]
        drops[index] = baseline - score(shuffled)
        shuffled[:, picked] = data.x_val[:, picked]
    return drops


def narrowed(network: Network, keep: np.ndarray) -> Network:
    """The same MLP reading only input positions ``keep`` (sorted; whole source columns):
    the first dense layer's columns sliced, and the feature embeddings of the kept
    columns with it."""
    config = network.config
    if not isinstance(config, MLPConfig):
        raise BrokenInvariant("not isinstance(network.config, MLPConfig)")
    state = network.state_dict()
    first = next(name for name in state if name.startswith("body.") and name.endswith(".weight"))
    body_columns = keep
    front = None
    if config.front is not None and network.front is not None:
        front, front_state, body_columns = narrowed_front(
            config.front, network.front, keep, config.n_inputs
        )
        state = {name: value for name, value in state.items() if not name.startswith("front.")}
        state.update({f"front.{name}": value for name, value in front_state.items()})
    smaller = Network(
        dataclasses.replace(config, n_inputs=len(keep), front=front), network.classification
    )
    index = torch.from_numpy(keep)
    for name in ("input_mean", "input_scale"):
        state[name] = state[name][index]
    state[first] = state[first][:, torch.from_numpy(body_columns)]
    smaller.load_state_dict(state)
    smaller.eval()
    return smaller


def first_layer_weight(network: Network) -> np.ndarray:
    """Per input feature: the L1 norm of the first layer's weights that read it (through
    its embedding, for a feature the network embeds)."""
    first = next(module for module in network.body if isinstance(module, torch.nn.Linear))
    per_output = first.weight.detach().abs().sum(dim=0).numpy().astype(np.float64)
    config = network.config
    if not isinstance(config, MLPConfig) or config.front is None:
        return per_output
    front, n_inputs = config.front, config.n_inputs
    per_input = np.zeros(n_inputs)
    passed = front.passed(n_inputs)
    per_input[passed] = per_output[: len(passed)]
    offset = len(passed)
    for feature in front.numeric:
        per_input[feature] = per_output[offset : offset + front.width].sum()
        offset += front.width
    for start, end in front.categories:  # the block's share, spread over its slots
        per_input[start:end] = per_output[offset : offset + front.category_width].sum() / (
            end - start
        )
        offset += front.category_width
    return per_input


@register("select_features")
class FeatureSelector(Compressor):
    """Ranks the columns the network reads (first-layer L1 weight, permutation importance
    on validation, or training variance), keeps the top ``keep`` share, and fine-tunes an
    MLP whose first layer reads only those."""

    needs_network = True
    step: SelectFeatures

    def apply(
        self, candidate: Candidate, data: CompressionData, check: Callable[[], None]
    ) -> Candidate:
        network = self.network_of(candidate)
        if not isinstance(network.config, MLPConfig):
            raise CompressionError(
                "select_features works on MLPs; a convolutional network "
                "needs every pixel of its image"
            )
        current = (
            candidate.columns if candidate.columns is not None else np.arange(candidate.n_features)
        )
        units = units_of(current, data)
        scores = self._importance(network, candidate, data, current, units)
        count = max(1, round(len(units) * self.step.keep))
        chosen = np.argsort(-scores, kind="stable")[:count]
        keep = np.sort(np.concatenate([units[index] for index in chosen]))
        smaller = narrowed(network, keep)
        columns = current[keep]
        check()
        fine_tune(
            smaller,
            data.train_data(columns),
            epochs=self.step.fine_tune_epochs,
            learning_rate=self.step.learning_rate,
            seed=data.seed,
        )
        kept = [int(column) for column in columns]
        report: dict[str, Any] = {
            "by": self.step.by,
            "kept_columns": len(columns),
            "dropped_columns": len(current) - len(columns),
            "columns": kept,
        }
        if data.encoding is not None:
            sources = data.encoding.sources_of(kept)
            report["kept_sources"] = [c.name for c in data.encoding.columns if c.name in sources]
        return candidate.derived(smaller, columns=columns, report=report)

    def _importance(
        self,
        network: Network,
        candidate: Candidate,
        data: CompressionData,
        current: np.ndarray,
        units: list[np.ndarray],
    ) -> np.ndarray:
        """A score per unit (higher: more important)."""
        if self.step.by == "permutation":
            return permutation_importance(candidate, data, current, units)
        if self.step.by == "variance":
            per_column = np.asarray(data.x_train[:, current].var(axis=0), dtype=np.float64)
        else:
            per_column = first_layer_weight(network)
        return np.array([per_column[unit].sum() for unit in units])
