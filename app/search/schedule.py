"""Which model family a search over several families tries next, and on what rows: pure
rules over a small typed summary of the trials so far (``TrialRecord``), unit-tested
without Optuna; ``app.search.schedule_study`` applies them to a running search.

The order follows FLAML's idea of an estimated cost for improvement, written here as its
inverse, an expected improvement per second:

1. Every family gets evidence: a family with no trial yet goes first (cheapest ``cost``
   first); a network's first trial is a cheap configuration (``cheap_start``).
2. Then the family whose next trial is expected to improve most on the search's best per
   second it costs. Its next value is modelled as normal around the family's best, spread
   as its own values are (shrunk towards the search's spread while it has few), narrowed
   by every trial since it last improved; the expected gain over the search's best is
   divided by its mean trial seconds. A family far behind with settled values gets almost
   nothing; the leader, or a family close behind that still varies, gets the trials.
3. A floor: a family below ``FLOOR_SHARE`` of both the time spent and the trials run goes
   first, so that none starves.

A family is skipped once ``FAILURES_TO_DROP`` of its trials ended without a result (failed,
infeasible, stopped or pruned) and none completed, and while its typical trial cannot
finish in the time left.

On a large table (more than ``LARGE_TABLE_ROWS`` non-test rows, scored on the holdout) the
first trials fit on ``SUBSAMPLE_ROWS`` training rows (stratified; scored on all validation
rows, so scores compare): successive halving across families. Once every family has a
subsampled result, the better half (and any within ``PROMOTE_MARGIN`` of the best) are
promoted to trials on every training row; the others get no more trials until each
promoted family has ``REJOIN_AFTER_FULL`` full-data results (time remains).

Which families a plan gives no trial, and why, is ``app.search.left_out``."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from app.contracts.enums import TrialState
from app.contracts.params import ParamValue
from app.training.families.base import Dimension
from app.training.families.registry import FAMILIES

FLOOR_SHARE = 0.1  # of the seconds spent and of the trials run, each family's least
FAILURES_TO_DROP = 2  # trials ended without a result, none complete: no more trials
STALE_NARROWING = 0.85  # a family's spread, times this for each trial since it improved
PRIOR_WEIGHT = 1.0  # how many values the search's spread counts for in a family's spread
LEADER_SHARE = 0.01  # the spread assumed when the search has one value: 1% of it
MIN_TRIAL_S = 0.1
# Halving across families. At 20,000 non-test rows the training split has 14,000: a 10,000
# row subsample saves less than half of a trial below that, and the validation split (3,000
# rows) is then precise enough to rank on. A default LightGBM fit of 10,000 x 50 took 5-7 s
# on one core of the 2-core machine (35,000 rows: 21 s), an MLP epoch 0.05 s (0.12 s).
LARGE_TABLE_ROWS = 20_000
SUBSAMPLE_ROWS = 10_000
PROMOTE_MARGIN = 0.01  # relative to the best subsampled value
REJOIN_AFTER_FULL = 2

# The cheap configuration a network family's first trial fixes (each value, or the nearest
# its dimension allows); the sampler chooses the rest.
CHEAP_NETWORK: dict[str, ParamValue] = {
    "n_layers": 1,
    "width": 64,
    "n_blocks": 1,
    "channels": 16,
    "head_width": 32,
    "batch_size": 256,
    "numeric_embedding": "none",
    "category_width": 0,
}
LAYER_COUNTS = {"width": "n_layers", "channels": "n_blocks"}
FINISHED = frozenset(
    {
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAILED,
        TrialState.INFEASIBLE,
        TrialState.STOPPED,
    }
)


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the scheduler reads it: its family, state, seconds (so far, while it
    runs), first objective (complete trials), training rows (None: all of them) and when
    it ended (any increasing clock; running trials are never compared on it)."""

    family: str
    state: TrialState
    seconds: float
    value: float | None = None
    train_rows: int | None = None
    ended: float = 0.0


