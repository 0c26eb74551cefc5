"""The end of a search, planned inside its budget: the winning trial (or the average it
leads, or each Pareto-front trial) fitted again on the non-test rows (the model the test
rows score) and, with ``search.refit`` 'full', on every labelled row (the model that
serves), exported, checked, measured and registered; then the search's own compression.
Each step is re-planned against the time left (``app.search.budget``), and the job's
phases record what each took and why a step was planned out."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import timedelta

import torch

from app.compression.job import with_compression
from app.compression.spec import CompressionSpec
from app.contracts.params import ParamValue
from app.contracts.results import LeftOut, ParetoPoint, PlanSummary
from app.core.db import utcnow
from app.core.errors import BrokenInvariant
from app.datasets.service import load_raw
from app.jobs.runner import JobContext, JobFailed, Recorder
from app.search import ensembles
from app.search.budget import FinishModel, Phases, TrialCost, refit_seconds
from app.search.compress_winner import compress_winner
from app.search.ensembles import AverageParams, AverageValidation, EnsemblePick
from app.search.explanations import background_feeds
from app.search.families import family_scores, reference_scores
from app.search.finalize import (
    FitNote,
    PreparedVersion,
    SearchSubject,
    SearchSummary,
    family_name,
    prepare_version,
    recorder_for,
)
from app.search.plan import plan_summary
from app.search.refit import FitRows, averaged, refit, rows_of
from app.search.run import SearchRun
from app.search.trial_metrics import TrialMetrics
from app.search.winners import (
    complete_trials,
    failure_reason,
    selection_summary,
    trials_at_once,
    winners,
)
from app.tables import Trial
from app.training.device import describe_device
from app.training.ensemble import Fitted
from app.training.families.registry import family_named
from app.training.models import Network
from app.training.table_models import TableModel

MULTI_OBJECTIVE_MEMBERS = 3  # Pareto-front versions the reserve plans for
FULL_REFIT_SAFETY = 1.15  # a refit on every row, scaled from the one just measured
MIN_SCALE, MAX_SCALE = 0.1, 4.0  # how far a measured refit moves the later estimates
MIN_FIT_SHARE = 0.1  # of a trial's time, taken as its fits however much it spent storing


def finish_model(run: SearchRun, compresses: bool) -> FinishModel:
    """What this search's finish does, for the time model."""
    selection_rows = len(run.splits.train) + len(run.splits.validation)
    members = MULTI_OBJECTIVE_MEMBERS if run.plan.multi_objective else 1
    if run.keeps_predictions:
        members = max(members, run.spec.max_ensemble)
    return FinishModel(
        budget_s=min(run.spec.timeout_s, run.settings.max_job_s) if run.spec.timeout_s else 0.0,
        members=members,
        selection_rows=selection_rows,
        all_rows=selection_rows + len(run.splits.test),
        # A compression chain measures its variants on the test rows: its parent, the
        # served model, must not have been fitted on them.
        full_refit=run.spec.refit == "full" and not compresses,
        compresses=compresses,
    )


def cost_of(run: SearchRun, trial: Trial) -> TrialCost:
    """What a complete trial says of its configuration's time: its wall time, its fits
    (one per fold) and the rows each trained on (fewer for a subsampled trial)."""
    metrics = TrialMetrics.of_trial(trial)
    if run.folds is not None:
        fits, rows = len(run.folds), len(run.folds.data[0].y_train)
    else:
        fits, rows = 1, len(run.splits.train)
    if metrics.train_rows:  # a large table's subsample, or each fold's rows
        rows = metrics.train_rows
    seconds = float(trial.duration_s or 0.0)
    if metrics.store_s is not None:  # what the trial spent measuring is not refit
        seconds = max(seconds - metrics.store_s, seconds * MIN_FIT_SHARE)
    family = family_named(run.plan.space.family_of(trial.params or {}))
    return TrialCost(
        value=float(trial.value if trial.value is not None else math.nan),
        seconds=seconds,
        fits=fits,
        rows=rows,
        export_s=float(metrics.params or 0.0) * family.export_s_per_param,
    )


class FinishReserve:
    """Seconds the trials leave for the finish, re-planned from the complete trials at most
    every ``REFRESH_S`` (what ``SearchRun.deadline`` subtracts from the budget's end)."""

    def __init__(self, run: SearchRun, compresses: bool, refresh_s: float) -> None:
        self.run, self.model, self.refresh_s = run, finish_model(run, compresses), refresh_s
        self.value = self.model.reserve([], maximize=True)
        self.read_at = -math.inf

    def __call__(self) -> float:
        now = time.monotonic()
        if now - self.read_at >= self.refresh_s:
            self.read_at = now
            costs = [cost_of(self.run, trial) for trial in complete_trials(self.run)]
            self.value = self.model.reserve(costs, maximize=self.run.plan.objectives[0].maximize)
        return self.value


