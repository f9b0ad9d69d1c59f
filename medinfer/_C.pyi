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

class BatchRun:
    """One pass of the series batcher (medinfer.runtime.SeriesBatcher drives it)."""

    def __init__(
        self,
        params: dict[str, Any],  # out_h, out_w, channels, lo, hi, scale, offset, antialias
        batch_size: int,
        dtype: str,  # "float32" | "float16"
        threads: int,  # 0: all
        series: list[tuple[Buffer, npt.ArrayLike, npt.ArrayLike]],  # (pixels (N, H, W), slopes, intercepts)
    ) -> None: ...
    @property
    def prepare_seconds(self) -> float: ...
    @property
    def wait_seconds(self) -> float: ...
    def next(self) -> tuple[npt.NDArray[Any], int, int] | None: ...
    def close(self) -> None: ...

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


# Fused convolutions (csrc/cuda/dilated_branches.cu, octave_conv.cu); tensors cross as
# (data_ptr, (N, C, H, W), (sN, sC, sH, sW)); weights as data_ptr of (O, C, k, k), all contiguous or all
# channels-last (weights_channels_last), 0 = absent.
Tensor4 = tuple[int, tuple[int, int, int, int], tuple[int, int, int, int]]

def cuda_dilated_branches(
    dtype: str,
    x: Tensor4,
    weights: list[int],
    weights_channels_last: bool,
    biases: list[int],
    dilations: list[int],
    outputs: list[Tensor4],
    project_weight: int = 0,
    project_bias: int = 0,
    residual: Tensor4 | None = None,
    out: Tensor4 | None = None,
    stream: int = 0,
) -> None: ...
def cuda_octave_conv(
    dtype: str,
    x_h: Tensor4,
    x_l: Tensor4 | None,
    w_hh: int,
    w_hl: int,
    w_lh: int,
    w_ll: int,
    weights_channels_last: bool,
    kernel_size: int,
    stride: int,
    y_h: Tensor4,
    y_l: Tensor4 | None,
    stream: int = 0,
) -> None: ...
