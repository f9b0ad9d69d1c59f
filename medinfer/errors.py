"""The errors medinfer raises on purpose. Anything else escaping the package is a bug.

Input errors name the file (or argument) and the problem; engine errors say how to fix the engine (rebuild,
re-export). Each subclasses the builtin a caller would naturally catch, so ``except ValueError`` keeps
working for bad input.
"""

from __future__ import annotations


class MedinferError(Exception):
    """Base of every error medinfer raises deliberately."""


class ExtensionUnavailable(MedinferError, ImportError):
    """The compiled extension ``medinfer._C`` (or its CUDA part) is needed and cannot be loaded; says why."""


class InputError(MedinferError, ValueError):
    """User input that cannot be used: a bad file, array, argument or configuration."""


class SeriesError(InputError):
    """A CT series cannot be assembled: no usable slice, several series where one was expected, ...

    ``skipped`` lists ``(path, reason)`` for every input that was set aside on the way."""

    def __init__(self, message: str, skipped: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.skipped = list(skipped or [])


class MultipleSeriesError(SeriesError):
    """A folder holds several series where one was expected; ``series`` lists each as a dict with ``uid``,
    ``description`` and ``slices``. Pass one of the uids as ``series_uid``, or load them all with
    ``load_study``."""

    def __init__(self, where: str, series: list[dict]):
        listing = "\n".join(f"  {s['uid']}  {s['description'] or '(no description)'!r}  {s['slices']} slice(s)"
                            for s in series)
        super().__init__(f"{where} holds {len(series)} series; pass series_uid= (`medinfer predict --series-uid`) "
                         f"to pick one, or use load_study() to load them all:\n{listing}")
        self.series = series


class SeriesTooLargeError(SeriesError):
    """A series (or all of a study's series together) would take more memory once decoded than the limit
    allows: ``load_series(..., max_bytes=)``, the environment variable ``MEDINFER_MAX_SERIES_BYTES``, or by
    default half of the memory available (:func:`medinfer.io.budget.series_memory_limit`). Raised from the
    headers, before pixels are decoded. ``estimate`` and ``limit`` are in bytes."""

    def __init__(self, message: str, *, estimate: int, limit: float, skipped: list[tuple[str, str]] | None = None):
        super().__init__(message, skipped=skipped)
        self.estimate = estimate
        self.limit = limit


class EngineError(MedinferError, RuntimeError):
    """An engine or checkpoint file is damaged, foreign, or built for another machine or version."""
