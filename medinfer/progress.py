"""Progress bars: the one meaning of every ``progress=`` argument in medinfer."""

from __future__ import annotations

from typing import Any


def progress_bar(iterable: Any = None, *, progress: bool | None = None, **kwargs: Any):
    """A tqdm bar. ``progress``: True shows it, False hides it, None shows it when stderr is a terminal."""
    from tqdm import tqdm

    return tqdm(iterable, disable=None if progress is None else not progress, **kwargs)


class StreamProgress:
    """One bar for a stream of series: done of total with the ETA, and failed, left and slices/s beside it.
    ``total`` may grow while the run goes (an archive being discovered): :meth:`add`."""

    def __init__(self, total: int | None = None, *, progress: bool | None = None, desc: str = "series"):
        import time

        self._clock = time.perf_counter
        self._start = self._clock()
        self._bar = progress_bar(total=total, desc=desc, unit="series", progress=progress, leave=False)
        self.done = self.failed = self.slices = 0

    def add(self, n: int = 1) -> None:
        """``n`` more series to do."""
        self._bar.total = (self._bar.total or 0) + n
        self._bar.refresh()

    def update(self, status: str, slices: int = 0) -> None:
        """One more series finished, with ``status`` (``"ok"`` or not) and ``slices`` scored."""
        self.done += 1
        self.failed += status != "ok"
        self.slices += slices
        rate = self.slices / max(self._clock() - self._start, 1e-9)
        left = f", left {self._bar.total - self.done}" if self._bar.total else ""
        self._bar.set_postfix_str(f"failed {self.failed}{left}, {rate:.1f} slices/s", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> StreamProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
