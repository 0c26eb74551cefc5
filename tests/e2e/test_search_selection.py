"""How a search picks its winner, on a real ``kiln serve`` with two worker processes: k-fold
cross-validation and a refit on small data, the holdout otherwise, a time budget alone, and
an average of the best networks that competes with them and serves."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.e2e.test_search_jobs import SMALL_SPACE, submit, trials_of
from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import blobs_csv, csv_bytes


@pytest.fixture(scope="module")
def server(module_kiln_server: ServerFactory) -> Iterator[KilnServer]:
    kiln = module_kiln_server(workers=2, KILN_TRIAL_HEARTBEAT_S="1")
    yield kiln


@pytest.fixture(scope="module")
def dataset_id(server: KilnServer) -> int:
    return server.upload_dataset(
        blobs_csv(n_rows=240, n_features=6, labels=("a", "b", "c"), seed=1)
    )


def test_small_data_is_chosen_by_cross_validation_and_refit(
    server: KilnServer, dataset_id: int
) -> None:
    folds = server.wait_for_job(
        submit(server, dataset_id, "chosen-by-folds", max_trials=3, seed=4, validation="auto")
    )
    assert folds["status"] == "succeeded", folds["error"]
    selection = folds["result"]["selection"]
    assert selection["validation"] == "5-fold cross-validation"
    # Chosen on the 204 non-test rows; the served model is refit on all 240 labelled rows.
    assert selection["validation_rows"] == 204 and selection["refit_on_rows"] == 240
    assert selection["refit_epochs"] >= 1 and selection["trials_within_noise"] is not None
    trials = [t for t in trials_of(server, folds["id"]) if t["state"] == "complete"]
    assert all(len(t["metrics"]["cv_scores"]) == 5 and "log_loss" in t["metrics"] for t in trials)
    with server.client() as client:
        version = client.get("/v1/models/chosen-by-folds/versions/1").json()
    assert version["metrics"]["validation"]["cv_std"] >= 0  # the spread is on the version
    # Lineage: the served model saw every row; its held-out figures come from the model
    # fitted without the 36 test rows, and say so.
    assert (version["config"]["fitted_on"], version["config"]["fitted_rows"]) == ("all_rows", 240)
    assert version["metrics"]["test_rows"] == 36
    assert "fitted on the 204 non-test rows" in version["metrics"]["held_out_from"]
    holdout = server.wait_for_job(
        submit(
            server,
            dataset_id,
            "chosen-by-holdout",
            max_trials=2,
            seed=4,
            validation="holdout",
            refit="selection_only",
        )
    )
    chosen = holdout["result"]["selection"]
    assert chosen["validation"] == "holdout" and chosen["validation_rows"] == 36
    # selection_only: the winner is refit on training and validation rows for its best
    # epoch count, and that model serves (its metrics are its own)
    assert chosen["refit_on_rows"] == 204 and chosen["refit_epochs"] >= 1
    with server.client() as client:
        served = client.get("/v1/models/chosen-by-holdout/versions/1").json()
    assert served["config"]["fitted_on"] == "non_test_rows"
    assert "held_out_from" not in served["metrics"]
    winner = next(
        t for t in trials_of(server, holdout["id"]) if t["number"] == holdout["result"]["trial"]
    )
    assert chosen["refit_epochs"] == winner["metrics"]["refit_epochs"]


def test_a_time_budget_alone_runs_a_sensible_search(server: KilnServer, dataset_id: int) -> None:
    with server.client() as client:
        response = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "budget-only",
                "search": {"timeout_s": 12, "max_epochs": 5},
            },
        )
    assert response.status_code == 202, response.text
    job = server.wait_for_job(int(response.json()["id"]))
    assert job["status"] == "succeeded", (job["error"], server.log_tail())
    plan = job["result"]["plan"]
    assert (
        plan["algorithm"],
        plan["pruner"],
        plan["parallelism"],
        plan["max_trials"],
        plan["timeout_s"],
        plan["max_ensemble"],
    ) == ("tpe", "median", 2, 1000, 12, 5)
    assert job["result"]["selection"]["ensemble"]["considered"]  # stated, chosen or not
    trials = trials_of(server, job["id"])
    assert len([t for t in trials if t["state"] == "complete"]) >= 2
    # The trial the budget cut off ended normally; nothing failed.
    assert {t["state"] for t in trials} <= {"complete", "pruned", "stopped"}, trials
    assert 1 <= plan["trials_at_once"] <= plan["parallelism"]
    assert job["progress"]["total"] == 0 and job["progress"]["time_budget_s"] == 12
    # The finish is planned inside the budget: each phase says what it was given and took.
    phases = job["result"]["phases"]
    names = [phase["name"] for phase in phases]
    assert names[0] == "trials" and "refit on non-test rows" in names, phases
    assert "export and checks" in names and job["progress"]["phase"] is None
    assert phases[0]["planned_s"] < 12 and all(phase["took_s"] >= 0 for phase in phases)
    log = server.log_path.read_text(errors="replace")
    for noise in ("RetryFailedTrialCallback", "ExperimentalWarning", "FutureWarning"):
        assert noise not in log, noise


# The same wide configuration with different seeds, trained past its best on overlapping
# classes: members of about equal quality whose mistakes differ, so their average is
# better calibrated and wins on log loss.
SAME_NETWORK = {
    **SMALL_SPACE,
    "n_layers": 1,
    "width": 64,
    "epochs": 40,
    "dropout": 0.0,
    "batch_norm": False,
    "optimizer": "adamw",
    "learning_rate": 0.02,
    "weight_decay": 0.0,
    "l1": 0.0,
    "lr_schedule": "none",
    "activation": "relu",
}


def overlapping_csv(n_rows: int = 240, seed: int = 5) -> bytes:
    """Two classes whose clouds overlap (about 93% separable at best)."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(n_rows):
        label = index % 2
        features = rng.normal(loc=0.6 if label else -0.6, scale=1.0, size=6)
        rows.append([f"{value:.4f}" for value in features] + ["yes" if label else "no"])
    return csv_bytes([f"f{i}" for i in range(6)] + ["label"], rows)


