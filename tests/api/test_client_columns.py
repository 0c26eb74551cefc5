"""The Python client and `kiln datasets upload` can send the column types a profile's
reason suggests (``columns``), as curl's form field does."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelkiln import Client
from modelkiln.commands import _column_types


def test_the_client_uploads_with_column_types(
    client: TestClient, admin: dict, tmp_path: Path
) -> None:
    table = tmp_path / "grades.csv"
    rows = [f"{i % 9 if i % 40 else 'other'},{'ab'[i % 2]}" for i in range(80)]
    table.write_text("grade,label\n" + "\n".join(rows) + "\n")
    key = admin["Authorization"].removeprefix("Bearer ")
    kiln = Client("http://testserver", key, transport=client._transport)
    read_as_numbers = kiln.upload_dataset(table, target="label")
    forced = kiln.upload_dataset(table, target="label", columns={"grade": "categorical"})
    profiles = [dataset.profile for dataset in (read_as_numbers, forced)]
    kinds = [
        {column.name: column.type for column in profile.columns}
        for profile in profiles
        if profile is not None
    ]
    assert kinds == [{"grade": "numeric"}, {"grade": "categorical"}]


def test_the_cli_reads_column_types_as_a_json_object() -> None:
    assert _column_types('{"grade": "categorical"}') == {"grade": "categorical"}
    for bad in ("{grade: categorical}", '["grade"]', '{"grade": 1}'):
        with pytest.raises(Exception, match="JSON"):
            _column_types(bad)
