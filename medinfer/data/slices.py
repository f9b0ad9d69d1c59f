"""A split of a data set as preprocessed slices in memory, ready for training.

Every item is read once (ROI files with :func:`~medinfer.data.roi.read_roi`, series folders with
:func:`medinfer.load_series`) and preprocessed once by the C++ series batcher with the model's
:class:`~medinfer.preprocess.Preprocess` — the same code that prepares input at inference. Training on
series uses every slice with its series' label (as in the Res-Dense Net paper); ``group`` says which
series a slice came from, for per-series evaluation and for hold-out splits that keep a series' slices
together.

Series slices are stored as float16 (they are in [-1, 1]; a 256×256 slice takes 128 KiB instead of
256 KiB), ROIs as float32; batches are converted to float32 on the way to the model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from medinfer.data.dataset import DataSource, Item
from medinfer.data.roi import read_roi
from medinfer.errors import InputError, SeriesError
from medinfer.preprocess import Preprocess

BATCH = 64  # slices per batcher batch while loading


@dataclass(kw_only=True)
class LabelledSlices:
    x: np.ndarray  # (N, C, H, W) float16 or float32, preprocessed
    y: np.ndarray  # (N,) int64 class index
    group: np.ndarray  # (N,) int64: index into `items` of the item each slice came from
    items: list[Item]  # the items that were used
    class_names: tuple[str, ...]
    kind: str  # "roi" or "series"
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, item_mask: np.ndarray) -> LabelledSlices:
        """The slices of the items where ``item_mask`` is true, items renumbered."""
        keep_items = np.flatnonzero(item_mask)
        remap = np.full(len(self.items), -1, np.int64)
        remap[keep_items] = np.arange(len(keep_items))
        rows = np.flatnonzero(item_mask[self.group])
        return LabelledSlices(x=self.x[rows], y=self.y[rows], group=remap[self.group[rows]],
                              items=[self.items[i] for i in keep_items], class_names=self.class_names, kind=self.kind)

    def item_labels(self) -> np.ndarray:
        """The label index of each item."""
        out = np.zeros(len(self.items), np.int64)
        out[self.group] = self.y
        return out


def class_index(class_names: tuple[str, ...], items: list[Item], where: str) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(class_names)}
    unknown = sorted({it.label for it in items} - set(lookup))
    if unknown:
        raise InputError(f"{where}: label(s) {', '.join(map(repr, unknown))} are not classes of this model "
                         f"({', '.join(class_names)})")
    return np.array([lookup[it.label] for it in items], np.int64)


def read_items(source: DataSource, items: list[Item], progress: bool | None = None, desc: str = "reading"):
    """``(series, used, skipped)``: every item read as a Series, ``used`` the index in ``items`` of each;
    unusable items are in ``skipped`` with the reason (and a warning), as are files a series' loader set
    aside."""
    from medinfer.io import load_series
    from medinfer.progress import progress_bar

    series, used, skipped = [], [], []
    bar = progress_bar(items, desc=desc, unit=source.kind, leave=False, progress=progress)
    for index, it in enumerate(bar):
        try:
            s = read_roi(it.path) if source.kind == "roi" else load_series(it.path)
        except (InputError, SeriesError, OSError) as exc:
            skipped.append((str(it.path), str(exc).splitlines()[0]))
            continue
        series.append(s)
        used.append(index)
        skipped.extend(s.skipped)
    if skipped:
        shown = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
        warnings.warn(f"{source.root}: {len(skipped)} file(s) not used ({shown}{'; ...' if len(skipped) > 3 else ''})",
                      stacklevel=2)
    return series, used, skipped


def read_split(source: DataSource, split: str, class_names: tuple[str, ...], progress: bool | None):
    """Every item of ``split`` read as a series: ``(items, labels, series, used, skipped)`` where ``used``
    indexes the items (and ``labels``) that became ``series``. Raises when none could be used."""
    items = source.items(split)
    labels = class_index(class_names, items, f"{source.root} ({split})")
    series, used, skipped = read_items(source, items, progress, desc=f"reading {split}")
    if not series:
        raise InputError(f"{source.root}: no usable item in the {split!r} split; e.g. {skipped[0][0]}: {skipped[0][1]}")
    return items, labels, series, used, skipped


def load_split(source: DataSource, split: str, preprocess: Preprocess, class_names: tuple[str, ...], *,
               progress: bool | None = None) -> LabelledSlices:
    """Read and preprocess every item of ``split``."""
    from medinfer.runtime import SeriesBatcher

    items, labels, series, used, skipped = read_split(source, split, class_names, progress)
    dtype = "float16" if source.kind == "series" else "float32"
    total = sum(len(s) for s in series)
    x = np.empty((total, preprocess.channels, *preprocess.size), dtype)
    with SeriesBatcher(preprocess, BATCH, dtype=dtype).run(series) as run:
        for batch in run:
            start = batch.index * BATCH
            x[start : start + batch.count] = batch.data[: batch.count]
    group = np.repeat(np.arange(len(series)), [len(s) for s in series])
    return LabelledSlices(x=x, y=labels[used][group], group=group.astype(np.int64), items=[items[i] for i in used],
                          class_names=tuple(class_names), kind=source.kind, skipped=skipped)


def holdout(data: LabelledSlices, fraction: float, seed: int) -> tuple[LabelledSlices, LabelledSlices]:
    """Split off ``fraction`` of the items (stratified by class, a series' slices kept together) as a
    validation set: ``(rest, validation)``. Each class keeps at least one item on either side when it
    has two."""
    rng = np.random.default_rng([seed, 7])
    labels = data.item_labels()
    val = np.zeros(len(data.items), bool)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n = min(max(1, round(fraction * len(members))), len(members) - 1)
        val[members[:n]] = True
    if not val.any():
        raise InputError(f"cannot hold out a validation set from {len(data.items)} item(s): give a 'val' split")
    return data.subset(~val), data.subset(val)
