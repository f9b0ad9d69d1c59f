"""Labelled data sets on disk: what is found where, before anything is read.

Two layouts and one alternative:

* **ROI classification** (the DDC-ResNet paper): ``DATA/<split>/<class>/<file>``, one image per file —
  DICOM, 16-bit PNG/TIFF (HU + 1024), 8-bit images (display values of the model's window) or ``.npy``
  (a 2-D HU array, read without pickle).
* **Series classification** (the Res-Dense Net paper, MIA-COV19D): ``DATA/<split>/<class>/<series>/``
  with the series' slices (JPG/PNG numbered in anatomical order, or DICOM files) inside.
* **CSV** (either kind): a file with the columns ``path`` and ``label`` and optionally ``split``; relative
  paths are relative to the CSV's folder. A path to a folder is a series, to a file an ROI.

Splits are ``train``, ``val`` and ``test``. Anything in a data folder that fits neither layout (a file
beside the class folders, an unknown split name) is listed in ``skipped`` with the reason, never
dropped in silence; a data set that mixes ROIs and series is refused.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from medinfer.errors import InputError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Item:
    path: Path  # an ROI file, or a series folder
    label: str


@dataclass(kw_only=True)
class DataSource:
    """A labelled data set found on disk: items per split, and what was set aside while looking."""

    root: Path  # the folder, or the CSV file
    kind: str  # "roi" or "series"
    splits: dict[str, list[Item]]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def has_splits(self) -> bool:
        """False for a CSV without a split column (its rows, under "all", serve any split asked for)."""
        return "all" not in self.splits

    @property
    def labels(self) -> list[str]:
        """Every class label in the data set, sorted."""
        return sorted({it.label for items in self.splits.values() for it in items})

    def items(self, split: str) -> list[Item]:
        if not self.has_splits:
            return list(self.splits["all"])
        if split not in self.splits or not self.splits[split]:
            found = ", ".join(f"{k} ({len(v)})" for k, v in self.splits.items() if v) or "none"
            raise InputError(f"{self.root}: no {split!r} split (splits found: {found})")
        return list(self.splits[split])

    def has(self, split: str) -> bool:
        return self.has_splits and bool(self.splits.get(split))


def discover(data: str | Path) -> DataSource:
    """Find the labelled items of a data folder or CSV file (see the module docstring)."""
    root = Path(data)
    if not root.exists():
        raise InputError(f"no such data set: {root}")
    if root.is_file():
        return _from_csv(root)
    return _from_folder(root)


def _kind_of(items: list[Item], where: Path) -> str:
    dirs = [it for it in items if it.path.is_dir()]
    files = [it for it in items if not it.path.is_dir()]
    if dirs and files:
        raise InputError(f"{where}: mixes series folders (e.g. {dirs[0].path}) and single-image files (e.g. "
                         f"{files[0].path}); a data set is either ROI files or series folders")
    return "series" if dirs else "roi"


def _from_folder(root: Path) -> DataSource:
    splits: dict[str, list[Item]] = {}
    skipped: list[tuple[str, str]] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            if entry.suffix.lower() not in (".csv", ".json", ".md", ".txt"):  # manifests and notes beside the splits
                skipped.append((str(entry), f"not a split folder (expected {', '.join(SPLITS)})"))
            continue
        if entry.name not in SPLITS:
            skipped.append((str(entry), f"unknown split {entry.name!r} (expected {', '.join(SPLITS)})"))
            continue
        items = []
        for cls in sorted(entry.iterdir()):
            if cls.name.startswith("."):
                continue
            if not cls.is_dir():
                skipped.append((str(cls), "a file beside the class folders (expected <split>/<class>/...)"))
                continue
            members = [p for p in sorted(cls.iterdir()) if not p.name.startswith(".")]
            if not members:
                skipped.append((str(cls), "empty class folder"))
            items.extend(Item(p, cls.name) for p in members)
        splits[entry.name] = items
    if not any(splits.values()):
        raise InputError(f"{root}: no labelled data found; expected {'/'.join(SPLITS)} folders holding one folder "
                         "per class (DATA/train/<class>/...), or pass a CSV with path,label columns")
    return DataSource(root=root, kind=_kind_of([it for v in splits.values() for it in v], root), splits=splits,
                      skipped=skipped)


def _from_csv(path: Path) -> DataSource:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: unreadable CSV ({exc})") from None
    columns = set(rows[0]) if rows else set()
    if not {"path", "label"} <= columns:
        raise InputError(f"{path}: a data set CSV needs the columns path and label (optionally split); found "
                         f"{', '.join(sorted(c for c in columns if c)) or 'no rows'}")
    has_splits = "split" in columns
    splits: dict[str, list[Item]] = {s: [] for s in SPLITS} if has_splits else {"all": []}
    skipped: list[tuple[str, str]] = []
    for line, row in enumerate(rows, start=2):
        where = f"{path}:{line}"
        p, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not p or not label:
            skipped.append((where, "empty path or label"))
            continue
        item_path = Path(p) if Path(p).is_absolute() else path.parent / p
        if not item_path.exists():
            skipped.append((str(item_path), f"listed in {where} but does not exist"))
            continue
        split = (row.get("split") or "").strip() if has_splits else "all"
        if split not in splits:
            skipped.append((where, f"unknown split {split!r} (expected {', '.join(SPLITS)})"))
            continue
        splits[split].append(Item(item_path, label))
    if not any(splits.values()):
        raise InputError(f"{path}: no usable row ({len(skipped)} skipped" +
                         (f", e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ")"))
    return DataSource(root=path, kind=_kind_of([it for v in splits.values() for it in v], path), splits=splits,
                      skipped=skipped)