def seconds_left(run: SearchRun) -> float:
    """Seconds the finish has: to the budget's end, or without ``timeout_s`` to the job's
    hard limit (``KILN_MAX_JOB_S``; the trials stopped at a share of it)."""
    end = run.budget_end
    if run.spec.timeout_s is None and run.started_at is not None:
        end = run.started_at + timedelta(seconds=run.settings.max_job_s)
    if end is None:
        return math.inf
    return (end - utcnow()).total_seconds()


def left_text(left: float) -> str:
    return f"{left:.0f} s were left" if left > 0 else "the budget was spent"


class Refitter:
    """Fits the chosen members again and notes in the phases what the time left allowed."""

    def __init__(
        self, run: SearchRun, model: FinishModel, phases: Phases, check: Callable[[], None]
    ) -> None:
        self.run, self.model, self.phases, self.check = run, model, phases, check
        # Measured over planned seconds of the refits so far: the later estimates follow it.
        self.scale = 1.0
        self.winner_s = 0.0  # the winner's refit on the non-test rows took

    def fit(self, members: list[Trial], which: FitRows) -> list[Network | TableModel]:
        return [refit(self.run, trial, self.check, which) for trial in members]

    def fit_winner(self, winner: Trial) -> Network | TableModel:
        """The winner on the non-test rows, timed: what scales the finish's estimates."""
        planned = refit_seconds(cost_of(self.run, winner), self.model.selection_rows)
        self.phases.start("refit on non-test rows", planned)
        started = time.monotonic()
        model = refit(self.run, winner, self.check, "non_test")
        took = self.winner_s = time.monotonic() - started
        if planned > 0:
            self.scale = min(max(took / planned, MIN_SCALE), MAX_SCALE)
        return model

    def need_s(self, members: list[Trial]) -> float:
        """Seconds the finish of an average of ``members`` (the winner first, already
        refit on the non-test rows) is planned to take from here."""
        costs = [cost_of(self.run, t) for t in members]
        need = sum(self.model.member_seconds(cost) for cost in costs[1:])
        if self.model.full_refit:
            need += refit_seconds(costs[0], self.model.all_rows)
        return need * self.scale + self.model.export_s(costs) + self.model.compression_s()

    def affordable(self, winner: Trial, complete: list[Trial]) -> EnsemblePick:
        """The average ensemble selection picks, chosen again with fewer members while its
        refits would not fit the time left (the best trial alone, at the least)."""
        chosen = ensembles.pick(self.run, winner, complete)
        first = len(chosen.members)
        while len(chosen.members) > 1:
            need, left = self.need_s(chosen.members), seconds_left(self.run)
            if self.model.affordable(need, left):
                break
            fewer = len(chosen.members) - 1
            self.phases.note(
                f"an average of {len(chosen.members)} trials was planned out (its refits "
                f"need about {need:.0f} s and {left_text(left)})"
            )
            chosen = (
                ensembles.pick(self.run, winner, complete, max_members=fewer)
                if fewer > 1
                else EnsemblePick(
                    [winner],
                    chosen.summary.model_copy(update={"members": [winner.number], "weights": None}),
                )
            )
        if len(chosen.members) < first:
            self.phases.note(
                "the best trial serves alone"
                if len(chosen.members) == 1
                else f"an average of {len(chosen.members)} serves"
            )
        return chosen

    def served(
        self, members: list[Trial], selected: list[Network | TableModel], selection_s: float
    ) -> tuple[list[Network | TableModel], FitRows]:
        """The models that serve: ``selected`` again on every row when the search refits
        in full and that fits the time left, else ``selected`` themselves."""
        if not self.model.full_refit:
            if self.run.spec.refit == "full":
                self.phases.note(
                    "the served model is fitted on the non-test rows: the search's compression "
                    "measures its variants on the test rows, which its parent must not have seen"
                )
            return selected, "non_test"
        share = self.model.all_rows / max(self.model.selection_rows, 1)
        need = selection_s * share * FULL_REFIT_SAFETY
        left = (
            seconds_left(self.run)
            - self.model.export_s([cost_of(self.run, member) for member in members])
            - (self.model.compression_s())
        )
        if not self.model.affordable(need, left):
            self.phases.note(
                f"the served model is fitted on the {self.model.selection_rows} non-test rows: "
                f"a refit on all {self.model.all_rows} rows needs about {need:.0f} s and "
                f"{left_text(left)}"
            )
            return selected, "non_test"
        self.phases.start("refit on every row", need)
        return self.fit(members, "all"), "all"


