"""Request bodies built from the app's OpenAPI document, for tests that walk every field:
``placements`` finds each field of a given JSON type in an operation's body (through
``$ref``, unions and lists) and gives a function that builds a body with a chosen value
there and the smallest valid values around it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Schema = dict[str, Any]
Build = Callable[[Any], Any]


def json_operations(document: Schema) -> Iterator[tuple[str, str, Schema]]:
    """(method, path template, body schema) of every operation that takes a JSON body."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                yield method.upper(), path, content["application/json"]["schema"]


class Walker:
    """Walks the schemas of one document."""

    def __init__(self, document: Schema) -> None:
        self.schemas: dict[str, Schema] = document.get("components", {}).get("schemas", {})

    def resolve(self, node: Schema) -> Schema:
        while "$ref" in node:
            node = self.schemas[node["$ref"].rsplit("/", 1)[-1]]
        return node

    def minimal(self, node: Schema) -> Any:
        """The smallest valid value of ``node`` (required fields only)."""
        node = self.resolve(node)
        if "const" in node:
            return node["const"]
        if "enum" in node:
            return node["enum"][0]
        for union in ("oneOf", "anyOf"):
            if union in node:
                branches = [b for b in node[union] if self.resolve(b).get("type") != "null"]
                return self.minimal(branches[0]) if branches else None
        kind = node.get("type")
        if kind == "object" or "properties" in node:
            return {
                name: self.minimal(node["properties"][name]) for name in node.get("required", ())
            }
        if kind == "array":
            return [self.minimal(node["items"])] * node.get("minItems", 0)
        if kind in ("integer", "number"):
            return number_in(node)
        if kind == "string":
            return "x" * max(1, node.get("minLength", 1))
        if kind == "boolean":
            return False
        return None

    def placements(
        self,
        node: Schema,
        kinds: tuple[str, ...],
        label: str = "",
        seen: frozenset[str] = frozenset(),
    ) -> Iterator[tuple[str, Schema, Build]]:
        """(label, field schema, build) for each field of a type in ``kinds`` under ``node``:
        ``build(value)`` is a whole body with ``value`` at that field."""
        ref = node.get("$ref")
        if ref is not None:
            if ref in seen:
                return
            seen = seen | {ref}
        node = self.resolve(node)
        if node.get("type") in kinds:
            yield label, node, lambda value: value
        for union in ("oneOf", "anyOf"):
            for branch in node.get(union, ()):
                title = self.resolve(branch).get("title")
                branch_label = f"{label}<{title}>" if title and len(node[union]) > 1 else label
                yield from self.placements(branch, kinds, branch_label, seen)
        if "properties" in node:
            base = self.minimal(node)
            for name, field in node["properties"].items():
                for inner, leaf, build in self.placements(field, kinds, f"{label}.{name}", seen):
                    yield inner, leaf, _with(base, name, build)
        if node.get("type") == "array" and "items" in node:
            for inner, leaf, build in self.placements(node["items"], kinds, f"{label}[]", seen):
                yield inner, leaf, _listed(build)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for inner, leaf, build in self.placements(extra, kinds, f"{label}.x", seen):
                yield inner, leaf, _with({}, "x", build)


def _with(base: dict[str, Any], name: str, build: Build) -> Build:
    return lambda value: {**base, name: build(value)}


def _listed(build: Build) -> Build:
    return lambda value: [build(value)]


def number_in(node: Schema) -> int | float:
    """A valid number of an integer or number schema, inside its bounds."""
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    if node.get("type") == "integer":
        value = 1 if low is None else int(low) + ("exclusiveMinimum" in node)
        return value if high is None else min(value, int(high))
    if low is not None and high is not None:
        return (low + high) / 2
    if low is not None:
        return low + 0.5
    return 0.5 if high is None else high - 0.5


def field_name(label: str) -> str:
    """The last field name of a placement's label (``.search.max_trials`` -> max_trials)."""
    name = label.rsplit(".", 1)[-1]
    return name.split("<", 1)[0].replace("[]", "")
