"""IHE IOCM rejection notes: whether a Key Object Selection Document rejects instances (its title
a rejection code of PS3.16 CID 7010), and which (its Current Requested Procedure Evidence
Sequence)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ..dicom.values import is_valid_uid
from ..errors import InvalidInput

# PS3.4 B.5: Key Object Selection Document Storage (PS3.3 A.35.4)
KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
# The rejection titles of PS3.16 CID 7010 Key Object Selection Document Title (coding scheme
# DCM; the issue and some texts say CID 7011, which holds the quality *reasons* instead)
REJECTION_CODES: dict[str, str] = {
    "113001": "Rejected for Quality Reasons",
    "113037": "Rejected for Patient Safety Reasons",
    "113038": "Incorrect Modality Worklist Entry",
    "113039": "Data Retention Policy Expired",
}
DELETING_CODES = frozenset({"113038", "113039"})  # deleted after lifecycle.delete_rejected_after
MAX_REFERENCES = 65535  # as many as one retrieve may send (rules/retrieve_plan.py)
MAX_NOTE_BYTES = 16 * 1024 * 1024  # a larger KOS is not read as a rejection note


@dataclass(frozen=True)
class Reference:
    """One instance a rejection note names (PS3.3 C.17.6, Hierarchical SOP Instance Reference
    Macro: study, series, SOP class and instance)."""

    study_uid: str
    series_uid: str
    sop_class_uid: str
    sop_uid: str


@dataclass(frozen=True)
class RejectionNote:
    """A valid rejection note: its code and the instances it rejects."""

    code: str
    meaning: str
    sop_uid: str  # the KOS's own SOP Instance UID
    patient_id: str  # the KOS's own PatientID and IssuerOfPatientID ('' when absent)
    issuer: str
    references: tuple[Reference, ...]

    @property
    def deletes(self) -> bool:
        return self.code in DELETING_CODES


@dataclass(frozen=True)
class NotANote:
    """A KOS stored as an ordinary one. `reason` is '' when it is simply not a rejection note
    (another title), otherwise why a would-be rejection note is not valid (for a warning; it
    never holds a patient's values)."""

    reason: str


def rejection_note(dataset: Dataset) -> RejectionNote | NotANote:
    """What a stored KOS is: a rejection note (IHE RAD TF-3 4.66: its Concept Name Code Sequence
    (0040,A043) a CID 7010 rejection title, its Current Requested Procedure Evidence Sequence
    (0040,A375) the instances), or not."""
    if str(dataset.get("SOPClassUID", "")) != KOS_SOP_CLASS:
        return NotANote("")
    title = dataset.get("ConceptNameCodeSequence")
    if not title:
        return NotANote("")
    code = str(title[0].get("CodeValue", "")).strip()
    if code not in REJECTION_CODES:
        return NotANote("")
    scheme = str(title[0].get("CodingSchemeDesignator", "")).strip()
    if scheme != "DCM":
        return NotANote(
            f"its title {code} is from coding scheme {scheme or '(none)'!r}, not DCM "
            "(PS3.16 CID 7010)"
        )
    references = _references(dataset)
    if isinstance(references, NotANote):
        return references
    own = str(dataset.get("SOPInstanceUID", "")).strip()
    if any(r.sop_uid == own for r in references):
        return NotANote("it references itself")
    return RejectionNote(
        code=code,
        meaning=REJECTION_CODES[code],
        sop_uid=own,
        patient_id=str(dataset.get("PatientID", "") or "").strip(),
        issuer=str(dataset.get("IssuerOfPatientID", "") or "").strip(),
        references=references,
    )


def _references(dataset: Dataset) -> tuple[Reference, ...] | NotANote:
    """The evidence's references, each once, in order; NotANote naming what is missing."""
    evidence = dataset.get("CurrentRequestedProcedureEvidenceSequence")
    if not evidence:
        return NotANote("no Current Requested Procedure Evidence Sequence")
    found: dict[str, Reference] = {}
    for study in evidence:
        study_uid = _uid(study, "StudyInstanceUID")
        if isinstance(study_uid, NotANote):
            return study_uid
        series_items = study.get("ReferencedSeriesSequence")
        if not series_items:
            return NotANote("an evidence item without Referenced Series Sequence")
        for series in series_items:
            series_uid = _uid(series, "SeriesInstanceUID")
            if isinstance(series_uid, NotANote):
                return series_uid
            sop_items = series.get("ReferencedSOPSequence")
            if not sop_items:
                return NotANote("a referenced series without Referenced SOP Sequence")
            for item in sop_items:
                class_uid = _uid(item, "ReferencedSOPClassUID")
                sop_uid = _uid(item, "ReferencedSOPInstanceUID")
                for value in (class_uid, sop_uid):
                    if isinstance(value, NotANote):
                        return value
                assert isinstance(class_uid, str) and isinstance(sop_uid, str)
                found.setdefault(sop_uid, Reference(study_uid, series_uid, class_uid, sop_uid))
                if len(found) > MAX_REFERENCES:
                    return NotANote(f"more than {MAX_REFERENCES} references")
    return tuple(found.values())


def _uid(item: Dataset, keyword: str) -> str | NotANote:
    value = str(item.get(keyword, "") or "").strip()
    if not value:
        return NotANote(f"a reference without {keyword}")
    if not is_valid_uid(value):
        return NotANote(f"a reference whose {keyword} is not a valid UID")
    return value


def read_rejection_note(path: Path, size: int | None = None) -> RejectionNote | NotANote:
    """rejection_note() of a Part 10 KOS file; one over MAX_NOTE_BYTES is not read."""
    size = path.stat().st_size if size is None else size
    if size > MAX_NOTE_BYTES:
        return NotANote(f"larger than {MAX_NOTE_BYTES} bytes, not read as a rejection note")
    try:
        dataset = dcmread(path, stop_before_pixels=True)
        return rejection_note(dataset)
    except (InvalidDicomError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return NotANote(f"unreadable: {type(exc).__name__}")


def rejection_code(code: str) -> str:
    """An admin's --code, checked. Raises InvalidInput naming the allowed codes."""
    if code not in REJECTION_CODES:
        allowed = ", ".join(f"{c} ({m})" for c, m in REJECTION_CODES.items())
        raise InvalidInput(f"rejection code {code!r} is not one of {allowed}")
    return code
