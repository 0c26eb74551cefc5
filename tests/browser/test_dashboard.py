"""The dashboard and the docs page in a real browser, against a real ``kiln serve`` whose
worker runs a real multi-objective search and a real compression: sign in, the search's
charts draw one point per trial, the compression report shows its trade-offs, an alias
moved on the page is what the API then says, a version's importance and one row's
explanation are drawn as bars, and ``/docs`` renders its operations with every host but
the gateway unreachable."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import blobs_csv

SPACE = {
    "n_layers": {"low": 1, "high": 2},
    "width": {"low": 8, "high": 64, "log": True},
    "epochs": {"low": 3, "high": 6},
    "batch_size": 32,
    "patience": 0,
}


@pytest.fixture(scope="module")
def finished(module_kiln_server: ServerFactory) -> Iterator[dict[str, Any]]:
    """A server with a finished two-objective search and a finished compression."""
    kiln = module_kiln_server(workers=1)
    dataset_id = kiln.upload_dataset(blobs_csv(n_rows=300))
    with kiln.client() as client:
        search = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "looked-at",
                "search": {
                    "algorithm": "nsga2",
                    "refit": "selection_only",  # compressed below on its own test rows
                    "max_trials": 6,
                    "seed": 2,
                    "space": SPACE,
                    "validation": "holdout",
                    "objectives": [{"metric": "accuracy"}, {"metric": "params"}],
                },
            },
        )
        assert search.status_code == 202, search.text
    search_job = kiln.wait_for_job(int(search.json()["id"]))
    assert search_job["status"] == "succeeded", (search_job["error"], kiln.log_tail())
    with kiln.client() as client:
        compress = client.post(
            "/v1/jobs",
            json={
                "kind": "compress",
                "source": {"model": "looked-at", "version": 1},
                "dataset_id": dataset_id,
                "compression": {"methods": ["prune_structured", "quantize_dynamic"]},
            },
        )
        assert compress.status_code == 202, compress.text
    compress_job = kiln.wait_for_job(int(compress.json()["id"]))
    assert compress_job["status"] == "succeeded", (compress_job["error"], kiln.log_tail())
    with kiln.client() as client:
        trials = client.get(f"/v1/jobs/{search_job['id']}/trials").json()
        front = client.get(f"/v1/jobs/{search_job['id']}/pareto").json()
        report = client.get(f"/v1/jobs/{compress_job['id']}/report").json()
    yield {
        "kiln": kiln,
        "search": search_job,
        "compress": compress_job,
        "trials": trials,
        "front": front,
        "report": report,
    }


def wait_for(condition: Any, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def points(browser: Any, chart: str) -> int:
    """The markers Plotly drew in one chart."""
    found = browser.find_elements("css selector", f"#chart-{chart} .scatterlayer .point")
    return len(found)


def bars(browser: Any, chart: str) -> int:
    """The bars Plotly drew in one bar chart."""
    return len(browser.find_elements("css selector", f"#chart-{chart} .barlayer .point"))


def ticks(browser: Any, chart: str) -> list[str]:
    """A horizontal bar chart's column labels, top to bottom."""
    labels = browser.find_elements("css selector", f"#chart-{chart} .ytick text")
    return [label.text for label in reversed(labels)]


def sign_in(browser: Any, kiln: KilnServer) -> None:
    browser.get(f"{kiln.url}/ui/jobs")
    wait_for(lambda: browser.current_url.endswith("/ui/login"), what="the sign-in page")
    browser.find_element("id", "key").send_keys(kiln.key)
    browser.find_element("css selector", ".login button[type=submit]").click()
    wait_for(lambda: browser.current_url.endswith("/ui/jobs"), what="the jobs page")
    assert kiln.key not in browser.current_url


