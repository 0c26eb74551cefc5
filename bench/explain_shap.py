"""Agreement of ModelKiln's explanations with the ``shap`` package (the ``bench`` extra;
imported only here, when the benchmark runs this part): a GBDT's TreeSHAP against
``shap.TreeExplainer``'s own TreeSHAP (path-dependent, as LightGBM's ``pred_contrib``
computes it) on the booster's trees, a linear model's exact values against
``shap.LinearExplainer`` (independent features, the same background mean), and the sampled
Shapley values of small models (6 columns) against ``shap``'s Exact explainer on the same
graph and the same background rows: every coalition of the columns, each absent column
taking the background row's value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.explain.exact import LinearExact, TreeShap, fold, raw_columns
from app.explain.explainer import Explainer
from app.explain.players import Feeds
from app.preprocessing.encode import encode
from bench.explain_versions import Table, Version

ROWS = 64  # held-out rows compared per family (exact methods)
SAMPLED_ROWS = 24  # per small model: shap's Exact runs 2^6 coalitions x 32 background rows each


@dataclass(frozen=True)
class Agreement:
    """ModelKiln's attributions against shap's on the same rows: [n, columns, classes]."""

    label: str
    reference: str
    rows: int
    max_abs_diff: float
    mean_abs_diff: float
    max_abs_value: float  # the largest |attribution| shap gave: the scale of the difference
    correlation: float
    base_diff: float  # max |base value difference|


def shap_module() -> Any | None:
    """``shap``, or None when the bench extra is not installed."""
    try:
        import shap
    except ImportError:
        return None
    return shap


def compared(label: str, reference: str, ours: Any, theirs: Any, bases: Any) -> Agreement:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return Agreement(
        label=label,
        reference=reference,
        rows=len(ours),
        max_abs_diff=float(np.abs(ours - theirs).max()),
        mean_abs_diff=float(np.abs(ours - theirs).mean()),
        max_abs_value=float(np.abs(theirs).max()),
        correlation=float(np.corrcoef(ours.reshape(-1), theirs.reshape(-1))[0, 1]),
        base_diff=float(np.abs(np.asarray(bases[0]) - np.asarray(bases[1])).max()),
    )


def _by_class(values: Any, classes: int) -> np.ndarray:
    """shap's per-class output ([n, F, K], or a list of K [n, F] in older releases)."""
    if isinstance(values, list):
        return np.stack(values, axis=2)
    array = np.asarray(values)
    return array if array.ndim == 3 else np.repeat(array[:, :, None], classes, axis=2)


def ours_of(explainer: Explainer, feeds: Feeds, run: Any) -> tuple[np.ndarray, np.ndarray]:
    """The engine's attributions [n, d, K] and base values [n, K] for ``feeds``' rows."""
    attributed = explainer.attribute(feeds, run(explainer.feeds_to_run(feeds)))
    return attributed.attributions, attributed.base


def tree_agreement(shap: Any, version: Version, explainer: Explainer, feeds: Feeds) -> Agreement:
    import lightgbm

    if version.data.booster is None or not isinstance(explainer.exact, TreeShap):
        raise ValueError(f"{version.name} is not explained by TreeSHAP")
    encoding = explainer.exact.encoding
    features = encode(encoding, raw_columns(encoding, explainer.players.columns(feeds)))
    trees = lightgbm.Booster(model_str=version.data.booster).dump_model()["tree_info"]
    classes = explainer.exact.classes
    by_class, expected = [], []
    for k in range(classes):  # a multiclass booster's trees take turns: class k's every K-th
        # Given the booster itself, TreeExplainer would hand the rows to LightGBM's own
        # pred_contrib (what the engine calls); given the trees, it runs its own TreeSHAP.
        tree = shap.TreeExplainer(
            {"trees": trees[k::classes]}, feature_perturbation="tree_path_dependent"
        )
        by_class.append(np.asarray(tree.shap_values(features)))
        expected.append(float(np.asarray(tree.expected_value).reshape(-1)[0]))
    theirs = fold(encoding, np.stack(by_class, axis=2))
    ours, base = ours_of(explainer, feeds, lambda batch: None)
    bases = (base, np.broadcast_to(np.asarray(expected), base.shape))
    label = "shap.TreeExplainer's own TreeSHAP (tree_path_dependent) on the booster's trees"
    return compared(version.family, label, ours, theirs, bases)


