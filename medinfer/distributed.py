"""An archive run scaled out on a Ray cluster (Ray Data, streaming): ``medinfer predict --ray``.

::

    driver: units(roots) --> from_items (one row per study folder, JSON)
    Ray tasks:  flat_map(discover)   each unit's series; resume filter; selection rules (excluded -> records)
    Ray actors: map_batches(Classifier)  one Engine per actor; a few series per batch through
                                         medinfer.archive.run.classify (the C++ batcher packs their slices)
    driver: iter_rows() --> ArchiveRun.accept(record): results file, summary, progress, as records arrive

Discovery (the headers), selection and the resume filter run on the cluster too: the driver holds the list
of units (top-level folders) and the results, never the archive's file lists. Records are the same as those
of the single-process :func:`medinfer.archive.predict_archive` (same keys, statuses, labels, probabilities;
timings differ), written in the order they arrive.

**Cluster.** ``address`` (or ``RAY_ADDRESS``) joins a running cluster; without either, Ray's own rule
applies (the cluster last started on this machine with ``ray start``, else a new local one, shut down at the
end). If Ray is already initialised in this process (a notebook, a test), it is used as it is and left
running. Every node needs medinfer (and its extension) installed, and must see the roots and the engine file
at the same paths — a shared file system; relative roots are resolved in each worker's working directory,
which is the driver's on a local cluster, so give absolute roots on a multi-node cluster.

**Workers.** ``workers`` actors (default: one per GPU of the cluster when the device is CUDA, else one per two
CPUs), each holding one :class:`~medinfer.Engine` opened from the engine file in its constructor: one GPU
each (``num_gpus=1``), or one CPU each with ONNX Runtime using the cluster's CPUs divided among the actors
(capped to the node's cores). Each actor receives batches of :data:`SERIES_PER_BATCH` series. Discovery runs
as Ray tasks reserving no CPU (mostly waiting on file reads), at most :func:`discovery_tasks` at once, so that
it cannot be starved by actors holding every CPU; Ray Data's backpressure keeps it from running far ahead.

**Failures.** A series that cannot be loaded or classified becomes an ``error`` record, as in a local run, and
an unexpected failure of a whole batch turns each of its series into one; the others are classified. An actor
that dies (a crash in native code, killed for memory) is restarted by Ray and its batch retried, up to
:data:`TASK_RETRIES` times; a batch that still kills its actor stops the run with Ray's error. What was
recorded until then stays in the results file, and ``--resume`` continues from it (a series that crashes
the engine every time will stop it again: set it aside with a ``--exclude`` rule). A discovery failure (an
unreadable folder) stops the run as it does a local one, with the same error.

**What a user sees.** The run's own progress bar (``progress``: True, False, or None for "when stderr is a
terminal") and summary, as for a local run. Ray's progress bars, its Ray Data INFO/WARNING lines and the
workers' output forwarded to the driver appear only with ``progress=True``; Ray's errors always do (Ray's
logs, including Ray Data's, stay in ``/tmp/ray/session_*/logs``). Ray itself may print a line or two of its
own when it starts (authentication, a warning about actor restarts) that medinfer cannot turn off. The
summary's seconds (and slices/s) count from the call, so they include starting Ray and the actors (5-15 s).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from medinfer.errors import InputError, MedinferError

# Series per actor batch: enough for the batcher to pack slices across series, few enough that a batch retried
# after a crash repeats little work, and that results arrive steadily.
SERIES_PER_BATCH = 8
# Retries of a batch whose actor died (Ray Data's default is to retry forever, which would hang a run on a series
# that crashes the engine each time).
TASK_RETRIES = 3
# Units (top-level folders) per input block: a discovery task's rows reach the actors when it ends, so blocks are
# small (and at least 4 per actor, while there are units enough), yet not so many that scheduling dominates on
# archives of many thousands of studies.
UNITS_PER_BLOCK = 4
MAX_BLOCKS = 20_000


def discovery_tasks(workers: int) -> int:
    """How many discovery tasks may run at once for ``workers`` actors."""
    return max(2, 2 * workers)


def predict_archive(roots: Sequence[str | os.PathLike], engine, *, output: str | os.PathLike | None = None,
                    selection=None, resume: bool = False, slices: bool = False, aggregate: str = "mean",
                    k: int | None = None, acquisition: int | str | None = None, backend: str | None = None,
                    device: str | None = None, precision: str | None = None, address: str | None = None,
                    workers: int | None = None, progress: bool | None = None,
                    on_record: Callable[[int, dict], None] | None = None) -> tuple[Any, dict]:
    """Classify every series under ``roots`` on a Ray cluster; see the module docstring.

    ``engine``: an engine file (or an :class:`~medinfer.Engine`, whose file, backend and device are used). It
    is opened once here, which checks it before any worker starts and gives the engine info; the device is
    resolved here (:func:`medinfer.engine.base.resolve`) and every actor uses the same. The other arguments
    are those of :func:`medinfer.archive.predict_archive`. Returns ``(summary, engine_info)``, engine_info
    ``Engine.describe()`` (backend, device, precision and why, model)."""
    from medinfer.archive.run import ArchiveRun
    from medinfer.engine import Engine
    from medinfer.engine.base import resolve
    from medinfer.io.catalog import units as find_units
    from medinfer.runtime.batcher import check_aggregate

    ray = _import_ray()
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InputError(f"--workers must be a whole number of at least 1, got {workers!r}")
    check_aggregate(aggregate, k)
    given = engine if isinstance(engine, Engine) else None
    path = Path(os.path.abspath(given.path if given is not None else os.fspath(engine)))
    if given is not None:
        backend, device, precision = backend or given.backend, device or given.device, precision or given.precision
    backend, device = resolve(path, backend, device)
    opened = given if given is not None else Engine(path, backend=backend, device=device,
                                                    **({"precision": precision} if precision else {}))
    info = opened.describe()
    del opened  # the driver classifies nothing: the actors open their own

    run = ArchiveRun(output=output, selection=selection, resume=resume, slices=slices, progress=progress,
                     on_record=on_record)
    started = False
    try:
        found = _unique(find_units(roots))
        if found:
            started = _connect(ray, address, progress)
            with _data_context(ray, progress):
                for record in _records(ray, found, run, path=str(path), backend=backend, device=device,
                                       precision=precision, workers=workers, aggregate=aggregate, k=k,
                                       acquisition=acquisition):
                    run.accept(record)
    except Exception as exc:
        replacement = _reason(ray, exc, run)
        if replacement is None:
            raise
        raise replacement from exc
    finally:
        summary = run.close()
        if started:
            ray.shutdown()
    return summary, info


# The pipeline ------------------------------------------------------------------------------------------------
def _records(ray, found, run, *, path: str, backend: str, device: str, precision: str | None, workers: int | None,
             aggregate: str, k: int | None, acquisition: int | str | None) -> Iterator[dict]:
    resources = ray.cluster_resources()
    cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    if device == "cuda" and gpus < 1:
        raise InputError("the engine is to run on cuda, but the Ray cluster has no GPU (pass --device cpu)")
    if workers is None:
        workers = gpus if device == "cuda" else max(1, cpus // 2)
    options: dict[str, Any] = {"precision": precision} if precision else {}
    if backend in ("onnxruntime", "openvino") and device == "cpu":
        options["threads"] = max(1, cpus // workers)
    done = run.done_keys
    blocks = min(len(found), MAX_BLOCKS, max(4 * workers, -(-len(found) // UNITS_PER_BLOCK)))
    ds = ray.data.from_items([{"unit": json.dumps(u.to_dict(), ensure_ascii=True)} for u in found],
                             override_num_blocks=blocks)
    ds = ds.flat_map(discover_rows, num_cpus=0,
                     fn_kwargs={"selection": run.selection, "tags": run.tags,
                                "done": ray.put(done) if done else frozenset()},
                     **_compute(ray, "tasks", discovery_tasks(workers)))
    per_actor = {"num_gpus": 1} if device == "cuda" else {"num_cpus": 1}
    with warnings.catch_warnings():  # the retry settings are deprecated remote args (see _retries)
        warnings.filterwarnings("ignore", message=r".*ray_remote_args.* is deprecated")
        ds = ds.map_batches(Classifier, batch_size=SERIES_PER_BATCH, batch_format="numpy",
                            fn_constructor_kwargs={"path": path, "backend": backend, "device": device,
                                                   "options": options, "aggregate": aggregate, "k": k,
                                                   "acquisition": acquisition},
                            **per_actor, **_compute(ray, "actors", workers), **_retries(ray))
    for row in ds.iter_rows():
        yield json.loads(row["record"])


_DONE_CACHE: dict[str, frozenset] = {}  # per worker process: the resume keys, fetched once


def discover_rows(row: dict, *, selection, tags: Sequence[str], done) -> list[dict]:
    """Ray Data ``flat_map``: the series of one unit as rows ``{"kind", "json"}``: ``"ref"`` for a series to
    classify (its ``to_dict``), ``"record"`` for one the selection rules set aside; series in ``done`` (the
    results file being continued: a set of keys, or an ObjectRef of one) are left out."""
    from medinfer.archive.results import excluded_record
    from medinfer.io.catalog import SeriesRef, Unit, discover_unit
    from medinfer.io.text import printable

    if not isinstance(done, (set, frozenset)):
        key = done.hex()
        if key not in _DONE_CACHE:
            import ray

            _DONE_CACHE.clear()
            _DONE_CACHE[key] = ray.get(done)
        done = _DONE_CACHE[key]
    out = []
    for ref in discover_unit(Unit.from_dict(json.loads(row["unit"])), tags=tags):
        if ref.key in done:
            continue
        reason = selection.verdict(ref.attributes) if isinstance(ref, SeriesRef) else None
        if reason is not None and isinstance(ref, SeriesRef):
            out.append({"kind": "record", "json": json.dumps(
                excluded_record(printable(ref.uid), ref.source, reason, ref.description), ensure_ascii=True)})
        else:
            out.append({"kind": "ref", "json": json.dumps(ref.to_dict(), ensure_ascii=True)})
    return out


class Classifier:
    """Ray Data actor: one :class:`~medinfer.Engine`, opened once, classifying a batch of series at a time
    (``classify`` over the batch's refs: loader threads, the C++ batcher packing their slices across series).
    Rows already holding a record (set aside by the rules) pass through. Output rows: ``{"record": JSON}``."""

    def __init__(self, *, path: str, backend: str, device: str, options: dict, aggregate: str, k: int | None,
                 acquisition: int | str | None):
        from medinfer.engine import Engine
        from medinfer.info import usable_cores

        if "threads" in options:
            options = {**options, "threads": min(options["threads"], usable_cores())}
        self.engine = Engine(path, backend=backend, device=device, **options)
        self.aggregate, self.k, self.acquisition = aggregate, k, acquisition

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        from medinfer.io.catalog import from_dict

        records = [str(j) for kind, j in zip(batch["kind"], batch["json"], strict=True) if kind == "record"]
        refs = [from_dict(json.loads(str(j))) for kind, j in zip(batch["kind"], batch["json"], strict=True)
                if kind == "ref"]
        records += [json.dumps(r, ensure_ascii=True) for r in self.classify(refs)]
        return {"record": np.array(records, dtype=object)}

    def classify(self, refs: list) -> Iterator[dict]:
        """A record for every ref: ``classify``'s, or an error record for those it had not reached when it
        failed as a whole."""
        from medinfer.archive.run import classify
        from medinfer.io.text import printable

        left = {ref.key: ref for ref in refs}
        try:
            for record in classify(self.engine, refs, aggregate=self.aggregate, k=self.k,
                                   acquisition=self.acquisition):
                left.pop((record["uid"], record["source"]), None)
                yield record
        except Exception as exc:  # a series' own failures are records already; this is the batch's
            why = f"classifying its batch failed: {type(exc).__name__}: {printable(str(exc))}"
            for ref in left.values():
                yield self.error_record(ref, why)

    def error_record(self, ref, why: str) -> dict:
        import numpy as np

        from medinfer.archive.results import prediction_record
        from medinfer.engine import SeriesPrediction
        from medinfer.io.text import printable

        prediction = SeriesPrediction(
            label="", probabilities={}, slice_probabilities=np.zeros((0, len(self.engine.class_names))),
            skipped=list(ref.skipped), timings={"load": 0.0, "preprocess": 0.0, "infer": 0.0, "total": 0.0},
            uid=printable(ref.uid), source=ref.source, aggregate=self.aggregate, status="error", error=why)
        return prediction_record(prediction, slices=True, description=getattr(ref, "description", ""))


# Ray: import, connection, quiet, compatibility ----------------------------------------------------------------
def _import_ray():
    from medinfer.extras import PROVIDERS, MissingExtra

    try:
        import ray
        import ray.data  # noqa: F401  (needs pyarrow)
    except ImportError as exc:
        extra, what = PROVIDERS["ray"]
        raise MissingExtra(f"this needs {what}, which is not installed: pip install 'medinfer[{extra}]' "
                           f"({exc})") from exc
    return ray


def _connect(ray, address: str | None, progress: bool | None) -> bool:
    """Joins (or starts) the cluster unless Ray is initialised already; whether it was started here."""
    if ray.is_initialized():
        return False
    ray.init(address=address, log_to_driver=progress is True, logging_level=logging.WARNING)
    return True


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextlib.contextmanager
def _data_context(ray, progress: bool | None):
    """Ray Data set for this run, restored after: its progress bars, console INFO/WARNING lines and Python
    warnings off unless ``progress`` is True, and a worker's exception raised as itself (a discovery error
    reads as in a local run, not as Ray Data's "UDF failed to process a data block")."""
    context = ray.data.DataContext.get_current()
    saved = {name: getattr(context, name, None) for name in ("enable_progress_bars", "raise_original_map_exception")}
    context.enable_progress_bars = progress is True
    context.raise_original_map_exception = True
    handlers = [] if progress is True else [h for h in logging.getLogger("ray.data").handlers
                                            if not isinstance(h, logging.FileHandler)
                                            and type(h).__name__ != "SessionFileHandler"]
    quiet = _BelowError()
    for h in handlers:
        h.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            if progress is not True:  # hints such as "fewer inputs than the concurrency limit"
                warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.data")
            yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        for h in handlers:
            h.removeFilter(quiet)


def _ray_version(ray) -> tuple[int, int]:
    try:
        major, minor = ray.__version__.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return (99, 0)


def _compute(ray, kind: str, size: int) -> dict:
    """A fixed-size actor pool or a cap on concurrent tasks, as this Ray spells it: ``compute=`` since 2.51,
    ``concurrency=`` before."""
    if _ray_version(ray) < (2, 51):
        return {"concurrency": size}
    if kind == "actors":
        return {"compute": ray.data.ActorPoolStrategy(size=size)}
    return {"compute": ray.data.TaskPoolStrategy(size=size)}


def _retries(ray) -> dict:
    """Bounded retries of a batch whose actor died (actors themselves are restarted as often as needed), as Ray
    remote args while this Ray's ``map_batches`` takes them (deprecated in 2.60; without them Ray Data retries
    forever)."""
    import inspect

    parameters = inspect.signature(ray.data.Dataset.map_batches).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in parameters):
        return {}
    return {"max_restarts": -1, "max_task_retries": TASK_RETRIES}


def _unique(found: list) -> list:
    """The units without repeats (a root listed twice): each is discovered once."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for u in found:
        if u.paths not in seen:
            seen.add(u.paths)
            out.append(u)
    return out


def _reason(ray, exc: Exception, run) -> Exception | None:
    """What a failed run raises instead of ``exc`` (None: ``exc`` itself): the medinfer error a worker raised
    (a discovery failure, as in a local run), or a :class:`RunStopped` naming Ray's error and where the
    recorded series are."""
    if not isinstance(exc, ray.exceptions.RayError):
        return None  # the driver's own (the results file, a bad argument): as it is
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, MedinferError) and not isinstance(e, ray.exceptions.RayError):
            return e
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    recorded = sum(run.summary.counts.values())
    where = (f"; the {recorded} series recorded are in {run.summary.output}: --resume continues"
             if run.summary.output else "")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return RunStopped(f"the Ray run stopped: {type(exc).__name__}: {first}{where}")


class RunStopped(MedinferError):
    """The Ray run could not go on (an actor that kept dying, a lost cluster)."""
