"""The server's JSON answers as typed objects, read once where they arrive. A frozen
dataclass that subclasses ``Answer`` declares the fields the client uses; ``from_json``
reads them by those declarations, tolerantly, so that the client works with servers older
and newer than itself:

- a field the answer lacks, holds as null, or holds in a shape the declaration does not
  take keeps its default (only a field without a default, such as an id, is required);
- keys the declarations do not name are ignored (and kept whole in ``data``);
- a list of objects (trials, versions) or a map keeps the entries that fit and leaves out
  the rest; a list of values (probabilities, a shape) is positional, so one entry that does
  not fit makes the whole list not fit (a left-out entry would shift the others);
- ``answer["key"]`` and ``answer.get("key")`` read the JSON as it came, as the dicts the
  client returned before it was typed did.

The client stands alone (``pip install modelkiln`` needs httpx only), so this is a small
reader of its own rather than pydantic."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, Self, Union

# A JSON scalar as the server sends class labels and category values: the order matters,
# since a bool is an int to Python and an int is taken where a float is declared.
Scalar = str | bool | int | float

# The key a field is read from when it differs from the field's name (a property of the
# same name exists): ``field(metadata={JSON_KEY: "serving_version"})``.
JSON_KEY = "json_key"


class _Misfit(Exception):
    """A JSON value that does not fit a declared type."""


@dataclasses.dataclass(frozen=True)
class _FieldSpec:
    name: str
    key: str
    hint: object
    required: bool


@dataclasses.dataclass(frozen=True)
class Answer:
    """A JSON object from the server, typed. ``data`` is the object as it arrived (what
    ``--json`` prints, and every field the declarations leave out)."""

    data: dict[str, Any] = dataclasses.field(
        default_factory=dict, repr=False, compare=False, kw_only=True
    )

    @classmethod
    def from_json(cls, data: object) -> Self:
        """``data`` read by the class's field declarations (see the module's docstring);
        a ValueError names a required field that is missing or of another shape."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        values: dict[str, object] = {}
        for spec in _field_specs(cls):
            try:
                if data.get(spec.key) is None:
                    raise _Misfit
                values[spec.name] = _decode(spec.hint, data[spec.key])
            except _Misfit:
                if spec.required:
                    raise ValueError(
                        f"{cls.__name__}: the server's answer has no usable {spec.key!r} "
                        f"(got {data.get(spec.key)!r})"
                    ) from None
        build: Callable[..., Self] = cls
        return build(data=data, **values)

    @classmethod
    def of(cls, data: object) -> Self:
        """``from_json``, by the name the client's classes first had for it."""
        return cls.from_json(data)

    def __getitem__(self, key: str) -> Any:
        """The answer's JSON value at ``key``, for code written when the client returned
        dicts (``job.result["version"]``)."""
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


_SPECS: dict[type[Answer], tuple[_FieldSpec, ...]] = {}


def _field_specs(cls: type[Answer]) -> tuple[_FieldSpec, ...]:
    """The fields ``cls`` declares, read once per class (its annotations are resolved
    when the first answer of its kind arrives, when every class they name exists)."""
    if cls in _SPECS:
        return _SPECS[cls]
    hints = typing.get_type_hints(cls)
    _SPECS[cls] = tuple(
        _FieldSpec(
            name=declared.name,
            key=declared.metadata.get(JSON_KEY, declared.name),
            hint=hints[declared.name],
            required=declared.default is dataclasses.MISSING
            and declared.default_factory is dataclasses.MISSING,
        )
        for declared in dataclasses.fields(cls)
        if declared.init and declared.name != "data"  # Answer's own: the JSON as it came
    )
    return _SPECS[cls]


def _decode(hint: object, value: object) -> object:
    """``value`` as ``hint`` declares it, or _Misfit."""
    if hint is Any or hint is object:
        return value
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return _decode_union(typing.get_args(hint), value)
    if origin is list:
        if not isinstance(value, list):
            raise _Misfit
        return _fitting(typing.get_args(hint)[0], value)
    if origin is dict:
        if not isinstance(value, dict):
            raise _Misfit
        item = typing.get_args(hint)[1]
        return dict(value) if item is Any else _fitting_map(item, value)
    if isinstance(hint, type):
        return _decode_class(hint, value)
    raise TypeError(f"an Answer field cannot be declared as {hint!r}")


def _decode_union(members: tuple[object, ...], value: object) -> object:
    if value is None:
        if type(None) in members:
            return None
        raise _Misfit
    for member in members:
        if member is type(None):
            continue
        try:
            return _decode(member, value)
        except _Misfit:
            continue
    raise _Misfit


def _decode_class(hint: type, value: object) -> object:
    if issubclass(hint, Answer):
        try:
            return hint.from_json(value)
        except ValueError:
            raise _Misfit from None
    if hint is float:  # an int is a float's value too (JSON writes 2.0 as 2 at times)
        fits = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif hint in (str, bool):
        fits = isinstance(value, hint)
    else:
        raise TypeError(f"an Answer field cannot be declared as {hint!r}")
    if not fits:
        raise _Misfit
    return value


def _fitting(item: object, values: list[object]) -> list[object]:
    if item is Any:
        return list(values)
    records = isinstance(item, type) and issubclass(item, Answer)
    kept = []
    for value in values:
        try:
            kept.append(_decode(item, value))
        except _Misfit:
            if not records:  # positional: a gap would move every later value
                raise
    return kept


def _fitting_map(item: object, values: dict[object, object]) -> dict[object, object]:
    kept = {}
    for key, value in values.items():
        try:
            kept[key] = _decode(item, value)
        except _Misfit:
            continue
    return kept
