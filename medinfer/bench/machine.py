"""What a benchmark ran on: CPU model and usable cores, GPUs, package versions, and when."""

from __future__ import annotations

import datetime
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def describe() -> dict:
    from medinfer import __version__, _ext
    from medinfer.info import gpus, package_version, usable_cores

    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "gpus": [g["name"] for g in gpus()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "medinfer": __version__,
        "extension": _ext.native() is not None,
        "versions": {n: package_version(n) for n in ("torch", "onnxruntime", "numpy", "pydicom", "triton", "tensorrt")},
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def one_line(m: dict) -> str:
    gpus = ", ".join(m["gpus"]) or "no GPU"
    return (f"{m['cpu']}, {m['cores']} cores, {gpus}; medinfer {m['medinfer']}, torch {m['versions']['torch']}, "
            f"onnxruntime {m['versions']['onnxruntime']}")
