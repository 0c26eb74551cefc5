"""Serving: onnxruntime sessions and the request codecs. Never imports torch."""