def test_sign_in_and_see_the_search_drawn(browser: Any, finished: dict[str, Any]) -> None:
    kiln, search, trials = finished["kiln"], finished["search"], finished["trials"]
    sign_in(browser, kiln)
    rows = browser.find_elements("css selector", "#jobs tbody tr")
    assert len(rows) == 2 and all(r.get_attribute("data-status") == "succeeded" for r in rows)
    browser.find_element("link text", f"#{search['id']}").click()
    wait_for(lambda: points(browser, "history") > 0, what="the history chart")
    complete = [t for t in trials if t["state"] == "complete"]
    pruned = [t for t in trials if t["state"] == "pruned" and t["intermediate"]]
    assert points(browser, "history") == len(complete) + len(pruned)
    # Every complete trial, the front drawn over them: one marker each.
    wait_for(lambda: points(browser, "pareto") > 0, what="the Pareto chart")
    assert points(browser, "pareto") == len(complete)
    front = browser.find_elements("css selector", "#chart-pareto .scatterlayer .trace")[1]
    assert len(front.find_elements("css selector", ".point")) == len(finished["front"]["trials"])
    assert browser.find_elements("css selector", "#chart-parallel .parcoords")
    assert len(browser.find_elements("css selector", "#trials tbody tr")) == len(trials)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def test_the_compression_report_and_moving_an_alias(browser: Any, finished: dict[str, Any]) -> None:
    kiln, report = finished["kiln"], finished["report"]
    sign_in(browser, kiln)
    browser.get(f"{kiln.url}/ui/jobs/{finished['compress']['id']}")
    wait_for(lambda: points(browser, "size") > 0, what="the size chart")
    rows = report["rows"]
    assert points(browser, "size") == len(rows) + 1  # the recommended one drawn again as a star
    assert points(browser, "latency") == len(rows) + 1
    table = browser.find_element("id", "report").text
    assert f"Recommended: v{report['recommended_version']}" in table
    assert report["reason"][:40] in table

    browser.get(f"{kiln.url}/ui/models/looked-at")
    target = str(report["recommended_version"])
    form = browser.find_element("id", "move-alias")
    form.find_element("css selector", f"select[name=version] option[value='{target}']").click()
    form.find_element("css selector", "button[type=submit]").click()

    def moved() -> bool:  # the first version has held the alias since it was registered
        with kiln.client() as client:
            aliases = client.get("/v1/models/looked-at").json()["aliases"]
        return bool(aliases == {"production": int(target)})

    wait_for(moved, what="the alias to move")
    browser.get(f"{kiln.url}/ui/models/looked-at")
    held = browser.find_element("css selector", "tr[data-alias=production] .held").text
    assert held == f"v{target}"


def test_docs_render_with_no_network_but_the_gateway(
    browser: Any, finished: dict[str, Any]
) -> None:
    kiln = finished["kiln"]
    browser.get(f"{kiln.url}/docs")
    operations = wait_for(
        lambda: browser.find_elements("css selector", ".opblock"), what="Swagger UI's operations"
    )
    assert len(operations) > 20
    assert "POST/v1/jobs" in "".join(o.text.replace("\n", "") for o in operations)
    browser.get(f"{kiln.url}/redoc")
    wait_for(
        lambda: browser.find_elements("css selector", "[data-section-id]"), what="ReDoc's sections"
    )


def test_a_screenshot_dir_is_ignored_by_git() -> None:
    ignored = (Path(__file__).resolve().parents[2] / ".gitignore").read_text()
    assert "test-output/" in ignored.splitlines()


