"""C-MOVE and C-GET rules as tables, without network or database: the retrieve identifier
(PS3.4 C.4.2.1.4.1, C.4.2.2.1 hierarchical retrieve), the presentation contexts and batches of
the sub-associations, the syntax of each sub-operation, their count and final status (PS3.4
C.4.2.1.5), and the move destination policy."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom.dsutils import decode, encode

from archive_node.dicom import status
from archive_node.rules.access import Peer, move_refusal
from archive_node.rules.query import PATIENT_ROOT, STUDY_ROOT, InvalidQuery, Query, parse_retrieve
from archive_node.rules.retrieve_plan import (
    CONVERTIBLE,
    DECOMPRESSIBLE,
    DEFLATED_LE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    MAX_CONTEXTS,
    Outgoing,
    SubOperations,
    batches,
    choose_syntax,
    contexts_for,
    fallback_syntaxes,
    receiving_syntaxes,
)
from tests.helpers.identifiers import VR, identifier

MISMATCH = 0xA900  # PS3.4 C.4.2.1.5 Failure: Identifier does not match SOP Class
UNABLE = 0xC000  # PS3.4 C.4.2.1.5 Failure: Unable to process
CANCEL = 0xFE00  # Cancel: sub-operations terminated due to Cancel indication
SUCCESS = 0x0000
ALL_FAILED = 0xA702  # Refused: Out of Resources - unable to perform sub-operations
SOME_FAILED = 0xB000  # Warning: sub-operations complete, one or more failures or warnings

BIG_ENDIAN = "1.2.840.10008.1.2.2"  # retired, but still stored by some modalities
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LS = "1.2.840.10008.1.2.4.80"
JPEG_2000 = "1.2.840.10008.1.2.4.90"
RLE = "1.2.840.10008.1.2.5"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_NEAR = "1.2.840.10008.1.2.4.81"
JPEG_2000_ANY = "1.2.840.10008.1.2.4.91"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
MPEG2 = "1.2.840.10008.1.2.4.100"
H264 = "1.2.840.10008.1.2.4.102"
HEVC = "1.2.840.10008.1.2.4.107"
JPIP = "1.2.840.10008.1.2.4.94"
JPEG_XL = "1.2.840.10008.1.2.4.110"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
US = "1.2.840.10008.5.1.4.1.1.6.1"

STUDY, STUDY2 = "1.2.3", "1.2.4"
SERIES, SERIES2 = "1.2.3.4", "1.2.3.5"
IMAGE, IMAGE2 = "1.2.3.4.5", "1.2.3.4.6"
UID_64 = "1." + "2" * 62
UID_65 = "1." + "2" * 63


def test_status_codes_are_the_standards():
    assert (status.IDENTIFIER_MISMATCH, status.UNABLE_TO_PROCESS) == (MISMATCH, UNABLE)
    assert (status.CANCELLED, status.SUCCESS) == (CANCEL, SUCCESS)
    assert (status.SUB_OPERATIONS_FAILED, status.SUB_OPERATIONS_WARNING) == (
        ALL_FAILED,
        SOME_FAILED,
    )
    assert len(UID_64) == 64 and len(UID_65) == 65


# == parse_retrieve ==============================================================================


def conditions_of(query: Query) -> dict[str, tuple[str, tuple[str, ...]]]:
    found = {c.keyword: (c.kind, c.values) for c in query.conditions}
    assert len(found) == len(query.conditions), "one condition per keyword"
    return found


def single(value: str) -> tuple[str, tuple[str, ...]]:
    return ("single", (value,))


def any_of(*values: str) -> tuple[str, tuple[str, ...]]:
    return ("list", values)


OTHER_KEYS = {
    "PatientName": "DOE^*",
    "PatientBirthDate": "19700101",
    "StudyDate": "20200101-",
    "StudyTime": "not a time",
    "AccessionNumber": "A*",
    "ModalitiesInStudy": "CT\\MR",
    "StudyDescription": "HEAD",
}


@pytest.mark.parametrize(
    ("model", "level", "keys", "expected"),
    [
        # -- Study Root -------------------------------------------------------------------------
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": STUDY},
            {"StudyInstanceUID": single(STUDY)},
            id="study-root/STUDY/one-uid",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": f"{STUDY}\\{STUDY2}"},
            {"StudyInstanceUID": any_of(STUDY, STUDY2)},
            id="study-root/STUDY/uid-list",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": [STUDY, STUDY2, STUDY]},
            {"StudyInstanceUID": any_of(STUDY, STUDY2)},
            id="study-root/STUDY/uid-list-repeats-once",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": UID_64},
            {"StudyInstanceUID": single(UID_64)},
            id="study-root/STUDY/uid-of-64-chars",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": STUDY, **OTHER_KEYS, "Modality": "CT"},
            {"StudyInstanceUID": single(STUDY)},
            id="study-root/STUDY/other-keys-ignored",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": STUDY, "PatientID": "P*", "IssuerOfPatientID": "UNN"},
            {"StudyInstanceUID": single(STUDY)},
            id="study-root/STUDY/patient-id-and-issuer-not-unique-keys",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": STUDY, "SeriesInstanceUID": "abc", "SOPInstanceUID": "*"},
            {"StudyInstanceUID": single(STUDY)},
            id="study-root/STUDY/keys-below-ignored",
        ),
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES},
            {"StudyInstanceUID": single(STUDY), "SeriesInstanceUID": single(SERIES)},
            id="study-root/SERIES/one-uid",
        ),
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"StudyInstanceUID": STUDY, "SeriesInstanceUID": f"{SERIES}\\{SERIES2}"},
            {"StudyInstanceUID": single(STUDY), "SeriesInstanceUID": any_of(SERIES, SERIES2)},
            id="study-root/SERIES/uid-list",
        ),
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES, "SOPInstanceUID": "x?"},
            {"StudyInstanceUID": single(STUDY), "SeriesInstanceUID": single(SERIES)},
            id="study-root/SERIES/key-below-ignored",
        ),
        pytest.param(
            STUDY_ROOT,
            "IMAGE",
            {
                "StudyInstanceUID": STUDY,
                "SeriesInstanceUID": SERIES,
                "SOPInstanceUID": [IMAGE, IMAGE2],
                "SOPClassUID": CT,
                "InstanceNumber": "1",
            },
            {
                "StudyInstanceUID": single(STUDY),
                "SeriesInstanceUID": single(SERIES),
                "SOPInstanceUID": any_of(IMAGE, IMAGE2),
            },
            id="study-root/IMAGE/uid-list",
        ),
        pytest.param(
            STUDY_ROOT,
            "SERIES ",
            {"StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES},
            {"StudyInstanceUID": single(STUDY), "SeriesInstanceUID": single(SERIES)},
            id="study-root/level-with-padding",
        ),
        # -- Patient Root -----------------------------------------------------------------------
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "P1"},
            {"PatientID": single("P1")},
            id="patient-root/PATIENT/id",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "P1", "IssuerOfPatientID": "UNN"},
            {"PatientID": single("P1"), "IssuerOfPatientID": single("UNN")},
            id="patient-root/PATIENT/issuer-qualifies-id",
        ),
        # Orthanc sends a whole patient's retrieve as Study Root, QueryRetrieveLevel PATIENT
        pytest.param(
            STUDY_ROOT,
            "PATIENT",
            {"PatientID": "P1", "IssuerOfPatientID": "UNN", "StudyInstanceUID": ""},
            {"PatientID": single("P1"), "IssuerOfPatientID": single("UNN")},
            id="study-root/PATIENT/as-patient-root",
        ),
        pytest.param(
            STUDY_ROOT,
            "PATIENT",
            {"PatientID": "P1"},
            {"PatientID": single("P1")},
            id="study-root/PATIENT/id-alone",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "P1", "IssuerOfPatientID": ""},
            {"PatientID": single("P1")},
            id="patient-root/PATIENT/empty-issuer-ignored",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "P1", **OTHER_KEYS, "PatientSex": "F"},
            {"PatientID": single("P1")},
            id="patient-root/PATIENT/other-keys-ignored",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "P1", "StudyInstanceUID": "bad", "SeriesInstanceUID": "*"},
            {"PatientID": single("P1")},
            id="patient-root/PATIENT/keys-below-ignored",
        ),
        pytest.param(
            PATIENT_ROOT,
            "STUDY",
            {"PatientID": "P1", "StudyInstanceUID": f"{STUDY}\\{STUDY2}"},
            {"PatientID": single("P1"), "StudyInstanceUID": any_of(STUDY, STUDY2)},
            id="patient-root/STUDY/uid-list",
        ),
        pytest.param(
            PATIENT_ROOT,
            "STUDY",
            {"PatientID": "P1", "IssuerOfPatientID": "UNN", "StudyInstanceUID": STUDY},
            {
                "PatientID": single("P1"),
                "IssuerOfPatientID": single("UNN"),
                "StudyInstanceUID": single(STUDY),
            },
            id="patient-root/STUDY/issuer-qualifies-id-above",
        ),
        pytest.param(
            PATIENT_ROOT,
            "SERIES",
            {"PatientID": "P1", "StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES},
            {
                "PatientID": single("P1"),
                "StudyInstanceUID": single(STUDY),
                "SeriesInstanceUID": single(SERIES),
            },
            id="patient-root/SERIES/one-uid",
        ),
        pytest.param(
            PATIENT_ROOT,
            "IMAGE",
            {
                "PatientID": "P1",
                "IssuerOfPatientID": "",
                "StudyInstanceUID": STUDY,
                "SeriesInstanceUID": SERIES,
                "SOPInstanceUID": f"{IMAGE}\\{IMAGE2}",
                **OTHER_KEYS,
            },
            {
                "PatientID": single("P1"),
                "StudyInstanceUID": single(STUDY),
                "SeriesInstanceUID": single(SERIES),
                "SOPInstanceUID": any_of(IMAGE, IMAGE2),
            },
            id="patient-root/IMAGE/uid-list",
        ),
    ],
)
def test_retrieve_identifier_accepted(model, level, keys, expected):
    query = parse_retrieve(identifier(level, **keys), model)
    assert (query.model, query.level) == (model, level.strip())
    assert conditions_of(query) == expected
    assert query.requested == ()


@pytest.mark.parametrize(
    ("model", "level", "keys", "code", "keyword"),
    [
        # -- the level --------------------------------------------------------------------------
        pytest.param(
            STUDY_ROOT,
            None,
            {"StudyInstanceUID": STUDY},
            MISMATCH,
            "QueryRetrieveLevel",
            id="level-missing",
        ),
        pytest.param(
            STUDY_ROOT,
            "",
            {"StudyInstanceUID": STUDY},
            MISMATCH,
            "QueryRetrieveLevel",
            id="level-empty",
        ),
        pytest.param(
            STUDY_ROOT,
            "PATIENT",
            {"PatientID": "P*"},
            MISMATCH,
            "PatientID",
            id="study-root/PATIENT-level/id-pattern",
        ),
        pytest.param(
            STUDY_ROOT, "PATIENT", {}, MISMATCH, "PatientID", id="study-root/PATIENT/id-missing"
        ),
        pytest.param(
            PATIENT_ROOT,
            "INSTANCE",
            {"PatientID": "P1"},
            MISMATCH,
            "QueryRetrieveLevel",
            id="patient-root/unknown-level",
        ),
        pytest.param(
            STUDY_ROOT,
            "FRAME",
            {"StudyInstanceUID": STUDY},
            MISMATCH,
            "QueryRetrieveLevel",
            id="study-root/unknown-level",
        ),
        # -- the unique key of the level --------------------------------------------------------
        pytest.param(
            STUDY_ROOT, "STUDY", {}, MISMATCH, "StudyInstanceUID", id="STUDY/uid-missing"
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": "", "PatientID": "P1"},
            MISMATCH,
            "StudyInstanceUID",
            id="STUDY/uid-empty",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": "*"},
            MISMATCH,
            "StudyInstanceUID",
            id="STUDY/uid-universal",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": "1.2.*"},
            MISMATCH,
            "StudyInstanceUID",
            id="STUDY/uid-star-pattern",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": "1.2.?"},
            MISMATCH,
            "StudyInstanceUID",
            id="STUDY/uid-question-pattern",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": f"{STUDY}\\1.2.*"},
            MISMATCH,
            "StudyInstanceUID",
            id="STUDY/uid-list-with-pattern",
        ),
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"StudyInstanceUID": STUDY},
            MISMATCH,
            "SeriesInstanceUID",
            id="SERIES/uid-missing",
        ),
        pytest.param(
            STUDY_ROOT,
            "IMAGE",
            {"StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES, "SOPInstanceUID": "*"},
            MISMATCH,
            "SOPInstanceUID",
            id="IMAGE/uid-universal",
        ),
        pytest.param(PATIENT_ROOT, "PATIENT", {}, MISMATCH, "PatientID", id="PATIENT/id-missing"),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "", "IssuerOfPatientID": "UNN"},
            MISMATCH,
            "PatientID",
            id="PATIENT/id-empty",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "   "},
            MISMATCH,
            "PatientID",
            id="PATIENT/id-only-spaces",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "*"},
            MISMATCH,
            "PatientID",
            id="PATIENT/id-universal",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "P*"},
            MISMATCH,
            "PatientID",
            id="PATIENT/id-pattern",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "P?"},
            MISMATCH,
            "PatientID",
            id="PATIENT/id-question-pattern",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "P1", "IssuerOfPatientID": "UN*"},
            MISMATCH,
            "IssuerOfPatientID",
            id="PATIENT/issuer-pattern",
        ),
        # -- the unique keys above the level: one value each ------------------------------------
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"SeriesInstanceUID": SERIES},
            MISMATCH,
            "StudyInstanceUID",
            id="SERIES/study-missing",
        ),
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"StudyInstanceUID": "", "SeriesInstanceUID": SERIES},
            MISMATCH,
            "StudyInstanceUID",
            id="SERIES/study-empty",
        ),
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"StudyInstanceUID": f"{STUDY}\\{STUDY2}", "SeriesInstanceUID": SERIES},
            MISMATCH,
            "StudyInstanceUID",
            id="SERIES/study-list",
        ),
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"StudyInstanceUID": "*", "SeriesInstanceUID": SERIES},
            MISMATCH,
            "StudyInstanceUID",
            id="SERIES/study-universal",
        ),
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"StudyInstanceUID": "1.2.*", "SeriesInstanceUID": SERIES},
            MISMATCH,
            "StudyInstanceUID",
            id="SERIES/study-pattern",
        ),
        pytest.param(
            STUDY_ROOT,
            "IMAGE",
            {
                "StudyInstanceUID": STUDY,
                "SeriesInstanceUID": [SERIES, SERIES2],
                "SOPInstanceUID": IMAGE,
            },
            MISMATCH,
            "SeriesInstanceUID",
            id="IMAGE/series-list",
        ),
        pytest.param(
            STUDY_ROOT,
            "IMAGE",
            {"SeriesInstanceUID": SERIES, "SOPInstanceUID": IMAGE},
            MISMATCH,
            "StudyInstanceUID",
            id="IMAGE/study-missing",
        ),
        pytest.param(
            PATIENT_ROOT,
            "STUDY",
            {"StudyInstanceUID": STUDY},
            MISMATCH,
            "PatientID",
            id="patient-root/STUDY/id-missing",
        ),
        pytest.param(
            PATIENT_ROOT,
            "STUDY",
            {"PatientID": "P1\\P2", "StudyInstanceUID": STUDY},
            MISMATCH,
            "PatientID",
            id="patient-root/STUDY/id-list",
        ),
        pytest.param(
            PATIENT_ROOT,
            "STUDY",
            {"PatientID": "*", "StudyInstanceUID": STUDY},
            MISMATCH,
            "PatientID",
            id="patient-root/STUDY/id-universal",
        ),
        pytest.param(
            PATIENT_ROOT,
            "IMAGE",
            {"StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES, "SOPInstanceUID": IMAGE},
            MISMATCH,
            "PatientID",
            id="patient-root/IMAGE/id-missing",
        ),
        pytest.param(
            PATIENT_ROOT,
            "SERIES",
            {"PatientID": "P1", "SeriesInstanceUID": SERIES},
            MISMATCH,
            "StudyInstanceUID",
            id="patient-root/SERIES/study-missing",
        ),
        # -- malformed values -------------------------------------------------------------------
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": "1.2.abc"},
            UNABLE,
            "StudyInstanceUID",
            id="uid-with-letters",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": UID_65},
            UNABLE,
            "StudyInstanceUID",
            id="uid-of-65-chars",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": "1..2"},
            UNABLE,
            "StudyInstanceUID",
            id="uid-empty-component",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": f"{STUDY}\\1.2.x"},
            UNABLE,
            "StudyInstanceUID",
            id="uid-list-with-letters",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": f"{STUDY}\\{UID_65}"},
            UNABLE,
            "StudyInstanceUID",
            id="uid-list-item-too-long",
        ),
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": f"{STUDY}\\"},
            UNABLE,
            "StudyInstanceUID",
            id="uid-list-empty-item",
        ),
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"StudyInstanceUID": "1.2.abc", "SeriesInstanceUID": SERIES},
            UNABLE,
            "StudyInstanceUID",
            id="uid-above-with-letters",
        ),
        pytest.param(
            STUDY_ROOT,
            "IMAGE",
            {"StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES, "SOPInstanceUID": "x1"},
            UNABLE,
            "SOPInstanceUID",
            id="IMAGE/uid-with-letters",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "P1\\P2"},
            UNABLE,
            "PatientID",
            id="PATIENT/id-list",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "P" * 65},
            UNABLE,
            "PatientID",
            id="PATIENT/id-too-long",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "P\x011"},
            UNABLE,
            "PatientID",
            id="PATIENT/id-control-character",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "P1", "IssuerOfPatientID": "A\\B"},
            UNABLE,
            "IssuerOfPatientID",
            id="PATIENT/issuer-list",
        ),
        # -- an explicit VR that is not the dictionary's ----------------------------------------
        pytest.param(
            STUDY_ROOT,
            "STUDY",
            {"StudyInstanceUID": VR("LO", STUDY)},
            UNABLE,
            "StudyInstanceUID",
            id="wrong-vr/uid-as-LO",
        ),
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"StudyInstanceUID": VR("SH", STUDY), "SeriesInstanceUID": SERIES},
            UNABLE,
            "StudyInstanceUID",
            id="wrong-vr/uid-above-as-SH",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": VR("UI", "1.2")},
            UNABLE,
            "PatientID",
            id="wrong-vr/patient-id-as-UI",
        ),
        pytest.param(
            PATIENT_ROOT,
            "PATIENT",
            {"PatientID": "P1", "IssuerOfPatientID": VR("SH", "UNN")},
            UNABLE,
            "IssuerOfPatientID",
            id="wrong-vr/issuer-as-SH",
        ),
    ],
)
def test_retrieve_identifier_refused(model, level, keys, code, keyword):
    with pytest.raises(InvalidQuery) as caught:
        parse_retrieve(identifier(level, **keys), model)
    assert (caught.value.status, caught.value.keyword) == (code, keyword)


def _wire(implicit: bool, **elements: VR) -> Dataset:
    ds = identifier("STUDY", **elements)
    return decode(BytesIO(encode(ds, implicit, True)), implicit, True)


@pytest.mark.parametrize(
    ("implicit", "elements", "expected"),
    [
        pytest.param(
            True,
            {"StudyInstanceUID": VR("UI", [STUDY, STUDY2])},
            {"StudyInstanceUID": any_of(STUDY, STUDY2)},
            id="implicit-vr-list",
        ),
        pytest.param(
            False,
            {"StudyInstanceUID": VR("UN", b"1.2.34")},
            {"StudyInstanceUID": single("1.2.34")},
            id="explicit-UN-read-as-UI",
        ),
        pytest.param(
            False,
            {"StudyInstanceUID": VR("UN", b"1.2.3\\1.2.45")},
            {"StudyInstanceUID": any_of(STUDY, "1.2.45")},
            id="explicit-UN-list",
        ),
        pytest.param(
            False,
            {"StudyInstanceUID": VR("LO", STUDY)},
            (UNABLE, "StudyInstanceUID"),
            id="explicit-LO-for-UI",
        ),
    ],
)
def test_retrieve_identifier_as_received(implicit, elements, expected):
    """The identifier as decoded from the network, where the VR is the sender's."""
    received = _wire(implicit, **elements)
    if isinstance(expected, dict):
        assert conditions_of(parse_retrieve(received, STUDY_ROOT)) == expected
        return
    with pytest.raises(InvalidQuery) as caught:
        parse_retrieve(received, STUDY_ROOT)
    assert (caught.value.status, caught.value.keyword) == expected


