"""``medinfer listen``: a DICOM Storage SCP that classifies each series it receives and answers with a DICOM
Structured Report.

Instances arriving by C-STORE are stored at once under ``OUT/incoming/<SeriesInstanceUID>/`` (atomically,
so a restart loses nothing and resumes the series not classified yet). A series is classified once no
instance of it arrived for ``idle_seconds``, through the engine's streaming pipeline and ``medinfer
predict``'s selection rules; the result goes to ``OUT/<SeriesInstanceUID>.json`` and, when classified, a
TID 1500 Comprehensive 3D SR to ``OUT/<SeriesInstanceUID>.sr.dcm``, optionally forwarded to a PACS.

::

    with Listener(engine, "out/", port=11112, idle_seconds=10, forward="pacs:104:PACS"):
        ...  # serves until the block ends
"""

from medinfer.listen.service import Listener

__all__ = ["Listener"]
