"""The search page's parallel-coordinates chart: each complete trial as a line through its
parameters and its score. Every axis carries its own short tick labels: Plotly's defaults
print a number with all its digits, and a parameter searched on a log scale (a learning
rate from 1e-5 to 0.1) squeezes every trial but one into the bottom of a linear axis."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.api.schemas import TrialRead
from app.contracts.params import ParamValue

Figure = dict[str, Any]
MAX_PARALLEL_AXES = 8  # parameters drawn (the most important ones)
LINEAR_TICKS = 5  # about this many labels on a linear axis
LOG_TICKS = 6  # at most this many powers of ten on a log axis
LOG_RATIO = 100.0  # positive values spanning this factor or more are drawn on a log axis
NOT_SET = "\u2013"  # an en dash: the label of trials without the parameter (another family's)
PLAIN_POWERS = range(-3, 4)  # powers of ten written out (0.001 to 1000); others as 1e-5


def _done(trials: Sequence[TrialRead]) -> list[TrialRead]:
    return [t for t in trials if t.state == "complete" and t.value is not None]


def varied(done: Sequence[TrialRead]) -> list[str]:
    """The parameters that took more than one value (a fixed one explains nothing)."""
    names = sorted({name for t in done for name in t.params})
    return [name for name in names if len({repr(t.params.get(name)) for t in done}) > 1]


def varied_count(trials: Sequence[TrialRead]) -> int:
    """How many parameters took more than one value over the complete trials."""
    return len(varied(_done(trials)))


def parallel_axes(trials: Sequence[TrialRead], shares: dict[str, float]) -> list[str]:
    """The parameters parallel coordinates draw: those that varied, the most important
    first when importances are known, at most ``MAX_PARALLEL_AXES``."""
    names = varied(_done(trials))
    if shares:
        names.sort(key=lambda name: -shares.get(name, 0.0))
    return names[:MAX_PARALLEL_AXES]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def short_number(value: float) -> str:
    """Three significant figures, an exponent without padding (1e-05 reads 1e-5)."""
    text = f"{value:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return "0" if text in ("-0", "0") else text


def nice_ticks(low: float, high: float, integers: bool = False) -> tuple[list[float], list[str]]:
    """Round positions between ``low`` and ``high`` (steps of 1, 2 or 5 times a power of
    ten) and their labels, written to the step's precision."""
    if high <= low:
        return [low], [short_number(low)]
    raw = (high - low) / LINEAR_TICKS
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    if integers:
        step = max(step, 1.0)
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    values = [k * step for k in range(first, last + 1)]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    readable = decimals <= 4 and max(abs(low), abs(high)) < 1e5
    labels = [
        (f"{value:.{decimals}f}" if readable else short_number(value))
        if round(value, decimals) != 0
        else "0"
        for value in values
    ]
    return values, labels


def power_of_ten(exponent: int) -> str:
    """10 to ``exponent``, written as a plain number near 1, else as 1eN."""
    if exponent in PLAIN_POWERS:
        return f"{10.0**exponent:.{max(0, -exponent)}f}"
    return f"1e{exponent}"


def log_ticks(low: float, high: float) -> tuple[list[float], list[str]]:
    """The powers of ten between ``low`` and ``high`` (log10 values), every second or
    third one on a long axis."""
    first, last = math.ceil(low - 1e-9), math.floor(high + 1e-9)
    stride = max(1, math.ceil((last - first + 1) / LOG_TICKS))
    exponents = list(range(first, last + 1, stride))
    return [float(e) for e in exponents], [power_of_ten(e) for e in exponents]


@dataclass(frozen=True)
class Axis:
    """One dimension of the chart: each trial's position on it, and its tick marks
    (``range``: where it starts and ends; None: Plotly's own, for a single value)."""

    label: str
    values: list[float] | list[int]
    tickvals: list[float] | list[int]
    ticktext: list[str]
    range: list[float] | None = None

    def plotly(self) -> dict[str, str | list[float] | list[int] | list[str]]:
        """The dimension as Plotly's ``parcoords`` takes it (no ``range`` when None)."""
        shown = dataclasses.asdict(self)
        if self.range is None:
            del shown["range"]
        return shown


def axis(label: str, values: Sequence[ParamValue | None]) -> Axis:
    """One dimension: numbers on a linear axis, or a log one when they are positive and
    span ``LOG_RATIO`` or more; anything else by its sorted labels. A trial without the
    parameter sits below the others, at ``NOT_SET``."""
    present = [v for v in values if v is not None]
    if not present or not all(_is_number(v) for v in present):
        labels = sorted({NOT_SET if v is None else str(v) for v in values})
        return Axis(
            label=label,
            values=[labels.index(NOT_SET if v is None else str(v)) for v in values],
            tickvals=list(range(len(labels))),
            ticktext=labels,
        )
    numbers = np.asarray([math.nan if v is None else float(v) for v in values])
    low, high = float(np.nanmin(numbers)), float(np.nanmax(numbers))
    log = low > 0 and high / low >= LOG_RATIO
    if log:
        numbers, low, high = np.log10(numbers), math.log10(low), math.log10(high)
        tickvals, ticktext = log_ticks(low, high)
    else:
        integers = all(float(v).is_integer() for v in present)
        tickvals, ticktext = nice_ticks(low, high, integers)
    if len(present) < len(values):
        below = low - 0.15 * ((high - low) or 1.0)
        numbers = np.where(np.isnan(numbers), below, numbers)
        tickvals, ticktext, low = [below, *tickvals], [NOT_SET, *ticktext], below
    return Axis(
        label=f"{label} (log)" if log else label,
        values=numbers.tolist(),
        tickvals=tickvals,
        ticktext=ticktext,
        range=[low, high] if high > low else None,
    )


def parallel_coordinates(trials: Sequence[TrialRead], metric: str, names: Sequence[str]) -> Figure:
    """Each complete trial as a line through the ``names`` parameters and its value."""
    done = _done(trials)
    dimensions = [axis(name, [t.params.get(name) for t in done]) for name in names]
    scores = [float(t.value) for t in done]  # type: ignore[arg-type]
    dimensions.append(axis(metric, scores))
    data = [
        {
            "type": "parcoords",
            "dimensions": [dimension.plotly() for dimension in dimensions],
            "labelangle": -20,
            "labelside": "top",
            "line": {"color": scores, "colorscale": "Viridis", "showscale": True},
        }
    ]
    return {"data": data, "layout": {"margin": {"l": 70, "r": 70, "t": 90, "b": 30}, "height": 420}}
