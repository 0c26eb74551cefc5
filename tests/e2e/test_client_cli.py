"""The ``kiln`` client commands and ``modelkiln.Client`` against a real ``kiln serve`` with
a real worker: upload, submit and watch with progress, list, show, predict a CSV, and
the server's refusals carried to the user."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelkiln import Client, KilnApiError, predict_csv
from modelkiln.client import Job
from modelkiln.progress import ProgressBar
from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import mixed_table

KILN = str(Path(sys.executable).with_name("kiln"))


@pytest.fixture(scope="module")
def kiln(module_kiln_server: ServerFactory) -> Iterator[KilnServer]:
    server = module_kiln_server(workers=1)
    yield server


def run(
    kiln: KilnServer, *args: str, key: str | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KILN_URL": kiln.url, "KILN_API_KEY": key or kiln.key}
    return subprocess.run(
        [KILN, *args], env=env, capture_output=True, text=True, timeout=400, input=stdin
    )


def test_upload_submit_watch_show_and_predict_from_the_terminal(
    kiln: KilnServer, tmp_path: Path
) -> None:
    table = tmp_path / "people.csv"
    mixed_table(table)
    uploaded = run(kiln, "datasets", "upload", str(table), "--target", "label")
    assert uploaded.returncode == 0, uploaded.stderr
    dataset_id = int(uploaded.stdout.split()[1].rstrip(":"))
    assert "240 rows, classification of 'label'" in uploaded.stdout

    submitted = run(
        kiln,
        "jobs",
        "submit",
        "--dataset",
        str(dataset_id),
        "--model",
        "people",
        "--max-trials",
        "3",
        "--algorithm",
        "random",
        "--watch",
    )
    assert submitted.returncode == 0, submitted.stderr
    took = (
        "v1 took 'production': no other version of 'people' served, so it answers requests "
        "that name no version."
    )
    assert submitted.stdout.splitlines() == ["registered people v1", took]
    progress = [line for line in submitted.stderr.splitlines() if line.startswith("job ")]
    assert any("/3 trials" in line and "best" in line for line in progress), progress
    assert "succeeded" in progress[-1] and "[" + "#" * 30 + "] 3/3 trials" in progress[-1]

    listed = run(kiln, "jobs", "list")
    assert listed.returncode == 0 and "succeeded" in listed.stdout and "people" in listed.stdout
    header = listed.stdout.splitlines()[0].split()
    assert header == ["ID", "KIND", "STATUS", "MODEL", "PROGRESS", "TIME", "BEST"]
    assert "3/3 trials" in listed.stdout and " accuracy" in listed.stdout
    job_id = submitted.stderr.split()[1]
    shown_job = run(kiln, "jobs", "show", job_id)
    assert shown_job.returncode == 0, shown_job.stderr
    fields, _, phases = shown_job.stdout.partition("\n\n")  # the facts, then the phases
    lines = dict(line.split(None, 1) for line in fields.splitlines())
    assert phases.startswith("PHASE") and "\ntrials " in phases and "export and checks" in phases
    assert lines["status"] == "succeeded" and lines["registered"] == "v1"
    assert lines["serving"] == took
    assert lines["progress"] == "3/3 trials" and lines["algorithm"] == "random"
    assert lines["objectives"].startswith("accuracy (maximize)")
    assert "accuracy=" in lines["test"]  # "test metrics  accuracy=..."
    shown_dataset = run(kiln, "datasets", "show", str(dataset_id))
    assert shown_dataset.returncode == 0, shown_dataset.stderr
    assert "COLUMN" in shown_dataset.stdout and "target classes: " in shown_dataset.stdout
    assert "\nrows     240\n" in shown_dataset.stdout
    shown = run(kiln, "models", "show", "people")
    assert shown.returncode == 0, shown.stderr
    assert "v1" in shown.stdout and "accuracy=" in shown.stdout and "KiB" in shown.stdout
    assert "people" in run(kiln, "models", "list").stdout

    out = tmp_path / "scored.csv"
    predicted = run(
        kiln, "predict", "people", "--csv", str(table), "--out", str(out), "--batch-size", "100"
    )
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.startswith("240 rows predicted")
    scored = list(csv.DictReader(out.open()))
    assert len(scored) == 240 and {row["prediction"] for row in scored} <= {"yes", "no"}
    right = sum(row["prediction"] == row["label"] for row in scored)
    assert right / len(scored) > 0.75  # the rows it learned from, gaps included
    with_scores = tmp_path / "scores.csv"
    scored_too = run(
        kiln, "predict", "people", "--csv", str(table), "--out", str(with_scores), "--probabilities"
    )
    assert scored_too.returncode == 0, scored_too.stderr
    rows = list(csv.DictReader(with_scores.open()))
    labels = [name for name in rows[0] if name.startswith("probability_")]
    assert sorted(labels) == ["probability_no", "probability_yes"]
    for row in rows[:20]:
        assert abs(sum(float(row[name]) for name in labels) - 1) < 1e-4
        assert row["prediction"] == max(labels, key=lambda n: float(row[n]))[12:]

    batch_out = tmp_path / "batch.csv"
    as_job = run(kiln, "predict", "people", "--csv", str(table), "--out", str(batch_out), "--job")
    assert as_job.returncode == 0, as_job.stderr
    assert "registered" not in as_job.stdout
    assert as_job.stdout.strip().startswith("240 rows predicted by job ")

    rerun = run(kiln, "jobs", "watch", job_id)
    assert rerun.returncode == 0 and rerun.stdout == f"registered people v1\n{took}\n"
    with Client(kiln.url, kiln.key) as client:
        batch_job = client.jobs(status="succeeded")[0]
    assert batch_job.kind == "predict"
    rewatched = run(kiln, "jobs", "watch", str(batch_job.id))
    assert rewatched.stdout == f"job {batch_job.id} predicted 240 rows with people v1\n"
    assert "240/240 rows" in rewatched.stderr and "best" not in rewatched.stderr

    # A second search of the model registers v2 beside v1, which goes on serving.
    again = run(
        kiln, "jobs", "submit", "--dataset", str(dataset_id), "--model", "people",
        "--max-trials", "1", "--algorithm", "random", "--watch",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    registered, beside = again.stdout.splitlines()
    assert registered == "registered people v2"
    assert beside.startswith("'production' serves v1 (accuracy ")
    assert "v2 has accuracy " in beside and " on the same rows" in beside  # one dataset, one seed
    assert beside.endswith("It does not serve until promoted: kiln promote people 2 --gate manual")
    with Client(kiln.url, kiln.key) as client:
        serving = client.job(int(again.stderr.split()[1])).serving
        assert serving is not None and (serving.serving_version, serving.version) == (1, 2)
        assert client.model("people").serving_version == 1


def test_refusals_are_one_line_with_the_servers_message(kiln: KilnServer, tmp_path: Path) -> None:
    missing = run(kiln, "models", "show", "no-such-model")
    assert missing.returncode == 1
    assert missing.stderr.startswith("kiln: ") and "(404)" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_key = run(kiln, "jobs", "list", key="not-a-key")
    assert bad_key.returncode == 1 and "(401)" in bad_key.stderr
    table = tmp_path / "t.csv"
    mixed_table(table, rows=30)
    wrong_target = run(kiln, "datasets", "upload", str(table), "--target", "nope")
    assert wrong_target.returncode == 1 and "nope" in wrong_target.stderr
    no_dataset = run(kiln, "jobs", "submit", "--model", "m")
    assert no_dataset.returncode == 1 and "--dataset" in no_dataset.stderr
    spec = run(kiln, "jobs", "submit", "--spec", "-", stdin='{"kind": "search"}')
    assert spec.returncode == 1 and "(422)" in spec.stderr
    no_key = subprocess.run(
        [KILN, "jobs", "list"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "KILN_API_KEY"},
    )
    assert no_key.returncode == 1
    assert no_key.stderr.strip() == (
        "kiln: no API key: pass --api-key KEY or set KILN_API_KEY "
        "(kiln serve saved an admin key in kiln-data/admin.key)"
    )
    unreachable = subprocess.run(
        [KILN, "jobs", "list", "--url", "http://127.0.0.1:9", "--api-key", "k"],
        capture_output=True,
        text=True,
    )
    assert unreachable.returncode == 1 and "cannot talk to the gateway" in unreachable.stderr


def test_the_python_client_carries_the_servers_message(kiln: KilnServer, tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    mixed_table(table, rows=30)
    with Client(kiln.url, kiln.key) as client:
        with pytest.raises(KilnApiError) as refused:
            client.upload_dataset(table, target="missing_column")
        assert refused.value.status == 422 and "missing_column" in refused.value.message
        with pytest.raises(KilnApiError) as invalid:
            client.submit(
                {"kind": "search", "dataset_id": 1, "model_name": "m", "search": {"max_trials": -1}}
            )
        assert invalid.value.status == 422 and "search.max_trials" in invalid.value.message
        with pytest.raises(ValueError, match="lacks column"):
            other = tmp_path / "other.csv"
            other.write_text("a,b\n1,2\n")
            predict_csv(client, "people", other, tmp_path / "o.csv")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_one_line_on_a_terminal() -> None:
    screen = Terminal()
    bar = ProgressBar(screen)
    base = {"id": 7, "kind": "search", "model_name": "m", "error": None, "result": None}
    for done, status in ((0, "queued"), (2, "running"), (4, "succeeded")):
        bar.show(
            Job.of(
                {
                    **base,
                    "status": status,
                    "progress": {
                        "trials_done": done,
                        "trials_total": 4,
                        "best_value": 0.5 + done / 10,
                    },
                }
            )
        )
    text = screen.getvalue()
    assert text.count("\r\033[K") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "[" + "#" * 15 + "." * 15 + "] 2/4 trials  best trial 0.7" in text


def test_a_time_limited_search_shows_its_time_not_an_empty_bar() -> None:
    screen = io.StringIO()
    bar = ProgressBar(screen)
    bar.show(
        Job.of(
            {
                "id": 3,
                "kind": "search",
                "model_name": "m",
                "error": None,
                "result": None,
                "status": "running",
                "progress": {
                    "trials_done": 13,
                    "trials_total": 0,
                    "best_value": 0.91,
                    "best_metric": "accuracy",
                    "time_budget_s": 45,
                    "elapsed_s": 30,
                },
            }
        )
    )
    assert screen.getvalue() == (
        "job 3 running   ["
        + "#" * 20
        + "." * 10
        + "] 13 trials  best trial 0.91 accuracy  00:30/00:45\n"
    )


def test_a_finished_search_shows_its_registered_version_beside_the_best_trial() -> None:
    screen = io.StringIO()
    ProgressBar(screen).show(
        Job.of(
            {
                "id": 4,
                "kind": "search",
                "model_name": "survey",
                "error": None,
                "result": None,
                "status": "succeeded",
                "progress": {
                    "trials_done": 8,
                    "trials_total": 8,
                    "best_value": 0.6694,
                    "best_metric": "accuracy",
                    "registered_value": 0.678,
                    "registered_version": 3,
                    "elapsed_s": 75,
                },
            }
        )
    )
    assert screen.getvalue() == (
        "job 4 succeeded [" + "#" * 30 + "] 8/8 trials  "
        "registered v3 0.678 accuracy, best trial 0.6694 accuracy  01:15\n"
    )
