"""docs/architecture.md tells the layers the import-linter contract enforces: the page and
pyproject.toml's contract list the same layers in the same order, every job kind the
server runs is in the page's table, every registered family is a file where the page
says, every artifact store's scheme is named, and every module the page names exists."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import tomllib
from pathlib import Path

from app.kinds import JOB_KINDS
from app.storage import STORES
from app.training.families.registry import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()


def _contracts() -> list[dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["contracts"]


def _normal(layer: str) -> str:
    return " | ".join(sorted(part.strip() for part in layer.split("|")))


def test_the_page_lists_the_contracts_layers_in_order() -> None:
    block = re.search(
        r"<!-- layers: start -->\n```\n(.*?)```\n<!-- layers: end -->", DOC, re.DOTALL
    )
    assert block is not None, "docs/architecture.md lost its layers block"
    documented = [_normal(line) for line in block.group(1).splitlines() if line.strip()]
    layers = next(
        c
        for c in _contracts()
        if c["type"] == "layers" and not any(":" in layer for layer in c["layers"])
    )
    assert documented == [_normal(layer) for layer in layers["layers"]]
    assert not layers.get("ignore_imports"), "the layers hold with no exceptions"


def test_the_page_names_the_six_layers_of_the_coarse_contract() -> None:
    block = re.search(
        r"<!-- named layers: start -->\n```\n(.*?)```\n<!-- named layers: end -->", DOC, re.DOTALL
    )
    assert block is not None, "docs/architecture.md lost its named layers block"
    documented = [
        line.split(":", 1)[1].strip() for line in block.group(1).splitlines() if line.strip()
    ]
    coarse = [
        c
        for c in _contracts()
        if c["type"] == "layers"
        and c["containers"] == ["app"]
        and any(":" in layer for layer in c["layers"])
    ]
    assert len(coarse) == 1
    assert documented == coarse[0]["layers"]


def test_every_fine_layer_sits_in_its_named_layer_in_order() -> None:
    layered = [c for c in _contracts() if c["type"] == "layers" and c["containers"] == ["app"]]
    coarse = next(c for c in layered if any(":" in layer for layer in c["layers"]))
    fine = next(c for c in layered if c is not coarse)
    flattened = [name.strip() for layer in coarse["layers"] for name in layer.split(":")]
    order = [name.strip() for layer in fine["layers"] for name in layer.split("|")]
    assert sorted(flattened) == sorted(order), "both contracts cover the same packages"
    rank = {
        name: index
        for index, layer in enumerate(coarse["layers"])
        for name in (part.strip() for part in layer.split(":"))
    }
    ranks = [rank[name] for name in order]
    assert ranks == sorted(ranks), "the fine order never climbs back into a higher layer"


def test_every_job_kind_is_in_the_page() -> None:
    for name, kind in JOB_KINDS.items():
        assert f"| `{name}` |" in DOC
        assert kind.handler_path in DOC


def test_the_torch_free_gateway_in_the_page_is_the_contracts() -> None:
    gateway = next(
        c for c in _contracts() if c["type"] == "forbidden" and c["forbidden_modules"] == ["torch"]
    )
    listed = re.search(r"the gateway \((.*?)\)", DOC, re.DOTALL)
    assert listed is not None
    documented = {name.strip(" `\n") for name in listed.group(1).replace("\n", " ").split(",")}
    assert documented == {module.removeprefix("app.") for module in gateway["source_modules"]}


def _module_reference_resolves(reference: str) -> bool:
    """``app/x/y.py`` exists, or ``app.x.y`` (optionally ``.attribute``) is a module of
    ours (found without importing it) or an attribute of one."""
    if "/" in reference:
        return (ROOT / reference).exists()
    parts = reference.split(".")
    for length in range(len(parts), 0, -1):
        module = ".".join(parts[:length])
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        if found is None:
            continue
        if length == len(parts):
            return True
        return hasattr(importlib.import_module(module), parts[length])
    return False


def test_every_module_the_page_names_exists() -> None:
    named = set(
        re.findall(
            r"`((?:app|workers|modelkiln|migrations)(?:[./][A-Za-z_0-9]+)+)(?::[A-Za-z_]+)?`",
            DOC,
        )
    )
    assert len(named) > 40, "the pattern still finds the page's references"
    assert [name for name in sorted(named) if not _module_reference_resolves(name)] == []


def test_every_registered_family_is_a_file_of_the_families_package() -> None:
    """The page's claim: a family is one file of app/training/families/, found there."""
    assert "`app/training/families/`" in DOC
    folder = ROOT / "app" / "training" / "families"
    for family in FAMILIES.values():
        assert Path(inspect.getsourcefile(type(family)) or "").parent == folder


def test_the_page_names_every_artifact_store_scheme() -> None:
    for scheme in STORES:
        assert f"`{scheme}`" in DOC
