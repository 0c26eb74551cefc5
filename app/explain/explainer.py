"""One version's explainer, built once from its stored explanation file and kept per
version: the players, the background, the method's own state (the permutations and the
background's outputs, a booster, a linear model's weights). A request's rows run once,
with every perturbed row of a sampled method in the same batch; the answer gives per row
the prediction and, per output (each class of a classifier), its value, the base value and
one attribution per column, which add up to the value."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.contracts.encoding import TableEncoding
from app.contracts.signature import Signature
from app.explain.data import ExplainData, ExplainRecord, Importance, Method, Output
from app.explain.exact import LinearExact, TreeShap
from app.explain.players import Feeds, Players
from app.explain.shapley import PermutationPlan


class Unexplainable(ValueError):
    """A version whose stored explanation does not fit its graph (the message says why)."""


@dataclass(frozen=True)
class Attributed:
    """Explained rows: values and base values [n, K], attributions [n, d, K]."""

    values: np.ndarray
    base: np.ndarray
    attributions: np.ndarray


@dataclass(frozen=True)
class Explainer:
    """How one version's rows are explained (see the module docstring)."""

    method: Method
    output: Output
    players: Players
    classes: list[Any] | None  # a classifier's labels, one per output column
    background: list[np.ndarray]
    plan: PermutationPlan | None = None  # sampled
    exact: TreeShap | LinearExact | None = None
    background_output: np.ndarray | None = None  # sampled: the graph's [B, K] on background

    @classmethod
    def build(
        cls,
        record: ExplainRecord,
        data: ExplainData,
        *,
        signature: Signature,
        labels: list[Any] | None,
        encoding: TableEncoding | None,
        uploaded: bool,
    ) -> Explainer:
        """The explainer of a version from its record (whose method rules: a variant
        reuses its parent's file) and the file it points at."""
        players = Players.of(signature, list(data.background))  # as the file names them
        try:
            background = players.stored(data.background)
        except ValueError as error:
            raise Unexplainable(str(error)) from None
        if not background or len(background[0]) == 0:
            raise Unexplainable("the background sample holds no rows")
        classification = labels is not None
        method = record.method
        exact: TreeShap | LinearExact | None = None
        if method != "sampled_shapley":
            if encoding is None or tuple(c.name for c in encoding.columns) != players.names:
                raise Unexplainable(f"{method} needs the table's encoding of the columns it takes")
            if method == "tree_shap" and data.booster is not None:
                exact = TreeShap(encoding, data.booster, len(labels) if labels else 0)
            elif method == "linear_exact" and data.linear is not None:
                exact = LinearExact(encoding, data.linear, background)
            else:
                raise Unexplainable(f"the explanation file lacks what {method} needs")
            output: Output = "raw_score"
        elif classification:
            output = "score" if uploaded else "probability"
        else:
            output = "value"
        plan = PermutationPlan.of(len(players), len(background[0])) if exact is None else None
        return cls(method, output, players, labels, background, plan, exact)

    @property
    def samples(self) -> int | None:
        """Permutations per row (sampled), else None."""
        return None if self.plan is None else self.plan.samples

    @property
    def ready(self) -> bool:
        """Whether it needs nothing more (a sampled one needs its background's outputs)."""
        return self.plan is None or self.background_output is not None

    def background_feeds(self) -> Feeds:
        return self.players.feeds(self.background)

    def with_background_output(self, output: np.ndarray) -> Explainer:
        return dataclasses.replace(self, background_output=np.asarray(output, dtype=np.float64))

    def rows_to_run(self, rows: int) -> int:
        """How many rows the graph runs for ``rows`` explained rows."""
        return rows if self.plan is None else rows * (1 + self.plan.rows_per_row())

    def feeds_to_run(self, feeds: Feeds) -> Feeds:
        """The explained rows, then (sampled) every perturbed row, as one batch."""
        if self.plan is None:
            return feeds
        rows = self.players.columns(feeds)
        perturbed = self.plan.perturbed(rows, self.background)
        return self.players.feeds(
            [np.concatenate([row, more]) for row, more in zip(rows, perturbed, strict=True)]
        )

    def attribute(self, feeds: Feeds, output: np.ndarray) -> Attributed:
        """Attributions for the explained rows of ``feeds`` from the batch's ``output``."""
        rows = self.players.columns(feeds)
        n = len(rows[0])
        if self.exact is not None:
            attributions, base = self.exact.explain(rows)
            values = base + attributions.sum(axis=1)
            return Attributed(values, base, attributions)
        if self.plan is None or self.background_output is None:
            raise Unexplainable("the background's outputs were not computed")
        own = np.asarray(output[:n], dtype=np.float64)
        attributions = self.plan.attributions(own, output[n:], self.background_output)
        base = np.broadcast_to(self.background_output.mean(axis=0), own.shape).copy()
        return Attributed(own, base, attributions)

    def answer_rows(self, attributed: Attributed, output: np.ndarray) -> list[dict[str, Any]]:
        """Per explained row: the prediction (from the graph's ``output``) and per output
        its value, base value and attributions by column name."""
        n = len(attributed.values)
        rows = []
        for row in range(n):
            if self.classes is not None:
                prediction: Any = self.classes[int(np.argmax(output[row]))]
            else:
                prediction = float(output[row, 0])
            outputs = []
            for k in range(attributed.values.shape[1]):
                outputs.append(
                    {
                        "class": None if self.classes is None else self.classes[k],
                        "value": float(attributed.values[row, k]),
                        "base_value": float(attributed.base[row, k]),
                        "attributions": dict(
                            zip(
                                self.players.names,
                                attributed.attributions[row, :, k].tolist(),
                                strict=True,
                            )
                        ),
                    }
                )
            rows.append({"prediction": prediction, "outputs": outputs})
        return rows

    def importance(self, attributed: Attributed) -> Importance:
        """Mean absolute attribution per column over the rows (and classes), largest first."""
        means = np.abs(attributed.attributions).mean(axis=(0, 2))
        order = np.argsort(-means, kind="stable")
        return Importance(
            method=self.method,
            output=self.output,
            rows=len(attributed.values),
            columns={self.players.names[i]: float(means[i]) for i in order},
        )
