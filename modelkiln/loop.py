"""The client's calls for the serving loop: traffic splits and shadows, what serving
measured (shadow agreement, drift, events), datasets from the request log, retraining and
promotion. ``Client`` takes them on; each is one REST call."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from modelkiln.job import Job
from modelkiln.loop_answers import Alias, DriftReport, LogDataset, ModelEvent, Promotion, Traffic


def segment(name: str) -> str:
    """``name`` as one URL path segment: a '?', '#', '%' or control character in it is
    percent-encoded, so it reaches the server (which refuses it with a 422 naming the
    rule) instead of changing which route is called. A '/' is refused here: servers decode
    '%2F' back into a separator before routing, so no encoding keeps it in the name."""
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(
            f"model name {name[:80]!r} cannot be a URL path segment: model "
            "names hold letters, digits, '.', '_' and '-'"
        )
    return quote(name, safe="")


class LoopCalls:
    """Mixed into ``Client``: it provides ``_call``."""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError

    def set_traffic(
        self,
        name: str,
        *,
        alias: str = "production",
        version: int | None = None,
        weights: Mapping[int, int] | None = None,
        shadow: int | None = None,
    ) -> Alias:
        """Point ``alias`` at one version or at ``weights`` ({version: percent}), with an
        optional shadow."""
        body: dict[str, int | list[dict[str, int]] | None] = {"shadow": shadow} if shadow else {}
        if weights:
            body["versions"] = [{"version": v, "weight": w} for v, w in weights.items()]
        else:
            body["version"] = version
        path = f"/v1/models/{segment(name)}/aliases/{segment(alias)}"
        return Alias.from_json(self._call("PUT", path, json=body))

    def traffic(self, name: str) -> Traffic:
        """The production alias's split and shadow, and the shadows' agreement so far."""
        return Traffic.from_json(self._call("GET", f"/v1/models/{segment(name)}/traffic"))

    def drift(self, name: str, limit: int = 20) -> list[DriftReport]:
        path = f"/v1/models/{segment(name)}/drift"
        return [
            DriftReport.from_json(item) for item in self._call("GET", path, params={"limit": limit})
        ]

    def events(self, name: str, limit: int = 50) -> list[ModelEvent]:
        path = f"/v1/models/{segment(name)}/events"
        return [
            ModelEvent.from_json(item) for item in self._call("GET", path, params={"limit": limit})
        ]

    def dataset_from_log(
        self,
        name: str,
        labels: str | Path,
        *,
        target: str = "label",
        dataset_name: str = "",
        newest: bool = False,
    ) -> LogDataset:
        """A dataset of the logged inputs of the requests ``labels`` (a CSV keyed by
        request_id) labels; needs a key with the 'write+logs' scope. A label whose id
        matches several logged requests is left out (counted in 'ambiguous') unless
        ``newest``; 'duplicates' counts the joined rows that repeat an earlier row's inputs
        (kept, and kept in one split)."""
        form = {"model": name, "target": target, **({"name": dataset_name} if dataset_name else {})}
        if newest:
            form["newest"] = "true"
        source = Path(labels)
        with source.open("rb") as handle:
            files = {"labels": (source.name, handle, "text/csv")}
            made = self._call("POST", "/v1/datasets/from-log", data=form, files=files)
            return LogDataset.from_json(made)

    def retrain(self, name: str, dataset_id: int, **options: Any) -> Job:
        """Submit a retrain job (options: version, mode, deploy, weight, alias, timeout_s)."""
        spec = {"kind": "retrain", "model": name, "dataset_id": dataset_id, **options}
        return Job.from_json(self._call("POST", "/v1/jobs", json=spec))

    def promote(
        self, name: str, version: int, gate: str, *, alias: str = "production", **rules: Any
    ) -> Promotion:
        """Give ``version`` all of ``alias`` if ``gate`` (labelled, agreement, manual)
        passes; the answer says whether it did and why."""
        path = f"/v1/models/{segment(name)}/aliases/{segment(alias)}/promote"
        answer = self._call("POST", path, json={"version": version, "gate": gate, **rules})
        return Promotion.from_json(answer)
