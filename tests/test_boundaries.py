"""Architecture rules that must keep holding."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def test_gateway_never_imports_torch() -> None:
    code = (
        "import sys, app.main, app.cli; app.main.create_app; "
        "assert 'torch' not in sys.modules, 'torch was imported by the gateway'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _sql_contract() -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return next(
        contract
        for contract in config["tool"]["importlinter"]["contracts"]
        if contract["name"].startswith("SQL stays in the repositories")
    )


def _imports_sqlalchemy(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        names = (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.level == 0
            else []
        )
        if any(name == "sqlalchemy" or name.startswith("sqlalchemy.") for name in names):
            return True
    return False


def _allowed(module: str, patterns: list[str]) -> bool:
    """Whether ``module`` is one of ``patterns`` (import-linter's: ``*`` one name) or in
    one of those packages."""
    parts = module.split(".")
    for pattern in patterns:
        wanted = pattern.split(".")
        head = parts[: len(wanted)]
        if len(head) == len(wanted) and all(
            w in ("*", p) for w, p in zip(wanted, head, strict=True)
        ):
            return True
    return False


def test_only_the_repositories_and_the_persistence_foundation_import_sqlalchemy() -> None:
    """What import-linter's protected contract holds, checked by reading the sources (lazy
    imports inside functions included), so that the tests catch it too."""
    contract = _sql_contract()
    assert contract["type"] == "protected" and contract["protected_modules"] == ["sqlalchemy"]
    allowed = contract["allowed_importers"]
    importers = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for root in ("app", "workers", "modelkiln")
        for path in (ROOT / root).rglob("*.py")
        if _imports_sqlalchemy(path)
    )
    assert importers, "the scan found no importer at all: it reads the wrong files"
    assert [module for module in importers if not _allowed(module, allowed)] == []
    for named in (pattern for pattern in allowed if "*" not in pattern):
        assert named in importers, f"{named} imports no SQLAlchemy: drop it from the contract"
