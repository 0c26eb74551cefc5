"""Search jobs through ``POST /v1/jobs`` on a real ``kiln serve`` with two worker processes:
every algorithm and pruner, multi-objective Pareto fronts, parallel trials, warm starts and
fine-tuning. Small budgets on a small dataset keep it quick; quality is tested elsewhere."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import blobs_csv, csv_bytes

# A narrow space so that every trial takes a fraction of a second.
SMALL_SPACE = {
    "n_layers": {"low": 1, "high": 2},
    "width": {"low": 8, "high": 64, "log": True},
    "epochs": {"low": 3, "high": 6},
    "batch_size": 32,
    "patience": 0,
}


@pytest.fixture(scope="module")
def server(module_kiln_server: ServerFactory) -> Iterator[KilnServer]:
    kiln = module_kiln_server(workers=2, KILN_TRIAL_HEARTBEAT_S="1")
    yield kiln


@pytest.fixture(scope="module")
def dataset_id(server: KilnServer) -> int:
    return server.upload_dataset(
        blobs_csv(n_rows=240, n_features=6, labels=("a", "b", "c"), seed=1)
    )


def submit(server: KilnServer, dataset_id: int, model: str, **search: Any) -> int:
    """Submit a small search. Scored on the validation split unless ``validation`` says
    otherwise: the tests of cross-validation ask for it (``auto`` picks 5 folds here)."""
    body = {
        "kind": "search",
        "dataset_id": dataset_id,
        "model_name": model,
        "search": {
            "max_trials": 4,
            "max_epochs": 6,
            "space": SMALL_SPACE,
            "validation": "holdout",
            **search,
        },
    }
    with server.client() as client:
        response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def trials_of(server: KilnServer, job_id: int) -> list[dict[str, Any]]:
    with server.client() as client:
        return list(client.get(f"/v1/jobs/{job_id}/trials").json())


ALGORITHMS: dict[str, dict[str, Any]] = {
    "random": {},
    "tpe": {},
    "gp": {},
    "cmaes": {},
    "evolution": {},
    "hillclimb": {},
    "anneal": {},
    "nsga2": {"objectives": [{"metric": "accuracy"}, {"metric": "params"}]},
    "grid": {
        "space": {
            **SMALL_SPACE,
            "n_layers": {"low": 1, "high": 2},
            "width": 16,
            "epochs": 3,
            "activation": {"choices": ["relu", "tanh"]},
            "dropout": 0.0,
            "batch_norm": False,
            "optimizer": "adamw",
            "learning_rate": 0.01,
            "weight_decay": 1e-4,
            "l1": 0.0,
            "lr_schedule": "none",
        }
    },
}
PRUNERS = ("none", "median", "successive_halving", "hyperband")


def test_every_algorithm_and_pruner_runs(server: KilnServer, dataset_id: int) -> None:
    jobs = {
        algorithm: submit(
            server, dataset_id, f"algo-{algorithm}", algorithm=algorithm, seed=5, **extra
        )
        for algorithm, extra in ALGORITHMS.items()
    }
    jobs |= {
        f"pruner-{pruner}": submit(
            server,
            dataset_id,
            f"prune-{pruner.replace('_', '-')}",
            algorithm="tpe",
            pruner=pruner,
            max_trials=6,
            seed=2,
        )
        for pruner in PRUNERS
    }
    for name, job_id in jobs.items():
        job = server.wait_for_job(job_id)
        assert job["status"] == "succeeded", (name, job["error"], server.log_tail())
        trials = trials_of(server, job_id)
        assert all(trial["state"] != "running" for trial in trials)
        finished = [t for t in trials if t["state"] in ("complete", "pruned", "infeasible")]
        assert len(finished) == job["progress"]["total"], (name, trials)
        assert all(t["intermediate"] for t in trials if t["state"] == "complete")
    grid_params = [
        tuple(sorted((k, v) for k, v in t["params"].items()))
        for t in trials_of(server, jobs["grid"])
    ]
    assert len(set(grid_params)) == 4  # the whole 2 x 2 grid, each point once


def test_multi_objective_front_has_measured_latencies(server: KilnServer, dataset_id: int) -> None:
    space = {
        **SMALL_SPACE,
        "n_layers": {"low": 1, "high": 3},
        "width": {"low": 8, "high": 512, "log": True},
    }
    job_id = submit(
        server,
        dataset_id,
        "pareto",
        algorithm="nsga2",
        max_trials=8,
        seed=1,
        space=space,
        objectives=[{"metric": "accuracy"}, {"metric": "latency_ms"}],
    )
    job = server.wait_for_job(job_id)
    assert job["status"] == "succeeded", (job["error"], server.log_tail())
    latencies = [
        t["metrics"]["latency_ms"] for t in trials_of(server, job_id) if t["state"] == "complete"
    ]
    assert len(latencies) >= 4 and all(value > 0 for value in latencies)
    assert len(set(latencies)) > 1  # measured per trial, not assumed (two may tie to the ns)
    with server.client() as client:
        front = client.get(f"/v1/jobs/{job_id}/pareto").json()
        assert [o["metric"] for o in front["objectives"]] == ["accuracy", "latency_ms"]
        for entry in front["trials"]:
            version = client.get(f"/v1/models/pareto/versions/{entry['version']}").json()
            assert version["lineage"]["trial"] == entry["trial"]
            assert version["metrics"]["validation"]["latency_ms"] == pytest.approx(
                entry["values"]["latency_ms"]
            )
        assert client.get(f"/v1/jobs/{job_id}/pareto").status_code == 200
    values = [(e["values"]["accuracy"], e["values"]["latency_ms"]) for e in front["trials"]]
    for accuracy, latency in values:  # nobody on the front is dominated by another
        assert not any(
            a >= accuracy and t <= latency and (a, t) != (accuracy, latency) for a, t in values
        )


@pytest.mark.backends  # trial slots claimed by conditional updates, one shared study
def test_parallel_trials_share_one_budget(server: KilnServer, dataset_id: int) -> None:
    # Trials long enough (about a second) that the helper starts before the budget is spent.
    job_id = submit(
        server,
        dataset_id,
        "parallel",
        algorithm="tpe",
        parallelism=2,
        max_trials=8,
        seed=4,
        max_epochs=60,
        space={**SMALL_SPACE, "epochs": 60, "width": 64, "batch_size": 16},
    )
    job = server.wait_for_job(job_id)
    assert job["status"] == "succeeded", (job["error"], server.log_tail())
    trials = trials_of(server, job_id)
    assert len([t for t in trials if t["state"] == "complete"]) == 8
    assert len({t["worker"] for t in trials}) == 2  # two worker processes ran trials


def test_warm_start_and_fine_tuning(server: KilnServer, dataset_id: int) -> None:
    # fine-tuned below on this dataset: fitted without its test rows (a version fitted on
    # every row is refused as a starting point on its own dataset)
    first = submit(server, dataset_id, "warm", seed=8, refit="selection_only")
    assert server.wait_for_job(first)["status"] == "succeeded"
    best = max(
        (t for t in trials_of(server, first) if t["state"] == "complete"), key=lambda t: t["value"]
    )
    second = submit(server, dataset_id, "warm", seed=9, warm_start_job=first, max_trials=2)
    assert server.wait_for_job(second)["status"] == "succeeded"
    assert trials_of(server, second)[0]["params"] == best["params"]

    tuned = submit(
        server,
        dataset_id,
        "warm",
        seed=10,
        max_trials=2,
        init_from={"model": "warm", "version": 1},
        space={"epochs": 3, "learning_rate": {"low": 1e-4, "high": 1e-3}},
    )
    job = server.wait_for_job(tuned)
    assert job["status"] == "succeeded", (job["error"], server.log_tail())
    with server.client() as client:
        source = client.get("/v1/models/warm/versions/1").json()
        result = client.get(f"/v1/models/warm/versions/{job['result']['version']}").json()
    assert result["config"]["architecture"] == source["config"]["architecture"]
    assert "n_layers" not in trials_of(server, tuned)[0]["params"]  # only training is searched


def test_transfer_to_other_classes_reuses_the_body_under_a_new_head(
    server: KilnServer, dataset_id: int
) -> None:
    source_job = submit(server, dataset_id, "transfer-source", seed=11, max_trials=2)
    assert server.wait_for_job(source_job)["status"] == "succeeded"
    other = server.upload_dataset(blobs_csv(n_rows=160, n_features=6, labels=("p", "q"), seed=5))
    job_id = submit(
        server,
        other,
        "transferred",
        seed=12,
        max_trials=3,
        init_from={"model": "transfer-source", "version": 1},
        space={"epochs": 4},
    )
    job = server.wait_for_job(job_id)
    assert job["status"] == "succeeded", (job["error"], server.log_tail())
    assert job["result"]["plan"]["init_from"] == "transfer: new head"
    params = trials_of(server, job_id)[0]["params"]
    assert {"frozen_layers", "body_lr_factor", "head_warmup_epochs"} <= set(params)
    assert "n_layers" not in params
    with server.client() as client:
        source = client.get("/v1/models/transfer-source/versions/1").json()
        version = client.get("/v1/models/transferred/versions/1").json()
        answer = client.post("/v1/models/transferred/predict", json={"inputs": [[0.0] * 6]})
        narrow = server.upload_dataset(blobs_csv(n_rows=80, n_features=5, seed=2))
        refused = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": narrow,
                "model_name": "narrow",
                "search": {"init_from": {"model": "transfer-source", "version": 1}},
            },
        )
    assert version["class_labels"] == ["p", "q"]
    assert (
        version["config"]["architecture"]["hidden"] == source["config"]["architecture"]["hidden"]
        and version["config"]["architecture"]["n_outputs"] == 2
    )
    assert answer.status_code == 200 and answer.json()["predictions"][0] in ("p", "q")
    assert refused.status_code == 422
    assert "body expects rows of [6] features; dataset" in refused.json()["detail"]


def test_a_seeded_search_repeats(server: KilnServer, dataset_id: int) -> None:
    runs = [submit(server, dataset_id, "repeat", algorithm="tpe", seed=21) for _ in range(2)]
    trials = []
    for job_id in runs:
        assert server.wait_for_job(job_id)["status"] == "succeeded"
        trials.append([(t["params"], t["values"]) for t in trials_of(server, job_id)])
    assert trials[0] == trials[1]


def test_constraints_reject_before_training(server: KilnServer, dataset_id: int) -> None:
    space = {**SMALL_SPACE, "width": {"low": 8, "high": 256, "log": True}}
    job_id = submit(
        server,
        dataset_id,
        "small",
        algorithm="random",
        seed=3,
        max_trials=8,
        space=space,
        constraints={"max_params": 1500},
    )
    job = server.wait_for_job(job_id)
    assert job["status"] == "succeeded", (job["error"], server.log_tail())
    trials = trials_of(server, job_id)
    rejected = [t for t in trials if t["state"] == "infeasible"]
    assert rejected and all(
        t["intermediate"] == [] and "max_params 1500" in t["error"] for t in rejected
    )
    assert job["result"]["metrics"]["params"] <= 1500


def test_cnn_search_on_image_rows(server: KilnServer) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = [
        [*map(float, x), int(y)]
        for x, y in zip(digits.data[:400], digits.target[:400], strict=True)
    ]
    content = csv_bytes([*(f"p{i}" for i in range(64)), "label"], rows)
    dataset_id = server.upload_dataset(content, input_shape="1,8,8")
    with server.client() as client:
        job_id = submit(
            server,
            dataset_id,
            "cnn",
            max_trials=2,
            seed=1,
            space={"n_blocks": 1, "channels": 8, "epochs": 3, "batch_size": 32},
        )
        job = server.wait_for_job(job_id)
        assert job["status"] == "succeeded", (job["error"], server.log_tail())
        version = client.get(f"/v1/models/cnn/versions/{job['result']['version']}").json()
        assert version["config"]["architecture"]["kind"] == "CNNConfig"
        predicted = client.post(
            "/v1/models/cnn/predict", json={"inputs": digits.data[400:403].tolist()}
        )
    assert predicted.status_code == 200 and len(predicted.json()["predictions"]) == 3


# One epoch of this is thousands of optimizer steps: far longer than the limits below.
SLOW_SPACE = {"n_layers": 2, "width": 256, "epochs": 1000, "batch_size": 2, "patience": 0}


@pytest.fixture(scope="module")
def slow_dataset_id(server: KilnServer) -> int:
    return server.upload_dataset(blobs_csv(n_rows=20_000, n_features=8, seed=3))


def test_a_trial_stuck_in_its_epoch_is_stopped_by_its_time_limit(
    server: KilnServer, slow_dataset_id: int
) -> None:
    job_id = submit(
        server,
        slow_dataset_id,
        "slow",
        max_trials=1,
        max_epochs=1000,
        trial_timeout_s=1,
        space=SLOW_SPACE,
    )
    job = server.wait_for_job(job_id)
    [trial] = trials_of(server, job_id)
    assert trial["state"] == "stopped" and len(trial["intermediate"]) < 1000  # not a fault
    assert "stopped at the trial time limit of 1 s" in trial["error"]
    assert job["status"] == "failed" and "no trial completed" in job["error"]


def test_cancel_stops_a_trial_inside_its_epoch(server: KilnServer, slow_dataset_id: int) -> None:
    job_id = submit(
        server, slow_dataset_id, "cancelled", max_trials=1, max_epochs=1000, space=SLOW_SPACE
    )
    with server.client() as client:
        for _ in range(240):
            if any(t["state"] == "running" for t in trials_of(server, job_id)):
                break
            time.sleep(0.5)
        assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    for _ in range(240):  # the worker notices within about a second
        trials = trials_of(server, job_id)
        if trials and trials[0]["state"] != "running":
            break
        time.sleep(0.5)
    assert trials[0]["state"] == "failed" and len(trials[0]["intermediate"]) < 1000
    assert "the job stopped (cancelled" in trials[0]["error"]
