"""What a job's result says of serving: the version answering a model's requests that name
no version, beside the version the job registered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Serving:
    """What answers a model's requests that name no version once a job registered its
    versions (a model's first version takes the ``production`` alias; later ones never
    move it), beside the job's version: ``summary`` says it in words, ``promote_cli``
    is the command that would move the alias to the job's version."""

    alias: str
    serving_version: int
    version: int | None
    took_alias: bool
    summary: str
    promote_cli: str | None
    data: dict[str, Any] = field(repr=False)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Serving:
        return cls(
            data["alias"],
            data["serving_version"],
            data.get("version"),
            bool(data.get("took_alias")),
            data["summary"],
            data.get("promote_cli"),
            data,
        )
