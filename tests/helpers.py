"""Test data builders."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def csv_bytes(header: Sequence[str], rows: Sequence[Sequence[object]]) -> bytes:
    """A CSV file's bytes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def blobs_csv(
    n_rows: int = 60, n_features: int = 4, labels: Sequence[object] = ("a", "b"), seed: int = 0
) -> bytes:
    """A small, separable classification CSV with the target column ``label``."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(n_rows):
        label_index = index % len(labels)
        features = rng.normal(loc=3.0 * label_index, scale=0.5, size=n_features)
        rows.append([f"{value:.4f}" for value in features] + [labels[label_index]])
    return csv_bytes([f"f{i}" for i in range(n_features)] + ["label"], rows)


def digits_split(holdout: int = 300, seed: int = 7) -> tuple[bytes, np.ndarray, np.ndarray]:
    """scikit-learn's digits as an uploadable CSV, minus a random held-back sample that the
    platform never sees: returns (csv, held-back features, held-back labels)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    kept, held = order[holdout:], order[:holdout]
    rows = [[int(value) for value in digits.data[i]] + [int(digits.target[i])] for i in kept]
    header = [f"px{i}" for i in range(64)] + ["label"]
    return csv_bytes(header, rows), digits.data[held], digits.target[held]


def mixed_table(path: Path, rows: int = 240, seed: int = 3) -> None:
    """Numbers, a category, gaps; the label follows x and the colour."""
    generator = random.Random(seed)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["x", "colour", "size", "label"])
        for _ in range(rows):
            x = generator.uniform(-2, 2)
            colour = generator.choice(["red", "green", "blue"])
            size = "" if generator.random() < 0.1 else f"{generator.uniform(0, 5):.2f}"
            label = "yes" if x + (1.0 if colour == "red" else -0.5) > 0 else "no"
            writer.writerow([f"{x:.3f}", colour, size, label])


def ui_sign_in(client: Any, key: str) -> str:
    """Sign ``client`` (a TestClient) in to the dashboard with ``key``, as a browser does
    (the form at /ui/login); returns the session token the cookie now holds."""
    answer = client.post("/ui/login", data={"key": key}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    token = str(answer.cookies.get("kiln_ui_session"))
    client.cookies.clear()
    client.cookies.set("kiln_ui_session", token, path="/ui")  # sent to /ui over plain http
    return token
