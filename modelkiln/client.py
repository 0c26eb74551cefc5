"""A small typed client for ModelKiln's REST API, over httpx. It needs nothing of the
server's code: ``pip install modelkiln`` on a laptop and point it at a gateway.

    from modelkiln import Client
    kiln = Client("http://127.0.0.1:8000", api_key="...")   # or KILN_URL / KILN_API_KEY
    dataset = kiln.upload_dataset("digits.csv", target="label")
    job = kiln.submit_search(dataset.id, "digits", max_trials=8)
    job = kiln.wait(job.id, on_progress=print)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from modelkiln.answers import Dataset, Model, Trial, Version
from modelkiln.job import Job
from modelkiln.loop import LoopCalls
from modelkiln.loop import segment as _segment
from modelkiln.wire import Answer

DEFAULT_URL = "http://127.0.0.1:8000"
AnswerT = TypeVar("AnswerT", bound=Answer)


class KilnApiError(Exception):
    """The server refused a request; ``message`` is what it said (which names the field,
    line or setting at fault), ``status`` its HTTP status."""

    def __init__(self, status: int, message: str, method: str, path: str) -> None:
        super().__init__(f"{method} {path}: {status}: {message}")
        self.status, self.message, self.method, self.path = status, message, method, path


@dataclass(frozen=True)
class Problem(Answer):
    """One problem of a request the server found invalid: where (``loc``) and what."""

    loc: list[str | int] = field(default_factory=list)
    msg: str = ""


@dataclass(frozen=True)
class Refusal(Answer):
    """An error body: ``detail`` (a message, or the problems of an invalid request, each
    naming its field) or, on the /v2 routes, ``error``."""

    detail: list[Problem] | str | None = None
    error: str | None = None

    @property
    def message(self) -> str:
        if isinstance(self.detail, list):
            return "; ".join(
                f"{'.'.join(str(part) for part in problem.loc)}: {problem.msg}"
                for problem in self.detail
            )
        return str(self.error if self.detail is None else self.detail)


@dataclass(frozen=True)
class Page(Answer):
    """One page of a listing; each item is read by the caller as what it lists."""

    items: list[Any] = field(default_factory=list)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    return Refusal.from_json(body if isinstance(body, dict) else {"detail": body}).message


class Client(LoopCalls):
    """One gateway, one API key. Every refusal raises ``KilnApiError`` with the server's
    message; transport failures raise httpx's errors."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or os.environ.get("KILN_URL") or DEFAULT_URL).rstrip("/")
        key = api_key or os.environ.get("KILN_API_KEY")
        if not key:
            raise ValueError("no API key: pass api_key= (or --api-key), or set KILN_API_KEY")
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {key}"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise KilnApiError(response.status_code, _message(response), method, path)
        return response.json() if response.content else None

    def _listing(
        self, kind: type[AnswerT], path: str, params: Mapping[str, int | str]
    ) -> list[AnswerT]:
        """The items of one page of a listing, each read as ``kind``."""
        page = Page.from_json(self._call("GET", path, params=params))
        return [kind.from_json(item) for item in page.items]

    # Datasets
    def upload_dataset(
        self,
        path: str | Path,
        target: str,
        *,
        name: str | None = None,
        task: str | None = None,
        columns: dict[str, str] | None = None,
    ) -> Dataset:
        """Upload a CSV; ``columns`` sets column types by name (``{"grade": "categorical"}``:
        numeric, categorical, datetime, text or ignore), as a profile's reasons suggest."""
        form = {
            "target": target,
            **({"name": name} if name else {}),
            **({"task": task} if task else {}),
            **({"columns": json.dumps(columns)} if columns else {}),
        }
        source = Path(path)
        with source.open("rb") as handle:
            return Dataset.from_json(
                self._call(
                    "POST",
                    "/v1/datasets",
                    data=form,
                    files={"file": (source.name, handle, "text/csv")},
                )
            )

    def datasets(self, limit: int = 50) -> list[Dataset]:
        return self._listing(Dataset, "/v1/datasets", {"limit": limit})

    def dataset(self, dataset_id: int) -> Dataset:
        return Dataset.from_json(self._call("GET", f"/v1/datasets/{dataset_id}"))

    # Jobs
    def submit(self, spec: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        """Any job spec, as ``POST /v1/jobs`` takes it."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Job.from_json(self._call("POST", "/v1/jobs", json=dict(spec), headers=headers))

    def submit_search(self, dataset_id: int, model_name: str, **search: Any) -> Job:
        return self.submit(
            {"kind": "search", "dataset_id": dataset_id, "model_name": model_name, "search": search}
        )

    def submit_batch_prediction(
        self,
        name: str,
        path: str | Path,
        *,
        version: int | None = None,
        key_columns: Sequence[str] = (),
        output_format: str = "csv",
        chunk_rows: int | None = None,
    ) -> Job:
        """A batch prediction job over a local CSV, run by the workers in chunks."""
        form = {
            "model": name,
            "output_format": output_format,
            **({"version": str(version)} if version else {}),
            **({"key_columns": ",".join(key_columns)} if key_columns else {}),
            **({"chunk_rows": str(chunk_rows)} if chunk_rows else {}),
        }
        source = Path(path)
        with source.open("rb") as handle:
            return Job.from_json(
                self._call(
                    "POST",
                    "/v1/jobs/predict",
                    data=form,
                    files={"file": (source.name, handle, "text/csv")},
                )
            )

    def download_output(self, job_id: int, dest: str | Path) -> Path:
        """A finished batch prediction's file, streamed to ``dest``."""
        target = Path(dest)
        with self._http.stream("GET", f"/v1/jobs/{job_id}/output") as response:
            if response.status_code >= 400:
                response.read()
                raise KilnApiError(
                    response.status_code, _message(response), "GET", f"/v1/jobs/{job_id}/output"
                )
            with target.open("wb") as out:
                for block in response.iter_bytes(1 << 20):
                    out.write(block)
        return target

    def job(self, job_id: int) -> Job:
        return Job.from_json(self._call("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, *, status: str | None = None, limit: int = 50) -> list[Job]:
        params: dict[str, int | str] = {"limit": limit, **({"status": status} if status else {})}
        return self._listing(Job, "/v1/jobs", params)

    def trials(self, job_id: int) -> list[Trial]:
        return [Trial.from_json(item) for item in self._call("GET", f"/v1/jobs/{job_id}/trials")]

    def cancel(self, job_id: int) -> Job:
        return Job.from_json(self._call("POST", f"/v1/jobs/{job_id}/cancel"))

    def watch(self, job_id: int, *, poll_s: float = 1.0) -> Iterator[Job]:
        """The job each time its state or progress changes, until it has finished."""
        last: tuple[Any, ...] | None = None
        while True:
            job = self.job(job_id)
            seen = (job.status, job.done, job.total, job.best_value)
            if seen != last:
                last = seen
                yield job
            if job.finished:
                return
            time.sleep(poll_s)

    def wait(
        self,
        job_id: int,
        *,
        timeout: float | None = None,
        poll_s: float = 1.0,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Block until the job has finished (raise TimeoutError past ``timeout`` s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in self.watch(job_id, poll_s=poll_s):
            if on_progress is not None:
                on_progress(job)
            if job.finished:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout} s")
        raise AssertionError("unreachable: watch ends with a finished job")

    # Models
    def models(self, limit: int = 100) -> list[Model]:
        return self._listing(Model, "/v1/models", {"limit": limit})

    def model(self, name: str) -> Model:
        return Model.from_json(self._call("GET", f"/v1/models/{_segment(name)}"))

    def versions(self, name: str, limit: int = 100) -> list[Version]:
        return self._listing(Version, f"/v1/models/{_segment(name)}/versions", {"limit": limit})

    def version(self, name: str, version: int) -> Version:
        return Version.from_json(
            self._call("GET", f"/v1/models/{_segment(name)}/versions/{version}")
        )

    def explain(
        self, name: str, inputs: list[Any], *, version: int | None = None
    ) -> dict[str, Any]:
        """Explanations of records keyed by column name, or rows of numbers (as
        ``predict`` takes them): per row the prediction and, per output (each class of a
        classifier), its value, base value and one attribution per column; the server's
        answer (``method``, ``output``, ``explanations``)."""
        params = {"version": version} if version else {}
        return dict(
            self._call(
                "POST",
                f"/v1/models/{_segment(name)}/explain",
                params=params,
                json={"inputs": inputs},
            )
        )

    def predict(
        self, name: str, inputs: list[Any], *, version: int | None = None
    ) -> dict[str, Any]:
        """Records keyed by column name, or rows of numbers; the server's answer."""
        params = {"version": version} if version else {}
        return dict(
            self._call(
                "POST",
                f"/v1/models/{_segment(name)}/predict",
                params=params,
                json={"inputs": inputs},
            )
        )
