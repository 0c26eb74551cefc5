"""The registered model families: every module of ``app.training.families`` that sets
``FAMILY``, in their ``listed`` order. A new family is one file there; from this table come
the family name type (``Family``, what ``search.families`` takes), the default families
per data shape, the starting points' order, the request's field description, and the
contract suite's cases. Importing this imports every family's declaration, which is
torch-free and loads neither LightGBM nor scikit-learn (``tests/training`` checks it)."""

from __future__ import annotations

import importlib
import pkgutil
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import app.training.families as package
from app.core.errors import BrokenInvariant, InvalidInput
from app.training.families.base import DataShape, ModelFamily, TableFamily
from app.training.families.networks import NetworkFamily

AnyFamily = ModelFamily[Any, Any]


def _discovered() -> list[AnyFamily]:
    """Each module's ``FAMILY`` (modules without one, such as ``base``, are helpers)."""
    found: list[AnyFamily] = []
    for module in pkgutil.iter_modules(package.__path__):
        declared = getattr(
            importlib.import_module(f"{package.__name__}.{module.name}"), "FAMILY", None
        )
        if isinstance(declared, ModelFamily):
            found.append(declared)
    names = [family.name for family in found]
    for name in names:
        if names.count(name) > 1:  # two files would fight over one name and its dimensions
            raise BrokenInvariant(f"model family {name!r} is declared by two files")
    prefixes = [family.prefix for family in found if family.prefix]
    for prefix in prefixes:
        if any(other != prefix and other.startswith(prefix) for other in prefixes):
            raise BrokenInvariant(f"model family prefix {prefix!r} is the start of another's")
    return sorted(found, key=lambda family: (family.listed, family.name))


FAMILIES: dict[str, AnyFamily] = {family.name: family for family in _discovered()}


def listing(names: list[str] | None = None) -> str:
    """``'mlp', 'cnn' (image-shaped rows) and 'gbdt' (LightGBM trees)``: the families
    (all registered, by default) with their summaries, for the docs."""
    shown = [
        f"'{name}'" + (f" ({FAMILIES[name].summary})" if FAMILIES[name].summary else "")
        for name in (names if names is not None else list(FAMILIES))
    ]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


if TYPE_CHECKING:
    # A family's name: statically a string (the registered names are known when this module
    # runs); at run time the enum of them, which requests are validated against.
    Family = str
else:
    Family = StrEnum("Family", {name.upper(): name for name in FAMILIES}, module=__name__)
    Family.__doc__ = f"A family of models a search can train: {listing()}."

TABLE_FAMILIES: tuple[Family, ...] = tuple(
    Family(name) for name, family in FAMILIES.items() if not family.trains_network
)  # fitted in one go, without epochs
NETWORK_FAMILIES: tuple[Family, ...] = tuple(
    Family(name) for name, family in FAMILIES.items() if family.trains_network
)


def family_named(name: str) -> AnyFamily:
    """The registered family called ``name``; InvalidInput naming the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise InvalidInput(f"unknown model family {name!r}; known: {sorted(FAMILIES)}") from None


def table_family(name: str) -> TableFamily[Any]:
    """The table family called ``name`` (one fitted in one go on a table's features)."""
    family = FAMILIES.get(name)
    if not isinstance(family, TableFamily):
        known = sorted(str(table) for table in TABLE_FAMILIES)
        raise InvalidInput(f"unknown model family {name!r}; known: {known}")
    return family


def network_family(name: str) -> NetworkFamily[Any]:
    """The network family called ``name`` (a torch network trained epoch by epoch)."""
    family = FAMILIES.get(name)
    if not isinstance(family, NetworkFamily):
        known = sorted(str(network) for network in NETWORK_FAMILIES)
        raise InvalidInput(f"unknown network family {name!r}; known: {known}")
    return family


def default_families(shape: DataShape) -> list[Family]:
    """Every family searched by default on data of this shape, in listed order."""
    return [Family(name) for name, family in FAMILIES.items() if shape in family.default_on]


def default_network(shape: DataShape) -> NetworkFamily[Any]:
    """The network a search trains when no family is named (the first listed network
    family searched by default on this shape)."""
    for name in default_families(shape):
        family = FAMILIES[name]
        if isinstance(family, NetworkFamily):
            return family
    raise LookupError(f"no network family is searched by default on {shape}")


def cheapest_first() -> list[AnyFamily]:
    """The families in the order their starting points are tried."""
    return sorted(FAMILIES.values(), key=lambda family: (family.cost, family.listed))


def holds_graph_weights(name: str | None) -> bool:
    """Whether a version of this family (None, an average, or an uploaded graph: yes)
    keeps its weights in graph tensors, which int8/fp16 rewrites need."""
    family = FAMILIES.get(name or "")
    return family is None or family.graph_weights
