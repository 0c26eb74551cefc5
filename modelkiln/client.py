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
from typing import Any

import httpx

from modelkiln.loop import LoopCalls
from modelkiln.loop import segment as _segment
from modelkiln.serving import Serving

DEFAULT_URL = "http://127.0.0.1:8000"
FINISHED = ("succeeded", "failed", "cancelled")


class KilnApiError(Exception):
    """The server refused a request; ``message`` is what it said (which names the field,
    line or setting at fault), ``status`` its HTTP status."""

    def __init__(self, status: int, message: str, method: str, path: str) -> None:
        super().__init__(f"{method} {path}: {status}: {message}")
        self.status, self.message, self.method, self.path = status, message, method, path


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    detail = body.get("detail", body.get("error")) if isinstance(body, dict) else body
    if isinstance(detail, list):  # validation problems: each names its field
        return "; ".join(
            f"{'.'.join(str(p) for p in problem.get('loc', []))}: {problem.get('msg', '')}"
            for problem in detail
        )
    return str(detail)


@dataclass(frozen=True)
class Dataset:
    id: int
    name: str
    target: str
    task: str
    rows: int
    data: dict[str, Any] = field(repr=False)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Dataset:
        return cls(data["id"], data["name"], data["target"], data["task"], data["rows"], data)


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    status: str
    model_name: str | None
    trials_done: int
    trials_total: int
    best_value: float | None
    error: str | None
    result: dict[str, Any] | None
    data: dict[str, Any] = field(repr=False)
    unit: str = "trials"
    best_metric: str | None = None
    time_budget_s: float | None = None
    elapsed_s: float | None = None
    registered_value: float | None = None  # the registered version's score, in best_metric
    registered_version: int | None = None

    @classmethod
    def of(cls, data: dict[str, Any]) -> Job:
        progress = data.get("progress") or {}
        return cls(
            data["id"],
            data["kind"],
            data["status"],
            data.get("model_name"),
            progress.get("trials_done", 0),
            progress.get("trials_total", 0),
            progress.get("best_value"),
            data.get("error"),
            data.get("result"),
            data,
            progress.get("unit", "trials"),
            progress.get("best_metric"),
            progress.get("time_budget_s"),
            progress.get("elapsed_s"),
            progress.get("registered_value"),
            progress.get("registered_version"),
        )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def registered_versions(self) -> list[int]:
        """The versions the job registered, from its result (none for a batch prediction,
        whose result names the version it used)."""
        if self.kind == "predict":
            return []
        result = self.result or {}
        versions = result.get("versions") or []
        found = [v for v in versions if isinstance(v, int)]
        if isinstance(result.get("version"), int):
            found.insert(0, result["version"])
        return list(dict.fromkeys(found))

    @property
    def serving(self) -> Serving | None:
        """What serves the model beside the version a search or compression registered
        (None: another kind, or a server from before it said so)."""
        note = (self.result or {}).get("serving")
        return Serving.of(note) if isinstance(note, dict) else None


@dataclass(frozen=True)
class Model:
    name: str
    task: str
    latest_version: int
    aliases: dict[str, int]
    data: dict[str, Any] = field(repr=False)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Model:
        return cls(data["name"], data["task"], data["latest_version"], data["aliases"], data)

    @property
    def serving_version(self) -> int:
        """What a predict naming no version uses (the server decides; see its docs)."""
        serving = self.data.get("serving_version")
        return int(serving) if serving is not None else self.latest_version


@dataclass(frozen=True)
class Version:
    model: str
    version: int
    status: str
    source: str
    size_bytes: int
    latency_p50_ms: float | None
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    data: dict[str, Any] = field(repr=False)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Version:
        return cls(
            data["model"],
            data["version"],
            data["status"],
            data["source"],
            data["size_bytes"],
            data.get("latency_p50_ms"),
            data["metrics"],
            data["lineage"],
            data,
        )

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return list(self.data["signature"]["inputs"])


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
            return Dataset.of(
                self._call(
                    "POST",
                    "/v1/datasets",
                    data=form,
                    files={"file": (source.name, handle, "text/csv")},
                )
            )

    def datasets(self, limit: int = 50) -> list[Dataset]:
        page = self._call("GET", "/v1/datasets", params={"limit": limit})
        return [Dataset.of(item) for item in page["items"]]

    def dataset(self, dataset_id: int) -> Dataset:
        return Dataset.of(self._call("GET", f"/v1/datasets/{dataset_id}"))

    # Jobs
    def submit(self, spec: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        """Any job spec, as ``POST /v1/jobs`` takes it."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Job.of(self._call("POST", "/v1/jobs", json=dict(spec), headers=headers))

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
            return Job.of(
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
        return Job.of(self._call("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, *, status: str | None = None, limit: int = 50) -> list[Job]:
        params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
        return [Job.of(item) for item in self._call("GET", "/v1/jobs", params=params)["items"]]

    def trials(self, job_id: int) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/v1/jobs/{job_id}/trials"))

    def cancel(self, job_id: int) -> Job:
        return Job.of(self._call("POST", f"/v1/jobs/{job_id}/cancel"))

    def watch(self, job_id: int, *, poll_s: float = 1.0) -> Iterator[Job]:
        """The job each time its state or progress changes, until it has finished."""
        last: tuple[Any, ...] | None = None
        while True:
            job = self.job(job_id)
            seen = (job.status, job.trials_done, job.trials_total, job.best_value)
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
        page = self._call("GET", "/v1/models", params={"limit": limit})
        return [Model.of(item) for item in page["items"]]

    def model(self, name: str) -> Model:
        return Model.of(self._call("GET", f"/v1/models/{_segment(name)}"))

    def versions(self, name: str, limit: int = 100) -> list[Version]:
        page = self._call("GET", f"/v1/models/{_segment(name)}/versions", params={"limit": limit})
        return [Version.of(item) for item in page["items"]]

    def version(self, name: str, version: int) -> Version:
        return Version.of(self._call("GET", f"/v1/models/{_segment(name)}/versions/{version}"))

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
