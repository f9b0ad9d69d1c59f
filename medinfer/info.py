"""What this installation can do: versions, the native extension, the CPU's features, devices and backends;
and, for one engine file, what would run it here and at what precision.

``medinfer info`` prints :func:`format_report`; ``--json`` prints :func:`environment_report`;
``medinfer info ENGINE`` prints :func:`format_engine_report`.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from medinfer import __version__, _ext, backends, cpu


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which os.cpu_count ignores)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def gpus() -> list[dict]:
    """Visible GPUs, asked of the extension first (no PyTorch CUDA needed), then of PyTorch."""
    native = _ext.native()
    if native is not None and _ext.has_cuda():
        try:
            return [dict(d, source="medinfer._C") for d in native.cuda_devices()]
        except RuntimeError:
            pass
    torch = backends.optional_import("torch")
    if torch is not None and torch.cuda.is_available():
        return [
            {
                "index": i,
                "name": torch.cuda.get_device_name(i),
                "compute_capability": torch.cuda.get_device_capability(i),
                "total_memory": torch.cuda.get_device_properties(i).total_memory,
                "source": "torch",
            }
            for i in range(torch.cuda.device_count())
        ]
    return []


def environment_report() -> dict:
    torch = backends.optional_import("torch")
    ext = {"available": _ext.native() is not None, "reason": _ext.unavailable_reason(), **_ext.build_info()}
    return {
        "medinfer": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": {
            name: package_version(name)
            for name in ("torch", "numpy", "onnx", "onnxruntime", "openvino", "pydicom", "safetensors", "triton",
                         "tensorrt", "matplotlib")
        },
        "cpu": {"model": cpu.model(), "cores": usable_cores(), "features": cpu.features(),
                "native_bf16": cpu.native_bf16(), "native_int8": cpu.native_int8()},
        "torch_cuda": torch.version.cuda if torch is not None else None,
        "extension": ext,
        "gpus": gpus(),
        "backends": backends.report(),
        "engine_choice": engine_choice(),
        "overrides": {role: backends.env_override(role) for role in backends.ROLES},
    }


def engine_choice() -> dict[str, str]:
    """Which backend runs each kind of engine file on the CPU when none is asked for, and why."""
    from medinfer.engine.base import KINDS

    out = {}
    for what, runners in KINDS.values():
        name, why = backends.choose_engine(runners, "cpu")
        out[what.split(" ", 1)[1]] = f"{name}" + (f" ({why})" if len(runners) > 1 else "")
    return out


def engine_report(path: str | Path, backend: str | None = None) -> dict:
    """What would run ``path`` here — backend, device, precision and the reason — and the checks on record."""
    import warnings

    from medinfer import validation
    from medinfer.engine import Engine

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", validation.ReducedPrecisionWarning)
        engine = Engine(path, backend=backend)
    return {"engine": str(path), **engine.describe(),
            "checks": {k: v.to_dict() for k, v in validation.recorded(path).items()},
            "warnings": [str(w.message) for w in caught]}


def format_engine_report(rep: dict) -> str:
    from medinfer.validation import Validation

    m = rep["model"]
    lines = [f"{rep['engine']}: {m['model']['name']} ({', '.join(m['class_names'])})",
             f"  runs on      {rep['backend']}, {rep['device']}, {rep['precision']}",
             f"  because      {rep['precision_reason']}"]
    lines += [f"  warning      {w}" for w in rep["warnings"]]
    checks = [Validation(**c) for c in rep["checks"].values()]
    lines += ["  checks against fp32 on record:"] + ([f"    {c.summary()}" for c in checks] or ["    none"])
    return "\n".join(lines)


def format_report(rep: dict) -> str:
    lines = [f"medinfer {rep['medinfer']}  (Python {rep['python']}, {rep['platform']})", ""]
    lines.append("packages:")
    for name, ver in rep["packages"].items():
        lines.append(f"  {name:<12} {ver or 'not installed'}")
    ext = rep["extension"]
    lines += ["", "native extension medinfer._C:"]
    if ext["available"]:
        v = ext.get("cuda_runtime_version", 0)
        cuda = (f"CUDA {v // 1000}.{v % 1000 // 10} for sm_{ext['cuda_archs'].replace(',', ', sm_')}"
                if ext.get("cuda") else "no CUDA (nvcc was not found at build time)")
        lines.append(f"  built, {ext['compiler']}; {cuda}; {ext['default_threads']} threads")
    else:
        lines.append(f"  NOT AVAILABLE: {ext['reason']}")
    c = rep["cpu"]
    present = [n for n, on in c["features"].items() if on]
    lines += ["", f"CPU: {c['model']}, {c['cores']} usable cores; {', '.join(present) or 'no feature medinfer uses'}",
              f"  bf16 natively: {c['native_bf16'] or 'no'}; int8 natively: {c['native_int8'] or 'no'}"]
    lines += ["", "GPUs:"]
    lines += [f"  [{g['index']}] {g['name']} (sm_{''.join(map(str, g['compute_capability']))}, "
              f"{g['total_memory'] / 2**30:.0f} GiB)" for g in rep["gpus"]] or ["  none visible"]
    lines += ["", "backends (role, device: status):"]
    for row in rep["backends"]:
        status = "available" if row["available"] else f"unavailable: {row['reason']}"
        lines.append(f"  {row['backend']:<12} {'/'.join(row['roles']):<11} {row['device']:<5} {status}")
    lines += ["", "engine files on the CPU (automatic choice):"]
    lines += [f"  {what:<14} {choice}" for what, choice in rep["engine_choice"].items()]
    forced = {k: v for k, v in rep["overrides"].items() if v}
    if forced:
        lines += ["", "forced by environment: " + ", ".join(f"{k}={v}" for k, v in forced.items())]
    return "\n".join(lines)
