"""Every compression method; importing this package registers them all."""

from app.compression.methods import distill, features, int4, pruning, qat, quantize, sharing

__all__ = ["distill", "features", "int4", "pruning", "qat", "quantize", "sharing"]
