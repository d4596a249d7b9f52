"""IHE IOCM rejection notes for tests: a Key Object Selection Document (PS3.3 A.35.4) whose
title is a rejection code of PS3.16 CID 7010, referencing instances by study, series, class
and UID."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from archive_node.rules.rejection import KOS_SOP_CLASS, REJECTION_CODES


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def rejection_kos(
    references: Sequence[tuple[str, str, str, str]],
    *,
    code: str = "113001",
    scheme: str = "DCM",
    patient_id: str = "PID001",
    issuer: str = "",
    patient_name: str = "TEST^PATIENT",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    with_evidence: bool = True,
) -> Dataset:
    """A KOS titled `code` referencing (study, series, SOP class, SOP instance) tuples, in
    the first reference's study unless `study_uid` says otherwise."""
    ds = Dataset()
    sop_uid = sop_uid or generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = KOS_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = KOS_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    if issuer:
        ds.IssuerOfPatientID = issuer
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = study_uid or (references[0][0] if references else generate_uid())
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyDate, ds.StudyTime = "20240115", "101500"
    ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = "", "1", ""
    ds.Modality = "KO"
    ds.SeriesNumber, ds.InstanceNumber = 99, 1
    ds.ContentDate, ds.ContentTime = "20240116", "090000"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = DicomSequence(
        [_code(code, scheme, REJECTION_CODES.get(code, "Of Interest"))]
    )
    template = Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "2010"
    ds.ContentTemplateSequence = DicomSequence([template])
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence()
    content = []
    for _, _, class_uid, instance_uid in references:
        image = Dataset()
        image.RelationshipType, image.ValueType = "CONTAINS", "IMAGE"
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = class_uid, instance_uid
        image.ReferencedSOPSequence = DicomSequence([ref])
        content.append(image)
    ds.ContentSequence = DicomSequence(content)
    if with_evidence:
        ds.CurrentRequestedProcedureEvidenceSequence = _evidence(references)
    return ds


def _evidence(references: Sequence[tuple[str, str, str, str]]) -> DicomSequence:
    studies: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for study, series, class_uid, instance_uid in references:
        studies.setdefault(study, {}).setdefault(series, []).append((class_uid, instance_uid))
    items = []
    for study, series_map in studies.items():
        study_item = Dataset()
        study_item.StudyInstanceUID = study
        series_items = []
        for series, sops in series_map.items():
            series_item = Dataset()
            series_item.SeriesInstanceUID = series
            refs = []
            for class_uid, instance_uid in sops:
                ref = Dataset()
                ref.ReferencedSOPClassUID = class_uid
                ref.ReferencedSOPInstanceUID = instance_uid
                refs.append(ref)
            series_item.ReferencedSOPSequence = DicomSequence(refs)
            series_items.append(series_item)
        study_item.ReferencedSeriesSequence = DicomSequence(series_items)
        items.append(study_item)
    return DicomSequence(items)


def references_of(*datasets: Dataset) -> list[tuple[str, str, str, str]]:
    return [
        (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPClassUID, ds.SOPInstanceUID)
        for ds in datasets
    ]


def write_kos(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path
