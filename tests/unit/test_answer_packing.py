"""C-FIND answers packed straight from the index's values (net/wire/identifiers.AnswerPacker)
are byte for byte what pydicom writes for the Dataset response_identifier builds of them."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode

from archive_node.net.wire.identifiers import AnswerPacker
from archive_node.rules.find_answers import FindAnswer, answer_layout
from archive_node.rules.query import STUDY_ROOT, parse_query


def query(level="STUDY", charset=None, **keys):
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return parse_query(ds, STUDY_ROOT)


STUDY_KEYS = dict(
    StudyInstanceUID="",
    PatientName="",
    PatientID="",
    StudyDate="",
    StudyTime="",
    StudyDescription="",
    AccessionNumber="",
    ModalitiesInStudy="",
    NumberOfStudyRelatedInstances="",
    NumberOfStudyRelatedSeries="",
    ReferringPhysicianName="",
)
VALUES = [
    {
        "StudyInstanceUID": "1.2.3.4",
        "PatientName": "HANSEN^OLA",
        "PatientID": "PID1",
        "IssuerOfPatientID": "UNN",
        "StudyDate": "20200101",
        "StudyTime": "101010",
        "StudyDescription": "Odd",
        "AccessionNumber": "A1",
        "ModalitiesInStudy": ["CT", "US"],
        "NumberOfStudyRelatedInstances": 3,
        "NumberOfStudyRelatedSeries": 12,
        "ReferringPhysicianName": "",
    },
    {  # non-ASCII names, missing keys, an empty list, a zero count
        "StudyInstanceUID": "1.2.33",
        "PatientName": "ØDEGÅRD^ÅSE",
        "PatientID": "PID2",
        "StudyDescription": "Ærø ultralyd",
        "ModalitiesInStudy": [],
        "NumberOfStudyRelatedInstances": 0,
        "ReferringPhysicianName": None,
    },
    {  # a value with a backslash, multi-valued CS of one value, odd lengths everywhere
        "StudyInstanceUID": "1.2.345",
        "PatientName": "A^B^C^D^E",
        "PatientID": "P\\Q",
        "StudyDescription": "x",
        "ModalitiesInStudy": ["MR"],
        "NumberOfStudyRelatedInstances": 12345,
    },
    {"PatientName": "Иванов^Иван", "StudyDescription": "中文"},  # beyond Latin-1
    {},
]


def reference(answer: FindAnswer, implicit: bool) -> bytes:
    return encode(answer.dataset(), implicit, True, False)


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize(
    "charset", [None, "ISO_IR 100", "ISO_IR 192", "ISO_IR 6", "ISO_IR 144", "ISO_IR 13"]
)
@pytest.mark.parametrize("values", VALUES)
def test_packed_answers_are_what_pydicom_writes(implicit, charset, values):
    q = query(charset=charset, **STUDY_KEYS)
    answer = FindAnswer(q, values, "ARCHIVE")
    packed = AnswerPacker(answer_layout(q, "ARCHIVE"), q.character_set, implicit).pack(values)
    if packed is None:  # an answer labelled with a set without a plain codec: left to pydicom
        assert charset == "ISO_IR 13"
        return
    assert packed == reference(answer, implicit)


@pytest.mark.parametrize("implicit", [True, False])
def test_unknown_and_overriding_keys_are_what_pydicom_writes(implicit):
    # keys the index does not hold are answered empty, whatever their VR (US, SQ, OB, UT, UR);
    # a requested key that is also a fixed one (RetrieveAETitle) overrides it as in the Dataset
    q = query(
        level="SERIES",
        StudyInstanceUID="1.2.3",
        SeriesInstanceUID="",
        Modality="",
        SeriesNumber="",
        Rows=None,
        RetrieveAETitle="",
        ReferencedImageSequence=[],
        SamplesPerPixel=None,
        TextValue="",
        RetrieveURL="",
    )
    values = {"SeriesInstanceUID": "1.2.3.4", "Modality": "CT", "SeriesNumber": 7}
    answer = FindAnswer(q, values, "ARCHIVE")
    packed = AnswerPacker(answer_layout(q, "ARCHIVE"), q.character_set, implicit).pack(values)
    assert packed == reference(answer, implicit)


@pytest.mark.parametrize(
    "values",
    [
        {"PatientName": "Yamada^Tarou=山田^太郎"},  # component groups: left to pydicom
        {"NumberOfStudyRelatedInstances": "3"},  # an IS as text
        {"StudyDescription": 3.5},  # not text
        {"ModalitiesInStudy": ["CT", 3]},
    ],
)
def test_what_the_packer_does_not_know_is_left_to_pydicom(values):
    q = query(**STUDY_KEYS)
    assert AnswerPacker(answer_layout(q, "ARCHIVE"), (), True).pack(values) is None


def test_several_requested_character_sets_are_left_to_pydicom():
    q = query(charset=["", "ISO 2022 IR 87"], **STUDY_KEYS)
    assert AnswerPacker(answer_layout(q, "ARCHIVE"), q.character_set, True).pack({}) is None
