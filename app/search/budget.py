"""A search's time as one budget: ``timeout_s`` is the job's wall time, from the moment a
worker claims it to the registered version, so the trials stop early enough for what
comes after them (refitting the winner, averaging, export and its checks, the search's own
compression) to fit inside it.

The time model is the search's own evidence: each complete trial's wall time, divided by
the models it fitted (one, or one per fold) and scaled by the rows a refit trains on
against the rows the trial's fits trained on. Before any trial completes the reserve is a
fixed share of the budget; it is recomputed every few seconds as trials complete. The
finish itself re-plans with what is measured: an average whose refits would not fit the
time left gives way to the single winner, and a refit on every row that would not fit
leaves the served model fitted on the non-test rows; the job's phases say which and why."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.contracts.results import PhaseTime

# What one registered version costs after its refit: ONNX export, the parity check against
# the trained model, the held-out scores, latency timing and registration (measured at
# 0.5-2 s for tables of up to 50 columns on a 2-core machine), the footprint's child
# process (memory and energy: 0.75-0.9 s), and per averaged member.
EXPORT_S = 3.0
EXPORT_PER_MEMBER_S = 0.5
# A trial's fits take longer than a refit of the same configuration: they score the
# validation rows as they go, run past their best (early stopping's patience) and share
# the cores with the other trials; a refit runs alone for the epochs or rounds found. On
# 2 cores, refits took 0.4-0.6 of the trials' fit time (digits, breast cancer, diamonds),
# and on a subsample's multiple of the rows less than in proportion (diamonds: 10,000 to
# 45,849 rows, 10.5 s of trial to 4.7 s of refit): rows count at this power.
REFIT_SHARE = 0.75
ROWS_POWER = 0.8
FIRST_RESERVE_SHARE = 0.1  # reserved before any trial has completed
MOST_RESERVE_SHARE = 0.35  # the trials keep at least the rest of the budget
# The average a search registers has two or three distinct members far more often than its
# most (five): the reserve plans for this many, and the finish drops an average that
# turns out not to fit.
PLANNED_MEMBERS = 3
AVERAGE_CHOICE_S = 0.5  # ensemble selection over the best trials' held-out predictions
COMPRESSION_SHARE = 0.25  # a search's own compression chain: planned as this share
COMPRESSION_MOST_S = 600.0  # a long budget keeps no more than this for its chain
REFRESH_S = 2.0  # how often a worker re-reads the trials to re-plan the reserve
# Trials stop at a batch, a boosting round or a fit's end, and the main worker then waits
# for the others' last trials: measured at 0.3-1 s past the trials' deadline on a 2-core
# machine. The reserve keeps this much (seconds, and a share of the budget) for it.
STOP_MARGIN_S = 0.5
STOP_MARGIN_SHARE = 0.015
# The finish keeps a planned step when it needs at most this share of the budget more
# than is left: the estimates are padded, and the budget's target is 5%.
FINISH_SLACK_SHARE = 0.02


@dataclass(frozen=True)
class TrialCost:
    """What one complete trial says about the time its configuration takes."""

    value: float  # the first objective
    seconds: float  # the trial's wall time
    fits: int  # models it fitted: 1, or one per fold
    rows: int  # rows each of its fits trained on
    # Seconds its model's export takes beyond ``EXPORT_S``: a tree family's converter walks
    # every node (``ModelFamily.export_s_per_param`` x its learnt numbers).
    export_s: float = 0.0


def refit_seconds(cost: TrialCost, rows: int) -> float:
    """Expected seconds to fit the trial's configuration once on ``rows`` rows."""
    per_fit = cost.seconds / max(cost.fits, 1)
    return per_fit * (rows / max(cost.rows, 1)) ** ROWS_POWER * REFIT_SHARE


