"""``Client.explain`` and ``kiln explain`` against the gateway: the same answer as the
route, and the CLI's lines (the predicted class's attributions, largest first)."""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from modelkiln import Client
from modelkiln import commands as client_commands
from tests.explain.tables import CUT, Table, make_table, register_family


@pytest.fixture(scope="module")
def table() -> Table:
    return make_table()


def test_the_client_and_the_cli_explain_rows(
    table: Table,
    settings: Settings,
    client: TestClient,
    keys: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    register_family(settings, table, "gbdt", "classification", "trees")
    kiln = Client("http://testserver", keys["infer"], transport=client._transport)
    records = table.records(slice(CUT, CUT + 2))
    answer = kiln.explain("trees", records, version=1)
    assert answer["method"] == "tree_shap" and len(answer["explanations"]) == 2
    for row in answer["explanations"]:
        for output in row["outputs"]:
            total = output["base_value"] + math.fsum(output["attributions"].values())
            assert abs(total - output["value"]) <= 1e-4

    path = tmp_path / "rows.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(list(records[0]))
        for record in records:
            writer.writerow(["" if value is None else value for value in record.values()])
    monkeypatch.setattr(  # the CLI reads the version's signature too: a key that may
        client_commands,
        "_client",
        lambda _: Client("http://testserver", keys["admin"], transport=client._transport),
    )
    parser = argparse.ArgumentParser()
    client_commands.add_commands(parser.add_subparsers(dest="command"))
    argv = ["explain", "trees", "--csv", str(path), "--rows", "2", "--top", "2"]
    assert client_commands.run(parser.parse_args(argv)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "trees v1: tree_shap, raw_score (base value + attributions = value)"
    first = answer["explanations"][0]
    assert lines[1].startswith(f"row 1: prediction {first['prediction']}; value ")
    chosen = next(o for o in first["outputs"] if o["class"] == first["prediction"])
    biggest = max(chosen["attributions"].items(), key=lambda item: abs(item[1]))
    assert lines[2].split() == [biggest[0], f"{biggest[1]:+.6g}"]
    assert lines[4] == "  (3 more columns: " + lines[4].split(": ")[1]
    assert sum(line.startswith("row ") for line in lines) == 2

    assert client_commands.run(parser.parse_args([*argv, "--json"])) == 0
    assert '"method": "tree_shap"' in capsys.readouterr().out
