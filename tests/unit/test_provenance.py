"""dicom/provenance.py: the sender recorded in a file meta, read back by pydicom and by reindex."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dsutils import create_file_meta

from archive_node.dicom.provenance import (
    PROVENANCE_UID,
    Provenance,
    file_meta,
    from_file_meta,
    with_provenance,
)

PREAMBLE = b"\0" * 128 + b"DICM"


def command_meta(**extra) -> bytes:
    """The group 2 bytes pynetdicom writes for a received C-STORE (plus `extra` elements)."""
    meta = create_file_meta(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
        sop_instance_uid="1.2.3.4.5",
        transfer_syntax="1.2.840.10008.1.2.1",
    )
    for keyword, value in extra.items():
        setattr(meta, keyword, value)
    encoded = BytesIO()
    write_file_meta_info(encoded, meta)
    return encoded.getvalue()


def parsed(meta: bytes):
    """The file meta as pydicom reads it from a file holding that group and no dataset."""
    return dcmread(BytesIO(PREAMBLE + meta)).file_meta


@pytest.mark.parametrize(
    "provenance",
    [
        pytest.param(Provenance("UNN_US", "UNN", "UNN"), id="even"),
        pytest.param(Provenance("CAM", "NLSH", "2.16.578.1.12.4.1.4.1"), id="odd-lengths"),
        pytest.param(Provenance("US", "UNN", "Ålesund «issuer»"), id="non-ascii-issuer"),
    ],
)
def test_recorded_provenance_reads_back(provenance):
    meta = parsed(with_provenance(command_meta(), provenance, "ARCHIVE"))
    assert from_file_meta(meta) == provenance
    assert meta.SendingApplicationEntityTitle == provenance.calling_ae
    assert meta.ReceivingApplicationEntityTitle == "ARCHIVE"
    assert meta.PrivateInformationCreatorUID == PROVENANCE_UID
    assert meta.MediaStorageSOPInstanceUID == "1.2.3.4.5"  # the command's elements are kept
    assert meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"


def test_recording_twice_replaces_rather_than_repeats():
    first = with_provenance(command_meta(), Provenance("A", "UNN", "UNN"), "ARCHIVE")
    second = with_provenance(first, Provenance("B", "NLSH", "NLSH"), "ARCHIVE")
    assert from_file_meta(parsed(second)) == Provenance("B", "NLSH", "NLSH")
    assert second.count(PROVENANCE_UID.encode()) == 1
    assert second.count(b"ARCHIVE") == 1


def test_elements_of_other_applications_stay_in_tag_order():
    original = command_meta(SourceApplicationEntityTitle="MODALITY")
    meta = parsed(with_provenance(original, Provenance("A", "UNN", "UNN"), "ARCHIVE"))
    assert meta.SourceApplicationEntityTitle == "MODALITY"
    tags = [element.tag for element in meta]
    assert tags == sorted(tags)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="no-private-information"),
        pytest.param(
            {"PrivateInformationCreatorUID": "1.2.3", "PrivateInformation": b"{}"},
            id="another-applications",
        ),
        pytest.param(
            {"PrivateInformationCreatorUID": PROVENANCE_UID, "PrivateInformation": b"not json"},
            id="garbled",
        ),
        pytest.param(
            {"PrivateInformationCreatorUID": PROVENANCE_UID, "PrivateInformation": b'{"v":1}'},
            id="incomplete",
        ),
    ],
)
def test_a_file_meta_without_usable_provenance_records_none(extra):
    assert from_file_meta(parsed(command_meta(**extra))) is None


def test_bytes_that_are_not_a_file_meta_group_are_refused():
    with pytest.raises(ValueError):
        with_provenance(b"\x08\x00\x16\x00UI\x02\x001\0", Provenance("A", "B", "C"), "ARCHIVE")


def test_file_meta_is_what_pydicom_writes():
    """provenance.file_meta, which net/patches/file_meta.py writes for every received dataset
    instead of pydicom's writer, gives the same bytes as pydicom for pynetdicom's file meta."""
    values = {
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # odd length: padded
        "sop_instance_uid": "1.2.826.0.1.3680043.8.498.12",
        "transfer_syntax": "1.2.840.10008.1.2.4.102",
    }
    expected = DicomBytesIO()
    expected.is_little_endian, expected.is_implicit_VR = True, False
    write_file_meta_info(expected, create_file_meta(**values))
    packed = file_meta(
        **values,
        implementation_uid=PYNETDICOM_IMPLEMENTATION_UID,
        implementation_version=PYNETDICOM_IMPLEMENTATION_VERSION,
    )
    assert packed == expected.getvalue()