@dataclass(frozen=True)
class SearchState:
    """What the scheduler decides on: the families planned (listed order), the trials so
    far, which way is better, the seconds left (None: no deadline), the training split's
    rows and the subsample's (None: the table is not large), each family's estimated first
    trial in seconds (where known) and the families the plan left out."""

    families: tuple[str, ...]
    trials: tuple[TrialRecord, ...]
    maximize: bool
    seconds_left: float | None = None
    training_rows: int = 0
    subsample_rows: int | None = None
    first_trial_s: Mapping[str, float] = field(default_factory=dict)
    left_out: frozenset[str] = frozenset()


@dataclass(frozen=True)
class FamilyChoice:
    """The family the next trial comes from, why, whether it fits on the subsample, and
    whether it is the family's first (a network's first is a cheap configuration)."""

    family: str
    reason: str
    subsample: bool
    cheap_start: bool


@dataclass(frozen=True)
class Evidence:
    """One family's trials, summarised (gains: values oriented so that higher is better)."""

    family: str
    trials: int  # finished or running
    running: int
    finished: int  # ended: complete, pruned, failed, infeasible or stopped
    spent_s: float
    gains: tuple[float, ...]  # complete trials' values, in the order they ended
    best_subsample: float | None
    full_results: int
    stale: int  # trials (running ones too) since the family's best
    subsample_s: float | None  # mean seconds of its finished subsampled trials
    full_s: float | None  # ... and of those on every training row

    @property
    def best(self) -> float | None:
        return max(self.gains) if self.gains else None


def _gain(value: float, maximize: bool) -> float:
    return value if maximize else -value


def _is_subsampled(trial: TrialRecord, state: SearchState) -> bool:
    return trial.train_rows is not None and trial.train_rows < state.training_rows


def evidence(state: SearchState, family: str) -> Evidence:
    """``family``'s trials in ``state``, summarised."""
    own = [t for t in state.trials if t.family == family and t.state != TrialState.LOST]
    finished = sorted((t for t in own if t.state in FINISHED), key=lambda t: t.ended)
    gains, best, stale = [], -math.inf, 0
    for trial in finished:
        stale += 1
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            gain = _gain(trial.value, state.maximize)
            gains.append(gain)
            if gain > best:
                best, stale = gain, 0
    subsampled = [t for t in finished if _is_subsampled(t, state)]
    full = [t for t in finished if not _is_subsampled(t, state)]
    sub_gains = [
        _gain(t.value, state.maximize)
        for t in subsampled
        if t.state == TrialState.COMPLETE and t.value is not None
    ]
    return Evidence(
        family=family,
        trials=len(own),
        running=sum(1 for t in own if t.state == TrialState.RUNNING),
        finished=len(finished),
        spent_s=sum(t.seconds for t in own),
        gains=tuple(gains),
        best_subsample=max(sub_gains) if sub_gains else None,
        full_results=sum(1 for t in full if t.state == TrialState.COMPLETE),
        stale=stale + sum(1 for t in own if t.state == TrialState.RUNNING),  # pending
        subsample_s=statistics.fmean(t.seconds for t in subsampled) if subsampled else None,
        full_s=statistics.fmean(t.seconds for t in full) if full else None,
    )


def _ranked_on(found: Evidence) -> float:
    """What promotion ranks a family on: its best subsampled value, else its best."""
    if found.best_subsample is not None:
        return found.best_subsample
    return found.best if found.best is not None else -math.inf


def promoted(state: SearchState, live: Sequence[Evidence]) -> frozenset[str]:
    """The families whose trials fit on every training row: all, on a table that is not
    large; else none until every live family has a result, then the better half of them
    by subsampled results (and any within ``PROMOTE_MARGIN`` of the best), and any that
    already has a full-data result."""
    if state.subsample_rows is None:
        return frozenset(state.families)
    already = {e.family for e in live if e.full_results}
    if not live or any(e.best is None for e in live):
        return frozenset(already)
    ranked = sorted(live, key=_ranked_on, reverse=True)
    top = _ranked_on(ranked[0])
    keep = {e.family for e in ranked[: math.ceil(len(ranked) / 2)]}
    margin = PROMOTE_MARGIN * max(abs(top), 1e-12)
    close = {e.family for e in ranked if _ranked_on(e) >= top - margin}
    return frozenset(keep | close | already)


