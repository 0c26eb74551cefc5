"""Compression: methods that make a registered version smaller or faster, measured on the
ONNX artifact that will serve. Importing this package loads neither torch nor onnxruntime."""
