"""Preprocess: the numpy reference against PyTorch, its validation and its (de)serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medinfer.errors import InputError
from medinfer.models import get_spec, list_models
from medinfer.preprocess import Preprocess
from medinfer.resize import resize, resize_taps

# (in_h, in_w) -> (out_h, out_w): shrinking by integer and odd factors, growing, single pixels, identity.
RESIZES = [((37, 53), (19, 70)), ((512, 512), (256, 256)), ((5, 1), (1, 7)), ((1, 1), (3, 3)), ((7, 3), (3, 7)),
           ((64, 65), (64, 65)), ((129, 31), (17, 62))]


def _torch_resize(x: np.ndarray, size, antialias: bool) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(x)[:, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=antialias)[:, 0].numpy()


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize(("shape", "size"), RESIZES)
def test_resize_matches_torch_interpolate(rng, shape, size, antialias):
    x = rng.normal(size=(2, *shape))
    # float64 on both sides: only the summation order differs.
    np.testing.assert_allclose(resize(x, size, antialias), _torch_resize(x, size, antialias), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("n_in", "n_out"), [(1, 1), (7, 3), (3, 7), (512, 256), (511, 64), (2, 9)])
def test_resize_taps_are_a_partition_of_unity(n_in, n_out):
    taps = resize_taps(n_in, n_out)
    np.testing.assert_allclose(taps.weight.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert taps.index.min() >= 0 and taps.index.max() < n_in and np.all(taps.weight >= 0)


def test_identity_resize_copies():
    x = np.arange(12.0).reshape(1, 3, 4)
    np.testing.assert_array_equal(resize(x, (3, 4)), x)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("normalize", ["range", "mean_std", "none"])
def test_apply_is_window_resize_affine(rng, channels, normalize):
    pp = Preprocess(size=(9, 14), channels=channels, window=(40, 400), normalize=normalize, mean=-3.5, std=57.0)
    hu = rng.uniform(-1100, 1500, (3, 23, 31)).astype(np.float32)
    out = pp.apply(hu)
    assert out.dtype == np.float32 and out.shape == (3, channels, 9, 14)
    expected = resize(np.clip(hu.astype(np.float64), -160, 240), (9, 14))
    normalized = {"range": (expected + 160) / 400 * 2 - 1, "mean_std": (expected + 3.5) / 57.0, "none": expected}
    expected = normalized[normalize]
    for c in range(channels):
        np.testing.assert_allclose(out[:, c], expected, rtol=1e-6, atol=1e-6)


def test_range_normalisation_hits_out_range_at_the_window_ends():
    pp = Preprocess(size=(2, 2), clip=(-1000, 400), out_range=(0, 1))
    hu = np.array([[[-3000, -3000], [-3000, -3000]], [[5000, 5000], [5000, 5000]]], np.float32)
    np.testing.assert_array_equal(pp.apply(hu)[:, 0, 0, 0], [0.0, 1.0])


def test_display_values_reproduce_the_res_dense_net_scaling(rng):
    pp = get_spec("resdense_net").preprocess
    v = rng.integers(0, 256, (2, 256, 256)).astype(np.uint8)
    slope, intercept = pp.display_rescale()
    hu = (v.astype(np.float64) * slope + intercept).astype(np.float32)
    np.testing.assert_allclose(pp.apply(hu)[:, 0], v / 127.5 - 1, rtol=0, atol=1e-5)


def test_display_needs_a_window():
    with pytest.raises(InputError, match="window"):
        Preprocess(size=(4, 4), normalize="none").display_rescale()


def test_round_trip_through_json():
    pp = Preprocess(size=(31, 17), channels=3, clip=(-1000.5, 400), normalize="range", out_range=(0, 1),
                    antialias=False)
    d = json.loads(json.dumps(pp.to_dict()))
    assert d["version"] == 1
    assert Preprocess.from_dict(d) == pp


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"size": [0, 4]}, "size"),
        ({"size": [4.5, 4]}, "size"),
        ({"size": [float("inf"), 4]}, "size"),  # int(inf) would raise OverflowError
        ({"size": "64"}, "size"),
        ({"channels": 2}, "channels"),
        ({"channels": True}, "channels"),
        ({"window": [40, -1]}, "window"),
        ({"window": [40, float("nan")]}, "window"),
        ({"clip": [10, 10]}, "clip"),
        ({"window": [40, 400], "clip": [0, 1]}, "clip"),
        ({"normalize": "zscore"}, "normalize"),
        ({"std": 0}, "std"),
        ({"mean": "a"}, "mean"),
        ({"out_range": [1, 1]}, "out_range"),
        ({"antialias": "yes"}, "antialias"),
        ({"colour": 1}, "colour"),
        ({"version": 2}, "version"),
        ({"version": None}, "version"),
    ],
)
def test_bad_dicts_name_the_field(change, field):
    d = {**Preprocess(size=(8, 8), window=(40, 400)).to_dict(), **change}
    with pytest.raises(InputError, match=field):
        Preprocess.from_dict(d)


def test_missing_size_and_non_dict_are_refused():
    with pytest.raises(InputError, match="'size' is missing"):
        Preprocess.from_dict({"version": 1})
    with pytest.raises(InputError, match="expected a dict"):
        Preprocess.from_dict([("size", (4, 4))])


def test_range_normalisation_needs_a_window():
    with pytest.raises(InputError, match="window=.*or clip="):
        Preprocess(size=(8, 8))


def test_apply_refuses_non_3d_input():
    with pytest.raises(InputError, match=r"\(N, H, W\)"):
        Preprocess(size=(8, 8), window=(0, 100)).apply(np.zeros((8, 8)))


@pytest.mark.parametrize("name", list_models())
def test_every_model_has_a_matching_preprocess(name):
    spec = get_spec(name)
    assert spec.preprocess.size == spec.input_size and spec.preprocess.channels == spec.in_chans
    assert spec.preprocess.normalize == "range" and spec.preprocess.out_range == (-1.0, 1.0)
    assert Preprocess.from_dict(spec.preprocess.to_dict()) == spec.preprocess
