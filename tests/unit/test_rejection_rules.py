"""IHE IOCM rejection notes as pure rules: which KOS is one (a PS3.16 CID 7010 rejection title,
DCM), what it references (PS3.3 C.17.6 evidence), and every way one falls short of being valid."""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid

from archive_node.errors import InvalidInput
from archive_node.rules import rejection
from archive_node.rules.rejection import (
    REJECTION_CODES,
    NotANote,
    Reference,
    RejectionNote,
    read_rejection_note,
    rejection_code,
    rejection_note,
)
from tests.helpers import dicom_objects
from tests.helpers.rejection_notes import rejection_kos, write_kos

CT = "1.2.840.10008.5.1.4.1.1.2"


def refs(count=2, study=None, series=None):
    study, series = study or generate_uid(), series or generate_uid()
    return [(study, series, CT, generate_uid()) for _ in range(count)]


@pytest.mark.parametrize("code", sorted(REJECTION_CODES))
def test_each_rejection_title_makes_a_rejection_note(code):
    references = refs()
    note = rejection_note(rejection_kos(references, code=code, patient_id="P1", issuer="UNN"))
    assert isinstance(note, RejectionNote)
    assert (note.code, note.meaning) == (code, REJECTION_CODES[code])
    assert note.deletes == (code in ("113038", "113039"))
    assert (note.patient_id, note.issuer) == ("P1", "UNN")
    assert note.references == tuple(Reference(*r) for r in references)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda ds: setattr(ds, "SOPClassUID", CT), ""),
        (lambda ds: ds.ConceptNameCodeSequence[0].__setattr__("CodeValue", "113000"), ""),
        (lambda ds: delattr(ds, "ConceptNameCodeSequence"), ""),
        (
            lambda ds: ds.ConceptNameCodeSequence[0].__setattr__(
                "CodingSchemeDesignator", "99LOCAL"
            ),
            "coding scheme",
        ),
        (lambda ds: delattr(ds, "CurrentRequestedProcedureEvidenceSequence"), "Evidence"),
        (
            lambda ds: delattr(
                ds.CurrentRequestedProcedureEvidenceSequence[0], "StudyInstanceUID"
            ),
            "StudyInstanceUID",
        ),
        (
            lambda ds: delattr(
                ds.CurrentRequestedProcedureEvidenceSequence[0], "ReferencedSeriesSequence"
            ),
            "Referenced Series",
        ),
        (
            lambda ds: delattr(
                ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0],
                "SeriesInstanceUID",
            ),
            "SeriesInstanceUID",
        ),
        (
            lambda ds: delattr(
                ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0],
                "ReferencedSOPSequence",
            ),
            "Referenced SOP",
        ),
        (
            lambda ds: delattr(
                ds.CurrentRequestedProcedureEvidenceSequence[0]
                .ReferencedSeriesSequence[0]
                .ReferencedSOPSequence[0],
                "ReferencedSOPClassUID",
            ),
            "ReferencedSOPClassUID",
        ),
        (
            lambda ds: setattr(
                ds.CurrentRequestedProcedureEvidenceSequence[0]
                .ReferencedSeriesSequence[0]
                .ReferencedSOPSequence[0],
                "ReferencedSOPInstanceUID",
                "1.2.abc",
            ),
            "not a valid UID",
        ),
    ],
)
def test_what_is_not_a_valid_rejection_note(change, reason):
    ds = rejection_kos(refs(), patient_id="P1")
    change(ds)
    note = rejection_note(ds)
    assert isinstance(note, NotANote)
    assert (reason in note.reason) if reason else note.reason == ""
    assert "P1" not in note.reason


def test_duplicates_collapse_and_a_self_reference_is_refused():
    references = refs(1)
    note = rejection_note(rejection_kos(references * 3, patient_id="P1"))
    assert isinstance(note, RejectionNote) and len(note.references) == 1
    own = generate_uid()
    selfish = rejection_kos([(references[0][0], generate_uid(), CT, own)], sop_uid=own)
    assert rejection_note(selfish) == NotANote("it references itself")


def test_too_many_references(monkeypatch):
    monkeypatch.setattr(rejection, "MAX_REFERENCES", 3)
    note = rejection_note(rejection_kos(refs(4)))
    assert isinstance(note, NotANote) and "more than 3" in note.reason


def test_read_from_a_file_too_large_and_garbage(tmp_path):
    path = write_kos(rejection_kos(refs(), patient_id="P1"), tmp_path / "kos.dcm")
    assert isinstance(read_rejection_note(path), RejectionNote)
    big = tmp_path / "big.dcm"
    with open(big, "wb") as fh:
        fh.truncate(rejection.MAX_NOTE_BYTES + 1)
    assert "larger than" in read_rejection_note(big).reason  # type: ignore[union-attr]
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\x00" * 200)
    assert isinstance(read_rejection_note(garbage), NotANote)
    other = dicom_objects.write(dicom_objects.secondary_capture(), tmp_path / "sc.dcm")
    assert read_rejection_note(other) == NotANote("")


@pytest.mark.parametrize("code", ["113000", "abc", "", "113001 "])
def test_an_admins_code_must_be_one_of_the_four(code):
    with pytest.raises(InvalidInput, match="113001"):
        rejection_code(code)


def test_an_admins_good_code_passes():
    assert [rejection_code(c) for c in sorted(REJECTION_CODES)] == sorted(REJECTION_CODES)
