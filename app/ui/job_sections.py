"""The sections of a job's dashboard page. Every job page shows the job's facts, progress
and trials; a kind names the sections its page adds (``JobKind.page_sections``) and
``build_page`` builds those, in that order: the charts drawn and the tables filled. A section
is reusable across kinds (a compression's report is on a compress job's page and on a
search's that compressed its winner); a kind that needs a new one adds it to ``SECTIONS``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from app.api.schemas import JobRead, TrialRead
from app.compression.kind import CompressionReport, compression_report
from app.contracts.enums import JobStatus, TrialState
from app.contracts.results import CompressionFields, Objective, PredictResult, SearchResult
from app.core.db import Session
from app.search.kind import objectives_of, pareto_front
from app.tables import Job
from app.ui import charts, parallel


@dataclass(frozen=True)
class JobShown:
    """The job a page shows: its row, as the API reads it, and its trials."""

    session: Session
    row: Job
    job: JobRead
    trials: list[TrialRead]


@dataclass
class JobPage:
    """What the sections put on a job's page (what no section fills stays empty)."""

    objectives: list[Objective] = field(default_factory=list)
    figures: dict[str, charts.Figure] = field(default_factory=dict)
    notes: dict[str, str | None] = field(default_factory=dict)
    report: CompressionReport | None = None
    output: PredictResult | None = None  # a batch prediction's file, linked in the facts


def _trials(shown: JobShown, page: JobPage) -> None:
    """A search's objectives and the charts of its trials: history, learning curves,
    importances and parallel coordinates."""
    page.objectives = objectives_of(shown.session, shown.row)
    trials = shown.trials
    if not page.objectives or not trials:
        return
    first = page.objectives[0]
    figures, notes = page.figures, page.notes
    figures["history"] = charts.history(trials, first.metric, first.direction == "maximize")
    curves = charts.learning_curves(trials, first.metric)
    if curves["data"]:
        figures["curves"] = curves
    notes["curves"] = charts.epochless_note(trials)
    importance = charts.importances(trials)
    notes["importance"] = why_not_drawn = charts.importance_note(trials, importance)
    if importance and why_not_drawn is None:
        figures["importance"] = charts.importance_bars(importance)
    if sum(t.state == TrialState.COMPLETE for t in trials) >= 2:
        axes = parallel.parallel_axes(trials, importance if "importance" in figures else {})
        figures["parallel"] = parallel.parallel_coordinates(trials, first.metric, axes)
        varied = parallel.varied_count(trials)
        if varied > len(axes):
            notes["parallel"] = (
                f"The {len(axes)} parameters that explain the most, of {varied} that varied."
                if "importance" in figures
                else f"{len(axes)} of the {varied} parameters that varied."
            )


def _pareto(shown: JobShown, page: JobPage) -> None:
    """A finished multi-objective search's front, drawn over its trials."""
    job = shown.job
    result = job.result
    if job.status != JobStatus.SUCCEEDED or not isinstance(result, SearchResult):
        return
    if result.pareto is not None:
        front = pareto_front(shown.session, job.id)
        page.figures["pareto"] = charts.pareto(shown.trials, front.trials, front.objectives)


def _compression(shown: JobShown, page: JobPage) -> None:
    """A finished compression's report, and quality against size and against latency."""
    job = shown.job
    result = job.result
    if job.status != JobStatus.SUCCEEDED or not isinstance(result, CompressionFields):
        return
    if result.compression is not None:
        page.report = compression_report(shown.session, job.id)
        page.figures["size"], page.figures["latency"] = charts.compression_tradeoffs(
            page.report.rows
        )


def _output(shown: JobShown, page: JobPage) -> None:
    """A batch prediction's output file, once it has one."""
    result = shown.job.result
    page.output = result if isinstance(result, PredictResult) else None


Section = Callable[[JobShown, JobPage], None]
SECTIONS: dict[str, Section] = {
    "trials": _trials,
    "pareto": _pareto,
    "compression": _compression,
    "output": _output,
}


def build_page(shown: JobShown, sections: Sequence[str]) -> JobPage:
    """The page's sections, built in the order the job's kind names them."""
    page = JobPage()
    for name in sections:
        SECTIONS[name](shown, page)
    return page
