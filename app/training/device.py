"""Where training runs: ``KILN_DEVICE`` (auto, cpu or cuda) resolved on this worker."""

from __future__ import annotations

import torch


class DeviceUnavailable(RuntimeError):
    """KILN_DEVICE asks for a device this machine does not have."""


def resolve_device(setting: str) -> torch.device:
    """``auto``: the first CUDA device when torch sees one, else the CPU; ``cuda`` fails
    (naming the setting) on a machine without one."""
    if setting == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if setting == "cuda":
        raise DeviceUnavailable(
            "KILN_DEVICE=cuda but torch sees no CUDA device on this "
            "worker; set KILN_DEVICE=auto or cpu"
        )
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """What a version records: ``cpu``, or ``cuda`` with the card's name."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
