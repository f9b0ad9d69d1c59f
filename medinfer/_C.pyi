"""Type stub of medinfer's private native module (csrc/module.cpp)."""

from typing import Any

import numpy.typing as npt
from typing_extensions import Buffer

def build_info() -> dict[str, Any]: ...
def default_threads() -> int: ...
def hu_convert(
    pixels: Buffer,
    out: Buffer,
    slopes: npt.ArrayLike,
    intercepts: npt.ArrayLike,
    *,
    threads: int = 0,
) -> None: ...

# Present only when the extension was compiled with CUDA (build_info()["cuda"]).
def cuda_device_count() -> tuple[int, str]: ...
def cuda_devices() -> list[dict[str, Any]]: ...
def cuda_driver_version() -> int: ...
def cuda_hu_convert(
    src: int,
    dtype: str,
    dst: int,
    n_slices: int,
    slice_len: int,
    slopes: int,
    intercepts: int,
    n_params: int,
    stream: int = 0,
) -> None: ...

