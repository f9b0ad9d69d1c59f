"""What a medinfer model looks like on a Triton server, shared by the server, its clients and the model
repositories: tensor names, the model's name, and where its metadata is found."""

from __future__ import annotations

import re

INPUT = "slices"  # FP32 [-1, C, H, W]: slices preprocessed by the model's Preprocess
OUTPUT = "probabilities"  # FP32 [-1, K]
# A medinfer server also serves the model "medinfer", which answers what it serves: the served model's name and
# medinfer's JSON (model metadata, engine, medinfer version). (PyTriton restricts Triton's repository index.)
METADATA_MODEL = "medinfer"
METADATA_INPUT = "request"  # any UINT8 [1]
METADATA_OUTPUT = "metadata"  # BYTES [1]
METADATA_PARAMETER = "medinfer.metadata"  # the same JSON in a repository's config.pbtxt parameters


def model_name(name: str) -> str:
    """The Triton model name for a medinfer model name (Triton allows letters, digits, ``_``, ``-``, ``.``)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", name) or "model"
    return name if name != METADATA_MODEL else f"{name}_model"