# == transfer syntaxes and presentation contexts =================================================


def outgoing(spec: list[tuple[str, str]]) -> list[Outgoing]:
    """Instances from (SOP class, stored syntax) pairs, each with its own instance UID."""
    return [
        Outgoing(sop_class, f"1.2.826.0.9.{n}", syntax, Path(f"/store/{n}.dcm"))
        for n, (sop_class, syntax) in enumerate(spec, 1)
    ]


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (EXPLICIT_LE, (IMPLICIT_LE,)),
        (IMPLICIT_LE, (EXPLICIT_LE,)),
        (DEFLATED_LE, (EXPLICIT_LE, IMPLICIT_LE)),
        # issue 17: Big Endian byte-swapped, the image codecs decompressed
        (BIG_ENDIAN, (EXPLICIT_LE, IMPLICIT_LE)),
        (JPEG_BASELINE, (EXPLICIT_LE, IMPLICIT_LE)),
        (JPEG_LOSSLESS_SV1, (EXPLICIT_LE, IMPLICIT_LE)),
        (JPEG_LS, (EXPLICIT_LE, IMPLICIT_LE)),
        (JPEG_LS_NEAR, (EXPLICIT_LE, IMPLICIT_LE)),
        (JPEG_2000, (EXPLICIT_LE, IMPLICIT_LE)),
        (JPEG_2000_ANY, (EXPLICIT_LE, IMPLICIT_LE)),
        (HTJ2K_LOSSLESS, (EXPLICIT_LE, IMPLICIT_LE)),
        (RLE, (EXPLICIT_LE, IMPLICIT_LE)),
        # video, JPIP and JPEG XL: no decoder, never transcoded
        (MPEG2, ()),
        (H264, ()),
        (HEVC, ()),
        (JPIP, ()),
        (JPEG_XL, ()),
        ("1.2.3.4.5.6", ()),
    ],
)
def test_fallback_syntaxes(stored, expected):
    assert fallback_syntaxes(stored) == expected
    assert stored not in expected
    assert set(expected) <= {EXPLICIT_LE, IMPLICIT_LE}
    assert bool(expected) == (stored in CONVERTIBLE | DECOMPRESSIBLE)


