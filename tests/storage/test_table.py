"""The table of artifact stores: each URL scheme names a store class that declares it, and a
URL of any other scheme is refused with the setting and the schemes there are."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.storage import STORES, LocalArtifactStore, StoreOptions, store_class


def _options(tmp_path: Path) -> StoreOptions:
    return StoreOptions(
        data_dir=tmp_path,
        cache_bytes=1 << 20,
        s3_endpoint_url="",
        s3_region="us-east-1",
        s3_access_key_id="",
        s3_secret_access_key="not-shown",
    )


@pytest.mark.parametrize("scheme", sorted(STORES))
def test_each_scheme_names_a_store_that_declares_it(scheme: str) -> None:
    assert scheme in STORES[scheme]().schemes
    assert store_class(f"{scheme}://somewhere/there") is STORES[scheme]()


def test_every_declared_scheme_is_in_the_table() -> None:
    for load in STORES.values():
        for scheme in load().schemes:
            assert STORES[scheme]() is load()


@pytest.mark.parametrize("url", ["ftp://host/artifacts", "/no/scheme", "gs:/bucket", ""])
def test_an_unknown_scheme_names_the_setting_and_the_known_schemes(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        store_class(url)
    message = str(refused.value)
    assert "KILN_ARTIFACT_URL" in message
    assert all(f"{scheme}://" in message for scheme in STORES)


def test_a_file_url_makes_a_local_store(tmp_path: Path) -> None:
    store = store_class(f"file://{tmp_path}/a").from_url(f"file://{tmp_path}/a", _options(tmp_path))
    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path / "a"
    assert "not-shown" not in repr(_options(tmp_path))  # the secret stays out of a repr
