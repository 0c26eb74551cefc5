"""Multipart forms past their part caps: one file, 16 fields, 512 KiB per text field
(``app/api/limits.py``). Each is a 400 that names the cap, before any handler runs;
nothing is stored, no spool file is left, and the gateway keeps serving."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.api.limits import MAX_FORM_FIELD_BYTES, MAX_FORM_FIELDS
from app.core.config import Settings
from tests.helpers import blobs_csv

UPLOAD_ROUTES = ["/v1/datasets", "/v1/models/capped/versions"]
CSV = blobs_csv(n_rows=20)
CASES = {
    "two files": (
        {"file": ("a.csv", CSV), "second": ("b.csv", CSV)},
        {"target": "label"},
        "Too many files",
    ),
    "too many fields": (
        {"file": ("a.csv", CSV)},
        {"target": "label", **{f"extra{i}": "x" for i in range(MAX_FORM_FIELDS)}},
        "Too many fields",
    ),
    "a huge text field": (
        {"file": ("a.csv", CSV)},
        {"target": "label", "name": "n" * (MAX_FORM_FIELD_BYTES + 1)},
        "Part exceeded maximum size",
    ),
}


@pytest.mark.parametrize("route", UPLOAD_ROUTES)
@pytest.mark.parametrize("case", list(CASES))
def test_forms_past_their_part_caps_get_400_and_store_nothing(
    client: TestClient, admin: dict, settings: Settings, route: str, case: str
) -> None:
    files, data, message = CASES[case]
    response = client.post(route, headers=admin, files=files, data=data)
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]
    assert client.get("/v1/datasets", headers=admin).json()["total"] == 0
    assert client.get("/v1/models/capped/versions", headers=admin).status_code == 404
    spool = settings.data_dir / "tmp"
    assert not spool.exists() or list(spool.iterdir()) == []
    ok = client.post(
        "/v1/datasets", headers=admin, files={"file": ("a.csv", CSV)}, data={"target": "label"}
    )
    assert ok.status_code == 201, ok.text
