"""Fused custom ops of the DDC-ResNet101 model, with their plain PyTorch references beside them.

* :func:`dilated_branches` — several dilated 3×3 convolutions of one input in one kernel, optionally with
  the rest of the DDC block fused (:class:`DDCEpilogue`). Reference:
  :func:`medinfer.models.layers.dilated_branches` and :func:`medinfer.models.layers.ddc_project_sum`.
* :func:`octave_conv` — the four paths of an octave convolution in one pass. Reference:
  :func:`medinfer.models.layers.octave_conv`.

Each call picks its implementation through the one backend registry (:mod:`medinfer.backends`, role
``ops``): ``torch`` (the reference), ``triton`` (``medinfer.kernels``) or ``cuda`` (``medinfer._C``).
:mod:`medinfer.ops.onnx` exports them as ``medinfer::DilatedBranches`` / ``medinfer::OctaveConv`` nodes
and :mod:`medinfer.ops.tensorrt_plugins` runs those nodes in TensorRT. Importing this package needs
PyTorch, but neither Triton, the extension, a GPU nor TensorRT.
"""

from __future__ import annotations

from medinfer.ops.dilated import MAX_PROJECT_WIDTH, DDCEpilogue, dilated_branches
from medinfer.ops.octave import octave_conv

__all__ = ["MAX_PROJECT_WIDTH", "DDCEpilogue", "dilated_branches", "octave_conv"]
