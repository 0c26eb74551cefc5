"""How `kiln predict --csv` and `predict_csv` read a CSV's cells: as the server read the
upload (its gap spellings are gaps; a column whose upload held a few words among its
numbers sends its words, which the server reads as gaps)."""

from __future__ import annotations

from typing import Any

import pytest

from modelkiln.client import Version
from modelkiln.csv_predict import RowReader


def _version(words_as_gaps: bool) -> Version:
    inputs: list[dict[str, Any]] = [
        {"name": "grade", "kind": "numeric", "words_as_gaps": words_as_gaps},
        {"name": "city", "kind": "categorical"},
    ]
    data = {
        "model": "loans",
        "version": 1,
        "status": "live",
        "source": "search",
        "size_bytes": 1,
        "metrics": {},
        "lineage": {},
        "signature": {"inputs": inputs},
    }
    return Version.of(data)


def _reader(words_as_gaps: bool) -> RowReader:
    return RowReader(None, _version(words_as_gaps), ["grade", "city"])  # type: ignore[arg-type]


@pytest.mark.parametrize("cell", ["", "NA", "n/a", " NaN ", "null", "None", "?"])
def test_the_servers_gap_spellings_are_gaps(cell: str) -> None:
    assert _reader(False).convert(2, [cell, "Oslo"]) == {"grade": None, "city": "Oslo"}


def test_a_word_in_a_words_as_gaps_column_is_sent_for_the_server_to_read() -> None:
    assert _reader(True).convert(2, ["other", ""]) == {"grade": "other", "city": None}
    assert _reader(True).convert(3, [" 10 ", "x"]) == {"grade": 10.0, "city": "x"}


def test_a_word_in_a_numeric_column_is_refused_naming_the_line() -> None:
    with pytest.raises(ValueError, match="line 4: 'other' is not a number"):
        _reader(False).convert(4, ["other", "x"])
