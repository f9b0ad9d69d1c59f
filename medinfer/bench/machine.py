"""What a benchmark ran on: CPU model and usable cores, GPUs, package versions, and when."""

from __future__ import annotations

import datetime
import platform


def describe() -> dict:
    from medinfer import __version__, _ext, cpu
    from medinfer.info import gpus, package_version, usable_cores

    return {
        "cpu": cpu.model(),
        "isa": cpu.features(),
        "cores": usable_cores(),
        "gpus": [g["name"] for g in gpus()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "medinfer": __version__,
        "extension": _ext.native() is not None,
        "versions": {n: package_version(n)
                     for n in ("torch", "onnxruntime", "openvino", "numpy", "pydicom", "triton", "tensorrt")},
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def one_line(m: dict) -> str:
    gpus = ", ".join(m["gpus"]) or "no GPU"
    isa = ", ".join(n for n, on in m.get("isa", {}).items() if on)
    versions = m["versions"]
    return (f"{m['cpu']}, {m['cores']} cores, {gpus}; medinfer {m['medinfer']}, torch {versions['torch']}, "
            f"onnxruntime {versions['onnxruntime']}, openvino {versions.get('openvino') or 'not installed'}"
            + (f"; ISA: {isa}" if isa else ""))
