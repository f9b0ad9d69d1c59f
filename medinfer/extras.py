"""Optional extras: which ``pip install 'medinfer[...]'`` brings a module that is missing.

``pip install medinfer`` is the inference runtime (ONNX Runtime, DICOM, the C++ batcher). Training, export,
evaluation plots and the PyTorch engine come with ``[train]``; the Triton kernels with ``[gpu]``; TensorRT
with ``[tensorrt]``; OpenVINO with ``[openvino]``; Ray with ``[ray]``.
"""

from __future__ import annotations

from medinfer.errors import MedinferError

# Top-level module -> (extra, what it brings).
PROVIDERS: dict[str, tuple[str, str]] = {
    "torch": ("train", "PyTorch (training, export, the torch engine)"),
    "matplotlib": ("train", "matplotlib (plots)"),
    "onnxscript": ("train", "onnxscript (export of the fused ops as plugin nodes)"),
    "triton": ("gpu", "Triton (the fused GPU kernels)"),
    "tensorrt": ("tensorrt", "TensorRT"),
    "ray": ("ray", "Ray (archive runs on a cluster: medinfer predict --ray)"),
    "openvino": ("openvino", "OpenVINO (the CPU engine with bf16 and int8: backend='openvino')"),
    "pytriton": ("serve", "PyTriton (medinfer serve: a Triton Inference Server)"),
    "tritonclient": ("remote", "Triton's client (RemoteEngine, medinfer export-triton)"),
    "pynetdicom": ("listen", "pynetdicom (medinfer listen: the DICOM Storage SCP)"),
    "highdicom": ("listen", "highdicom (DICOM structured reports of the results)"),
}


class MissingExtra(MedinferError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def missing_extra(exc: ImportError) -> MissingExtra | None:
    """The :class:`MissingExtra` an import failure amounts to, or ``None`` when no extra provides the module."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name not in PROVIDERS:
        return None
    extra, what = PROVIDERS[name]
    return MissingExtra(f"this needs {what}, which is not installed: pip install 'medinfer[{extra}]'")
