"""Benchmarks of medinfer against its baselines: ``run_suite`` (``medinfer bench``), and the cases and baselines
that the pytest-benchmark files in ``benchmarks/`` import; ``python -m medinfer.bench.aot``, the fused kernels' compile
report."""

from medinfer.bench.suite import Report, run_suite

__all__ = ["Report", "run_suite"]
