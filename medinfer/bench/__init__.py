"""Benchmarks of medinfer against its baselines: ``run_suite`` (``medinfer bench``), and the cases and baselines
that the pytest-benchmark files in ``benchmarks/`` import."""

from medinfer.bench.suite import Report, run_suite

__all__ = ["Report", "run_suite"]