def test_the_model_page_shows_how_to_call_a_version_and_tries_it(
    browser: Any, finished: dict[str, Any]
) -> None:
    kiln = finished["kiln"]
    sign_in(browser, kiln)
    browser.get(f"{kiln.url}/ui/models/looked-at?version=1")
    panel = wait_for(lambda: browser.find_elements("id", "panel"), what="the version panel")[0]
    assert panel.get_attribute("data-version") == "1"
    signature = browser.find_elements("css selector", "#signature tbody tr")
    with kiln.client() as client:
        version = client.get("/v1/models/looked-at/versions/1").json()
    assert len(signature) == len(version["signature"]["inputs"])
    curl = browser.find_element("id", "example-curl").text
    assert "/v1/models/looked-at/predict?version=1" in curl and "Bearer $KILN_API_KEY" in curl
    assert "httpx.post(" in browser.find_element("id", "example-python").text
    browser.find_element("css selector", "#try button[type=submit]").click()
    answer = wait_for(
        lambda: (lambda el: el if el.get_attribute("data-status") else None)(
            browser.find_element("id", "try-answer")
        ),
        what="the prediction's answer",
    )
    assert answer.get_attribute("data-status") == "200", answer.text
    assert '"predictions"' in answer.text and '"version": 1' in answer.text
    importance = version["importance"]
    assert importance is not None, version["metrics"].get("explain")
    columns = len(importance["columns"])
    wait_for(lambda: bars(browser, "importance") == columns, what="the importance chart")
    assert ticks(browser, "importance") == list(importance["columns"])  # the largest on top
    note = browser.find_element("id", "importance-note").text
    assert importance["method"] in note and importance["output"] in note
    browser.find_element("id", "explain-button").click()
    wait_for(lambda: bars(browser, "explain") == columns, what="the explanation's bars")
    answer = browser.find_element("id", "try-answer")
    assert answer.get_attribute("data-status") == "200", answer.text
    assert '"explanations"' in answer.text and '"base_value"' in answer.text
    row = json.loads(answer.text.split("\n", 1)[1])["explanations"][0]
    attributions = next(o for o in row["outputs"] if o["class"] == row["prediction"])
    ranked = sorted(attributions["attributions"].items(), key=lambda item: -abs(item[1]))
    assert ticks(browser, "explain") == [column for column, _ in ranked]
    caption = browser.find_element("id", "explain-caption").text
    assert caption.startswith("base value ") and " of class " in caption, caption
    options = browser.find_elements("css selector", "#explain-class option")
    assert [o.text for o in options] == [str(label) for label in version["class_labels"]]
    shown = browser.find_element("css selector", "#explain-class option:checked")
    assert f"predicted {json.dumps(shown.text)}" in caption  # the predicted class first
    other = next(o for o in options if o.text != shown.text)
    other.click()
    wait_for(
        lambda: f" of class {other.text};" in browser.find_element("id", "explain-caption").text,
        what="the other class's bars",
    )
    assert bars(browser, "explain") == columns
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    classes = browser.find_elements("css selector", "#per-class tbody tr")
    assert len(classes) == len(version["class_labels"])
    matrix = browser.find_elements("css selector", "#confusion tbody tr")
    assert len(matrix) == len(version["class_labels"])
    link = browser.find_element("id", "dataset-link")
    assert link.get_attribute("href").endswith(f"/ui/datasets/{version['lineage']['dataset_id']}")
    made = [cell.text for cell in browser.find_elements("css selector", "#versions .made-from")]
    assert made and all(made), made  # searched versions say where they came from too
    assert made[-1].startswith("trial ")  # the oldest row, v1: a search's trial


def test_the_serving_page_counts_from_its_start_and_names_unknown_models(
    browser: Any, finished: dict[str, Any]
) -> None:
    kiln = finished["kiln"]
    with kiln.client() as client:
        assert (
            client.post("/v1/models/no-such-model/predict", json={"inputs": [[1.0]]}).status_code
            == 404
        )
    sign_in(browser, kiln)
    browser.get(f"{kiln.url}/ui/serving")
    started = wait_for(lambda: browser.find_elements("id", "started"), what="the start time")
    first = started[0].text
    assert first.endswith("UTC")
    time.sleep(1.2)
    browser.refresh()
    assert browser.find_element("id", "started").text == first  # the start, not the time now
    unknown = browser.find_elements("css selector", "#serving .unknown")
    assert unknown and unknown[0].text == "no such model (404)"
    names = [
        row.find_elements("css selector", "td")[0].text
        for row in browser.find_elements("css selector", "#serving tbody tr")
    ]
    assert all(names), names  # no row with a blank name
