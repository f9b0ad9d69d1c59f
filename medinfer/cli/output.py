"""Output paths of the commands, checked before any work is done: a long run must not end in an
``IsADirectoryError`` after its results were computed."""

from __future__ import annotations

import os
from pathlib import Path

from medinfer.errors import InputError


def writable_file(value: str, option: str) -> Path:
    """``value`` as a file this process can create or replace, or an InputError naming ``option``."""
    path = Path(value)
    if value.endswith(("/", os.sep)) or path.is_dir():
        raise InputError(f"{option} {value}: is a directory; give a file name (e.g. {path / 'predictions.json'})")
    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"{option} {value}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"{option} {value}: not writable by this user")
    return path
