"""Explanations of what a real search registers, on a real ``kiln serve`` with two worker
processes: a GBDT-only search (TreeSHAP on the booster kept beside the graph), an MLP-only
one (sampled Shapley values on the served graph) and an average of networks (sampled too),
each on a tiny table with a number with gaps, a category and a date. The explain route
names its method, each row's attributions and base value add up to its value, there is one
attribution per column the user named (the category's one-hot block and the date's parts
folded back), and the version shows its global importance."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_search_jobs import SMALL_SPACE, submit
from tests.e2e.test_search_selection import SAME_NETWORK
from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import csv_bytes

TOLERANCE = 1e-4
COLUMNS = {"x", "size", "colour", "day"}
COLOURS = ("red", "green", "blue")


@pytest.fixture(scope="module")
def server(module_kiln_server: ServerFactory) -> Iterator[KilnServer]:
    kiln = module_kiln_server(workers=2, KILN_TRIAL_HEARTBEAT_S="1")
    yield kiln


def table_rows(rows: int, seed: int, spread: float) -> list[dict[str, Any]]:
    """A number, a number with gaps, a category and a date; the label follows the first
    number (flipped for red), with ``spread`` of noise on it."""
    generator = random.Random(seed)
    out = []
    for index in range(rows):
        colour = COLOURS[index % 3]
        x = generator.gauss(0.0, 1.0)
        label = (x + generator.gauss(0.0, spread) > 0) != (colour == "red")
        out.append(
            {
                "x": round(x, 3),
                "size": None if index % 9 == 4 else round(generator.uniform(0, 5), 2),
                "colour": colour,
                "day": f"2024-{1 + index % 12:02d}-{1 + index % 28:02d}",
                "label": "yes" if label else "no",
            }
        )
    return out


def table_csv(rows: list[dict[str, Any]]) -> bytes:
    header = ["x", "size", "colour", "day", "label"]
    return csv_bytes(header, [["" if row[c] is None else row[c] for c in header] for row in rows])


def checked_explanations(
    server: KilnServer, name: str, rows: list[dict[str, Any]], method: str
) -> dict[str, Any]:
    """Explain ``rows`` with version 1 of ``name`` and check what every answer must hold;
    the version as GET shows it."""
    inputs = [{key: value for key, value in row.items() if key != "label"} for row in rows]
    with server.client() as client:
        answer = client.post(f"/v1/models/{name}/explain?version=1", json={"inputs": inputs})
        assert answer.status_code == 200, answer.text
        verb = client.post(f"/v1/models/{name}:explain?version=1", json={"inputs": inputs})
        assert verb.status_code == 200, verb.text
        served = client.post(f"/v1/models/{name}/predict?version=1", json={"inputs": inputs})
        assert served.status_code == 200, served.text
        version = client.get(f"/v1/models/{name}/versions/1")
        assert version.status_code == 200, version.text
    body = answer.json()
    assert (body["model"], body["version"], body["method"]) == (name, 1, method)
    assert verb.json()["explanations"] == body["explanations"]
    assert len(body["explanations"]) == len(rows)
    for row, prediction in zip(body["explanations"], served.json()["predictions"], strict=True):
        assert row["prediction"] == prediction
        assert [output["class"] for output in row["outputs"]] == ["no", "yes"]
        for output in row["outputs"]:
            assert set(output["attributions"]) == COLUMNS  # one per column the user named
            total = output["base_value"] + math.fsum(output["attributions"].values())
            assert abs(total - output["value"]) <= TOLERANCE, (total, output["value"])
    shown: dict[str, Any] = version.json()
    importance = shown["importance"]
    assert importance is not None and importance["method"] == method
    assert set(importance["columns"]) == COLUMNS and importance["rows"] > 0
    values = list(importance["columns"].values())
    assert values == sorted(values, reverse=True) and values[0] > 0
    assert shown["metrics"]["explain"]["method"] == method
    return shown


def searched(server: KilnServer, rows: list[dict[str, Any]], name: str, **search: Any) -> None:
    dataset_id = server.upload_dataset(table_csv(rows))
    job = server.wait_for_job(submit(server, dataset_id, name, **search))
    assert job["status"] == "succeeded", (job["error"], server.log_tail())


def test_a_gbdt_search_explains_its_booster_exactly(server: KilnServer) -> None:
    rows = table_rows(120, seed=3, spread=0.3)
    searched(
        server,
        rows,
        "why-trees",
        families=["gbdt"],
        max_trials=2,
        timeout_s=60.0,
        space={"gbdt_rounds": 30},
        seed=1,
    )
    version = checked_explanations(server, "why-trees", rows[:6], "tree_shap")
    assert version["config"]["family"] == "gbdt"
    assert version["importance"]["output"] == "raw_score"


def test_an_mlp_search_explains_its_served_graph(server: KilnServer) -> None:
    rows = table_rows(120, seed=3, spread=0.3)
    searched(
        server,
        rows,
        "why-net",
        families=["mlp"],
        max_trials=2,
        timeout_s=60.0,
        space=SMALL_SPACE,
        seed=1,
    )
    version = checked_explanations(server, "why-net", rows[:4], "sampled_shapley")
    assert version["config"]["family"] == "mlp"
    assert version["importance"]["output"] == "probability"


def test_an_average_of_networks_explains_its_served_graph(server: KilnServer) -> None:
    # As tests.e2e.test_search_selection makes one: the same wide network with different
    # seeds, trained past its best on overlapping classes, chosen on log loss.
    rows = table_rows(240, seed=5, spread=1.0)
    searched(
        server,
        rows,
        "why-average",
        families=["mlp"],
        max_trials=4,
        max_epochs=40,
        seed=2,
        max_ensemble=3,
        space=SAME_NETWORK,
        objectives=[{"metric": "log_loss"}],
        validation="auto",
        refit="selection_only",
    )
    version = checked_explanations(server, "why-average", rows[:3], "sampled_shapley")
    assert len(version["config"]["params"]["ensemble_of_trials"]) >= 2, version["config"]
