"""The committed lock files (requirements/*.lock, from requirements/refresh) against
pyproject.toml: every dependency is pinned, and every pin lies inside pyproject's range, so
a range changed without a refresh fails here rather than in a user's install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;]+)")


def pins(lock: str) -> dict[str, Version]:
    """Package name to its pinned version in ``requirements/<lock>.lock``."""
    found: dict[str, Version] = {}
    for line in (ROOT / "requirements" / f"{lock}.lock").read_text().splitlines():
        if match := PIN.match(line):
            found[canonicalize_name(match[1])] = Version(match[2])
    return found


def requirements(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize(("lock", "extras"), [("main", ()), ("test", ("test",))])
def test_lock_pins_every_dependency_inside_its_range(lock: str, extras: tuple[str, ...]) -> None:
    pinned = pins(lock)
    for requirement in requirements(*extras):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, (
            f"{requirement} is not in requirements/{lock}.lock: run requirements/refresh"
        )
        version = Version(pinned[name].base_version)  # torch 2.13.0+cpu is 2.13.0
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements/{lock}.lock pins {name}=={pinned[name]}, outside {requirement}"
        )


def test_every_main_dependency_has_an_upper_bound() -> None:
    for requirement in requirements():
        assert any(spec.operator in ("<", "==", "~=") for spec in requirement.specifier), (
            f"{requirement} has no upper bound: a new major release would reach users untested"
        )


def test_main_lock_holds_no_test_only_package_and_no_cuda() -> None:
    main = pins("main")
    assert "pytest" not in main and not any(name.startswith("nvidia") for name in main)
    assert str(main["torch"]).endswith("+cpu")


def test_dockerfile_installs_from_the_main_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install -r requirements/main.lock" in dockerfile
    assert "pip install --no-deps -e ." in dockerfile
