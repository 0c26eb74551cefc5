"""Traffic policies: an alias that holds one version, or several by weight, and an optional
shadow. The rules: every version named is live; every one of them, and the shadow, takes
the same requests and gives outputs of the same width and classes as the alias's main
version; the history records each policy with its weights and shadow."""

from __future__ import annotations

from typing import Literal

from app.contracts.enums import VersionStatus
from app.contracts.results import Deployment
from app.contracts.traffic import AliasPolicy, TrafficArm, TrafficSplit
from app.core.db import Session, utcnow
from app.core.errors import Conflict, InvalidInput, KilnError, NotFound
from app.core.names import ALIAS
from app.registry.repository import AliasRepository, VersionRepository
from app.registry.service import (
    PRODUCTION_ALIAS,
    default_serving_version,
    get_model,
    get_version,
)
from app.tables import Model, ModelVersion


def _live(session: Session, name: str, number: int, field: str) -> ModelVersion:
    try:
        version = get_version(session, name, number)
    except NotFound as missing:
        raise NotFound(f"{field}: {missing.message}") from None
    if version.status != VersionStatus.LIVE:
        raise Conflict(
            f"{field}: model {name!r} version {number} is {version.status}; "
            "only live versions can hold an alias or shadow one"
        )
    return version


def _same_interface(main: ModelVersion, other: ModelVersion, field: str) -> None:
    """InvalidInput naming ``field`` when ``other`` cannot answer ``main``'s requests."""
    problem = main.signature.difference(other.signature)
    if problem is None and main.task != other.task:
        problem = f"it is a {other.task} model, not {main.task}"
    if problem is None and (main.class_labels or None) != (other.class_labels or None):
        problem = "its classes differ"
    if problem:
        raise InvalidInput(
            f"{field}: version {other.version} cannot take version {main.version}'s "
            f"requests: {problem} (a shadow or split needs the same signature)"
        )


def set_traffic(
    session: Session,
    *,
    name: str,
    alias: str,
    version: int | None = None,
    split: TrafficSplit | None = None,
    shadow: int | None = None,
) -> AliasPolicy:
    """Point ``alias`` at one version, or at ``split``'s versions by weight, with an
    optional ``shadow``; the previous policy's history entry is closed and this one added
    (weights and shadow included). The next request that resolves the alias sees it."""
    ALIAS.check(alias, "alias")
    if (version is None) == (split is None):
        raise InvalidInput("give either 'version' or 'versions' (weights), not both")
    model = get_model(session, name)
    if split is not None and len(split.arms) == 1:
        version, split = split.arms[0].version, None
    arms = split.arms if split is not None else [TrafficArm(version=version or 0, weight=100)]
    rows = [_live(session, name, arm.version, f"versions[{i}]") for i, arm in enumerate(arms)]
    main_number = split.primary if split is not None else rows[0].version
    main = next(row for row in rows if row.version == main_number)
    for index, row in enumerate(rows):
        _same_interface(main, row, f"versions[{index}]")
    shadow_row = None
    if shadow is not None:
        if any(row.version == shadow for row in rows):
            raise InvalidInput(f"shadow: version {shadow} already answers through this alias")
        shadow_row = _live(session, name, shadow, "shadow")
        _same_interface(main, shadow_row, "shadow")
    now = utcnow()
    aliases = AliasRepository(session)
    current = aliases.find(model.id, alias)
    shadow_id = shadow_row.id if shadow_row else None
    unchanged = (
        current is not None
        and current.version_id == main.id
        and current.split == split
        and current.shadow_version_id == shadow_id
    )
    if not unchanged:
        aliases.close_history(model.id, alias, now)
        written = aliases.point(
            model.id, alias, current, version_id=main.id, split=split, shadow_id=shadow_id, now=now
        )
        if not written:
            raise Conflict(f"alias {alias!r} was changed at the same time; try again")
    return AliasPolicy(version=main.version, split=split, shadow=shadow)


def alias_policy(session: Session, model: Model, alias: str) -> AliasPolicy | None:
    """What ``alias`` of ``model`` holds now (None: no such alias)."""
    row = AliasRepository(session).find(model.id, alias)
    if row is None:
        return None
    versions = VersionRepository(session)
    main = versions.by_id(row.version_id)
    shadow = versions.by_id(row.shadow_version_id) if row.shadow_version_id else None
    if main is None:
        return None
    return AliasPolicy(
        version=main.version, split=row.split, shadow=shadow.version if shadow else None
    )


def serving_policy(session: Session, model: Model) -> AliasPolicy | None:
    """The policy of the alias that serves requests naming no version (``production``)."""
    return alias_policy(session, model, PRODUCTION_ALIAS)


def holders(session: Session, model: Model, version: ModelVersion) -> list[str]:
    """The aliases that route to ``version``: hold it, give it a weight, or shadow it."""
    names = []
    for row in AliasRepository(session).of_model(model.id):
        in_split = row.split is not None and any(
            arm.version == version.version for arm in row.split.arms
        )
        if row.version_id == version.id or row.shadow_version_id == version.id or in_split:
            names.append(row.name)
    return sorted(names)


def deploy_beside(
    session: Session,
    *,
    name: str,
    alias: str,
    version: int,
    mode: Literal["shadow", "canary", "none"],
    weight: int,
) -> Deployment:
    """Put ``version`` into service beside what ``alias`` holds: as its shadow, or as a
    canary answering ``weight`` percent (the alias's main version keeps the rest); an
    alias that does not exist yet starts from the version serving by default. What could
    not be done is said, not raised: the version stays registered either way."""
    model = get_model(session, name)
    policy = alias_policy(session, model, alias)
    main = policy.version if policy is not None else None
    if main is None:
        serving = default_serving_version(session, model, excluding=version)
        main = serving.version if serving is not None else None
    if mode == "none":  # registering it left 'production' where it was (register_version)
        return Deployment(
            alias=alias, mode="none", version=version, deployed=False, reason="deploy was 'none'"
        )
    if main is None or main == version:
        return Deployment(
            alias=alias,
            mode=mode,
            version=version,
            deployed=False,
            reason=f"no other version serves through {alias!r} to deploy beside",
        )
    shadow = policy.shadow if policy is not None and policy.shadow != version else None
    try:
        with session.begin_nested():
            if mode == "shadow":
                split = policy.split if policy is not None else None
                set_traffic(
                    session,
                    name=name,
                    alias=alias,
                    version=None if split else main,
                    split=split,
                    shadow=version,
                )
            else:
                arms = [
                    TrafficArm(version=main, weight=100 - weight),
                    TrafficArm(version=version, weight=weight),
                ]
                set_traffic(
                    session, name=name, alias=alias, split=TrafficSplit(arms=arms), shadow=shadow
                )
    except KilnError as refused:
        return Deployment(
            alias=alias,
            mode=mode,
            version=version,
            deployed=False,
            reason=refused.message,
        )
    return Deployment(
        alias=alias,
        mode=mode,
        version=version,
        weight=weight if mode == "canary" else None,
        deployed=True,
    )
