"""The byte scan that decides whether a JSON body's numbers need a look for true and
false agrees with a plain substring search, on bodies of every size."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from app.serving.json_values import SMALL_BODY, first_boolean, has_json_booleans

cells = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**40), 2**40)
words = st.sampled_from(["true", "false", "tru", "alse", "True", "FALSE", "e", "te", "fe"])


@given(
    values=st.lists(cells | st.booleans() | words, max_size=600),
    padding=st.integers(0, SMALL_BODY),
)
def test_the_scan_agrees_with_a_substring_search(values: list[object], padding: int) -> None:
    body = orjson.dumps({"inputs": [{"name": "x" * padding, "data": values}]})
    assert has_json_booleans(body) == (b"true" in body or b"false" in body)


def test_a_large_body_of_numbers_has_none_and_one_boolean_is_found() -> None:
    numbers = [index / 7 for index in range(20_000)] + [1e-05, 2.5e10]
    body = orjson.dumps({"inputs": [{"name": "input", "data": numbers}]})
    assert len(body) > SMALL_BODY and not has_json_booleans(body)
    with_one = orjson.dumps({"inputs": [{"name": "input", "data": [*numbers, False]}]})
    assert has_json_booleans(with_one)
    assert first_boolean([[1.0, 2.0], [3.0, False]], "data") == "data[1][1]"
