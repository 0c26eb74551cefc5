"""What the HTTP layer lends a job kind for the routes the kind adds under ``/v1/jobs``.

A kind's package sits below ``app.api`` (the layers in ``docs/architecture.md``), so its
routes cannot import the API's dependencies; ``app.api.jobs`` hands them over instead, as
the FastAPI markers its own routes use, with its router for the kind to add its routes to
(``JobKind.add_routes``). A kind's route then authenticates, reads its parameters and
publishes its schema exactly as every other ``/v1/jobs`` route does, while the route itself
stays in the kind's package.

A route declares a lent dependency in its parameter's annotation
(``session: Annotated[Session, http.session]``, ``job_id: Annotated[int, *http.job_id]``).
FastAPI reads those markers off the annotations when the route is defined, so a module
that defines such routes inside a function must not use ``from __future__ import
annotations`` (its annotations would be strings naming the function's locals)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, BeforeValidator

from app.core.config import Settings
from app.tables import Job

if TYPE_CHECKING:
    from fastapi import UploadFile
    from fastapi.params import Depends


@dataclass(frozen=True)
class JobHttp:
    """The API's dependencies and shared parameters, for a kind's routes."""

    session: Depends  # the request's one transaction: a ``Session``
    settings: Depends  # ``Settings``
    queue: Depends  # ``JobQueue``
    store: Depends  # ``ArtifactStore``
    readers: Depends  # admits keys whose scope may read: ``dependencies=[http.readers]``
    writers: Depends  # admits keys whose scope may write
    job_id: tuple[object, ...]  # the ``{job_id}`` path parameter's bounds and digits check
    version_form: tuple[object, ...]  # a form's optional version number, likewise
    count_digits: BeforeValidator  # a number written in digits alone, from 0
    job_read: Callable[[Job], BaseModel]  # a job as /v1/jobs answers with it
    answers_job: Mapping[str, Any]  # the route arguments of a route answering ``job_read``
    stores_artifacts: Mapping[int | str, Any]  # the errors of a route that stores files
    spooled_upload: Callable[[UploadFile, Settings, str], AbstractContextManager[Path]]
