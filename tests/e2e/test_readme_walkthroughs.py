"""README's walkthroughs, run as written: the shell blocks of "Walkthrough with curl", of
the CLI in "Look instead of read" and of "Closing the loop", in that order, in one bash
process (each block goes on from the state the ones before it left: $KEY, $KILN, $DATASET,
the directory and its files), against a real ``kiln serve`` with a worker process. The
only changes made to the text are the server's address (a free port instead of 8000) and
its admin key's path; the budgets are README's own. The Quickstart's commands are checked
by ``.ci/run``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.servers import KilnServer, ServerFactory

README = Path(__file__).resolve().parents[2] / "README.md"
# The sections whose shell blocks are run, in README's order; each block must exit 0.
SECTIONS = (
    "## Walkthrough with curl",
    "## Look instead of read",
    "### Closing the loop",
)
MARK = "@@ block {} exited 0"
ADDRESS = "127.0.0.1:8000"
KEY_FILE = "kiln-data/admin.key"


def shell_blocks(readme: str) -> list[str]:
    """Every ``sh`` block of the walkthroughs' sections, in order: a section runs from its
    heading to the next heading of its level or above (a ``#`` line inside a block is a
    shell comment, not a heading)."""
    found: dict[str, list[str]] = {heading: [] for heading in SECTIONS}
    current: str | None = None  # the section being read, when it is one of SECTIONS
    fence: str | None = None  # the language of the block being read
    lines: list[str] = []
    for line in readme.splitlines():
        if fence is not None:
            if line == "```":
                if fence == "sh" and current is not None:
                    found[current].append("\n".join(lines) + "\n")
                fence, lines = None, []
            else:
                lines.append(line)
        elif line.startswith("```"):
            fence = line.removeprefix("```")
        elif hashes := re.match(r"(#+) ", line):
            named = next((name for name in SECTIONS if line.startswith(name)), None)
            if named is not None:
                current = named
            elif current is not None and len(hashes[1]) <= len(current.split(" ", 1)[0]):
                current = None
    for heading, blocks in found.items():
        assert blocks, f"README's section {heading!r} has no sh block"
    return [block for blocks in found.values() for block in blocks]


def script(blocks: list[str], server: KilnServer) -> str:
    """One bash script of the blocks, each followed by its mark; it stops at the first
    command that fails (``set -e``) or the first variable no step set (``set -u``)."""
    parts = ["set -eu"]
    for number, block in enumerate(blocks, 1):
        parts += [block, f"echo '{MARK.format(number)}'"]
    text = "\n".join(parts)
    assert ADDRESS in text and KEY_FILE in text
    return text.replace(ADDRESS, f"127.0.0.1:{server.port}").replace(
        KEY_FILE, str(server.data_dir / "admin.key")
    )


def test_shell_blocks_are_found_in_every_section() -> None:
    readme = README.read_text()
    blocks = shell_blocks(readme)
    assert len(blocks) >= 4  # the walkthrough, the CLI, the loop's two parts
    assert blocks[0].startswith("KEY=$(cat kiln-data/admin.key)")
    assert any("aliases/production/promote" in block for block in blocks)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """Where the walkthrough starts, as in a checkout: ``$PWD/.venv`` is this test's
    environment (the blocks call ``$KILN/python`` and ``$KILN/kiln``)."""
    folder = tmp_path / "checkout"
    folder.mkdir()
    (folder / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    return folder


def test_readme_walkthroughs_run_as_written(
    kiln_server: ServerFactory, checkout: Path, tmp_path: Path
) -> None:
    server = kiln_server(workers=1)
    blocks = shell_blocks(README.read_text())
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("KILN_")}
    env["TMPDIR"] = str(scratch)  # the walkthrough's mktemp -d
    ran = subprocess.run(
        ["bash", "-c", script(blocks, server)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = ran.stdout
    report = f"{output[-6000:]}\n--- stderr ---\n{ran.stderr[-4000:]}\n--- server ---\n"
    passed = [number for number in range(1, len(blocks) + 1) if MARK.format(number) in output]
    assert ran.returncode == 0 and len(passed) == len(blocks), (
        f"block {len(passed) + 1} of {len(blocks)} exited {ran.returncode}:\n{report}"
        + server.log_tail()
    )

    # The first walkthrough: a finished search, a prediction, the held-out score.
    assert '"status":"succeeded"' in output, report
    assert re.search(r'"predictions":\[\d,\d\]', output), report
    accuracy = re.search(r"held-out accuracy: (\d+)/299 = (0\.\d+)", output)
    assert accuracy and float(accuracy[2]) > 0.9, report
    # The CLI: a second search registered, and holdout.csv (with its header) predicted.
    assert re.search(r"registered digits v\d+", output), report
    assert "299 rows predicted" in output, report
    # The loop: 150 labelled requests joined, a retrain deployed as the shadow, a gate's
    # answer (the retrained version, learnt from 150 rows, may or may not pass it).
    assert re.search(r'"joined": 150, "unmatched": 0, "ambiguous": 0', output), report
    shadow = r'"mode": "shadow", "version": \d+, "weight": null, "deployed": true'
    assert re.search(shadow, output), report
    assert re.search(r"shadow v\d+ beside v\d+: \d+ rows", output), report
    promotion = re.search(r'\{"promoted":(true|false),"gate":"labelled","reason":"[^"]+', output)
    assert promotion, report
    assert "on 149 labelled rows" in promotion[0], report
