"""Series input: DICOM folders and files, image folders and HU arrays -> :class:`Series`.

``load_series`` / ``load_study`` (:mod:`medinfer.io.load`) are the entry points, also available as
``medinfer.load_series`` and ``medinfer.load_study``. One module per concept: ``series`` (the Series
dataclass), ``dicom`` (reading one DICOM file), ``assemble`` (ordering frames into a series), ``images``
(PNG/JPG folders).
"""

from medinfer.io.load import load_series, load_study
from medinfer.io.series import Series

__all__ = ["Series", "load_series", "load_study"]
