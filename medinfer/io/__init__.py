"""Series input: DICOM folders and files, image folders and HU arrays -> :class:`Series`.

``load_series`` / ``load_study`` (:mod:`medinfer.io.load`) are the entry points, also available as
``medinfer.load_series`` and ``medinfer.load_study``. One module per concept: ``series`` (the Series
dataclass), ``discover`` (finding a source's files), ``budget`` (the memory a series may take), ``dicom``
(reading one DICOM file), ``assemble`` (ordering frames into a series), ``acquisitions`` (picking one
acquisition/reconstruction of a series), ``geometry`` (when two frames share a position or orientation),
``images`` (PNG/JPG folders), ``text`` (printable, JSON-safe paths and messages).
"""

from medinfer.io.load import load_series, load_study
from medinfer.io.series import Series

__all__ = ["Series", "load_series", "load_study"]
