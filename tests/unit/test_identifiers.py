"""identifiers.encode_flat writes exactly what pydicom writes, or declines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom.dsutils import encode

from archive_node.dicom.charsets import CODECS
from archive_node.net.wire.identifiers import encode_flat
from tests.helpers.identifiers import identifier

NAMES = ["ÆRØ^Åse", "HANSEN^OLA", "Ødegård^Bjørn^^Dr", "Nguyễn^Văn", "佐藤^花子", "", "A^B=C^D"]
KEYS = st.fixed_dictionaries(
    {
        "PatientName": st.sampled_from(NAMES),
        "PatientID": st.text("ABC0123456789", max_size=12),
        "StudyDate": st.sampled_from(["", "20240115", "20240101-20240131"]),
        "StudyDescription": st.sampled_from(["", "Hud, føflekk", "CT thorax", "x"]),
        "ModalitiesInStudy": st.lists(st.sampled_from(["US", "XC", "CT"]), max_size=3),
        "NumberOfStudyRelatedInstances": st.one_of(st.none(), st.integers(0, 99999)),
        "StudyInstanceUID": st.sampled_from(["1.2.3", "1.2.840.10008.5.1.4.1.1.77.1.4"]),
        "RetrieveAETitle": st.sampled_from(["ARCHIVE", "A"]),
    }
)


# pydicom does not know ISO_IR 203 (Latin-9) and writes Latin-1 for it: tested apart below
PYDICOM_CHARSETS = [charset for charset in CODECS if charset != "ISO_IR 203"]


@settings(max_examples=300, deadline=None)
@given(keys=KEYS, charset=st.sampled_from([None, *PYDICOM_CHARSETS]), implicit=st.booleans())
def test_bytes_equal_pydicoms_or_none(keys, charset, implicit):
    values = {keyword: value if value != [] else None for keyword, value in keys.items()}
    ds = identifier("STUDY", SpecificCharacterSet=charset, **values)
    fast = encode_flat(ds, implicit)
    if fast is not None:
        assert fast == encode(ds, implicit, True)


@pytest.mark.parametrize("implicit", [True, False])
def test_a_typical_answer_takes_the_fast_way(implicit):
    keys = {
        "PatientName": "ØDEGÅRD^ÅSE",
        "PatientID": "PID0000001",
        "StudyDate": "20240115",
        "StudyDescription": "Hud",
        "ModalitiesInStudy": ["US", "XC"],
        "NumberOfStudyRelatedInstances": 3,
        "StudyInstanceUID": "1.2.3",
        "RetrieveAETitle": "ARCHIVE",
    }
    ds = identifier("STUDY", SpecificCharacterSet="ISO_IR 192", **keys)
    assert encode_flat(ds, implicit) == encode(ds, implicit, True)


def test_sequences_numbers_and_iso_2022_are_left_to_pydicom():
    ds = Dataset()
    ds.ReferencedStudySequence = Sequence([Dataset()])
    assert encode_flat(ds, True) is None
    ds = Dataset()
    ds.SliceThickness = 1.5  # DS
    assert encode_flat(ds, True) is None
    ds = Dataset()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.PatientName = "Yamada^Tarou"
    assert encode_flat(ds, True) is None
    ds = Dataset()
    ds.PatientName = "Ærø"  # no character set: not ASCII, not ours to write
    assert encode_flat(ds, True) is None


def test_latin_9_is_written_as_latin_9():
    """ISO_IR 203 is ISO 8859-15 (PS3.3 C.12.1.1.2): its euro sign and S/Z with caron differ
    from Latin-1, which pydicom writes instead."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 203"
    ds.StudyDescription = "Œdème, 5 €"
    encoded = encode_flat(ds, True)
    assert encoded is not None and "Œdème, 5 €".encode("iso8859_15") in encoded
