"""The job, models and dataset pages in a real browser, against a real ``kiln serve`` whose
worker searches a noisy table (a date column among its features) across networks, trees
and linear models and registers an average of its trials: the job page scores the version
as itself beside the best single trial and lists its members with their weights, the
learning curves draw the networks alone, parallel coordinates label their ticks with short
numbers, the models list shows a split, a shadow and the serving version's metric, and the
dataset page the date column's range."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.test_dashboard import points, sign_in, wait_for
from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import csv_bytes

MODEL = "survey"


def survey_csv(rows: int = 360, seed: int = 11) -> tuple[bytes, str, str]:
    """A noisy yes/no answer that follows two numbers and a colour (about 75% can be
    right), with the day each row was taken; returns the file and its first and last day."""
    rng = random.Random(seed)
    lines, days = [], []
    for _ in range(rows):
        x, z = rng.gauss(0, 1), rng.gauss(0, 1)
        colour = rng.choice(["red", "green", "blue"])
        day = f"2023-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        logit = 1.2 * x - 0.6 * z + (0.8 if colour == "red" else -0.3)
        label = "yes" if rng.random() < 1 / (1 + math.exp(-logit)) else "no"
        lines.append([f"{x:.3f}", f"{z:.3f}", colour, day, label])
        days.append(day)
    return csv_bytes(["x", "z", "colour", "day", "label"], lines), min(days), max(days)


def search(kiln: KilnServer, dataset_id: int, search_spec: dict[str, Any]) -> dict[str, Any]:
    with kiln.client() as client:
        answer = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": MODEL,
                "search": search_spec,
            },
        )
    assert answer.status_code == 202, answer.text
    job = kiln.wait_for_job(int(answer.json()["id"]))
    assert job["status"] == "succeeded", (job["error"], kiln.log_tail())
    return dict(job)


@pytest.fixture(scope="module")
def searched(module_kiln_server: ServerFactory) -> Iterator[dict[str, Any]]:
    """v1: an average of a search across families; v2 and v3: linear models, the
    production alias split between v1 and v2 with v3 as its shadow."""
    kiln = module_kiln_server(workers=1)
    content, first_day, last_day = survey_csv()
    dataset_id = kiln.upload_dataset(content)
    job = search(
        kiln,
        dataset_id,
        {
            "families": ["mlp", "gbdt", "linear"],
            "algorithm": "tpe",
            "max_trials": 6,
            "seed": 3,
            "validation": "holdout",
            "max_ensemble": 3,
            "space": {"n_layers": 1, "width": 16, "epochs": 8},
        },
    )
    for seed in (1, 2):
        search(kiln, dataset_id, {"families": ["linear"], "max_trials": 1, "seed": seed})
    with kiln.client() as client:
        routes = {"versions": [{"version": 1, "weight": 70}, {"version": 2, "weight": 30}]}
        answer = client.put(f"/v1/models/{MODEL}/aliases/production", json={**routes, "shadow": 3})
        assert answer.is_success, answer.text
        version = client.get(f"/v1/models/{MODEL}/versions/1").json()
        trials = client.get(f"/v1/jobs/{job['id']}/trials").json()
    yield {
        "kiln": kiln,
        "job": job,
        "version": version,
        "trials": trials,
        "dataset_id": dataset_id,
        "days": (first_day, last_day),
    }


def test_the_job_page_scores_the_registered_average_and_lists_its_members(
    browser: Any, searched: dict[str, Any]
) -> None:
    kiln, job, version = searched["kiln"], searched["job"], searched["version"]
    members = version["config"].get("members")
    assert members and len(members) >= 2, job["result"]["selection"]["ensemble"]
    progress = job["progress"]
    assert progress["registered_version"] == 1
    assert progress["registered_value"] >= progress["best_value"]  # it beat the trials
    sign_in(browser, kiln)
    row = browser.find_element(
        "css selector", f"#jobs tr[data-status=succeeded] a[href='/ui/jobs/{job['id']}']"
    )
    listed = row.find_element("xpath", "./ancestor::tr")
    registered = listed.find_element("css selector", ".registered").text
    assert registered == f"v1 {progress['registered_value']:.4g} accuracy"
    assert (
        listed.find_element("css selector", ".best").text
        == f"{progress['best_value']:.4g} accuracy"
    )
    browser.get(f"{kiln.url}/ui/jobs/{job['id']}")
    score = wait_for(lambda: browser.find_elements("id", "registered-score"), what="the score")
    assert score[0].text == (
        f"v1: {progress['registered_value']:.4g} accuracy (holdout), "
        f"an average of {len(members)} trials"
    )
    best = browser.find_element("id", "best-trial").text
    assert best.startswith(f"{progress['best_value']:.4g} (accuracy, maximize), trial ")
    shown = [
        (
            int(r.get_attribute("data-trial")),
            r.find_element("css selector", ".family").text,
            r.find_element("css selector", ".weight").text,
        )
        for r in browser.find_elements("css selector", "#members tbody tr")
    ]
    assert shown == [(m["trial"], m["family"], f"{m['weight'] * 100:.0f}%") for m in members]
    browser.get(f"{kiln.url}/ui/models/{MODEL}?version=1")
    panel = wait_for(
        lambda: browser.find_elements("css selector", "#panel #members"), what="members"
    )
    weights = [cell.text for cell in panel[0].find_elements("css selector", ".weight")]
    assert weights == [f"{m['weight'] * 100:.0f}%" for m in members]


def test_learning_curves_leave_out_tree_and_linear_trials(
    browser: Any, searched: dict[str, Any]
) -> None:
    kiln, job, trials = searched["kiln"], searched["job"], searched["trials"]
    families = [t["params"].get("family") for t in trials]
    networks = [t for t in trials if t["params"].get("family") == "mlp" and t["intermediate"]]
    tables = [f for f in families if f in ("gbdt", "linear")]
    assert networks and tables, families
    sign_in(browser, kiln)
    browser.get(f"{kiln.url}/ui/jobs/{job['id']}")
    wait_for(lambda: points(browser, "history") > 0, what="the history chart")
    drawn = browser.find_elements("css selector", "#chart-curves .scatterlayer .trace")
    assert len(drawn) == len(networks)
    note = browser.find_element("id", "note-curves").text
    assert note.startswith("Not drawn: ") and "train without epochs" in note
    epochs = {
        int(r.get_attribute("id").removeprefix("trial-")): r.find_element(
            "css selector", ".epochs"
        ).text
        for r in browser.find_elements("css selector", "#trials tbody tr")
    }
    for trial in trials:
        if trial["params"].get("family") == "linear":
            assert epochs[trial["number"]] == "\u2013"
        elif trial["params"].get("family") == "gbdt":
            assert epochs[trial["number"]].endswith(" rounds")


def test_parallel_coordinates_label_their_ticks_with_short_numbers(
    browser: Any, searched: dict[str, Any]
) -> None:
    kiln, job = searched["kiln"], searched["job"]
    sign_in(browser, kiln)
    browser.get(f"{kiln.url}/ui/jobs/{job['id']}")
    ticks = wait_for(
        lambda: browser.find_elements("css selector", "#chart-parallel .parcoords .tick text"),
        what="the parallel coordinates' ticks",
    )
    labels = [tick.text for tick in ticks if tick.text]
    assert labels
    words = {"\u2013", "mlp", "gbdt", "linear", "relu", "gelu", "silu", "tanh", "true", "false"}
    for label in labels:
        if label.lower() in words or label.isalpha():
            continue
        float(label)  # a number, not "0.012345678901"
        assert len(label) <= 6, labels


def test_the_models_list_shows_the_split_the_shadow_and_the_metric(
    browser: Any, searched: dict[str, Any]
) -> None:
    kiln, version = searched["kiln"], searched["version"]
    sign_in(browser, kiln)
    browser.get(f"{kiln.url}/ui/models")
    row = wait_for(
        lambda: browser.find_elements("css selector", f"#models tr[data-model={MODEL}]"),
        what="the model's row",
    )[0]
    cells = [cell.text for cell in row.find_elements("css selector", "td")]
    assert cells[3] == "production → v1 70% / v2 30%, shadow v3"
    assert cells[4] == f"accuracy {version['metrics']['accuracy']:.4f} (v1)"


def test_the_dataset_page_shows_the_date_columns_range(
    browser: Any, searched: dict[str, Any]
) -> None:
    kiln, (first_day, last_day) = searched["kiln"], searched["days"]
    sign_in(browser, kiln)
    browser.get(f"{kiln.url}/ui/datasets/{searched['dataset_id']}")
    row = wait_for(
        lambda: browser.find_elements("css selector", "#columns tr[data-column=day]"),
        what="the date column",
    )[0]
    assert row.find_element("css selector", ".earliest").text == first_day
    assert row.find_element("css selector", ".latest").text == last_day
