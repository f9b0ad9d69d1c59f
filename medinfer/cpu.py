"""What the CPU offers for inference: the instruction-set features that decide which engine and precision run
fastest (AMX and AVX512-BF16 run bf16 natively, VNNI and AMX-INT8 run int8 dot products), read from
``/proc/cpuinfo`` without importing any runtime. Benchmarks record them, the engine registry chooses by them.
"""

from __future__ import annotations

import functools
import platform

# Linux cpuinfo flag -> the name people know it by.
FEATURES = {
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
    "avx512_bf16": "AVX512-BF16",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512f": "AVX512F",
    "avx2": "AVX2",
}


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    fields = dict(line.split(":", 1) for line in text.splitlines()[:40] if ":" in line)
    model = next((v.strip() for k, v in fields.items() if k.strip() == "model name"), platform.machine())
    flags = next((v.split() for k, v in fields.items() if k.strip() in ("flags", "Features")), [])
    return model, frozenset(flags)


def model() -> str:
    return _cpuinfo()[0]


def features() -> dict[str, bool]:
    """Each feature of :data:`FEATURES` by its known name: present or not."""
    flags = _cpuinfo()[1]
    return {name: flag in flags for flag, name in FEATURES.items()}


def has(*names: str) -> bool:
    """Whether the CPU has any of the features ``names`` (known names, e.g. ``"AMX-BF16"``)."""
    present = features()
    return any(present.get(n, False) for n in names)


def native_bf16() -> str | None:
    """The feature that runs bf16 matrix products natively here (AMX-BF16 first), or ``None``."""
    return next((n for n in ("AMX-BF16", "AVX512-BF16") if has(n)), None)


def native_int8() -> str | None:
    """The feature that runs int8 dot products natively here, or ``None`` (int8 then emulates at fp32 speed)."""
    return next((n for n in ("AMX-INT8", "AVX512-VNNI", "AVX-VNNI") if has(n)), None)


def summary() -> str:
    """``"AMD EPYC: AVX512-BF16, AVX512-VNNI, ..., no AMX"``, for logs and benchmark headers."""
    present = [n for n, on in features().items() if on]
    amx = "" if has("AMX-BF16", "AMX-INT8") else ", no AMX"
    return f"{model()}: {', '.join(present) or 'none of ' + ', '.join(FEATURES.values())}{amx}"
