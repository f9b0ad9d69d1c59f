"""Comparing where frames lie: the tolerance within which two frames share a position, and the rounding
that keeps scanner float noise from splitting frames of one orientation or pixel spacing into groups."""

from __future__ import annotations

# Two frames closer than this along the slice normal are at the same position (duplicates; touching ranges).
DUPLICATE_TOLERANCE_MM = 1e-3


def rounded(values, digits: int = 4):
    """A vector (orientation, pixel spacing) as a hashable key that float noise does not split; None stays None."""
    return None if values is None else tuple(round(float(v), digits) + 0.0 for v in values)
