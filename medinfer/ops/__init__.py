"""Fused custom ops of the DDC-ResNet101 model. Each op has one home, holding its plain PyTorch reference
(``*_native``), its dispatch, its kernel launches, its ONNX node and its TensorRT plugin half:

* :mod:`medinfer.ops.dilated` — :func:`dilated_branches`: several dilated 3×3 convolutions of one input in
  one kernel, optionally with the rest of the DDC block fused (:class:`DDCEpilogue`);
* :mod:`medinfer.ops.octave` — :func:`octave_conv`: the four paths of an octave convolution in one pass.

What the ops share: :mod:`~medinfer.ops.dispatch` (backend choice, argument checks, layouts),
:mod:`~medinfer.ops.onnx` (export as ``medinfer::`` nodes) and :mod:`~medinfer.ops.tensorrt_plugins`.
Each call's implementation comes from the one backend registry (:mod:`medinfer.backends`, role ``ops``):
``torch`` (the reference), ``triton`` (``medinfer.kernels``, handed what a kernel needs) or ``cuda``
(``medinfer._C``), chosen once per device and request. Dependencies point one way: ``models`` → ``ops`` →
``kernels``; importing this package needs PyTorch, but neither Triton, the extension, a GPU nor TensorRT.
"""

from __future__ import annotations

from medinfer.ops.dilated import MAX_PROJECT_WIDTH, DDCEpilogue, dilated_branches
from medinfer.ops.octave import octave_conv

__all__ = ["MAX_PROJECT_WIDTH", "DDCEpilogue", "dilated_branches", "octave_conv"]
