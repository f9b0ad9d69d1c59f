"""The inference runtime around an engine: :class:`SeriesBatcher` turns series into model-input batches and
folds the engine's slice scores back into per-series results (:mod:`medinfer.runtime.batcher`)."""

from medinfer.runtime.batcher import Batch, BatchRun, BatchStats, SeriesBatcher, SeriesScores

__all__ = ["Batch", "BatchRun", "BatchStats", "SeriesBatcher", "SeriesScores"]
