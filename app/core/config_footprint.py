"""The settings of a version's measured footprint: how energy is read or estimated
(``app.evaluation.energy``). ``Settings`` (``app.core.config``) inherits them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

# Watts one busy core draws, for the CPU-time estimate of energy where RAPL cannot be read.
# Rated power (TDP) over cores of common server CPUs, from Intel's and AMD's spec sheets:
# Xeon Gold 6248 150 W / 20 = 7.5 W, Xeon Platinum 8380 270 W / 40 = 6.75 W, EPYC 7763
# 280 W / 64 = 4.4 W. 10 W rounds the largest up: an estimate should not flatter a model,
# and a package draws more than its cores (caches, memory controller).
DEFAULT_CPU_WATTS_PER_CORE = 10.0
DEFAULT_POWERCAP_DIR = Path("/sys/class/powercap")


class FootprintSettings(BaseSettings):
    """Energy measurement (see the module docstring)."""

    cpu_watts_per_core: float = Field(
        default=DEFAULT_CPU_WATTS_PER_CORE,
        gt=0,
        le=1000,
        description="Watts one busy core draws: where RAPL's counters cannot be read, a "
        "version's energy per 1,000 rows is its CPU-seconds times this, labelled "
        "'estimate' (default 10: the upper end of server CPUs' rated power per core).",
    )
    powercap_dir: Path = Field(
        default=DEFAULT_POWERCAP_DIR,
        description="Where Linux's powercap counters are (intel-rapl:N/energy_uj, one per "
        "CPU package): read when this process may, for energy labelled 'rapl'.",
    )
