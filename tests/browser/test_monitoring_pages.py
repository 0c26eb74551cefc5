"""Monitoring a user can read, in a real browser against a real ``kiln serve`` (windows of
200 rows, every request sampled, written every 0.3 s): the model page's drift panel says how
far the first window has got and what it still needs, then draws each column's PSI over
the windows, and a click on a column draws its training and live distributions; the
serving page draws each version's traffic second by second, the shadow marked as one and
the split beside it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.browser.test_dashboard import sign_in, wait_for
from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import blobs_csv

WINDOW_ROWS = 200  # noise alone keeps a window of the training distribution under 0.2


@pytest.fixture(scope="module")
def served(module_kiln_server: ServerFactory) -> Iterator[KilnServer]:
    """Three versions of ``watched``, each a quick search on the same dataset."""
    kiln = module_kiln_server(
        workers=1,
        KILN_DRIFT_SAMPLE="1",
        KILN_DRIFT_WINDOW_ROWS=str(WINDOW_ROWS),
        KILN_MONITOR_FLUSH_S="0.3",
        KILN_SERVING_CACHE_S="0.5",
    )
    dataset_id = kiln.upload_dataset(blobs_csv(n_rows=200))
    search = {
        "kind": "search",
        "dataset_id": dataset_id,
        "model_name": "watched",
        "search": {"families": ["linear"], "max_trials": 1, "seed": 1},
    }
    for _ in range(3):
        with kiln.client() as client:
            submitted = client.post("/v1/jobs", json=search)
        assert submitted.status_code == 202, submitted.text
        job = kiln.wait_for_job(int(submitted.json()["id"]))
        assert job["status"] == "succeeded", (job["error"], kiln.log_tail())
    yield kiln


def rows(count: int, seed: int, shift: float = 0.0) -> list[list[float]]:
    """Rows like the training ones (two blobs, f0 to f3), column f2 moved by ``shift``."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * (np.arange(count) % 2)
    values = rng.normal(loc=centres[:, None], scale=0.5, size=(count, 4))
    values[:, 2] += shift
    return [[float(value) for value in row] for row in values]


def predict(kiln: KilnServer, records: list[list[float]], version: int | None = None) -> None:
    path = "/v1/models/watched/predict" + (f"?version={version}" if version else "")
    with kiln.client() as client:
        for start in range(0, len(records), 10):
            answer = client.post(path, json={"inputs": records[start : start + 10]})
            assert answer.status_code == 200, answer.text


def text_of(browser: Any, element_id: str) -> str:
    found = browser.find_elements("id", element_id)
    return str(found[0].text) if found else ""


def refreshed_until(browser: Any, condition: Any, what: str) -> Any:
    """The model page is not live: load it again until ``condition`` holds."""

    def check() -> Any:
        browser.refresh()
        return condition()

    return wait_for(check, timeout=30, what=what)


def traces(browser: Any, selector: str) -> list[Any]:
    return list(browser.find_elements("css selector", selector))


def test_the_drift_panel_progress_then_psi_and_distributions(
    browser: Any, served: KilnServer
) -> None:
    sign_in(browser, served)
    browser.get(f"{served.url}/ui/models/watched?version=1")
    waiting = text_of(browser, "drift-waiting")
    assert f"A window needs {WINDOW_ROWS} sampled rows" in waiting and "100%" in waiting
    predict(served, rows(20, seed=1), version=1)
    refreshed_until(
        browser, lambda: text_of(browser, "drift-rows") == f"20 of {WINDOW_ROWS}", "progress"
    )
    assert text_of(browser, "drift-sample") == "100%"
    assert text_of(browser, "drift-needed") == str(WINDOW_ROWS - 20)
    assert not browser.find_elements("id", "chart-drift-psi")  # no window yet

    predict(served, rows(WINDOW_ROWS - 20, seed=2), version=1)  # the first window: as trained
    predict(served, rows(WINDOW_ROWS, seed=3, shift=10.0), version=1)  # the second: f2 moved
    refreshed_until(
        browser,
        lambda: "Newest of 2 windows" in browser.find_element("id", "drift").text,
        "two windows",
    )
    psi = wait_for(
        lambda: traces(browser, "#chart-drift-psi .scatterlayer .trace"), what="the PSI chart"
    )
    assert len(psi) == 2  # f2, drifted, and the threshold; the others in the legend only
    legend = [t.text for t in traces(browser, "#chart-drift-psi .legendtext")]
    assert legend[0] == "f2" and set(legend) == {"f0", "f1", "f2", "f3", "threshold"}
    first = browser.find_element("css selector", "#drift-columns tbody tr")
    assert first.get_attribute("data-column") == "f2" and "drifted" in first.get_attribute("class")
    assert text_of(browser, "drift-column-name") == "f2"
    bars = wait_for(
        lambda: traces(browser, "#chart-drift-column .barlayer .trace"), what="distributions"
    )
    assert len(bars) == 2  # training and live

    browser.find_element("css selector", "#drift-columns tr[data-column=f0]").click()
    wait_for(lambda: text_of(browser, "drift-column-name") == "f0", what="the clicked column")
    assert browser.find_element("id", "chart-drift-column").get_attribute("data-figure") == (
        "drift-column:f0"
    )
    names = [t.text for t in traces(browser, "#chart-drift-column .legendtext")]
    assert names == ["training", "live"]
    ticks = [t.text for t in traces(browser, "#chart-drift-column .xtick text")]
    assert ticks and ticks[-1] == "gaps"
    selected = browser.find_element("css selector", "#drift-columns tr.selected")
    assert selected.get_attribute("data-column") == "f0"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def test_the_serving_page_draws_versions_over_time_and_marks_the_shadow(
    browser: Any, served: KilnServer
) -> None:
    split = {"versions": [{"version": 1, "weight": 70}, {"version": 2, "weight": 30}], "shadow": 3}
    with served.client() as client:
        moved = client.put("/v1/models/watched/aliases/production", json=split)
        assert moved.status_code == 200, moved.text
    predict(served, rows(60, seed=4))
    sign_in(browser, served)
    browser.get(f"{served.url}/ui/serving?seconds=60")
    section = "section[data-model=watched]"
    wait_for(  # the page refreshes itself: the newest second shows once it is complete
        lambda: browser.find_elements("css selector", f"{section} tr[data-role=shadow]"),
        what="the shadow's row",
    )
    marked = browser.find_element("css selector", f"{section} tr[data-role=shadow] .status")
    assert marked.text == "shadow"
    heading = browser.find_element("css selector", f"{section} h2").text
    assert "v1 70%" in heading and "v2 30%" in heading and "shadow v3" in heading

    def legend(chart: str) -> list[str]:
        return [t.text for t in traces(browser, f"#chart-watched-{chart} .legendtext")]

    wait_for(lambda: "v3 (shadow)" in legend("rate"), what="the shadow in the rate chart")
    drawn = traces(browser, "#chart-watched-rate .scatterlayer .trace")
    assert len(drawn) == len(legend("rate")) >= 2  # a line per version, and the shadow's
    assert {"v1 (70%)", "v3 (shadow)"} <= set(legend("rate"))
    assert traces(browser, "#chart-watched-errors .scatterlayer .trace")
    percentiles = {name.rsplit(" ", 1)[1] for name in legend("latency")}
    assert percentiles == {"p50", "p95", "p99"}
    split_bars = traces(browser, "#chart-watched-split .barlayer .trace")
    assert {t.text for t in traces(browser, "#chart-watched-split .legendtext")} == {"v1", "v2"}
    assert len(split_bars) == 2
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
