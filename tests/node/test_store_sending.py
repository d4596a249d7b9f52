"""net/patches/store_sending and net/wire/store_request: a stored file's C-STORE sub-operation
sent without pynetdicom's send_c_store is, on a real association, the bytes send_c_store sends;
a C-STORE-RSP read without pydicom is what pynetdicom decodes; a file's dataset is found where
pynetdicom's split_dataset finds it; anything unusual is left to pynetdicom."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.dimse_messages import C_STORE_RQ, C_STORE_RSP, DIMSEMessage
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import split_dataset
from pynetdicom.pdu_primitives import P_DATA

from archive_node.net import patches
from archive_node.net.patches import store_sending
from archive_node.net.wire import store_request
from tests.helpers import dicom_objects
from tests.helpers.ports import free_port

CT = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


# -- the command set ---------------------------------------------------------------------------


def _pynetdicom_command(primitive: C_STORE, max_pdu: int = 0) -> list[bytes]:
    """The command PDVs (control byte and fragment) pynetdicom makes for a C-STORE."""
    message = C_STORE_RQ() if primitive.MessageID is not None else C_STORE_RSP()
    message.primitive_to_message(primitive)
    out = []
    for pdata in message.encode_msg(1, max_pdu):
        for _, value in pdata.presentation_data_value_list:
            if value[0] & 1:
                out.append(value)
    return out


@pytest.mark.parametrize("originator", [None, ("MOVER", 7), ("ODD", 65535), ("X" * 16, 1)])
@pytest.mark.parametrize("instance", ["1.2.3.4.5", "1.2.3.4.56"])  # odd and even lengths
@pytest.mark.parametrize("priority", [0, 1, 2])
def test_a_store_request_is_the_command_pynetdicom_encodes(originator, instance, priority):
    req = C_STORE()
    req.MessageID = 513
    req.Priority = priority
    req.AffectedSOPClassUID = CT
    req.AffectedSOPInstanceUID = instance
    req.DataSet = io.BytesIO(b"\0\0")
    aet, message_id = originator or (None, None)
    req.MoveOriginatorApplicationEntityTitle = aet
    req.MoveOriginatorMessageID = message_id
    packed = store_request.store_request(
        513, CT, instance, priority=priority, originator_aet=aet, originator_id=message_id
    )
    (stock,) = _pynetdicom_command(req)
    assert stock == b"\x03" + packed


@pytest.mark.parametrize("max_pdu", [16384, 60, 7, 0])
def test_a_commands_pdus_are_cut_as_pynetdicom_cuts_them(max_pdu):
    req = C_STORE()
    req.MessageID = 2
    req.AffectedSOPClassUID = CT
    req.AffectedSOPInstanceUID = "1.2.3"
    req.MoveOriginatorApplicationEntityTitle = "MOVER"
    req.MoveOriginatorMessageID = 9
    req.DataSet = io.BytesIO(b"\0\0")
    command = store_request.store_request(2, CT, "1.2.3", originator_aet="MOVER", originator_id=9)
    pdus = store_request.command_pdus(command, 1, max_pdu)
    found = []
    while pdus:
        length = int.from_bytes(pdus[2:6], "big")
        assert pdus[0] == 0x04 and int.from_bytes(pdus[6:10], "big") == length - 4
        assert pdus[10] == 1  # context
        found.append(pdus[11 : 6 + length])
        pdus = pdus[6 + length :]
    assert found == _pynetdicom_command(req, max_pdu)


# -- the response ------------------------------------------------------------------------------


def _response_bytes(status: int, instance: str | None = "1.2.3.4.5", **optional) -> bytes:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 77
    rsp.AffectedSOPClassUID = CT
    rsp.AffectedSOPInstanceUID = instance
    rsp.Status = status
    for keyword, value in optional.items():
        setattr(rsp, keyword, value)
    (command,) = _pynetdicom_command(rsp)
    return command[1:]


def _pynetdicom_decoded(command: bytes) -> C_STORE:
    message = DIMSEMessage()
    pdata = P_DATA()
    pdata.presentation_data_value_list = [[1, b"\x03" + command]]
    assert message.decode_msg(pdata)
    message.__class__ = C_STORE_RSP
    return message.message_to_primitive()


@pytest.mark.parametrize("status", [0x0000, 0xB000, 0xB007, 0xA700, 0xC211, 0x0124])
@pytest.mark.parametrize("instance", ["1.2.3.4.5", "1.2.3.4.56", None])
def test_a_plain_store_response_is_read_as_pydicom_decodes_it(status, instance):
    command = _response_bytes(status, instance)
    parsed = store_request.parse_store_response(command)
    stock = _pynetdicom_decoded(command)
    assert parsed is not None
    assert parsed.status == parsed.Status == stock.Status
    assert parsed.message_id_being_responded_to == stock.MessageIDBeingRespondedTo
    assert parsed.affected_sop_class_uid == stock.AffectedSOPClassUID
    assert parsed.affected_sop_instance_uid == stock.AffectedSOPInstanceUID


@pytest.mark.parametrize(
    "optional",
    [
        {"ErrorComment": "disk full"},
        {"OffendingElement": [0x00100010]},
        {"ErrorComment": "x", "OffendingElement": [0x00100020]},
    ],
)
def test_a_response_with_more_is_left_to_pynetdicom(optional):
    assert store_request.parse_store_response(_response_bytes(0xA700, **optional)) is None


def test_what_is_no_plain_store_response_is_left_to_pynetdicom():
    plain = _response_bytes(0x0000)
    assert store_request.parse_store_response(plain) is not None
    assert store_request.parse_store_response(plain[:-1]) is None  # cut short
    assert store_request.parse_store_response(plain + b"\0" * 8) is None  # group length
    assert store_request.parse_store_response(b"") is None
    assert store_request.parse_store_response(b"\xff" * 40) is None
    # a C-STORE-RQ's command is no response
    request = store_request.store_request(1, CT, "1.2.3")
    assert store_request.parse_store_response(request) is None


# -- the file meta -----------------------------------------------------------------------------

_TEST_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "JPEG2000.dcm",
    "rtplan.dcm",
    "SC_rgb_rle.dcm",
    "MR_small_bigendian.dcm",
    "ExplVR_BigEnd.dcm",
    "no_meta_group_length.dcm",
]


@pytest.mark.parametrize("name", _TEST_FILES)
def test_a_files_dataset_is_where_pynetdicom_finds_it(name):
    path = Path(get_testdata_file(name, download=False))
    file_meta, offset = split_dataset(path)
    with open(path, "rb") as fh:
        meta = store_request.read_file_meta(fh)
        if meta is None:  # left to split_dataset: fine, but not for the common files
            assert name not in ("CT_small.dcm", "MR_small.dcm")
            return
        assert fh.tell() == offset
    assert meta.offset == offset
    assert meta.sop_class_uid == file_meta.MediaStorageSOPClassUID
    assert meta.sop_instance_uid == file_meta.MediaStorageSOPInstanceUID
    assert meta.transfer_syntax_uid == file_meta.TransferSyntaxUID


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_a_node_written_files_dataset_is_where_pynetdicom_finds_it(tmp_path, syntax):
    ds = dicom_objects.ct()
    ds.file_meta.TransferSyntaxUID = syntax
    path = dicom_objects.write(ds, tmp_path / "ct.dcm")
    file_meta, offset = split_dataset(path)
    with open(path, "rb") as fh:
        meta = store_request.read_file_meta(fh)
    assert meta is not None and meta.offset == offset
    assert meta.transfer_syntax_uid == file_meta.TransferSyntaxUID == syntax


@pytest.mark.parametrize(
    "name", ["no_meta.dcm", "ExplVR_LitEndNoMeta.dcm", "meta_missing_tsyntax.dcm"]
)
def test_a_file_without_what_a_c_store_needs_is_left_to_pynetdicom(name):
    with open(get_testdata_file(name, download=False), "rb") as fh:
        assert store_request.read_file_meta(fh) is None


def test_a_file_without_preamble_is_left_to_pynetdicom():
    assert store_request.read_file_meta(io.BytesIO(b"\0" * 200)) is None
    assert store_request.read_file_meta(io.BytesIO(b"")) is None


# -- on a real association ---------------------------------------------------------------------


class _Destination:
    """A pynetdicom storage SCP (no node patches) keeping every P-DATA-TF PDU it receives."""

    def __init__(self, max_pdu: int, answer: Dataset | int = 0x0000, handler=None) -> None:
        self.pdus: list[bytes] = []
        self.answer = answer
        ae = AE(ae_title="DEST")
        ae.maximum_pdu_size = max_pdu
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            ae.add_supported_context(CT, syntax)
        self.port = free_port()
        self.server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[
                (evt.EVT_C_STORE, handler or (lambda event: self.answer)),
                (evt.EVT_PDU_RECV, self._keep),
            ],
        )

    def _keep(self, event) -> None:
        if event.pdu.pdu_type == 0x04:
            self.pdus.append(event.pdu.encode())

    def close(self) -> None:
        self.server.shutdown()


def _requestor(fast: bool) -> AE:
    ae = AE(ae_title="ARCHIVE")
    patches.install_for(ae, fast_paths=fast)
    ae.add_requested_context(CT, [ExplicitVRLittleEndian])
    return ae


@pytest.fixture
def ct_file(tmp_path) -> Path:
    ds = dicom_objects.ct()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return dicom_objects.write(ds, tmp_path / "ct.dcm")


@pytest.mark.parametrize("max_pdu", [16384, 300, 0])
@pytest.mark.parametrize("originator", [("MOVER", 7), (None, None)])
def test_a_sub_operation_is_the_bytes_send_c_store_sends(ct_file, max_pdu, originator):
    received = {}
    for fast in (True, False):
        destination = _Destination(max_pdu)
        try:
            assoc = _requestor(fast).associate("127.0.0.1", destination.port, ae_title="DEST")
            assert assoc.is_established
            aet, message_id = originator
            if fast:
                assert store_sending.takes(assoc)
                sender = store_sending.StoreSender(assoc, aet, message_id)
                store_sending.pause_reactor(assoc)
                try:
                    status = sender.send(ct_file, 5, lambda: False)
                finally:
                    store_sending.resume_reactor(assoc)
            else:
                assert not store_sending.takes(assoc)
                status = assoc.send_c_store(
                    ct_file, msg_id=5, originator_aet=aet, originator_id=message_id
                ).Status
            assoc.release()
        finally:
            destination.close()
        assert status == 0x0000
        received[fast] = b"".join(destination.pdus)
    assert received[True] and received[True] == received[False]


@pytest.mark.parametrize(
    "answer",
    [0xB007, 0xA700, Dataset()],
    ids=["warning", "failure", "failure-with-comment"],
)
def test_the_destinations_status_comes_back_however_it_is_encoded(ct_file, answer):
    if isinstance(answer, Dataset):
        answer.Status = 0xA700
        answer.ErrorComment = "out of room"  # pynetdicom's decoding reads this one
    destination = _Destination(16384, answer)
    try:
        assoc = _requestor(True).associate("127.0.0.1", destination.port, ae_title="DEST")
        sender = store_sending.StoreSender(assoc, "MOVER", 1)
        store_sending.pause_reactor(assoc)
        try:
            statuses = [sender.send(ct_file, n, lambda: False) for n in (1, 2)]
        finally:
            store_sending.resume_reactor(assoc)
        assoc.release()
    finally:
        destination.close()
    expected = answer.Status if isinstance(answer, Dataset) else answer
    assert statuses == [expected, expected]


def test_a_late_response_to_an_earlier_request_is_passed_over(ct_file):
    """The response to another Message ID (an interrupted C-STORE's) is not this one's."""
    destination = _Destination(16384)
    try:
        assoc = _requestor(True).associate("127.0.0.1", destination.port, ae_title="DEST")
        sender = store_sending.StoreSender(assoc, None, None)
        assoc.dimse.msg_queue.put((1, store_request.StoreResponse(4, CT, "1.2", 0xA700)))
        store_sending.pause_reactor(assoc)
        try:
            assert sender.send(ct_file, 5, lambda: False) == 0x0000
        finally:
            store_sending.resume_reactor(assoc)
        assoc.release()
    finally:
        destination.close()


def test_a_wait_for_the_response_ends_when_asked(ct_file):
    """stop() is looked at while the response is awaited: a destination that never answers
    is given up (Interrupted), as waiting_for_answer gives up send_c_store."""
    release = threading.Event()

    def never(event):
        release.wait(10)
        return 0x0000

    destination = _Destination(16384, handler=never)
    try:
        assoc = _requestor(True).associate("127.0.0.1", destination.port, ae_title="DEST")
        sender = store_sending.StoreSender(assoc, None, None)
        calls = []
        store_sending.pause_reactor(assoc)
        try:
            with pytest.raises(store_sending.Interrupted):
                sender.send(ct_file, 1, lambda: calls.append(1) or len(calls) > 2)
        finally:
            store_sending.resume_reactor(assoc)
            release.set()
        assoc.abort()
    finally:
        destination.close()