def test_every_decompressible_syntax_has_a_pydicom_decoder():
    from pydicom.pixels import get_decoder

    for ts in DECOMPRESSIBLE:
        assert get_decoder(ts).is_available, ts
    assert not DECOMPRESSIBLE & CONVERTIBLE


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param([], [], id="nothing"),
        pytest.param(
            [(CT, EXPLICIT_LE)], [(CT, (EXPLICIT_LE,)), (CT, (IMPLICIT_LE,))], id="explicit"
        ),
        pytest.param(
            [(CT, IMPLICIT_LE)], [(CT, (IMPLICIT_LE,)), (CT, (EXPLICIT_LE,))], id="implicit"
        ),
        pytest.param(
            [(CT, DEFLATED_LE)],
            [(CT, (DEFLATED_LE,)), (CT, (EXPLICIT_LE, IMPLICIT_LE))],
            id="deflated",
        ),
        pytest.param(
            [(CT, JPEG_BASELINE)],
            [(CT, (JPEG_BASELINE,)), (CT, (EXPLICIT_LE, IMPLICIT_LE))],
            id="jpeg-and-its-decompressed",
        ),
        pytest.param(
            [(CT, BIG_ENDIAN)],
            [(CT, (BIG_ENDIAN,)), (CT, (EXPLICIT_LE, IMPLICIT_LE))],
            id="big-endian-and-its-swapped",
        ),
        pytest.param([(CT, H264)], [(CT, (H264,))], id="video-alone"),
        pytest.param(
            [(CT, EXPLICIT_LE)] * 3,
            [(CT, (EXPLICIT_LE,)), (CT, (IMPLICIT_LE,))],
            id="same-pair-once",
        ),
        pytest.param(
            [(CT, EXPLICIT_LE), (CT, IMPLICIT_LE)],
            [(CT, (EXPLICIT_LE,)), (CT, (IMPLICIT_LE,)), (CT, (IMPLICIT_LE, EXPLICIT_LE))],
            id="explicit-and-implicit",
        ),
        pytest.param(
            [(CT, IMPLICIT_LE), (CT, EXPLICIT_LE)],
            [(CT, (IMPLICIT_LE,)), (CT, (EXPLICIT_LE,)), (CT, (EXPLICIT_LE, IMPLICIT_LE))],
            id="implicit-and-explicit",
        ),
        pytest.param(
            [(CT, JPEG_BASELINE), (CT, EXPLICIT_LE)],
            [(CT, (JPEG_BASELINE,)), (CT, (EXPLICIT_LE,)), (CT, (EXPLICIT_LE, IMPLICIT_LE))],
            id="jpeg-and-explicit",
        ),
        pytest.param(
            [(CT, EXPLICIT_LE), (MR, JPEG_2000), (SC, IMPLICIT_LE), (CT, DEFLATED_LE)],
            [
                (CT, (EXPLICIT_LE,)),
                (MR, (JPEG_2000,)),
                (SC, (IMPLICIT_LE,)),
                (CT, (DEFLATED_LE,)),
                (CT, (IMPLICIT_LE, EXPLICIT_LE)),
                (MR, (EXPLICIT_LE, IMPLICIT_LE)),
                (SC, (EXPLICIT_LE,)),
            ],
            id="three-classes",
        ),
    ],
)
def test_contexts_for(spec, expected):
    items = outgoing(spec)
    contexts = contexts_for(items)
    assert contexts == expected
    assert contexts_for(iter(items)) == expected  # any iterable
    for item in items:  # each instance's own syntax is proposed alone
        assert (item.sop_class_uid, (item.transfer_syntax_uid,)) in contexts


