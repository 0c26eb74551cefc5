"""A job's progress in a terminal: one line redrawn in place (a line per change when the
output is not a terminal), and what the job left once it ends."""

from __future__ import annotations

import sys
from typing import TextIO

from modelkiln.client import Client
from modelkiln.job import Job

BAR_WIDTH = 30


def clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def progress_share(job: Job) -> float:
    """0 to 1: the count out of the total, or for a search with a time budget the time
    spent, whichever is nearer its end."""
    if job.status == "succeeded":
        return 1.0
    shares = [job.done / job.total if job.total else 0.0]
    if job.time_budget_s:
        shares.append((job.elapsed_s or 0.0) / job.time_budget_s)
    return min(1.0, max(shares))


def count_text(job: Job) -> str:
    """``3/8 trials``; ``13 trials`` when the total is not known (a time-only search)."""
    if job.total:
        return f"{job.done}/{job.total} {job.unit}"
    return f"{job.done} {job.unit}"


def time_text(job: Job) -> str:
    """``00:32/00:45`` for a search with a time budget, else the time since it started."""
    spent = clock(job.elapsed_s or 0.0)
    return f"{spent}/{clock(job.time_budget_s)}" if job.time_budget_s else spent


def best_text(job: Job) -> str:
    if job.best_value is None:
        return "-"
    return f"{job.best_value:.4g}" + (f" {job.best_metric}" if job.best_metric else "")


def scores_text(job: Job) -> str:
    """A search's scores: the best single trial's, and once a version is registered its
    score beside it (an average of trials can beat every trial)."""
    best = f"best trial {best_text(job)}"
    if job.registered_value is None:
        return best
    metric = f" {job.best_metric}" if job.best_metric else ""
    return f"registered v{job.registered_version} {job.registered_value:.4g}{metric}, {best}"


class ProgressBar:
    """A job's progress on one line: a bar, the count, a search's scores (``scores_text``),
    and the time (spent out of the budget, for a time-limited search)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()

    def line(self, job: Job) -> str:
        filled = round(BAR_WIDTH * progress_share(job))
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        best = f"{scores_text(job)}  " if job.kind == "search" else ""
        return f"job {job.id} {job.status:<9} [{bar}] {count_text(job)}  {best}{time_text(job)}"

    def show(self, job: Job) -> None:
        if self.live:
            self.out.write("\r\033[K" + self.line(job))
            if job.finished:
                self.out.write("\n")
        else:
            self.out.write(self.line(job) + "\n")
        self.out.flush()


def outcome(job: Job) -> str:
    """What a job that succeeded left: the versions it registered (a search, a compression)
    and what serves beside them, or the rows it predicted (a batch prediction, which
    registers nothing)."""
    versions = job.registered_versions
    if job.model_name and versions:
        registered = f"registered {job.model_name} " + ", ".join(f"v{v}" for v in versions)
        serving = job.serving
        return registered if serving is None else f"{registered}\n{serving.summary}"
    if job.kind == "predict":
        used_version = job.result.version if job.result else None
        used = f" with {job.model_name} v{used_version}" if used_version is not None else ""
        return f"job {job.id} predicted {job.done} rows{used}"
    return f"job {job.id} succeeded"


def watch_job(
    client: Client,
    job_id: int,
    out: TextIO = sys.stderr,
    poll_s: float = 1.0,
    *,
    say_outcome: bool = True,
) -> int:
    """Draw the job's progress until it finishes; say what it left (``say_outcome``); 0 if
    it succeeded, else 1."""
    bar = ProgressBar(out)
    job = client.wait(job_id, poll_s=poll_s, on_progress=bar.show)
    if job.status != "succeeded":
        print(f"job {job.id} {job.status}: {job.error or 'no reason given'}", file=out)
        return 1
    if say_outcome:
        print(outcome(job))
    return 0
