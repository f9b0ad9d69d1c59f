"""The errors medinfer raises on purpose. Anything else escaping the package is a bug.

Input errors name the file (or argument) and the problem; engine errors say how to fix the engine (rebuild,
re-export). Each subclasses the builtin a caller would naturally catch, so ``except ValueError`` keeps
working for bad input.
"""

from __future__ import annotations


class MedinferError(Exception):
    """Base of every error medinfer raises deliberately."""


class InputError(MedinferError, ValueError):
    """User input that cannot be used: a bad file, array, argument or configuration."""


class SeriesError(InputError):
    """A CT series cannot be assembled: no usable slice, several series where one was expected, ..."""


class EngineError(MedinferError, RuntimeError):
    """An engine or checkpoint file is damaged, foreign, or built for another machine or version."""