# == batches =====================================================================================


def _check_batches(items: list[Outgoing], result, limit: int) -> None:
    """The invariants of every split: the limit, each item once, classes whole and in order."""
    for batch in result:
        assert batch.items, "no empty batch"
        assert len(batch.contexts) <= limit
        assert list(batch.contexts) == contexts_for(batch.items)
    sent = [item for batch in result for item in batch.items]
    assert sorted(sent, key=id) == sorted(items, key=id)
    assert len({id(item) for item in sent}) == len(items)
    for sop_class in {item.sop_class_uid for item in items}:
        in_class = [item for item in items if item.sop_class_uid == sop_class]
        assert [item for item in sent if item.sop_class_uid == sop_class] == in_class
        holding = [batch for batch in result if any(i in in_class for i in batch.items)]
        assert len(holding) == 1, "a SOP class stays in one sub-association"


def test_batches_of_nothing():
    assert batches([]) == []
    assert batches([], limit=1) == []


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param([(CT, EXPLICIT_LE)], id="one"),
        pytest.param(
            [(CT, EXPLICIT_LE), (MR, H264), (CT, IMPLICIT_LE), (MR, EXPLICIT_LE)],
            id="interleaved-classes",
        ),
        pytest.param([(f"1.2.826.0.8.{n}", MPEG2) for n in range(MAX_CONTEXTS)], id="128"),
        pytest.param(
            [(f"1.2.826.0.8.{n}", IMPLICIT_LE) for n in range(MAX_CONTEXTS // 2)],
            id="64-convertible",
        ),
    ],
)
def test_one_batch_keeps_the_input_order(spec):
    items = outgoing(spec)
    result = batches(items)
    assert len(result) == 1
    assert list(result[0].items) == items
    assert list(result[0].contexts) == contexts_for(items)
    _check_batches(items, result, MAX_CONTEXTS)


