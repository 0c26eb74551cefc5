"""The request log's bound counts each part's uncompressed bytes: a part of a few KB on disk
that unpacks to hundreds of MB goes first when the log is over KILN_LOG_MAX_MB."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from app.core.config import Settings
from app.core.db import session_scope
from app.registry import monitoring
from tests.conftest import register

MB = 1 << 20


def add_part(settings: Settings, key: str, *, size_bytes: int, raw_bytes: int | None) -> None:
    now = datetime.now(UTC)
    with session_scope(settings.database_url) as session:
        monitoring.add_log_part(
            session,
            "flowers",
            key=key,
            sha256="0" * 64,
            rows=10,
            size_bytes=size_bytes,
            raw_bytes=raw_bytes,  # type: ignore[arg-type]  # None: a part recorded before
            first_at=now,
            last_at=now,
        )


def kept(settings: Settings) -> list[tuple[str, int, int | None]]:
    with session_scope(settings.database_url) as session:
        return [
            (part.key, part.size_bytes, part.raw_bytes)
            for part in monitoring.log_parts(session, "flowers")
        ]


def trim(settings: Settings, max_bytes: int) -> list[str]:
    with session_scope(settings.database_url) as session:
        return monitoring.trim_log(session, "flowers", max_bytes)


def test_a_part_records_its_raw_bytes(settings: Settings, classifier_onnx: Path) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    add_part(settings, "log/a", size_bytes=3_800, raw_bytes=240 * MB)
    assert kept(settings) == [("log/a", 3_800, 240 * MB)]


def test_the_log_is_trimmed_by_uncompressed_bytes(
    settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    add_part(settings, "log/text", size_bytes=4_000, raw_bytes=100 * MB)  # oldest
    add_part(settings, "log/small", size_bytes=4_000, raw_bytes=10_000)
    assert trim(settings, 200 * MB) == []  # 100 MB and 10 KB: under the bound
    assert trim(settings, 64 * MB) == ["log/text"]  # 8 KB compressed, but 100 MB raw
    assert [key for key, *_ in kept(settings)] == ["log/small"]


def test_a_part_counts_its_file_when_larger_or_unmeasured(
    settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    add_part(settings, "log/old", size_bytes=3 * MB, raw_bytes=None)  # before raw_bytes
    add_part(settings, "log/tiny", size_bytes=3 * MB, raw_bytes=500)  # mostly footer
    add_part(settings, "log/new", size_bytes=1_000, raw_bytes=2 * MB)
    assert trim(settings, 6 * MB) == ["log/old"]  # 3 + 3 + 2 MB
    assert trim(settings, 4 * MB) == ["log/tiny"]  # 3 + 2 MB
    assert [key for key, *_ in kept(settings)] == ["log/new"]


def test_the_newest_part_stays_even_past_the_whole_limit(
    settings: Settings, classifier_onnx: Path
) -> None:
    """A part larger than the whole limit is kept rather than leave the log empty; the
    older parts go."""
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    add_part(settings, "log/old", size_bytes=100, raw_bytes=10)
    add_part(settings, "log/new", size_bytes=100, raw_bytes=5 * MB)
    assert trim(settings, 1 * MB) == ["log/old"]
    assert [key for key, _, _ in kept(settings)] == ["log/new"]
