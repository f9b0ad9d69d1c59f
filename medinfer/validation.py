"""Reduced precision is never silent: an engine below fp32 is checked against its fp32 reference on real series,
and the result travels with the engine file.

:func:`validate` runs an engine and its fp32 reference on the same series and returns a :class:`Validation`:
slice and series label agreement, the largest probability difference, the thresholds, what it ran on.
:func:`store` writes it into the engine's own record — the ``medinfer.validation`` metadata of an ONNX export,
the ``validation`` field of a checkpoint's config or of a plan's ``.plan.json`` — under its key
``backend/precision``, covered by the record's digest (and signature, with a key configured);
:func:`recorded` reads them back. Engines consult them before running reduced precision (:func:`decide`):
``precision="auto"`` takes bf16 or int8 only where its check passed, fp32 otherwise, and says why.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medinfer.errors import EngineError, InputError

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
REQUESTS = ("auto", *PRECISIONS)
#: The defaults of ``medinfer validate-engine``: the issue's ≤ 1 % slice-label disagreement, and a probability
#: difference that would matter at no clinical threshold.
MAX_DIFF, MIN_AGREEMENT = 0.05, 0.99


class ReducedPrecisionWarning(UserWarning):
    """An engine runs below fp32 without a passed check against fp32 on record."""


@dataclass(frozen=True)
class Validation:
    """One engine's check against fp32 (see :func:`validate`)."""

    backend: str
    precision: str
    passed: bool
    series: int
    slices: int
    slice_label_agreement: float
    series_label_agreement: float
    max_abs_diff: float
    p99_abs_diff: float
    mean_abs_diff: float
    max_diff: float  # thresholds the check was held to
    min_agreement: float
    reference: str  # what the fp32 side was
    data: str  # which series
    cpu: str  # what it ran on (reduced-precision numerics differ, slightly, per ISA)
    medinfer: str
    date: str
    # The widest fp32 top-1/top-2 probability margin among slices whose label changed (0 when none did): flips
    # on near-ties (an untrained model's slices) and flips of confident slices read differently.
    flipped_margin_max: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.backend}/{self.precision}"

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        flips = (f"; flipped slices had fp32 margins ≤ {self.flipped_margin_max:.3f}"
                 if self.slice_label_agreement < 1 else "")
        return (f"{self.precision} on {self.backend} checked against fp32 {self.date[:10]} on {self.series} series, "
                f"{self.slices} slices: slice labels agree {self.slice_label_agreement:.2%}, max |Δp| "
                f"{self.max_abs_diff:.1e}{flips} (needs ≥ {self.min_agreement:.0%}, ≤ {self.max_diff}): {verdict}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: Path) -> Validation:
        try:
            return cls(**{f: d[f] for f, spec in cls.__dataclass_fields__.items()
                          if f in d or spec.default is dataclasses.MISSING})
        except (KeyError, TypeError) as exc:
            raise EngineError(f"{where}: its validation record lacks or garbles {exc}") from None


def compare(engine_preds: Sequence, reference_preds: Sequence) -> dict[str, float | int]:
    """Agreement and probability differences between two engines' predictions of the same series."""
    pairs = list(zip(engine_preds, reference_preds, strict=True))
    if not pairs:
        raise InputError("no series to compare the engines on")
    diffs = np.concatenate([np.abs(e.slice_probabilities - r.slice_probabilities).ravel() for e, r in pairs])
    slice_agree = np.concatenate([e.slice_probabilities.argmax(1) == r.slice_probabilities.argmax(1) for e, r in pairs])
    top2 = np.concatenate([np.sort(r.slice_probabilities, axis=1)[:, -2:] for _, r in pairs])
    margins = top2[:, -1] - top2[:, 0]
    return {
        "series": len(pairs),
        "slices": int(slice_agree.size),
        "slice_label_agreement": float(slice_agree.mean()),
        "series_label_agreement": float(np.mean([e.label == r.label for e, r in pairs])),
        "max_abs_diff": float(diffs.max()),
        "mean_abs_diff": float(diffs.mean()),
        "p99_abs_diff": float(np.quantile(diffs, 0.99)),
        "flipped_margin_max": float(margins[~slice_agree].max(initial=0.0)),
    }


def check_reference(engine, reference) -> None:
    """Refuse a reference that is not fp32, or not made from the engine's weights."""
    if reference.precision != "fp32":
        raise InputError(f"{reference.path}: the reference must run fp32, it runs {reference.precision}")
    if engine.metadata.weights_sha256 != reference.metadata.weights_sha256:
        raise InputError(f"{engine.path} was not made from {reference.path}: their weights' SHA-256 differ")


def validate(engine, reference, series: Sequence, *, data: str, max_diff: float = MAX_DIFF,
             min_agreement: float = MIN_AGREEMENT) -> Validation:
    """Run ``engine`` and its fp32 ``reference`` (any engine running fp32 from the same weights) on ``series``."""
    from medinfer import __version__, cpu

    check_reference(engine, reference)
    figures = compare(engine.predict_many(series, errors="raise", progress=False),
                      reference.predict_many(series, errors="raise", progress=False))
    passed = figures["max_abs_diff"] <= max_diff and figures["slice_label_agreement"] >= min_agreement
    return Validation(backend=engine.backend, precision=engine.precision, passed=bool(passed), **figures,
                      max_diff=max_diff, min_agreement=min_agreement,
                      reference=f"{reference.backend} fp32 of {reference.path.name}", data=data, cpu=cpu.summary(),
                      medinfer=__version__,
                      date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


# Records ------------------------------------------------------------------------------------------------------
def parse(text: str | Mapping | None, where: Path) -> dict[str, Validation]:
    """The validations of a record field (JSON text in ONNX metadata, a mapping in JSON records)."""
    if not text:
        return {}
    try:
        doc = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as exc:
        raise EngineError(f"{where}: its validation record is not JSON ({exc})") from None
    if not isinstance(doc, Mapping):
        raise EngineError(f"{where}: its validation record is not a mapping of backend/precision to results")
    return {k: Validation.from_dict(v, where) for k, v in doc.items()}


def recorded(path: str | Path) -> dict[str, Validation]:
    """The validations stored in an engine file's record, by ``backend/precision`` (after its usual checks)."""
    path = Path(path)
    if path.suffix == ".onnx":
        from medinfer.onnx_file import VALIDATION_KEY, read_export

        _, proto, _ = read_export(path)
        return parse({p.key: p.value for p in proto.metadata_props}.get(VALIDATION_KEY), path)
    if path.suffix in (".plan", ".engine"):
        from medinfer.engine.tensorrt_backend import PlanRecord

        return parse(PlanRecord.read(path).validation, path)
    from medinfer.checkpoint import read_config

    return parse(read_config(path).get("validation"), path)


def store(path: str | Path, validation: Validation) -> Path:
    """Write ``validation`` into the engine file's record (replacing one of the same key); returns the file
    written. The record's digest is recomputed and, with an engine key configured, its signature too; a signed
    record is never left unsigned."""
    path = Path(path)
    entries = {k: v.to_dict() for k, v in recorded(path).items()} | {validation.key: validation.to_dict()}
    if path.suffix == ".onnx":
        from medinfer.onnx_file import VALIDATION_KEY, update_export

        update_export(path, {VALIDATION_KEY: json.dumps(entries, sort_keys=True)})
        return path
    if path.suffix in (".plan", ".engine"):
        from medinfer.engine.tensorrt_backend import PlanRecord

        return PlanRecord.update(path, validation=entries)
    from medinfer.checkpoint import update_config

    return update_config(path, {"validation": entries})


# Choosing a precision -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """The precision an engine runs, why, and the check behind it (``None`` at fp32 or when none is on record)."""

    precision: str
    reason: str
    validation: Validation | None = None


def decide(path: Path, backend: str, requested: str, *, stored: str, reduced: Mapping[str, str | None],
           validations: Mapping[str, Validation]) -> Decision:
    """The precision ``backend`` runs ``path`` at.

    ``stored`` is the precision the file holds (``"int8"`` for a quantized export, else ``"fp32"``); ``reduced``
    maps each reduced precision the backend could compute an fp32 file in to ``None`` where it runs natively
    here, else the reason it does not. ``"auto"`` takes a reduced precision only with a passed check on record
    (a file made at a reduced precision — a quantized export, an fp16 plan — has no fp32 to fall back to: a
    failed check refuses it, a missing one warns); an explicit reduced precision runs, with a
    :class:`ReducedPrecisionWarning` when its check is missing or failed."""
    if requested not in REQUESTS:
        raise InputError(f"precision must be one of {', '.join(REQUESTS)}, got {requested!r}")
    hint = (f"check it: medinfer validate-engine {path} --backend {backend} --precision {{p}} --reference "
            "FP32_ENGINE --data SERIES")
    if stored != "fp32":  # chosen when the file was made: unchecked it runs with a warning, failed only if asked
        if requested not in ("auto", stored):
            raise InputError(f"{path}: this file holds a {stored} engine only; for {requested}, use the fp32 export "
                             "it was made from")
        check = validations.get(f"{backend}/{stored}")
        return _reduced(path, backend, stored, check, requested == "auto" and check is not None,
                        hint.format(p=stored))
    if requested == "fp32":
        return Decision("fp32", "fp32 as requested")
    if requested == "int8":
        raise InputError(f"{path}: int8 runs from a quantized export: medinfer quantize {path} --calibration "
                         f"SERIES... -o {path.with_suffix('')}-int8.onnx")
    if requested != "auto":
        if requested not in reduced:
            raise InputError(f"{path}: the {backend} backend has no {requested} path (it offers "
                             f"{', '.join(['fp32', *reduced])})")
        if reduced[requested] is not None:
            raise InputError(f"{path}: {requested} on {backend} cannot run here: {reduced[requested]}")
        return _reduced(path, backend, requested, validations.get(f"{backend}/{requested}"), False,
                        hint.format(p=requested))
    notes = []
    for precision, unavailable in reduced.items():
        check = validations.get(f"{backend}/{precision}")
        if unavailable is not None:
            notes.append(f"{precision}: {unavailable}")
        elif check is None:
            notes.append(f"{precision} runs natively here but has no check on record ({hint.format(p=precision)})")
        elif not check.passed:
            notes.append(f"{precision} failed its check ({check.summary()})")
        else:
            return Decision(precision, f"auto: {check.summary()}", check)
    return Decision("fp32", "auto: fp32" + (" — " + "; ".join(notes) if notes else ""))


def _reduced(path: Path, backend: str, precision: str, check: Validation | None, auto: bool, hint: str) -> Decision:
    if check is not None and check.passed:
        return Decision(precision, check.summary(), check)
    problem = "has no check against fp32 on record" if check is None else f"failed its check: {check.summary()}"
    if auto:
        raise EngineError(f"{path}: {precision} on {backend} {problem}; {hint} (or ask for precision={precision!r} "
                          "to run it anyway)")
    warnings.warn(f"{path}: running {precision} on {backend}, which {problem}; {hint}", ReducedPrecisionWarning,
                  stacklevel=4)
    return Decision(precision, f"{precision} as requested, UNVALIDATED: {problem}", check)
