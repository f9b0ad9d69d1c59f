"""HU conversion: the native thread-pool routine against the numpy reference, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from medinfer import hu

DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "float32", "float64"]
# Odd shapes, a single pixel, and one large enough to cross the native chunk size mid-slice.
SHAPES = [(3, 7, 5), (1, 13, 11), (5, 1, 1), (2, 64, 65), (3, 300, 301)]


def _pixels(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.uniform(-2000, 4000, shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(max(info.min, -32768), min(info.max, 65535), shape, endpoint=True).astype(dt)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("per_slice", [False, True])
def test_native_matches_reference(native, rng, dtype, shape, per_slice):
    px = _pixels(rng, shape, dtype)
    n = shape[0]
    slope = rng.uniform(0.1, 3.0, n) if per_slice else 2.5e-3
    intercept = rng.uniform(-1100, 10, n) if per_slice else -1024.5
    expected = hu.to_hu_numpy(px, slope, intercept)
    got = hu.to_hu(px, slope, intercept)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("threads", [1, 2, 7])
def test_thread_count_does_not_change_results(native, rng, threads):
    px = _pixels(rng, (9, 130, 127), "int16")
    slope, intercept = rng.uniform(0.5, 2, 9), rng.uniform(-1024, 0, 9)
    np.testing.assert_array_equal(hu.to_hu(px, slope, intercept, threads=threads), hu.to_hu_numpy(px, slope, intercept))


def test_typical_ct_slice_is_exact():
    # Stored values 0..4095 with RescaleSlope 1, RescaleIntercept -1024 (the DDC-ResNet paper's eq. 11) are exact
    # integers.
    px = np.arange(4096, dtype=np.uint16).reshape(1, 64, 64)
    np.testing.assert_array_equal(hu.to_hu(px, 1.0, -1024.0), px.astype(np.float32) - 1024)


def test_out_buffer_is_filled_in_place():
    px = np.ones((2, 3, 4), np.int16)
    out = np.zeros((2, 3, 4), np.float32)
    assert hu.to_hu(px, [1.0, 2.0], [0.0, -1.0], out=out) is out
    np.testing.assert_array_equal(out[1], np.ones((3, 4)))


def test_big_endian_and_strided_inputs_are_handled():
    px = np.arange(2 * 5 * 6, dtype=">i2").reshape(2, 5, 6)
    expected = px.astype(np.float64) * 2 - 3
    np.testing.assert_array_equal(hu.to_hu(px, 2, -3), expected.astype(np.float32))
    strided = np.arange(2 * 10 * 6, dtype=np.int16).reshape(2, 10, 6)[:, ::2]
    np.testing.assert_array_equal(hu.to_hu(strided, 1, 0), strided.astype(np.float32))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pixels": np.zeros(5, np.int16)}, "ndim >= 2"),
        ({"pixels": np.zeros((2, 2), np.complex64)}, "unsupported pixel dtype"),
        ({"slope": [1.0, 2.0, 3.0]}, "one value per slice"),
        ({"intercept": np.nan}, "must be finite"),
        ({"out": np.zeros((4, 3), np.float64)}, "float32"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    args = {"pixels": np.zeros((4, 3), np.int16), "slope": 1.0, "intercept": 0.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        hu.to_hu(args.pop("pixels"), **args)


def test_native_rejects_mismatched_buffers(native):
    px = np.zeros((2, 3, 4), np.int16)
    one = np.ones(1)
    with pytest.raises(ValueError, match="differs from pixels shape"):
        native.hu_convert(px, np.zeros((2, 3, 5), np.float32), one, one)
    with pytest.raises(ValueError, match="C-contiguous"):
        native.hu_convert(px, np.zeros((2, 3, 8), np.float32)[..., ::2], one, one)
    with pytest.raises(ValueError, match="big-endian"):
        native.hu_convert(px.astype(">i2"), np.zeros((2, 3, 4), np.float32), one, one)
    with pytest.raises(ValueError, match="one per slice"):
        native.hu_convert(px, np.zeros((2, 3, 4), np.float32), np.ones(3), np.ones(3))


@pytest.mark.gpu
def test_cuda_kernel_matches_reference(native, rng):
    import torch

    if not native.build_info()["cuda"]:
        pytest.skip("extension built without CUDA")
    px = _pixels(rng, (5, 61, 67), "int16")
    slope, intercept = rng.uniform(0.5, 2, 5), rng.uniform(-1024, 0, 5)
    src = torch.from_numpy(px).cuda()
    dst = torch.empty(px.shape, dtype=torch.float32, device="cuda")
    s, b = torch.from_numpy(slope).cuda(), torch.from_numpy(intercept).cuda()
    native.cuda_hu_convert(src.data_ptr(), "int16", dst.data_ptr(), 5, 61 * 67, s.data_ptr(), b.data_ptr(), 5,
                           torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(dst.cpu().numpy(), hu.to_hu_numpy(px, slope, intercept))
