"""Progress bars: the one meaning of every ``progress=`` argument in medinfer."""

from __future__ import annotations

from typing import Any


def progress_bar(iterable: Any = None, *, progress: bool | None = None, **kwargs: Any):
    """A tqdm bar. ``progress``: True shows it, False hides it, None shows it when stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(iterable, disable=None if progress is None else not progress, **kwargs)
