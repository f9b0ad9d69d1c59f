"""Export to ONNX (needs PyTorch: ``pip install 'medinfer[train]'``), and what TensorRT's ONNX parser accepts.

Reading an export back needs no PyTorch: :func:`medinfer.onnx_file.read_export`.
"""

from medinfer.export.onnx import ExportError, export_onnx
from medinfer.onnx_file import read_export

__all__ = ["ExportError", "export_onnx", "read_export"]
