"""Archive-scale classification: every series under folders of studies, streamed through an engine, each
result written as it completes, resumable (:mod:`medinfer.archive.run`, :mod:`medinfer.archive.results`).
Scale-out on Ray: :mod:`medinfer.distributed`."""

from medinfer.archive.results import ResultsFile, read_results
from medinfer.archive.run import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, ArchiveRun, ArchiveSummary, predict_archive

__all__ = ["EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE", "ArchiveRun", "ArchiveSummary", "ResultsFile",
           "predict_archive", "read_results"]
