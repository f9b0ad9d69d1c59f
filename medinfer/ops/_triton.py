"""The Triton backend's launchers (importing this module imports Triton)."""

from medinfer.kernels.dilated_branches import dilated_branches
from medinfer.kernels.octave_conv import octave_conv

__all__ = ["dilated_branches", "octave_conv"]