@pytest.mark.parametrize(
    ("spec", "limit", "expected_classes"),
    [
        pytest.param(
            [(CT, EXPLICIT_LE), (MR, H264), (SC, IMPLICIT_LE), (US, HEVC)],
            3,
            [[CT, MR], [SC, US]],
            id="2+1|2+1",
        ),
        pytest.param(
            [(CT, H264), (MR, H264), (SC, H264), (US, HEVC)],
            1,
            [[CT], [MR], [SC], [US]],
            id="one-context-each",
        ),
        pytest.param(
            [
                (CT, EXPLICIT_LE),
                (MR, MPEG2),
                (CT, IMPLICIT_LE),
                (SC, H264),
                (MR, MPEG2),
                (CT, EXPLICIT_LE),
                (US, DEFLATED_LE),
            ],
            4,
            [[CT, MR], [SC, US]],
            id="interleaved",
        ),
        pytest.param(
            [(CT, EXPLICIT_LE), (CT, H264), (MR, H264), (MR, HEVC)],
            3,
            [[CT], [MR]],
            id="class-exactly-at-limit",
        ),
        pytest.param(
            [(CT, H264), (MR, H264), (SC, EXPLICIT_LE)],
            2,
            [[CT, MR], [SC]],
            id="full-then-next",
        ),
    ],
)
def test_batches_under_a_small_limit(spec, limit, expected_classes):
    items = outgoing(spec)
    result = batches(items, limit=limit)
    _check_batches(items, result, limit)
    classes = [list(dict.fromkeys(i.sop_class_uid for i in batch.items)) for batch in result]
    assert classes == expected_classes


