"""A trial's parameters as Optuna samples them and its row stores them: flat, by dimension
name (``width_0``, ``gbdt_num_leaves``, ``family``), each value a JSON scalar (a choice, an
integer or a float). A family reads them typed at its door (``ModelFamily.params``); what
carries them between (the space, the trial loop, sizing, the charts) holds them as
``dict[str, ParamValue]``."""

from __future__ import annotations

from typing import TypeAlias

ParamValue: TypeAlias = bool | int | float | str
