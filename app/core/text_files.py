"""Finding where a file stops being UTF-8 text, for the error that names the line (read a
megabyte at a time: called on the error path of readers that stream files of any size)."""

from __future__ import annotations

import codecs
from pathlib import Path

READ_BYTES = 1 << 20


def first_undecodable_line(path: Path) -> int:
    """The 1-based line of the first byte of ``path`` that is not UTF-8 (a sequence cut
    short by the end of the file: the last line)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 1
    with path.open("rb") as handle:
        while block := handle.read(READ_BYTES):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                return lines + block.count(b"\n", 0, max(error.start, 0))
            lines += block.count(b"\n")
    return lines