def trial_seconds(state: SearchState, found: Evidence, subsample: bool) -> float | None:
    """A family's typical trial at the next trial's rows: its mean so far at those rows,
    else its subsampled mean scaled to every row, else its estimated first trial."""
    if subsample and found.subsample_s is not None:
        return found.subsample_s
    if not subsample and found.full_s is not None:
        return found.full_s
    if not subsample and found.subsample_s is not None and state.subsample_rows:
        return found.subsample_s * state.training_rows / state.subsample_rows
    return state.first_trial_s.get(found.family)


def expected_gain(best: float, leader: float, spread: float) -> float:
    """E[max(0, X - leader)] for X normal around ``best`` with deviation ``spread``."""
    if spread <= 0:
        return max(0.0, best - leader)
    z = (best - leader) / spread
    density = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return (best - leader) * 0.5 * math.erfc(-z / math.sqrt(2)) + spread * density


def spread_of(found: Evidence, prior: float) -> float:
    """The family's values' deviation, shrunk towards ``prior`` (``PRIOR_WEIGHT`` values'
    worth), narrowed for each trial since it last improved."""
    values = found.gains
    mean = statistics.fmean(values)
    squares = sum((v - mean) ** 2 for v in values) + PRIOR_WEIGHT * prior**2
    return math.sqrt(squares / (len(values) - 1 + PRIOR_WEIGHT)) * STALE_NARROWING**found.stale


def gain_per_second(
    state: SearchState, found: Evidence, leader: float, prior: float, subsample: bool
) -> float:
    """The expected gain over the search's best from one more trial (on the subsample or
    not), per second."""
    seconds = trial_seconds(state, found, subsample) or MIN_TRIAL_S
    gain = expected_gain(found.best or -math.inf, leader, spread_of(found, prior))
    return gain / max(seconds, MIN_TRIAL_S)


def _cheapest(names: Sequence[str]) -> str:
    order = {name: index for index, name in enumerate(FAMILIES)}
    return min(
        names,
        key=lambda name: (
            FAMILIES[name].cost if name in FAMILIES else 100,
            order.get(name, len(order)),
        ),
    )


def choose_family(state: SearchState) -> FamilyChoice | None:
    """The family the next trial should come from (None: leave it to the sampler)."""
    found = {name: evidence(state, name) for name in state.families if name not in state.left_out}
    healthy = [e for e in found.values() if not _dropped(e)]
    if not healthy:
        return None
    lifted = promoted(state, healthy)

    def sub(e: Evidence) -> bool:
        return e.family not in lifted

    def fits(e: Evidence) -> bool:
        seconds = trial_seconds(state, e, sub(e))
        return state.seconds_left is None or seconds is None or seconds <= state.seconds_left

    def choice(e: Evidence, reason: str) -> FamilyChoice:
        return FamilyChoice(e.family, reason, subsample=sub(e), cheap_start=e.trials == 0)

    live = [e for e in healthy if fits(e)]
    if not live:
        quickest = min(healthy, key=lambda e: trial_seconds(state, e, sub(e)) or 0.0)
        return choice(quickest, "no family's typical trial fits the time left: the quickest")
    # A family with no result gets a first trial (a second after one that did not finish).
    untried = [e.family for e in live if not e.gains and not e.running]
    if untried:
        return choice(found[_cheapest(untried)], "no result yet: cheapest family first")
    scored = [e for e in live if e.gains]
    if not scored:
        return choice(found[_cheapest([e.family for e in live])], "no result yet: cheapest")
    candidates = _candidates(state, scored, lifted)
    total_s = sum(e.spent_s for e in found.values()) or 1.0
    total_trials = sum(e.trials for e in found.values()) or 1
    starving = [
        e
        for e in candidates
        if e.spent_s / total_s < FLOOR_SHARE and e.trials / total_trials < FLOOR_SHARE
    ]
    if starving:
        least = min(starving, key=lambda e: (e.spent_s / total_s, e.trials))
        return choice(least, f"under its floor share ({FLOOR_SHARE:.0%} of time and trials)")
    leader = max(e.best for e in scored if e.best is not None)
    prior = _prior_spread([g for e in scored for g in e.gains], leader)
    rates = {e.family: gain_per_second(state, e, leader, prior, sub(e)) for e in candidates}
    best = max(candidates, key=lambda e: (rates[e.family], -e.spent_s))
    return choice(best, f"best expected gain per second ({rates[best.family]:.3g})")


