"""Cells a spreadsheet would run as formulas, made inert in CSV outputs (OWASP's CSV
injection advice): a text cell that begins with ``= + - @``, a tab or a carriage return is
written with a leading ``'``, which spreadsheets show as text. A plain number (``-3.5``,
``+2``, ``1e-3``) cannot be a formula and stays as it is. Parquet outputs are typed and
stay exact; only CSV is rewritten."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

RISKY_START = r"^[=+\-@\t\r]"
PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def inert_text(value: str) -> str:
    """``value`` as a CSV cell no spreadsheet runs (headers go through this too)."""
    if re.match(RISKY_START, value) and not re.match(PLAIN_NUMBER, value):
        return "'" + value
    return value


def _inert_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column
    risky = pc.and_(
        pc.match_substring_regex(column, RISKY_START),
        pc.invert(pc.match_substring_regex(column, PLAIN_NUMBER)),
    )
    quoted = pc.binary_join_element_wise(pa.scalar("'", column.type), column, "")
    return pc.if_else(pc.fill_null(risky, False), quoted, column)


def inert_table(table: pa.Table) -> pa.Table:
    """``table`` with every text cell and column name made inert for a CSV file."""
    return pa.Table.from_arrays(
        [_inert_column(column) for column in table.columns],
        names=[inert_text(name) for name in table.column_names],
    )
