"""Every rule for a name a user gives, in one place: model names, aliases, tag keys, dataset
names, column names (they become ONNX tensor names), the broker queue and the S3 bucket.

Each rule is checked with a *full* match (Python's ``$`` also matches before a trailing
newline, so ``re.match(r"^a$", "a\\n")`` succeeds: no rule here uses ``match``), and free
text is refused when it holds a control character anywhere (C0 and C1 controls, format
characters such as zero-width spaces and bidi overrides, Unicode line and paragraph
separators) or begins or ends with whitespace: two names that differ only by such a
character would look the same in a URL, a log line or the dashboard, so neither can exist.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from app.core.errors import InvalidInput

# Unicode categories never allowed in a name: Cc controls (NUL, \t, \n, \r, DEL, C1),
# Cf format characters (zero-width, bidi overrides, BOM), Zl / Zp line and paragraph
# separators (U+2028, U+2029), Cs lone surrogates, Co private use.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})


class InvalidName(InvalidInput):
    """A user-given name breaks its rule (422); the message names the field and the rule."""


def refused_character(value: str) -> str | None:
    """The first character a name may not hold anywhere, or None."""
    for char in value:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return char
    return None


def shown(value: str) -> str:
    """``value`` quoted for a message, at most 80 characters of it: an error never echoes
    an unbounded name back."""
    return repr(value[:80]) + ("..." if len(value) > 80 else "")


def _ranges(codes: list[int]) -> str:
    """Code points as the body of a regex character class: ``\\uXXXX`` escapes in the
    BMP (the same in ECMA 262, Python and Rust), the character itself beyond it."""

    def one(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    spans: list[list[int]] = []
    for code in codes:
        if spans and spans[-1][1] == code - 1:
            spans[-1][1] = code
        else:
            spans.append([code, code])
    return "".join(one(a) if a == b else f"{one(a)}-{one(b)}" for a, b in spans)


@functools.cache
def free_text_pattern() -> str:
    """What ``NameRule.problem`` accepts in free text, as an anchored regex: no refused
    character anywhere, no whitespace at either end. Built from the same Unicode tables as
    the check (once, when an OpenAPI document asks: a pass over every code point). Lone
    surrogates are left out (refused, but no JSON Schema regex can name one)."""
    refused, space = [], []
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            refused.append(code)
        elif char.isspace():
            space.append(code)
    inner, edge = _ranges(refused), _ranges(sorted(refused + space))
    return f"^[^{edge}]([^{inner}]*[^{edge}])?$"


@dataclass(frozen=True)
class _Published:
    """Puts a rule's pattern and length into the JSON schema of the type it annotates
    (an ``Annotated`` metadata item), checking nothing itself."""

    rule: NameRule

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.update(self.rule.json_schema)
        return json_schema


@dataclass(frozen=True)
class NameRule:
    """One kind of name: a full-match pattern (None: free text) and the rule in words."""

    kind: str
    pattern: str | None
    rule: str
    max_length: int

    def problem(self, value: str) -> str | None:
        """What is wrong with ``value`` as this kind of name, or None when it is valid."""
        if not value:
            return f"{self.kind} is empty"
        if len(value) > self.max_length:
            return f"{self.kind} is longer than {self.max_length} characters"
        char = refused_character(value)
        if char is not None:
            return (
                f"{self.kind} {shown(value)} holds the control character "
                f"U+{ord(char):04X}; {self.rule}"
            )
        if value != value.strip():
            return f"{self.kind} {shown(value)} begins or ends with whitespace; {self.rule}"
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            return f"{self.kind} {shown(value)} is not valid: {self.rule}"
        return None

    def is_valid(self, value: str) -> bool:
        return self.problem(value) is None

    def check(self, value: str, field: str) -> str:
        """``value`` when valid; else InvalidName naming ``field`` and the rule."""
        problem = self.problem(value)
        if problem is not None:
            raise InvalidName(f"{field}: {problem}")
        return value

    def _pydantic_check(self, value: str) -> str:
        problem = self.problem(value)
        if problem is not None:
            raise ValueError(problem)  # pydantic names the field: a 422 on the API
        return value

    @property
    def validator(self) -> AfterValidator:
        """This rule for a pydantic field or a FastAPI parameter (``Annotated[str, ...]``)."""
        return AfterValidator(self._pydantic_check)

    @property
    def json_pattern(self) -> str:
        """The rule as an anchored regex (ECMA 262, Python's and Rust's syntax alike) that
        a value matches exactly when ``problem`` finds nothing wrong with it."""
        return free_text_pattern() if self.pattern is None else f"^{self.pattern}$"

    @property
    def json_schema(self) -> dict[str, Any]:
        """The rule as JSON Schema keywords, for the OpenAPI document: a client that sends
        what they describe never gets a 422 for the name."""
        return {"pattern": self.json_pattern, "minLength": 1, "maxLength": self.max_length}

    @property
    def published(self) -> _Published:
        """An ``Annotated`` item that publishes this rule in the type's JSON schema
        (``validator`` checks it): ``Annotated[str, RULE.validator, RULE.published]``."""
        return _Published(self)


MODEL_NAME = NameRule(
    "model name",
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
    "a letter or digit, then up to 63 letters, digits, '.', '_' or '-'",
    64,
)
ALIAS = NameRule(
    "alias",
    r"[A-Za-z][A-Za-z0-9_.-]{0,63}",
    "a letter, then up to 63 letters, digits, '_', '.' or '-'",
    64,
)
TAG_KEY = NameRule(
    "tag key", r"[A-Za-z0-9_.:-]{1,64}", "1 to 64 letters, digits, '_', '.', ':' or '-'", 64
)
DATASET_NAME = NameRule("dataset name", None, "printable text of at most 200 characters", 200)
COLUMN_NAME = NameRule(
    "column name",
    None,
    "printable text of at most 256 characters, no leading or trailing whitespace",
    256,
)
KEY_NAME = NameRule("key name", None, "printable text of at most 128 characters", 128)
QUEUE_NAME = NameRule(
    "queue name", r"[A-Za-z0-9_.-]{1,64}", "1 to 64 letters, digits, '_', '.' or '-'", 64
)
S3_BUCKET = NameRule(
    "S3 bucket name",
    r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
    "3 to 63 lowercase letters, digits, dots and hyphens",
    63,
)
S3_PREFIX = NameRule(
    "S3 prefix",
    r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*",
    "letters, digits, '.', '_', '-' and '/'",
    512,
)
ARTIFACT_KEY = NameRule(
    "artifact key",
    r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*",
    "path segments of letters, digits, '.', '_' and '-', none of them '..'",
    1024,
)
# Every rule, for tests that walk them all.
RULES = (
    MODEL_NAME,
    ALIAS,
    TAG_KEY,
    DATASET_NAME,
    COLUMN_NAME,
    KEY_NAME,
    QUEUE_NAME,
    S3_BUCKET,
    S3_PREFIX,
    ARTIFACT_KEY,
)

# The rules as types, for pydantic models, settings and FastAPI parameters: checked, and
# published in the OpenAPI document as a pattern and a length.
ModelNameStr = Annotated[str, MODEL_NAME.validator, MODEL_NAME.published]
AliasStr = Annotated[str, ALIAS.validator, ALIAS.published]
QueueNameStr = Annotated[str, QUEUE_NAME.validator, QUEUE_NAME.published]
KeyNameStr = Annotated[str, KEY_NAME.validator, KEY_NAME.published]
TagKeyStr = Annotated[str, TAG_KEY.validator, TAG_KEY.published]