@pytest.mark.parametrize(
    ("classes", "syntax", "per_class", "expected_batches"),
    [
        pytest.param(129, H264, 1, 2, id="129-classes-one-context"),
        pytest.param(65, JPEG_BASELINE, 1, 2, id="65-jpeg-classes-two-contexts"),
        pytest.param(300, MPEG2, 2, 3, id="300-classes-one-context"),
        pytest.param(65, IMPLICIT_LE, 1, 2, id="65-classes-two-contexts"),
        pytest.param(300, EXPLICIT_LE, 3, 5, id="300-classes-two-contexts"),
        pytest.param(200, DEFLATED_LE, 1, 4, id="200-deflated"),
    ],
)
def test_batches_of_many_classes(classes, syntax, per_class, expected_batches):
    """More distinct SOP classes than one association has context IDs (PS3.8 9.3.2.2)."""
    spec = [(f"1.2.826.0.8.{n % classes}", syntax) for n in range(classes * per_class)]
    items = outgoing(spec)
    result = batches(items)
    _check_batches(items, result, MAX_CONTEXTS)
    assert len(result) == expected_batches
    assert len(result[0].contexts) in (MAX_CONTEXTS - 1, MAX_CONTEXTS)  # filled before the next


def test_batches_of_many_classes_with_mixed_syntaxes():
    spec = [
        (f"1.2.826.0.7.{n % 150}", (EXPLICIT_LE, H264, IMPLICIT_LE, HEVC)[n % 4])
        for n in range(600)
    ]
    items = outgoing(spec)
    for limit in (MAX_CONTEXTS, 10, 7):
        _check_batches(items, batches(items, limit=limit), limit)


# == choose_syntax ===============================================================================


@pytest.mark.parametrize(
    ("stored", "accepted", "expected"),
    [
        pytest.param(EXPLICIT_LE, {EXPLICIT_LE}, EXPLICIT_LE, id="explicit-own"),
        pytest.param(EXPLICIT_LE, {EXPLICIT_LE, IMPLICIT_LE}, EXPLICIT_LE, id="explicit-own-1st"),
        pytest.param(IMPLICIT_LE, {EXPLICIT_LE, IMPLICIT_LE}, IMPLICIT_LE, id="implicit-own-1st"),
        pytest.param(EXPLICIT_LE, {IMPLICIT_LE}, IMPLICIT_LE, id="explicit-to-implicit"),
        pytest.param(IMPLICIT_LE, {EXPLICIT_LE}, EXPLICIT_LE, id="implicit-to-explicit"),
        pytest.param(DEFLATED_LE, {DEFLATED_LE, EXPLICIT_LE}, DEFLATED_LE, id="deflated-own"),
        pytest.param(DEFLATED_LE, {EXPLICIT_LE, IMPLICIT_LE}, EXPLICIT_LE, id="deflated-to-expl"),
        pytest.param(DEFLATED_LE, {IMPLICIT_LE}, IMPLICIT_LE, id="deflated-to-implicit"),
        pytest.param(JPEG_BASELINE, {JPEG_BASELINE, EXPLICIT_LE}, JPEG_BASELINE, id="jpeg-own"),
        pytest.param(
            JPEG_BASELINE, {EXPLICIT_LE, IMPLICIT_LE}, EXPLICIT_LE, id="jpeg-decompressed"
        ),
        pytest.param(JPEG_LS, {IMPLICIT_LE}, IMPLICIT_LE, id="jpeg-ls-to-implicit"),
        pytest.param(RLE, {RLE, EXPLICIT_LE}, RLE, id="rle-own"),
        pytest.param(JPEG_2000, {JPEG_BASELINE}, None, id="no-transcoding-between-codecs"),
        pytest.param(JPEG_2000, {JPEG_BASELINE, IMPLICIT_LE}, IMPLICIT_LE, id="j2k-not-to-jpeg"),
        pytest.param(H264, {EXPLICIT_LE, IMPLICIT_LE}, None, id="video-not-decoded"),
        pytest.param(JPEG_XL, {EXPLICIT_LE}, None, id="no-decoder"),
        pytest.param(BIG_ENDIAN, {BIG_ENDIAN}, BIG_ENDIAN, id="big-endian-own"),
        pytest.param(BIG_ENDIAN, {EXPLICIT_LE, IMPLICIT_LE}, EXPLICIT_LE, id="big-endian-swapped"),
        pytest.param(BIG_ENDIAN, {IMPLICIT_LE}, IMPLICIT_LE, id="big-endian-to-implicit"),
        pytest.param(EXPLICIT_LE, {BIG_ENDIAN}, None, id="no-conversion-to-big-endian"),
        pytest.param(EXPLICIT_LE, {JPEG_BASELINE, RLE}, None, id="no-compression"),
        pytest.param(IMPLICIT_LE, {DEFLATED_LE}, None, id="no-deflating"),
        pytest.param(EXPLICIT_LE, set(), None, id="nothing-accepted"),
    ],
)
def test_choose_syntax(stored, accepted, expected):
    (item,) = outgoing([(CT, stored)])
    assert choose_syntax(item, {CT: accepted, MR: {stored, EXPLICIT_LE, IMPLICIT_LE}}) == expected


def test_choose_syntax_of_a_class_not_accepted():
    (item,) = outgoing([(CT, EXPLICIT_LE)])
    assert choose_syntax(item, {MR: {EXPLICIT_LE, IMPLICIT_LE}}) is None
    assert choose_syntax(item, {}) is None


# == SubOperations ===============================================================================


