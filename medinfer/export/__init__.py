"""Export to ONNX, and what TensorRT's ONNX parser accepts."""

from medinfer.export.onnx import ExportError, export_onnx, read_export

__all__ = ["ExportError", "export_onnx", "read_export"]
