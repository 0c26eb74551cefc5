"""Drift: live rows against the training profile of the version's dataset, per column.
A shifted sample drifts and an unshifted one does not (through the real gateway app, a
real dataset upload and registry, the window in /v1/models/{name}/drift, the event and
/metrics); categories training never saw and gaps are counted (the monitor alone); the
gateway records how far the next window has got, and the model page says what the first
window needs, then draws each column's PSI over the windows and its distributions."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.state import gateway_of
from app.contracts.profile import ColumnProfile, ValueCount
from app.contracts.signature import Signature
from app.core.config import Settings
from app.core.db import session_scope
from app.main import create_app
from app.registry.service import VersionDraft, register_version
from app.serving.drift import DriftMonitor, psi, reference_of
from app.serving.observations import Observation
from app.storage import get_store
from tests.conftest import make_settings
from tests.helpers import ui_sign_in

ROWS = 600


def sample(model: object, feeds: dict[str, np.ndarray], threshold: float = 0.2) -> Observation:
    """A request drift sampled, as the request path queues it."""
    rows = len(next(iter(feeds.values())))
    return Observation(
        name="m",
        version=1,
        model=model,  # type: ignore[arg-type]
        protocol="v1",
        feeds=feeds,
        output=np.zeros((rows, 1), dtype=np.float32),
        latency_s=0.0,
        at=0.0,
        size=0,
        drift_threshold=threshold,
    )


def training_csv(rng: np.random.Generator) -> bytes:
    x = rng.normal(size=(ROWS, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    lines = [
        "f0,f1,f2,f3,label",
        *(",".join([*map(str, row), str(c)]) for row, c in zip(x, y, strict=True)),
    ]
    return "\n".join(lines).encode()


@pytest.fixture
def watched(
    settings: Settings, classifier_onnx: Path, admin: dict[str, str]
) -> Iterator[TestClient]:
    """A version of a 4-number classifier registered as trained on an uploaded dataset,
    served by a gateway that measures every request in windows of 200 rows."""
    overrides = {"drift_sample": 1.0, "drift_window_rows": 200}
    app = create_app(
        make_settings(settings.data_dir, settings.database_url, **overrides), run_reaper=False
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        uploaded = client.post(
            "/v1/datasets",
            headers=admin,
            data={"target": "label"},
            files={"file": ("train.csv", io.BytesIO(training_csv(np.random.default_rng(0))))},
        )
        assert uploaded.status_code == 201, uploaded.text
        profile = uploaded.json()["profile"]["columns"][0]
        assert len(profile["edges"]) == 9 and abs(sum(profile["shares"]) - 1) < 1e-9
        store = get_store(settings)
        with session_scope(settings.database_url) as session:
            register_version(
                session,
                "watched",
                VersionDraft(
                    task="classification",
                    source="search",
                    artifact=store.put_file("test/watched.onnx", classifier_onnx),
                    class_labels=[0, 1, 2],
                    dataset_id=uploaded.json()["id"],
                    signature=Signature.of_tensors(
                        input_name="input", row_shape=(4,), output_name="output", width=3
                    ),
                ),
            )
        yield client


def send(client: TestClient, admin: dict[str, str], rows: np.ndarray) -> None:
    for start in range(0, len(rows), 20):
        batch = rows[start : start + 20].tolist()
        answer = client.post("/v1/models/watched/predict", headers=admin, json={"inputs": batch})
        assert answer.status_code == 200, answer.text
    gateway_of(client.app).monitors.flush()  # type: ignore[arg-type]


def test_a_shifted_sample_drifts_and_an_unshifted_one_does_not(
    watched: TestClient, admin: dict[str, str]
) -> None:
    rng = np.random.default_rng(1)
    send(watched, admin, rng.normal(size=(200, 4)))
    [calm] = watched.get("/v1/models/watched/drift", headers=admin).json()
    assert calm["rows"] == 200 and calm["drifted"] == [] and calm["threshold"] == 0.2
    assert all(column["psi"] < 0.2 for column in calm["columns"])
    assert watched.get("/v1/models/watched/events", headers=admin).json() == []
    shifted = rng.normal(size=(200, 4))
    shifted[:, 2] += 3.0  # one column moves three standard deviations
    send(watched, admin, shifted)
    newest = watched.get("/v1/models/watched/drift", headers=admin).json()[0]
    assert newest["drifted"] == ["f2"]
    by_column = {column["column"]: column for column in newest["columns"]}
    assert by_column["f2"]["psi"] > 2 and by_column["f0"]["psi"] < 0.2
    # The live shares per bucket: ten bins between the training deciles, then gaps.
    live = by_column["f2"]["live_shares"]
    assert len(live) == 11 and sum(live) == pytest.approx(1.0) and live[-1] == 0
    assert live[-2] > 0.9  # shifted three deviations: nearly all past the top decile
    assert max(by_column["f0"]["live_shares"][:-1]) < 0.25  # unshifted: near a tenth each
    [event] = watched.get("/v1/models/watched/events", headers=admin).json()
    assert event["kind"] == "drift" and "f2" in event["message"]
    again = rng.normal(size=(200, 4))
    again[:, 2] += 3.0
    send(watched, admin, again)  # the same drift: a window, and no second event
    assert len(watched.get("/v1/models/watched/drift", headers=admin).json()) == 3
    assert len(watched.get("/v1/models/watched/events", headers=admin).json()) == 1
    metrics = watched.get("/metrics").text
    assert 'kiln_drift_psi{column="f2",model="watched",version="1"}' in metrics
    assert 'kiln_model_events_total{kind="drift",model="watched"} 1.0' in metrics


def test_the_next_window_s_progress_comes_from_the_gateway(
    watched: TestClient, admin: dict[str, str]
) -> None:
    rng = np.random.default_rng(3)
    assert watched.get("/v1/models/watched/drift/progress", headers=admin).json() == []
    send(watched, admin, rng.normal(size=(60, 4)))
    [progress] = watched.get("/v1/models/watched/drift/progress", headers=admin).json()
    assert progress["version"] == 1 and progress["rows"] == 60
    assert progress["window_rows"] == 200 and progress["sample"] == 1.0
    assert progress["rows_to_window"] == 140
    send(watched, admin, rng.normal(size=(160, 4)))  # the window fills; 20 rows open the next
    [progress] = watched.get("/v1/models/watched/drift/progress", headers=admin).json()
    assert progress["rows"] == 20 and progress["rows_to_window"] == 180
    assert len(watched.get("/v1/models/watched/drift", headers=admin).json()) == 1
    gateway_of(watched.app).monitors.stop()  # type: ignore[arg-type]  # its window ends with it
    assert watched.get("/v1/models/watched/drift/progress", headers=admin).json() == []


def test_the_model_sets_its_own_threshold(watched: TestClient, admin: dict[str, str]) -> None:
    options = {"drift_threshold": 50}
    assert watched.put("/v1/models/watched/serving", headers=admin, json=options).status_code == 200
    shifted = np.random.default_rng(2).normal(size=(200, 4))
    shifted[:, 2] += 3.0
    send(watched, admin, shifted)
    [window] = watched.get("/v1/models/watched/drift", headers=admin).json()
    assert window["threshold"] == 50 and window["drifted"] == []


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift() -> None:
    expected = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(expected, expected * 40) == pytest.approx(0.0)
    assert 0 < psi(expected, np.array([30, 25, 25, 20])) < psi(expected, np.array([70, 10, 10, 10]))


@dataclass
class ColumnsModel:
    """What the monitor reads of a model that takes one input per column."""

    columns: tuple[object, ...] = ("color", "size")
    version_id: int = 7


def test_unseen_categories_and_gaps_are_counted() -> None:
    profile = [
        ColumnProfile(
            name="color",
            type="categorical",
            missing=0,
            distinct=2,
            top=[ValueCount(value="red", rows=50), ValueCount(value="blue", rows=50)],
        ),
        ColumnProfile(
            name="size",
            type="numeric",
            missing=10,
            distinct=90,
            min=0,
            mean=5,
            max=10,
            edges=[5.0],
            shares=[0.5, 0.5],
        ),
    ]
    monitor = DriftMonitor(window_rows=10)
    colors = np.array(["red", "blue", "green", "green", "", "red", "blue", "green", "", "red"])
    sizes = np.array([1, 2, 3, 7, 8, np.nan, np.nan, np.nan, 6, 2], dtype=np.float32)
    feeds = {"color": colors.astype(object).reshape(-1, 1), "size": sizes.reshape(-1, 1)}
    # Two sampled requests of five rows, counted together into one window of ten.
    samples = [
        sample(ColumnsModel(), {name: values[part] for name, values in feeds.items()})
        for part in (slice(0, 5), slice(5, 10))
    ]
    load = lambda version_id: reference_of(profile, None, 100)  # noqa: E731
    assert monitor.add(samples, load) == []  # too few rows to count yet: they wait
    [report] = monitor.add([], load, now=True)  # a flush counts what waits
    color, size = report.columns
    assert color.unseen_share == pytest.approx(0.3) and color.missing_share == pytest.approx(0.2)
    assert color.psi is not None and color.psi > 0.2 and "color" in report.drifted
    assert size.missing_share == pytest.approx(0.3) and size.reference_missing_share == 0.1


def test_a_long_text_value_costs_its_own_length_to_count() -> None:
    """Counting a text column never builds an array sized by its longest value (2,000 rows
    with one 1 MB value would be 8 GB as fixed-width text)."""
    import tracemalloc

    from app.serving.drift import ColumnReference, _Counts, count

    reference = ColumnReference(
        "word", "categorical", np.array([0.5, 0.5, 0.0]), 0.0, values=("a",), known=frozenset("a")
    )
    values = np.array(["x" * 1_000_000] + ["a"] * 1999, dtype=object)
    counts = _Counts(np.zeros(3))
    tracemalloc.start()
    count(reference, values, counts)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 2_000_000, peak
    assert counts.rows == 2000 and counts.buckets.tolist() == [1999, 1, 0] and counts.unseen == 1


def page_figures(page: str) -> dict[str, Any]:
    """The figures the page's parts bring (their JSON scripts), merged."""
    found: dict[str, Any] = {}
    for part in re.findall(r'<script type="application/json" class="figures">(.*?)</script>', page):
        found.update(json.loads(part))
    return found