def _dropped(found: Evidence) -> bool:
    """Whether a family gets no more trials: ``FAILURES_TO_DROP`` of them ended without a
    result, and none completed."""
    return found.finished >= FAILURES_TO_DROP and not found.gains


def _candidates(
    state: SearchState, scored: list[Evidence], lifted: frozenset[str]
) -> list[Evidence]:
    """The families the gain per second chooses among: on a large table, once promotion
    is decided, the promoted ones until each has ``REJOIN_AFTER_FULL`` full-data results."""
    if state.subsample_rows is None:
        return scored
    ahead = [e for e in scored if e.family in lifted]
    if not ahead or all(e.full_results >= REJOIN_AFTER_FULL for e in ahead):
        return scored
    return ahead


def _prior_spread(gains: list[float], leader: float) -> float:
    """The spread a family with one value is assumed to have: half the search's range of
    values, or ``LEADER_SHARE`` of the value when there is one value."""
    spread = (max(gains) - min(gains)) / 2
    return spread if spread > 0 else LEADER_SHARE * max(abs(leader), 1e-9)


def train_on_subsample(state: SearchState, family: str) -> bool:
    """Whether a trial of ``family`` fits on the subsample (a large table, not promoted)."""
    if state.subsample_rows is None:
        return False
    found = [evidence(state, name) for name in state.families if name not in state.left_out]
    return family not in promoted(state, [e for e in found if not _dropped(e)])


def _nearest(dimension: Dimension, value: ParamValue) -> ParamValue | None:
    """``value`` if the dimension allows it, else the nearest it allows (None: a category
    it does not have)."""
    if dimension.kind == "categorical":
        if value in dimension.choices:
            return value
        numbers = [c for c in dimension.choices if isinstance(c, int) and not isinstance(c, bool)]
        if isinstance(value, int) and numbers:
            return min(numbers, key=lambda c: (abs(c - value), -c))
        return None
    if isinstance(value, str | bool):
        return None
    clipped = min(max(float(value), dimension.low), dimension.high)
    return round(clipped) if dimension.kind == "int" else clipped


def cheap_start(dimensions: Mapping[str, Dimension]) -> dict[str, ParamValue]:
    """The cost-setting values of a network's first trial (``CHEAP_NETWORK``, and its
    fewest epochs), each the nearest its dimension allows; per-layer values for each layer
    of the fixed count."""
    fixed: dict[str, ParamValue] = {}
    for name, value in CHEAP_NETWORK.items():
        dimension = dimensions.get(name)
        if dimension is None or dimension.per_layer:
            continue
        chosen = _nearest(dimension, value)
        if chosen is not None:
            fixed[name] = chosen
    if "epochs" in dimensions:
        fixed["epochs"] = int(dimensions["epochs"].low)
    for per_layer, count in LAYER_COUNTS.items():
        dimension = dimensions.get(per_layer)
        if dimension is not None and dimension.per_layer and count in fixed:
            for layer in range(int(fixed[count])):
                chosen = _nearest(dimension, CHEAP_NETWORK[per_layer])
                if chosen is not None:
                    fixed[f"{per_layer}_{layer}"] = chosen
    return fixed
