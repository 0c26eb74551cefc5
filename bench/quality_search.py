"""ModelKiln's side of the search-quality benchmark: one budget-only search job through a
``kiln serve``, waited for (cancelled past a deadline), and what it reported turned into a
results-store record: its score on the test rows, the winner, each family's trials and best,
and the job's wall time (submit to registered version, and its own start to finish)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from app.contracts.results import Selection
from app.contracts.signature import VersionConfig
from app.search.space import FAMILY_KEY
from bench.harness import Kiln, submit, timestamp
from bench.quality_store import OURS, CellKey, CellRecord, SearchFacts
from bench.tables import TableSource

JOB_DEADLINE_BUDGETS = 5  # a job still running after 5 budgets and 5 minutes is cancelled
JOB_DEADLINE_EXTRA_S = 300


def shares_of(config: VersionConfig) -> dict[str, float]:
    """Each family's weight in a registered model: its members' (an average), else 1."""
    if not config.members:
        return {config.family or "?": 1.0}
    shares: dict[str, float] = {}
    for member in config.members:
        shares[member.family] = shares.get(member.family, 0.0) + member.weight
    return shares


def leader(selection: Selection, classification: bool) -> str | None:
    """The family whose best trial led the search (accuracy up, RMSE down)."""
    bests = [(s.best, s.family) for s in selection.families or [] if s.best is not None]
    if not bests:
        return None
    return (max(bests) if classification else min(bests))[1]


def trial_states(trials: list[dict[str, Any]], searched: list[str]) -> dict[str, dict[str, int]]:
    """Per family, the job's trials by state (complete, pruned, stopped, ...): a trial
    without a family parameter belongs to the only family searched."""
    counts: dict[str, Counter[str]] = {}
    only = searched[0] if len(searched) == 1 else "?"
    for trial in trials:
        family = str((trial.get("params") or {}).get(FAMILY_KEY) or only)
        counts.setdefault(family, Counter())[str(trial["state"])] += 1
    return {family: dict(states) for family, states in counts.items()}


def finished_job(kiln: Kiln, job_id: int, budget: int) -> dict[str, Any]:
    """The job once it has ended, with its trials; one still running after five budgets
    and five minutes is cancelled (a stuck worker should not stall a night's run)."""
    deadline_s = budget * JOB_DEADLINE_BUDGETS + JOB_DEADLINE_EXTRA_S
    started = time.monotonic()
    with kiln.client() as client:
        while True:
            job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                job["trials"] = client.get(f"/v1/jobs/{job_id}/trials").json()
                return job
            if time.monotonic() - started > deadline_s:
                client.post(f"/v1/jobs/{job_id}/cancel")
                raise TimeoutError(
                    f"job {job_id} still {job['status']} after {deadline_s} s: cancelled"
                )
            time.sleep(1.0)


def run_ours(
    kiln: Kiln,
    source: TableSource,
    dataset_id: int,
    rows: int,
    key: CellKey,
) -> CellRecord:
    """One budget-only search job, and what it reported."""
    model = f"{source.name.replace('_', '-').lower()}-b{key.budget}-s{key.seed}"
    search: dict[str, object] = {"timeout_s": key.budget, "seed": key.seed}
    if key.families:
        search["families"] = list(key.families)
    job_id = submit(kiln, dataset_id, model, **search)
    job = finished_job(kiln, job_id, key.budget)
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
    result = job["result"]
    with kiln.client() as client:
        response = client.get(f"/v1/models/{model}/versions/{result['version']}")
    response.raise_for_status()
    version = response.json()
    selection = Selection.model_validate(result["selection"]) if result.get("selection") else None
    config = VersionConfig.model_validate(version["config"])
    classification = source.task == "classification"
    created = timestamp(job["created_at"])
    finished = timestamp(job["finished_at"])
    family_scores = (selection.families if selection else None) or []
    facts = SearchFacts(
        job_id=job_id,
        version=int(result["version"]),
        family=config.family or "?",
        latency_ms=float(version["latency_p50_ms"] or 0.0),
        size_bytes=int(version["size_bytes"]),
        trials=sum(1 for trial in job["trials"] if trial["state"] == "complete"),
        family_bests={entry.family: entry.best for entry in family_scores},
        family_trials={entry.family: entry.trials for entry in family_scores},
        trial_states=trial_states(job["trials"], [entry.family for entry in family_scores]),
        shares=shares_of(config),
        led_by=leader(selection, classification) if selection else None,
        baseline=selection.reference.baseline if selection and selection.reference else None,
        submit_to_registered_s=timestamp(version["created_at"]) - created,
        started_to_finished_s=finished - timestamp(job["started_at"]),
        submit_to_finished_s=finished - created,
        validation_rows=selection.validation_rows if selection else None,
        refit_on_rows=selection.refit_on_rows if selection else None,
    )
    metric = "accuracy" if classification else "rmse"
    return CellRecord(
        table=key.table,
        seed=key.seed,
        system=OURS,
        budget=key.budget,
        task=source.task,
        rows=rows,
        score=float(result["metrics"][metric]),
        seconds=facts.submit_to_finished_s,
        chosen=facts.family,
        families=list(key.families),
        search=facts,
    )