def test_the_drift_panel_says_what_the_first_window_needs_then_draws_the_windows(
    watched: TestClient, admin: dict[str, str], keys: dict[str, str]
) -> None:
    """A version trained on a dataset, every request sampled, windows of 200 rows."""
    ui_sign_in(watched, keys["read"])
    empty = unescape(watched.get("/ui/models/watched").text)
    assert "No sampled rows yet. A window needs 200 sampled rows" in empty
    assert "samples 100% of requests" in empty and "about 200 predicted rows" in empty
    rng = np.random.default_rng(5)
    send(watched, admin, rng.normal(size=(60, 4)))
    started = unescape(watched.get("/ui/models/watched").text)
    assert 'id="drift-rows">60 of 200</strong>' in started
    assert 'id="drift-sample">100%' in started and 'id="drift-needed">140</strong>' in started
    assert "chart-drift-psi" not in started  # no window yet: nothing to draw
    shifted = rng.normal(size=(340, 4))
    shifted[:, 2] += 3.0
    send(watched, admin, shifted)  # two windows of 200 rows, the second f2 drifted
    page = unescape(watched.get("/ui/models/watched").text)
    assert "drift-rows" not in page and "Newest of 2 windows" in page
    figures = page_figures(page)
    psi = figures["drift-psi"]["data"]
    assert psi[0]["name"] == "f2"  # drifted first
    assert psi[0]["visible"] is True and len(psi[0]["y"]) == 2 and psi[0]["y"][1] > 2
    assert {trace["name"] for trace in psi} == {"f0", "f1", "f2", "f3", "threshold"}
    training, live = figures["drift-column:f2"]["data"]
    assert len(training["x"]) == len(live["x"]) == 11 and training["x"][-1] == "gaps"
    assert live["y"][-2] > 0.9 and abs(training["y"][-2] - 0.1) < 0.02
    assert 'data-figure="drift-column:f2"' in page  # drawn first; a click draws another
    assert '<tr class="drifted" data-column="f2">' in page