@pytest.mark.parametrize(
    ("store_status", "kind"),
    [
        pytest.param(0x0000, "completed", id="0000-success"),
        pytest.param(0x0001, "warning", id="0001-warning"),
        pytest.param(0xB000, "warning", id="B000-coercion"),
        pytest.param(0xB006, "warning", id="B006-elements-discarded"),
        pytest.param(0xB007, "warning", id="B007-does-not-match-class"),
        pytest.param(None, "failed", id="no-response"),
        pytest.param(0xA700, "failed", id="A700-out-of-resources"),
        pytest.param(0xA7FF, "failed", id="A7FF-out-of-resources"),
        pytest.param(0xA900, "failed", id="A900-does-not-match-class"),
        pytest.param(0xC000, "failed", id="C000-cannot-understand"),
        pytest.param(0xC123, "failed", id="C123-cannot-understand"),
        pytest.param(0x0110, "failed", id="0110-processing-failure"),
        pytest.param(0x0122, "failed", id="0122-sop-class-not-supported"),
        pytest.param(0x0124, "failed", id="0124-not-authorised"),
        pytest.param(0x0211, "failed", id="0211-unrecognised-operation"),
        pytest.param(0xB001, "warning", id="B001-other-warning"),
        pytest.param(0xBFFF, "warning", id="BFFF-other-warning"),
        pytest.param(0x0107, "warning", id="0107-attribute-list-error"),
        pytest.param(0x0116, "warning", id="0116-attribute-value-out-of-range"),
    ],
)
def test_record_classifies_the_store_status(store_status, kind):
    ops = SubOperations(total=3)
    assert ops.record("1.2.9", store_status) == kind
    counts = {"completed": ops.completed, "warning": ops.warning, "failed": ops.failed}
    assert counts == {k: int(k == kind) for k in counts}
    assert ops.failed_uids == (["1.2.9"] if kind == "failed" else [])
    assert ops.remaining == 2


def test_remaining_counts_down_and_failed_uids_keep_their_order():
    ops = SubOperations(total=5)
    assert (ops.remaining, ops.completed, ops.warning, ops.failed) == (5, 0, 0, 0)
    steps = [("1.1", 0x0000), ("1.2", None), ("1.3", 0xB000), ("1.4", 0xC000), ("1.5", 0x0000)]
    for done, (uid, code) in enumerate(steps, 1):
        ops.record(uid, code)
        assert ops.remaining == 5 - done
    assert (ops.completed, ops.warning, ops.failed) == (2, 1, 2)
    assert ops.failed_uids == ["1.2", "1.4"]


@pytest.mark.parametrize(
    ("total", "statuses", "cancelled", "expected"),
    [
        pytest.param(0, [], False, SUCCESS, id="no-sub-operations"),
        pytest.param(0, [], True, CANCEL, id="no-sub-operations-cancelled"),
        pytest.param(3, [0, 0, 0], False, SUCCESS, id="all-fine"),
        pytest.param(3, [0, 0, 0], True, CANCEL, id="all-fine-but-cancelled"),
        pytest.param(3, [0, None], True, CANCEL, id="cancelled-midway"),
        pytest.param(3, [None, 0xC000, 0xA700], True, CANCEL, id="all-failed-but-cancelled"),
        pytest.param(1, [None], False, ALL_FAILED, id="the-one-failed"),
        pytest.param(3, [None, 0xC000, 0xA700], False, ALL_FAILED, id="all-failed"),
        pytest.param(2, [0, None], False, SOME_FAILED, id="one-of-two-failed"),
        pytest.param(3, [0, 0xB000, 0], False, SOME_FAILED, id="one-warning"),
        pytest.param(2, [0xB006, 0xB007], False, SOME_FAILED, id="warnings-only"),
        pytest.param(1, [0x0001], False, SOME_FAILED, id="the-one-warned"),
        pytest.param(3, [0xC000, 0xB000, 0], False, SOME_FAILED, id="mixed"),
        pytest.param(3, [0xA700, 0xA700, 0xB007], False, SOME_FAILED, id="failed-and-warned"),
    ],
)
def test_final_status(total, statuses, cancelled, expected):
    ops = SubOperations(total=total)
    for n, code in enumerate(statuses):
        ops.record(f"1.2.{n}", code)
    assert ops.final_status(cancelled=cancelled) == expected
    if not cancelled:
        assert ops.final_status() == expected


# == move_refusal ================================================================================


def peer(**kw: object) -> Peer:
    values: dict[str, object] = dict(
        ae_title="WS1",
        hospital="UNN",
        issuer="UNN",
        host="192.0.2.10",
        port=104,
        allow=frozenset({"echo", "find", "move"}),
        scope="region",
        enabled=True,
    )
    values.update(kw)
    return Peer(**values)  # type: ignore[arg-type]


REGION = peer(scope="region")
HOSPITAL = peer(scope="hospital")


@pytest.mark.parametrize(
    ("requester", "destination", "refused_because"),
    [
        pytest.param(REGION, None, "not a registered AE", id="unknown"),
        pytest.param(HOSPITAL, None, "not a registered AE", id="unknown/hospital-scope"),
        pytest.param(REGION, peer(ae_title="DEST", enabled=False), "disabled", id="disabled"),
        pytest.param(
            HOSPITAL, peer(ae_title="DEST", enabled=False), "disabled", id="disabled/same-hosp"
        ),
        pytest.param(REGION, peer(ae_title="DEST", host=""), "without a host", id="no-host"),
        pytest.param(REGION, peer(ae_title="DEST", port=None), "without a host", id="no-port"),
        pytest.param(REGION, peer(ae_title="DEST", port=0), "without a host", id="port-0"),
        pytest.param(
            REGION, peer(ae_title="DEST", host="", port=None), "without a host", id="no-address"
        ),
        pytest.param(
            HOSPITAL,
            peer(ae_title="DEST", hospital="OTHER", issuer="OTHER", enabled=False),
            "disabled",
            id="disabled-before-hospital",
        ),
        pytest.param(
            REGION, peer(ae_title="DEST", hospital="OTHER"), None, id="region/other-hospital"
        ),
        pytest.param(REGION, peer(ae_title="DEST"), None, id="region/same-hospital"),
        pytest.param(
            HOSPITAL,
            peer(ae_title="DEST", hospital="OTHER", issuer="OTHER"),
            "belongs to hospital OTHER",
            id="hospital/other-hospital",
        ),
        pytest.param(
            HOSPITAL,
            peer(ae_title="DEST", hospital="OTHER", scope="region"),
            "belongs to hospital OTHER",
            id="hospital/other-hospital-region-destination",
        ),
        pytest.param(HOSPITAL, peer(ae_title="DEST"), None, id="hospital/same-hospital"),
        pytest.param(
            HOSPITAL,
            peer(ae_title="DEST", scope="hospital", allow=frozenset()),
            None,
            id="hospital/same-hospital-destination-without-rights",
        ),
        pytest.param(HOSPITAL, HOSPITAL, None, id="hospital/to-itself"),
        pytest.param(
            REGION,
            peer(ae_title="DEST", hospital="OTHER", scope="hospital"),
            None,
            id="region/destination-scope-irrelevant",
        ),
    ],
)
def test_move_refusal(requester, destination, refused_because):
    reason = move_refusal(requester, destination, "DEST")
    if refused_because is None:
        assert reason is None
    else:
        assert reason is not None
        assert refused_because in reason
        assert "'DEST'" in reason


