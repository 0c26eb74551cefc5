"""What the dashboard says about registered versions: an average's members (trial,
family, weight, own score), a search's registered version beside its best single trial,
and each model's routes and main metric for the models list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.api.schemas import JobRead, ModelRead
from app.contracts.enums import AVERAGE_FAMILY
from app.contracts.results import SearchResult
from app.contracts.signature import VersionConfig
from app.contracts.traffic import AliasPolicy
from app.core.db import Session
from app.core.errors import KilnError
from app.evaluation.names import default_metric, task_metric_names
from app.registry import service as registry
from app.registry import traffic
from app.search.space import FAMILY_KEY
from app.tables import Model, ModelVersion
from app.ui.model_panel import search_reference


@dataclass(frozen=True)
class Member:
    trial: int
    family: str | None  # None: not recorded
    weight: float
    score: float | None  # its own score on the search's evidence; None: not recorded


@dataclass(frozen=True)
class Average:
    """A version that averages a search's trials; ``members`` None: not recorded."""

    version: int
    job_id: int | None
    members: list[Member] | None

    @property
    def trials(self) -> str:
        if self.members is None:
            return "trials not recorded"
        return "trials " + ", ".join(str(m.trial) for m in self.members)


def _from_params(config: VersionConfig) -> list[Member] | None:
    """The members as releases before ``VersionConfig.members`` left them in the params:
    trial numbers, weights, each member's parameters (its family among them when the
    search had several). None when those lists are not there."""
    params: dict[str, Any] = config.params or {}
    trials, weights, each = (params.get(k) for k in ("ensemble_of_trials", "weights", "members"))
    if not isinstance(trials, list) or not isinstance(weights, list):
        return None
    if len(trials) != len(weights):
        return None
    if not isinstance(each, list) or len(each) != len(trials):
        each = [{}] * len(trials)
    one = config.family if config.family != AVERAGE_FAMILY else None
    return [
        Member(
            trial=int(trial),
            family=str(member.get(FAMILY_KEY, one)) if isinstance(member, dict) else one,
            weight=float(weight),
            score=None,
        )
        for trial, weight, member in zip(trials, weights, each, strict=True)
    ]


def average_of(version: ModelVersion) -> Average | None:
    """``version``'s members when it is an average of trials; None for a single model."""
    config = version.config
    if config is None:
        return None
    if config.members:
        members = [Member(m.trial, m.family, m.weight, m.score) for m in config.members]
        return Average(version.version, version.job_id, members)
    if config.family != AVERAGE_FAMILY and "ensemble_of_trials" not in (config.params or {}):
        return None
    return Average(version.version, version.job_id, _from_params(config))


@dataclass(frozen=True)
class SearchOutcome:
    """A finished search's registered version, its score on the evidence its trials were
    ranked on, the best single trial, and the members when an average was registered."""

    version: int
    score: float | None
    metric: str | None
    evidence: str | None  # holdout, or k-fold cross-validation
    best_trial: int
    average: Average | None


def search_outcome(session: Session, job: JobRead) -> SearchOutcome | None:
    result = job.result
    if not isinstance(result, SearchResult):
        return None
    objectives = result.plan.objectives
    try:
        row = registry.get_version(session, result.model_name, result.version)
    except KilnError:  # the model was deleted since: the job's own record still stands
        row = None
    return SearchOutcome(
        version=result.version,
        score=result.registered_score(),
        metric=objectives[0].metric if objectives else None,
        evidence=result.selection.validation if result.selection else None,
        best_trial=result.trial,
        average=average_of(row) if row is not None else None,
    )


@dataclass(frozen=True)
class ModelRow:
    """One row of the models list."""

    model: ModelRead
    routes: dict[str, AliasPolicy]  # each alias's version, split and shadow
    metric: str | None  # the serving version's main metric, on its test rows
    score: float | None


def main_metric(version: ModelVersion) -> tuple[str | None, float | None]:
    """The metric a search ranked ``version`` by (the task's default otherwise), as
    measured on its test rows; (None, None) when it has none (an upload)."""
    metrics = version.metrics or {}
    reference = search_reference(version)
    ranked_by = reference.metric if reference is not None else None
    for name in (ranked_by, default_metric(version.task), *task_metric_names(version.task)):
        value = metrics.get(name) if name else None
        if isinstance(value, int | float):
            return str(name), float(value)
    return None, None


def model_row(session: Session, model: Model, read: ModelRead) -> ModelRow:
    routes = {
        alias: policy
        for alias in sorted(read.aliases)
        if (policy := traffic.alias_policy(session, model, alias)) is not None
    }
    metric, score = None, None
    if read.serving_version is not None:
        serving = registry.get_version(session, read.name, read.serving_version)
        metric, score = main_metric(serving)
    return ModelRow(read, routes, metric, score)
