"""What a job's result says of serving once its versions are registered: which version
answers the model's requests that name no version (a first version takes ``production``;
a later one never moves it), the job's version beside it, and how to move the alias.

The comparison uses the metrics the registry stores, each measured when its version was
registered on its own held-out rows. Two versions cut from one dataset with one split
seed were measured on the same rows; otherwise the note says they were not, rather than
score a version again in the job's worker (an upload may run only in its sandbox)."""

from __future__ import annotations

from app.contracts.enums import Task
from app.contracts.results import ServingNote
from app.contracts.traffic import AliasPolicy
from app.core.db import Session
from app.registry.service import PRODUCTION_ALIAS, get_model, get_version
from app.registry.traffic import alias_policy
from app.tables import ModelVersion

# The promote route in the form the CLI's own settings name (KILN_URL, KILN_API_KEY).
CURL = (
    'curl -s -X POST "${{KILN_URL:-http://127.0.0.1:8000}}/v1/models/{name}/aliases/{alias}/'
    'promote" -H "Authorization: Bearer $KILN_API_KEY" -H \'Content-Type: application/json\' '
    '-d \'{{"version": {version}, "gate": "manual"}}\''
)


def metric_of(task: str) -> str:
    """The held-out metric two versions are compared by."""
    return "accuracy" if task == Task.CLASSIFICATION else "rmse"


def _number(version: ModelVersion, key: str) -> float | None:
    value = (version.metrics or {}).get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def same_rows(one: ModelVersion, other: ModelVersion) -> bool:
    """Whether both versions were measured on the same held-out rows: one dataset, one seed."""
    seeds = [version.config.split_seed if version.config else None for version in (one, other)]
    return (
        one.dataset_id is not None
        and one.dataset_id == other.dataset_id
        and seeds[0] is not None
        and seeds[0] == seeds[1]
    )


def _routes(policy: AliasPolicy) -> str:
    if policy.split is None:
        return f"v{policy.version}"
    weights = ", ".join(f"v{arm.version} {arm.weight}%" for arm in policy.split.arms)
    return f"v{policy.version} (split: {weights})"


def _scored(metric: str, value: float | None, rows: float | None, whose: str) -> str:
    if value is None:
        return f"no held-out {metric} stored"
    counted = f"{int(rows)} " if rows is not None else ""
    return f"{metric} {value:.4g} on {whose} {counted}held-out rows"


def serving_note(session: Session, name: str, candidate: int | None) -> ServingNote | None:
    """What serves ``name`` now beside the job's version ``candidate`` (None: the job
    offers none, such as a compression that recommends its parent); None without a
    ``production`` alias (only a model whose alias was deleted lacks it, and the job's
    registration has given it one)."""
    model = get_model(session, name)
    policy = alias_policy(session, model, PRODUCTION_ALIAS)
    if policy is None:
        return None
    serving = get_version(session, name, policy.version)
    metric = metric_of(model.task)
    serving_value, serving_rows = _number(serving, metric), _number(serving, "test_rows")
    summary = (
        f"{PRODUCTION_ALIAS!r} serves {_routes(policy)} "
        f"({_scored(metric, serving_value, serving_rows, 'its')})"
    )
    version = get_version(session, name, candidate) if candidate is not None else None
    value, rows = (
        (_number(version, metric), _number(version, "test_rows")) if version else (None, None)
    )
    took = version is not None and version.id == serving.id
    shared = version is not None and not took and same_rows(version, serving)
    cli = curl = None
    if took:
        summary = (
            f"v{candidate} took {PRODUCTION_ALIAS!r}: no other version of {name!r} served, "
            "so it answers requests that name no version."
        )
    elif version is not None:
        beside = (
            f"{metric} {value:.4g} on the same rows"
            if shared and value is not None
            else _scored(metric, value, rows, "its own")
            + f" (another dataset or split than v{serving.version}'s: not the same rows)"
        )
        cli = f"kiln promote {name} {candidate} --gate manual"
        curl = CURL.format(name=name, alias=PRODUCTION_ALIAS, version=candidate)
        summary += f"; v{candidate} has {beside}. It does not serve until promoted: {cli}"
    else:
        summary += "."
    return ServingNote(
        alias=PRODUCTION_ALIAS,
        serving_version=serving.version,
        version=candidate,
        took_alias=took,
        metric=metric,
        value=value,
        serving_value=serving_value,
        test_rows=_count(rows),
        serving_test_rows=_count(serving_rows),
        same_rows=shared,
        summary=summary,
        promote_cli=cli,
        promote_curl=curl,
    )


def _count(rows: float | None) -> int | None:
    return int(rows) if rows is not None else None
