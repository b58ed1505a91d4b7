"""Serving: the published model scored on people's pictures (`compare`), exported to ONNX."""
