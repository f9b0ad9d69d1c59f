"""Finding the files of a source: a path or a list of paths -> the regular files to read, each once.

A folder is searched recursively, following symlinks to folders; each folder and each file is visited once
(by device and inode). What cannot be read as a file — symlink loops, dangling links, FIFOs, sockets,
devices, unreadable folders, a second path to a file or folder — is listed in ``skipped`` with its reason,
and never opened.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from medinfer.errors import InputError
from medinfer.io.dicom import file_kind
from medinfer.io.text import printable


def find_files(src) -> tuple[list[Path], list[tuple[str, str]], str]:
    """Input files (each once), what was listed or found but cannot be read as a file, and a label for messages.

    Folders are searched recursively, following symlinks to folders; a folder is searched once (a second
    way to it, or a symlink loop, is listed in ``skipped``), and so is a file (a second path to it is
    "listed twice"). Dangling symlinks, FIFOs, sockets, devices and folders that cannot be read are listed
    in ``skipped`` with their reason; none of them is opened.
    """
    skipped: list[tuple[str, str]] = []
    if isinstance(src, (str, bytes, os.PathLike)):
        root = Path(os.fsdecode(src))  # bytes: a file name as the OS holds it, UTF-8 or not
        try:
            os.stat(root)
        except FileNotFoundError:
            if not os.path.islink(root):
                raise InputError(f"no such file or folder: {printable(str(root))}") from None
            raise InputError(f"no such file or folder: {printable(str(root))} is a dangling symlink (to "
                             f"{printable(_link_target(root))})") from None
        except OSError as exc:
            raise InputError(f"cannot read {printable(str(root))}: {_os_problem(root, exc)}") from None
        except ValueError:  # an embedded NUL byte: no file can have that name
            raise InputError(f"no such file or folder: {printable(str(root))}") from None
        entries, label = [root], str(root)
    elif isinstance(src, Sequence) and not isinstance(src, bytearray):
        entries, label = [], f"{len(src)} listed path(s)"
        for i, item in enumerate(src):
            if not isinstance(item, (str, bytes, os.PathLike)):
                raise InputError(f"load_series: item {i} of the list is a {type(item).__name__}, not a path")
            entries.append(Path(os.fsdecode(item)))
    else:
        raise InputError(f"load_series: expected a folder, a file, a list of files or an (N, H, W) HU array, "
                         f"got {type(src).__name__}")
    walk = _Walk(skipped)
    for entry in entries:
        try:
            info = os.stat(entry)
        except OSError as exc:
            skipped.append((str(entry), _os_problem(entry, exc)))
            continue
        except ValueError:
            skipped.append((printable(str(entry)), "invalid path (embedded NUL byte)"))
            continue
        if stat.S_ISDIR(info.st_mode):
            key = (info.st_dev, info.st_ino)
            if key in walk.folders:
                skipped.append((str(entry), f"listed twice (a folder already searched as {walk.folders[key]})"))
                continue
            found = walk.folder(entry, key)
        elif stat.S_ISREG(info.st_mode):
            found = [(entry, info, os.path.islink(entry))]
        else:
            skipped.append((str(entry), f"not a regular file: {file_kind(info.st_mode)}"))
            continue
        walk.add_files(sorted(found, key=lambda f: f[0]))
    return walk.files, skipped, label


def _link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _os_problem(path: Path, exc: OSError) -> str:
    """Why ``path`` (found or listed) cannot be followed to a file or folder, for ``skipped``."""
    if exc.errno == errno.ELOOP:
        return f"symlink loop (to {_link_target(path)}): it never reaches a file or folder"
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return f"dangling symlink (to {_link_target(path)}, which does not exist)"
        return "no such file"
    return f"cannot read: {exc.strerror or exc}"


class _Walk:
    """The files under the folders of one input, each file and folder once (by device and inode)."""

    def __init__(self, skipped: list[tuple[str, str]]):
        self.skipped = skipped
        self.files: list[Path] = []
        self.file_paths: dict[tuple[int, int], Path] = {}
        self.folders: dict[tuple[int, int], Path] = {}  # searched, or queued to be

    def add_files(self, found: list[tuple[Path, os.stat_result, bool]]) -> None:
        """Adds ``(path, stat, is a symlink)`` in order; of several paths to one file (symlinks, hard links)
        the first that is not a symlink is used, the others are "listed twice"."""
        primary: dict[tuple[int, int], tuple[Path, bool]] = {}
        for path, info, link in found:
            key = (info.st_dev, info.st_ino)
            if key not in self.file_paths and (key not in primary or (primary[key][1] and not link)):
                primary[key] = (path, link)
        for path, info, _ in found:
            key = (info.st_dev, info.st_ino)
            if key in self.file_paths:  # found through an earlier input
                self.skipped.append((str(path), f"listed twice (same file as {self.file_paths[key]})"))
            elif primary[key][0] == path:
                self.files.append(path)
            else:
                self.skipped.append((str(path), f"listed twice (same file as {primary[key][0]})"))
        self.file_paths.update((key, path) for key, (path, _) in primary.items())

    def folder(self, root: Path, root_key: tuple[int, int]) -> list[tuple[Path, os.stat_result, bool]]:
        """Regular files under ``root``. Real subfolders are searched first, then the folders symlinks point
        to, so that a folder reached both ways is listed under its own path."""
        found: list[tuple[Path, os.stat_result, bool]] = []
        self.folders[root_key] = root
        parent: dict[tuple[int, int], tuple[int, int] | None] = {root_key: None}  # the chain each folder was reached by
        pending: list[tuple[Path, tuple[int, int]]] = [(root, root_key)]
        links: deque[tuple[Path, tuple[int, int], tuple[int, int]]] = deque()
        while pending or links:
            if pending:
                folder, key = pending.pop()
            else:
                link, key, via = links.popleft()
                if not self._follow(link, key, via, parent):
                    continue
                folder = link
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                self.skipped.append((str(folder), f"cannot read the folder: {exc.strerror or exc}"))
                continue
            subfolders = []
            for entry in entries:
                path = folder / entry.name
                try:
                    info = entry.stat()  # follows symlinks
                except OSError as exc:
                    self.skipped.append((str(path), _os_problem(path, exc)))
                    continue
                if stat.S_ISREG(info.st_mode):
                    found.append((path, info, entry.is_symlink()))
                elif stat.S_ISDIR(info.st_mode):
                    sub = (info.st_dev, info.st_ino)
                    if entry.is_symlink():
                        links.append((path, sub, key))
                    elif sub in self.folders:  # a bind mount, or a folder also listed on its own
                        if self.folders[sub] != path:
                            self.skipped.append((str(path), f"folder already searched as {self.folders[sub]}"))
                    else:
                        self.folders[sub] = path
                        parent[sub] = key
                        subfolders.append((path, sub))
                else:
                    through = " (through a symlink)" if entry.is_symlink() else ""
                    self.skipped.append((str(path), f"not a regular file: {file_kind(info.st_mode)}{through}"))
            pending.extend(reversed(subfolders))
        return found

    def _follow(self, link: Path, key: tuple[int, int], via: tuple[int, int], parent: dict) -> bool:
        """Whether to search the folder ``link`` points to; if not, says why in ``skipped``."""
        chain: set[tuple[int, int]] = set()
        k: tuple[int, int] | None = via
        while k is not None:
            chain.add(k)
            k = parent.get(k)
        target = os.path.realpath(link)
        here = os.path.realpath(link.parent)
        if key in chain or here == target or here.startswith(target.rstrip(os.sep) + os.sep):
            self.skipped.append((str(link), f"symlink loop: points to {target}, a folder that contains it"))
            return False
        if key in self.folders:
            self.skipped.append((str(link), f"symlink to a folder already searched as {self.folders[key]} (its "
                                            "files are listed under that path)"))
            return False
        self.folders[key] = link
        parent[key] = via
        return True
