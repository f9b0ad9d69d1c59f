"""A series' prediction as a DICOM Comprehensive 3D SR: TID 1500 Measurement Report (highdicom).

The report's measurement group names the algorithm (model name, medinfer version, weights hash), the
predicted class as a qualitative evaluation coded in the private scheme :data:`SCHEME`, and each class's
probability as a measurement; it references every instance classified, and takes the patient and study of the
source series (highdicom copies them from ``evidence``), so a PACS files it with the images.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from highdicom.sr import (
    AlgorithmIdentification,
    CodedConcept,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    SourceImageForMeasurementGroup,
    TrackingIdentifier,
)
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

SCHEME = "99MEDINFER"  # private coding scheme of the classes and of what medinfer reports
PREDICTED_CLASS = CodedConcept("CLASS", SCHEME, "Predicted class")
NO_UNITS = CodedConcept("1", "UCUM", "no units")
SERIES_NUMBER = 9901  # where viewers list the report among the study's series


def probability_concept(class_name: str) -> CodedConcept:
    return CodedConcept(f"P-{class_name}"[:16], SCHEME, f"Probability of {class_name}")


def class_concept(class_name: str) -> CodedConcept:
    return CodedConcept(class_name[:16], SCHEME, class_name)


def build_report(prediction, evidence: Sequence[Dataset], metadata, *, aet: str) -> Comprehensive3DSR:
    """The SR of ``prediction`` (an ok :class:`medinfer.SeriesPrediction`) about the instances ``evidence``
    (their headers: the instances classified), by the model of ``metadata`` (:class:`ModelMetadata`)."""
    algorithm = AlgorithmIdentification(name=metadata.name, version=f"medinfer {metadata.medinfer_version}",
                                        parameters={"weights_sha256": metadata.weights_sha256})
    device = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=aet, manufacturer_name="medinfer", model_name=metadata.name))
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=f"medinfer classification of series "
                                                                          f"{prediction.uid}"),
        algorithm_id=algorithm,
        qualitative_evaluations=[QualitativeEvaluation(PREDICTED_CLASS, class_concept(prediction.label))],
        measurements=[Measurement(name=probability_concept(name), value=float(p), unit=NO_UNITS,
                                  algorithm_id=algorithm)
                      for name, p in prediction.probabilities.items()],
        source_images=[SourceImageForMeasurementGroup(ds.SOPClassUID, ds.SOPInstanceUID) for ds in evidence])
    content = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=[group])
    return Comprehensive3DSR(
        evidence=list(evidence), content=content, series_instance_uid=generate_uid(),
        series_number=SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="medinfer", is_complete=True, series_description=f"medinfer {metadata.name}")


def read_classification(sr: Dataset) -> tuple[str, dict[str, float]]:
    """(class, {class: probability}) back from an SR :func:`build_report` wrote: for tests and for peers."""
    label, probabilities = "", {}

    def walk(items) -> None:
        nonlocal label
        for item in items:
            name = item.ConceptNameCodeSequence[0]
            if name.CodingSchemeDesignator == SCHEME and item.ValueType == "CODE" and name.CodeValue == "CLASS":
                label = item.ConceptCodeSequence[0].CodeMeaning
            elif name.CodingSchemeDesignator == SCHEME and item.ValueType == "NUM":
                cls = name.CodeMeaning.removeprefix("Probability of ")
                probabilities[cls] = float(item.MeasuredValueSequence[0].NumericValue)
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return label, probabilities
