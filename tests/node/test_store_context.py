"""A C-STORE naming another SOP Class than its presentation context's (issue 17, point 7):
answered 0xA900 with a comment, nothing kept, and the association goes on (as DCMTK storescp
and Orthanc do; pynetdicom aborted it, losing the rest of a dcmsend batch)."""

from __future__ import annotations

import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from archive_node.dicom import status
from tests.helpers import dicom_objects
from tests.helpers.raw_peer import (
    SECONDARY_CAPTURE,
    VERIFICATION,
    RawPeer,
    associate_rq,
    command,
    p_data,
    response_command,
)

pytestmark = pytest.mark.parametrize("index_url", ["sqlite"], indirect=True)

IMPLICIT = "1.2.840.10008.1.2"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def implicit_bytes(ds) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    return buffer.getvalue()


def store_request(sop_class: str, sop_instance: str, message_id: int) -> bytes:
    return command(
        AffectedSOPClassUID=sop_class,
        CommandField=0x0001,
        MessageID=message_id,
        Priority=0,
        CommandDataSetType=0x0000,
        AffectedSOPInstanceUID=sop_instance,
    )


@pytest.mark.parametrize(
    "named",
    [CT_IMAGE, "1.2.826.0.1.3680043.9.99.1", VERIFICATION],
    ids=["other", "unknown", "echo"],
)
def test_a_c_store_naming_another_class_is_a900_and_the_association_goes_on(node, named, caplog):
    wrong = dicom_objects.secondary_capture()
    right = dicom_objects.secondary_capture()
    contexts = ((1, SECONDARY_CAPTURE, (IMPLICIT,)),)
    with RawPeer(node.host, node.port) as peer:
        assert peer.associate(associate_rq("UNN_US", contexts=contexts)).type == 0x02
        peer.send(p_data(1, 0x03, store_request(named, wrong.SOPInstanceUID, 1)))
        peer.send(p_data(1, 0x02, implicit_bytes(wrong)))
        answer = response_command(peer)
        assert answer.Status == status.DATASET_MISMATCH
        assert answer.MessageIDBeingRespondedTo == 1
        assert "not the presentation context's abstract syntax" in answer.ErrorComment
        # the next instance of the batch, on the same association
        peer.send(p_data(1, 0x03, store_request(SECONDARY_CAPTURE, right.SOPInstanceUID, 2)))
        peer.send(p_data(1, 0x02, implicit_bytes(right)))
        assert response_command(peer).Status == status.SUCCESS
    assert node.service.index.instances.find(wrong.SOPInstanceUID) is None
    assert node.service.index.instances.find(right.SOPInstanceUID) is not None
    area = node.service.storage.incoming
    assert not [p for p in area.rglob("*") if p.is_file()]
    assert "refused with 0xA900" in caplog.text