def finalize(
    context: JobContext,
    run: SearchRun,
    subject: SearchSubject,
    compression: CompressionSpec | None,
    phases: Phases,
    *,
    left_out: list[LeftOut] | None = None,
) -> Recorder:
    """Register the search's winner(s), timed into ``phases``; ``left_out``: the families
    the plan gave no trial, and why (for the plan's summary)."""
    complete = complete_trials(run)
    best = winners(run, complete)
    if not best:
        raise JobFailed(failure_reason(run))
    model = finish_model(run, compression is not None)
    refitter = Refitter(run, model, phases, context.check)
    test = run.splits.test
    raw_test = load_raw(run.store, run.dataset, test) if run.dataset.encoding is not None else None
    background = background_feeds(run)
    prepared: list[PreparedVersion] = []
    parents: list[Fitted] = []
    selection = selection_summary(run, best[0], complete)
    selection.families = family_scores(run, complete)
    for trial in best:
        members: list[Trial] = [trial]
        winner_model = refitter.fit_winner(trial)
        params: dict[str, ParamValue] | AverageParams = trial.params
        validation: TrialMetrics | AverageValidation = TrialMetrics.of_trial(trial)
        weights, average_members = None, None
        if len(best) == 1 and ensembles.considered(run, compression):
            phases.start("choosing an average")
            chosen = refitter.affordable(trial, complete)
            selection.ensemble = chosen.summary.model_dump(exclude_unset=True)
            members = chosen.members
            if len(members) > 1:
                if chosen.validation is None or chosen.weights is None:
                    raise BrokenInvariant("an average without its weights or validation")
                weights, validation = chosen.weights, chosen.validation
                params = AverageParams(
                    ensemble_of_trials=chosen.summary.members,
                    members=[t.params for t in chosen.members],
                    weights=chosen.weights,
                )
                average_members = ensembles.members_of(run, chosen)
        others = members[1:]
        started, selection_s = time.monotonic(), refitter.winner_s
        if others:
            planned = sum(refit_seconds(cost_of(run, m), model.selection_rows) for m in others)
            phases.start("refit of the average's members", planned * refitter.scale)
        selected = [winner_model, *refitter.fit(others, "non_test")]
        selection_s += time.monotonic() - started
        served, fitted_on = refitter.served(members, selected, selection_s)
        held_out: Fitted = selected[0] if len(selected) == 1 else averaged(selected, weights)
        serving: Fitted = served[0] if len(served) == 1 else averaged(served, weights)
        reference = None
        if trial is best[0]:
            reference = reference_scores(run, validation.scores, complete)
            selection.reference = reference
        phases.start("export and checks", model.export_s([cost_of(run, m) for m in members]))
        parents.append(held_out)
        prepared.append(
            prepare_version(
                context,
                subject,
                serving,
                trial=trial.number,
                params=params,
                validation=validation,
                reference=reference,
                test_rows=run.arrays.features[test],
                test_target=run.arrays.target[test],
                store=run.store,
                raw_test=raw_test,
                background=background,
                trained_on=describe_device(torch.device(run.device)),
                family=family_name(run.plan.space, params),
                members=average_members,
                fit=FitNote(
                    fitted_on="all_rows" if fitted_on == "all" else "non_test_rows",
                    rows=len(rows_of(run, fitted_on)),
                    held_out_model=held_out if fitted_on == "all" else None,
                    held_out_rows=model.selection_rows,
                ),
            )
        )
        if trial is best[0]:
            selection.refit_on_rows = len(rows_of(run, fitted_on))
    plan = PlanSummary.model_validate(
        {
            **plan_summary(run.plan, run.spec),
            "trials_at_once": trials_at_once(run),
            "left_out": [note.model_dump() for note in left_out or []],
        }
    )
    pareto = None
    if run.plan.multi_objective:
        pareto = [ParetoPoint(trial=t.number, values=t.values or []) for t in best]
    if compression is not None:
        phases.start("compression", model.compression_s())
    summary = SearchSummary(plan, selection, pareto, phases=phases)
    recorder = recorder_for(subject, prepared, summary)
    if compression is None:
        phases.stop()
        return recorder
    compressed = compress_winner(context, run, subject, compression, parents[0], prepared[0])
    phases.stop()
    return with_compression(recorder, compressed)
