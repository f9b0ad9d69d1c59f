"""Integrity and authenticity of engine files: one digest over everything an engine reads, and an optional
HMAC-SHA256 signature of that digest.

Every medinfer engine file carries a **digest**: the SHA-256 of a canonical JSON record of everything the
engine reads from it — for an ONNX export its graph's hash and every ``medinfer.*`` metadata entry (model,
class names, preprocessing, versions, weights hash, export check); for a checkpoint its whole JSON config
(which holds the weights' SHA-256); for a TensorRT plan its whole ``.plan.json`` record (which holds the
plan's SHA-256). Loading recomputes it and refuses a mismatch. That detects accidents — truncation, a
hand-edited class list or window — but not tampering: whoever edits a file can recompute the digest.

For that, a deployment configures a **key** (``MEDINFER_ENGINE_KEY``: the key itself, at least 16 bytes; or
``MEDINFER_ENGINE_KEY_FILE``: a file holding it) and signs its engines (``medinfer sign ENGINE``, or
:func:`medinfer.sign`): the signature is HMAC-SHA256(key, digest), stored beside the digest. With a key
configured, every engine must carry a valid signature, or it is refused; without one, signatures are not
checked. Files written by medinfer 0.1 carry no digest and are refused until ``medinfer sign --rehash``
records one (no key needed for that).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

from medinfer.errors import EngineError, InputError

KEY_ENV, KEY_FILE_ENV = "MEDINFER_ENGINE_KEY", "MEDINFER_ENGINE_KEY_FILE"
MIN_KEY_BYTES = 16  # HMAC-SHA256 keys shorter than this are guessable


def digest(record: Any) -> str:
    """SHA-256 of ``record`` in canonical JSON (sorted keys, no whitespace, UTF-8)."""
    # NaN/Infinity allowed: a training record may hold them (an epoch that never improved), and the config's
    # own JSON writes them the same way.
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def configured_key(key: bytes | str | None = None) -> bytes | None:
    """The signing key: ``key`` if given, else ``MEDINFER_ENGINE_KEY``, else the contents of the file named by
    ``MEDINFER_ENGINE_KEY_FILE``; ``None`` when none is configured."""
    source = "the key argument"
    if key is None and os.environ.get(KEY_ENV):
        key, source = os.environ[KEY_ENV], KEY_ENV
    elif key is None and os.environ.get(KEY_FILE_ENV):
        path = Path(os.environ[KEY_FILE_ENV])
        try:
            key, source = path.read_bytes().strip(), f"{KEY_FILE_ENV} ({path})"
        except OSError as exc:
            raise InputError(f"{KEY_FILE_ENV}={path}: cannot read the engine key ({exc.strerror})") from None
    if key is None:
        return None
    data = key.encode() if isinstance(key, str) else bytes(key)
    if len(data) < MIN_KEY_BYTES:
        raise InputError(f"the engine key from {source} has {len(data)} bytes; use at least {MIN_KEY_BYTES} "
                         "(e.g. `openssl rand -hex 32`)")
    return data


def key_to_resign(path: Path, signed: bool) -> bytes | None:
    """The configured key, for a record changed in place: refuses to leave a signed record unsigned."""
    key = configured_key()
    if key is None and signed:
        raise EngineError(f"{path}: it is signed, and changing it needs the engine key ({KEY_ENV} or {KEY_FILE_ENV}) "
                          "to sign it again")
    return key


def signature(digest_hex: str, key: bytes) -> str:
    return hmac.new(key, digest_hex.encode(), hashlib.sha256).hexdigest()


def signature_or_none(digest_hex: str, key: bytes | None) -> str | None:
    """The signature with ``key``; ``None`` without one (a rehash that only records the digest)."""
    return None if key is None else signature(digest_hex, key)


def check_digest(path: Path, recorded: Any, computed: str, *, what: str, fix: str, engine: Path) -> None:
    """Refuse ``path`` unless its ``recorded`` digest equals the ``computed`` one. ``what`` names the file
    kind, ``fix`` says how to make a good one, ``engine`` is the file ``medinfer sign`` takes for it."""
    if recorded is None:
        raise EngineError(f"{path}: the {what} carries no digest of its contents (written by medinfer 0.1, or not "
                          f"by medinfer); {fix}, or record one with `medinfer sign --rehash {engine.name}` if you "
                          "trust it as it is")
    if not isinstance(recorded, str) or not hmac.compare_digest(recorded, computed):
        raise EngineError(f"{path}: the {what}'s contents do not match its digest: it was damaged or edited after "
                          f"it was written (class names, preprocessing, graph or weights); {fix}")


def check_signature(path: Path, computed: str, signed: Any, *, what: str, engine: Path) -> None:
    """With an engine key configured, refuse ``path`` unless ``signed`` is the valid signature of its
    ``computed`` digest; without one, accept it. ``engine`` is the file ``medinfer sign`` takes for it."""
    key = configured_key()
    if key is None:
        return
    if signed is None:
        raise EngineError(f"{path}: an engine key is configured ({KEY_ENV} / {KEY_FILE_ENV}) and this {what} is "
                          f"not signed; sign it with `medinfer sign {engine.name}` where the key is kept")
    if not isinstance(signed, str) or not hmac.compare_digest(signed, signature(computed, key)):
        raise EngineError(f"{path}: the {what}'s signature does not match the configured engine key: it was signed "
                          "with another key, or its contents were replaced and re-hashed; do not use it")


def sign(path: str | Path, key: bytes | str | None = None, *, rehash: bool = False) -> Path:
    """Sign an engine file in place — an ONNX export, a checkpoint (its ``.json``, ``.safetensors`` or folder)
    or a TensorRT plan (its ``.plan.json``) — with ``key`` or the configured one. The file is checked first
    (and refused if damaged); ``rehash`` records the digest of a file written before medinfer kept one.
    Without a key, ``rehash`` only records the digest. Returns the file that now holds the signature."""
    signing_key = configured_key(key)
    if signing_key is None and not rehash:
        raise InputError(f"no engine key: pass one, or set {KEY_ENV} or {KEY_FILE_ENV}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such engine file")
    if path.suffix == ".onnx":
        from medinfer.onnx_file import sign_export

        sign_export(path, signing_key, rehash=rehash)
        return path
    if path.suffix in (".plan", ".engine"):
        from medinfer.engine.tensorrt_backend import PlanRecord

        return PlanRecord.sign(path, signing_key, rehash=rehash)
    from medinfer.checkpoint import sign_checkpoint

    return sign_checkpoint(path, signing_key, rehash=rehash)
