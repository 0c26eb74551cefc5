"""Measuring an ONNX artifact: task metrics on held-out rows, latency, size."""