def test_an_average_of_the_best_networks_competes_and_serves(server: KilnServer) -> None:
    dataset_id = server.upload_dataset(overlapping_csv())
    job = server.wait_for_job(
        submit(
            server,
            dataset_id,
            "averaged",
            max_trials=4,
            max_epochs=40,
            seed=2,
            max_ensemble=3,
            space=SAME_NETWORK,
            objectives=[{"metric": "log_loss"}],
            validation="auto",
            refit="selection_only",  # distilled below, measured on its own test rows
        )
    )
    assert job["status"] == "succeeded", (job["error"], server.log_tail())
    ensemble = job["result"]["selection"]["ensemble"]
    steps = ensemble["scores_by_step"]  # the winner alone, then each selection step
    assert len(ensemble["considered"]) == 4  # every trial: the pool holds 3 per member
    assert len(ensemble["members"]) >= 2, steps
    assert ensemble["members"][0] == job["result"]["trial"]
    weights = ensemble["weights"]
    assert len(weights) == len(ensemble["members"]) and abs(sum(weights) - 1) < 1e-9
    best = min(step["log_loss"] for step in steps)
    assert best < steps[0]["log_loss"]
    with server.client() as client:
        version = client.get("/v1/models/averaged/versions/1").json()
        validation = version["metrics"]["validation"]
        assert validation["ensemble_of_trials"] == ensemble["members"]
        assert validation["ensemble_weights"] == weights and validation["log_loss"] == best
        members = version["config"]["members"]  # typed on the version, with families
        assert [(m["trial"], m["weight"], m["family"]) for m in members] == [
            (trial, weight, "mlp")
            for trial, weight in zip(ensemble["members"], weights, strict=True)
        ]
        assert len(version["metrics"]["validation"]["cv_scores"]) == 5
        assert version["metrics"]["test_rows"] == 36 and version["metrics"]["accuracy"] > 0.75
        answer = client.post(
            "/v1/models/averaged/predict", json={"inputs": [[-3.0] * 6, [3.0] * 6]}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == ["no", "yes"]
        # No torch weights: pruning is refused by name; distill makes one network again.
        refused = client.post(
            "/v1/jobs",
            json={
                "kind": "compress",
                "source": {"model": "averaged", "version": 1},
                "dataset_id": dataset_id,
                "compression": {"methods": ["prune_structured"]},
            },
        )
        assert refused.status_code == 422
        assert "averages several networks" in refused.json()["detail"]
        distill = client.post(
            "/v1/jobs",
            json={
                "kind": "compress",
                "source": {"model": "averaged", "version": 1},
                "dataset_id": dataset_id,
                "seed": 2,
                "compression": {"methods": [{"method": "distill", "epochs": 5}]},
            },
        )
        assert distill.status_code == 202, distill.text
    compressed = server.wait_for_job(int(distill.json()["id"]))
    assert compressed["status"] == "succeeded", (compressed["error"], server.log_tail())
    with server.client() as client:
        student = client.get("/v1/models/averaged/versions/2").json()
    assert student["n_params"] < version["n_params"], (student, version)
    assert student["metrics"]["accuracy"] > 0.75