def linear_agreement(shap: Any, version: Version, explainer: Explainer, feeds: Feeds) -> Agreement:
    if version.data.linear is None or not isinstance(explainer.exact, LinearExact):
        raise ValueError(f"{version.name} is not explained by its linear weights")
    encoding = explainer.exact.encoding
    features = encode(encoding, raw_columns(encoding, explainer.players.columns(feeds)))
    background = encode(encoding, raw_columns(encoding, explainer.background))
    weights = np.asarray(version.data.linear.weights)
    bias = np.asarray(version.data.linear.bias)
    masker = shap.maskers.Independent(background, max_samples=len(background))
    linear = shap.LinearExplainer((weights, bias), masker)
    theirs = fold(encoding, _by_class(linear.shap_values(features), len(bias)))
    ours, base = ours_of(explainer, feeds, lambda batch: None)
    expected = np.broadcast_to(np.asarray(linear.expected_value, np.float64), base.shape)
    return compared(
        version.family, "shap.LinearExplainer (independent)", ours, theirs, (base, expected)
    )


class Coded:
    """Columns as numbers for shap's maskers: text as its index in a vocabulary of the
    values the background and the explained rows hold."""

    def __init__(self, explainer: Explainer, rows: list[np.ndarray]) -> None:
        self.explainer = explainer
        self.vocabulary: list[list[str] | None] = []
        for text, background, values in zip(
            explainer.players.text, explainer.background, rows, strict=True
        ):
            words = sorted({*background.tolist(), *values.tolist()}) if text else None
            self.vocabulary.append(words)

    def codes(self, columns: list[np.ndarray]) -> np.ndarray:
        coded = []
        for words, values in zip(self.vocabulary, columns, strict=True):
            if words is None:
                coded.append(values.astype(np.float64))
            else:
                coded.append(np.array([words.index(v) for v in values.tolist()], np.float64))
        return np.stack(coded, axis=1)

    def feeds(self, codes: np.ndarray) -> Feeds:
        columns = []
        for index, words in enumerate(self.vocabulary):
            values = codes[:, index]
            if words is None:
                columns.append(values.astype(np.float32))
            else:
                columns.append(np.array([words[int(c)] for c in values], dtype=object))
        return self.explainer.players.feeds(columns)


def sampled_agreement(
    shap: Any, version: Version, explainer: Explainer, feeds: Feeds, run: Any
) -> Agreement:
    rows = explainer.players.columns(feeds)
    coded = Coded(explainer, rows)
    background = coded.codes(explainer.background)
    masker = shap.maskers.Independent(background, max_samples=len(background))
    exact = shap.explainers.Exact(lambda codes: run(coded.feeds(codes)), masker)
    explanation = exact(coded.codes(rows), silent=True)
    ours, base = ours_of(explainer, feeds, run)
    return compared(
        f"{version.family} ({len(rows)} columns)",
        "shap Exact explainer, same 32 background rows",
        ours,
        explanation.values,
        (base, explanation.base_values),
    )


def held_out(table: Table, start: int, rows: int) -> Feeds:
    return table.feeds(slice(start, start + rows))


def agreement_lines(results: list[Agreement]) -> list[str]:
    lines = [
        "| version | compared with | rows | max abs diff | mean abs diff | max abs value | "
        "correlation | max base diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in results:
        lines.append(
            f"| {a.label} | {a.reference} | {a.rows} | {a.max_abs_diff:.2e} | "
            f"{a.mean_abs_diff:.2e} | {a.max_abs_value:.3f} | {a.correlation:.6f} | "
            f"{a.base_diff:.2e} |"
        )
    return lines
