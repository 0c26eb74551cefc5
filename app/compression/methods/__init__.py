"""Every compression method; importing this package registers them all."""

from app.compression.methods import distill, features, pruning, quantize, sharing

__all__ = ["distill", "features", "pruning", "quantize", "sharing"]