# == receiving_syntaxes (C-GET SCU's storage contexts, issue 17) =================================

ALL_SUPPORTED = {
    EXPLICIT_LE,
    IMPLICIT_LE,
    DEFLATED_LE,
    BIG_ENDIAN,
    JPEG_BASELINE,
    JPEG_LS,
    JPEG_2000,
    RLE,
    H264,
    MPEG2,
}
VIDEO_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.4.1"  # Video Photographic Image Storage


@pytest.mark.parametrize(
    ("sop_class", "proposed", "expected"),
    [
        pytest.param(CT, [[EXPLICIT_LE]], [EXPLICIT_LE], id="one-syntax"),
        pytest.param(
            CT, [[IMPLICIT_LE, EXPLICIT_LE]], [EXPLICIT_LE], id="pynetdicom-getscu-implicit-first"
        ),
        pytest.param(
            CT,
            [[EXPLICIT_LE, BIG_ENDIAN, IMPLICIT_LE]],
            [EXPLICIT_LE],
            id="dcmtk-getscu-default",
        ),
        pytest.param(
            SC,
            [[JPEG_BASELINE, EXPLICIT_LE, IMPLICIT_LE]],
            [EXPLICIT_LE],
            id="getscu+xy-one-context-everything-decodable",
        ),
        pytest.param(CT, [[IMPLICIT_LE]], [IMPLICIT_LE], id="implicit-only"),
        pytest.param(CT, [[JPEG_BASELINE]], [JPEG_BASELINE], id="jpeg-only"),
        pytest.param(
            CT, [[JPEG_BASELINE, JPEG_2000]], [JPEG_BASELINE], id="compressed-only-scus-order"
        ),
        pytest.param(
            CT,
            [[JPEG_BASELINE], [EXPLICIT_LE], [IMPLICIT_LE]],
            [JPEG_BASELINE, EXPLICIT_LE, IMPLICIT_LE],
            id="one-context-per-syntax",
        ),
        pytest.param(
            CT,
            [[JPEG_BASELINE, EXPLICIT_LE], [EXPLICIT_LE]],
            [JPEG_BASELINE, EXPLICIT_LE],
            id="single-choice-first-then-what-is-new",
        ),
        pytest.param(
            CT,
            [[JPEG_BASELINE, EXPLICIT_LE, IMPLICIT_LE], [JPEG_2000, EXPLICIT_LE, IMPLICIT_LE]],
            [EXPLICIT_LE, JPEG_2000],
            id="compressed-before-implicit",
        ),
        pytest.param(
            CT,
            [[EXPLICIT_LE, IMPLICIT_LE], [IMPLICIT_LE, EXPLICIT_LE]],
            [EXPLICIT_LE, IMPLICIT_LE],
            id="both-uncompressed",
        ),
        pytest.param(
            CT,
            [[EXPLICIT_LE], [EXPLICIT_LE, IMPLICIT_LE]],
            [EXPLICIT_LE, IMPLICIT_LE],
            id="nothing-taken-twice-if-avoidable",
        ),
        pytest.param(
            CT, [[EXPLICIT_LE], [EXPLICIT_LE]], [EXPLICIT_LE, EXPLICIT_LE], id="same-twice"
        ),
        pytest.param(
            CT,
            [[H264, EXPLICIT_LE, IMPLICIT_LE]],
            [EXPLICIT_LE],
            id="getscu+xn-ct-is-no-video",
        ),
        pytest.param(
            VIDEO_CLASS,
            [[H264, EXPLICIT_LE, IMPLICIT_LE]],
            [H264],
            id="getscu+xn-video-class",
        ),
        pytest.param(
            VIDEO_CLASS, [[EXPLICIT_LE, MPEG2, H264]], [MPEG2], id="video-class-scus-first-video"
        ),
        pytest.param(
            VIDEO_CLASS, [[EXPLICIT_LE, IMPLICIT_LE]], [EXPLICIT_LE], id="video-class-no-video"
        ),
        pytest.param(
            VIDEO_CLASS,
            [[H264, EXPLICIT_LE], [EXPLICIT_LE, H264]],
            [H264, EXPLICIT_LE],
            id="video-class-two-contexts",
        ),
        pytest.param(
            CT, [["1.2.3.4"], [IMPLICIT_LE]], [None, IMPLICIT_LE], id="unsupported-is-none"
        ),
        pytest.param(CT, [[]], [None], id="empty"),
        pytest.param(
            CT, [[JPEG_BASELINE, JPEG_BASELINE, EXPLICIT_LE]], [EXPLICIT_LE], id="repeated"
        ),
    ],
)
def test_receiving_syntaxes(sop_class, proposed, expected):
    chosen = receiving_syntaxes(sop_class, proposed, ALL_SUPPORTED)
    assert chosen == expected
    for syntax, offered in zip(chosen, proposed, strict=True):
        assert syntax is None or syntax in offered


def test_receiving_syntaxes_cover_every_stored_image():
    """Whatever one context per class a viewer proposes, if it offers an uncompressed little
    endian syntax, every non-video instance can then be sent (as stored or converted)."""
    stored = [EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE, BIG_ENDIAN, JPEG_BASELINE, JPEG_LS, RLE]
    for first in sorted(ALL_SUPPORTED):
        proposal = [first, IMPLICIT_LE, EXPLICIT_LE]
        accepted = {CT: {ts for ts in receiving_syntaxes(CT, [proposal], ALL_SUPPORTED) if ts}}
        for ts in stored:
            (item,) = outgoing([(CT, ts)])
            assert choose_syntax(item, accepted) is not None, (first, ts)
