"""What a job's result says of serving: the version answering a model's requests that name
no version, beside the version the job registered."""

from __future__ import annotations

from dataclasses import dataclass

from modelkiln.wire import Answer


@dataclass(frozen=True)
class Serving(Answer):
    """What answers a model's requests that name no version once a job registered its
    versions (a model's first version takes the ``production`` alias; later ones never
    move it), beside the job's version: ``summary`` says it in words, ``promote_cli``
    is the command that would move the alias to the job's version."""

    alias: str
    serving_version: int
    summary: str
    version: int | None = None
    took_alias: bool = False
    promote_cli: str | None = None