@dataclass(frozen=True)
class FinishModel:
    """What the finish of a search does, for the time it will take: how many models it
    may average, the rows each refit trains on (without the test rows, then with them when
    the served model is fitted on every row), and whether a compression chain follows."""

    budget_s: float
    members: int  # the most trials the winner may average (1: no average)
    selection_rows: int  # non-test rows
    all_rows: int  # every labelled row
    full_refit: bool
    compresses: bool

    def refit_rows(self) -> list[int]:
        """The row counts of the fits one member needs."""
        return [self.selection_rows, self.all_rows] if self.full_refit else [self.selection_rows]

    def member_seconds(self, cost: TrialCost) -> float:
        return sum(refit_seconds(cost, rows) for rows in self.refit_rows())

    def compression_s(self) -> float:
        if not self.compresses:
            return 0.0
        return min(self.budget_s * COMPRESSION_SHARE, COMPRESSION_MOST_S)

    def reserve(self, costs: Sequence[TrialCost], maximize: bool) -> float:
        """Seconds to keep for the finish, given the complete trials so far: the refits
        of the best ``members`` trials (an average is formed of the best), their export,
        and the compression share; within a share of the budget (the finish re-plans if
        what it measures says less fits)."""
        if not costs:
            planned = self.budget_s * FIRST_RESERVE_SHARE
        else:
            ranked = sorted(costs, key=lambda cost: cost.value, reverse=maximize)
            best = ranked[: min(self.members, PLANNED_MEMBERS)]
            planned = sum(self.member_seconds(cost) for cost in best) + self.export_s(best)
            if self.members > 1:
                planned += AVERAGE_CHOICE_S
        most = self.budget_s * MOST_RESERVE_SHARE
        return min(planned, most) + self.compression_s() + self.stop_margin_s()

    def stop_margin_s(self) -> float:
        return STOP_MARGIN_S + self.budget_s * STOP_MARGIN_SHARE

    def affordable(self, need_s: float, left_s: float) -> bool:
        """Whether a step planned to need ``need_s`` fits the ``left_s`` seconds left."""
        return need_s <= left_s + self.budget_s * FINISH_SLACK_SHARE

    def export_s(self, members: Sequence[TrialCost]) -> float:
        """Seconds to export, check and measure one version of ``members`` (one: itself)."""
        count = len(members)
        walked = sum(cost.export_s for cost in members)
        return EXPORT_S + (EXPORT_PER_MEMBER_S * count if count > 1 else 0.0) + walked


class Phases:
    """The finish's phases as they run: each one's planned and measured seconds, and notes
    where the plan changed (what the job's result and page show)."""

    def __init__(self, tell: Callable[[str], None] | None = None) -> None:
        self.tell = tell  # stores the running phase's name where the job's page reads it
        self.done: list[PhaseTime] = []
        self._name: str | None = None
        self._planned: float | None = None
        self._started = 0.0
        self._notes: list[str] = []

    @property
    def running(self) -> str | None:
        return self._name

    def add(self, name: str, took_s: float, planned_s: float | None = None) -> None:
        """A phase measured elsewhere (the trials, timed from the job's start)."""
        self.stop()
        self.done.append(PhaseTime(name=name, planned_s=_rounded(planned_s), took_s=took_s))

    def start(self, name: str, planned_s: float | None = None) -> None:
        self.stop()
        self._name, self._planned, self._started = name, planned_s, time.monotonic()
        if self.tell is not None:
            self.tell(name)

    def note(self, text: str) -> None:
        """Why the running phase (or the last one) departs from the plan."""
        if self._name is not None:
            self._notes.append(text)
        elif self.done:
            last = self.done[-1]
            joined = text if last.note is None else f"{last.note}; {text}"
            self.done[-1] = last.model_copy(update={"note": joined})

    def stop(self) -> None:
        if self._name is None:
            return
        self.done.append(
            PhaseTime(
                name=self._name,
                planned_s=_rounded(self._planned),
                took_s=round(time.monotonic() - self._started, 2),
                note="; ".join(self._notes) or None,
            )
        )
        self._name, self._notes = None, []


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 2)
