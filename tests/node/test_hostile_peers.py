"""Peers that lie, stall or malform (issue 16, points 1-4 and 8): each reproduced on a raw socket,
and answered as PS3.8 says; the node's memory stays bounded, a registered AE's C-ECHO works
throughout, and nothing is left behind (threads, descriptors, partial files)."""

from __future__ import annotations

import io
import logging
import struct
import subprocess
import time

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from archive_node.dicom import status
from archive_node.logs import FORMAT, EscapeControls
from archive_node.net.scp_handlers import NEVER_ACCEPTED_SYNTAX
from archive_node.net.server import ACCEPTED_TRANSFER_SYNTAXES
from tests.helpers.dimse import associate
from tests.helpers.raw_peer import (
    ABORT,
    RELEASE_RQ,
    SECONDARY_CAPTURE,
    VERIFICATION,
    RawPeer,
    associate_rq,
    command,
    p_data,
    response_command,
    rss_mb,
    settles,
    threads_and_descriptors,
)
from tests.helpers.serving import node_with

pytestmark = pytest.mark.parametrize("index_url", ["sqlite"], indirect=True)

IMPLICIT = (ImplicitVRLittleEndian,)


def echo_works(node, calling: str = "UNN_US") -> bool:
    assoc = associate(node, calling)
    try:
        return assoc.is_established and assoc.send_c_echo().Status == status.SUCCESS
    finally:
        if assoc.is_established:
            assoc.release()


def echo_request(message_id: int) -> bytes:
    return command(
        AffectedSOPClassUID=VERIFICATION,
        CommandField=0x0030,
        MessageID=message_id,
        CommandDataSetType=0x0101,
    )


def is_abort(pdu, reason: int | None = None) -> bool:
    """An A-ABORT from the service provider (PS3.8 9.3.8), with `reason` if given."""
    return (
        pdu is not None
        and pdu.type == 0x07
        and pdu.body[2] == 2
        and (reason is None or pdu.body[3] == reason)
    )


def incoming(node) -> list:
    area = node.service.storage.incoming
    return [p for p in area.rglob("*") if p.is_file()] if area.exists() else []


def wait_until(condition, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# -- 1. a PDU's declared length ---------------------------------------------------------------


def test_an_associate_request_declaring_a_gibibyte_is_aborted_before_it_is_read(node, caplog):
    before = rss_mb()
    for _ in range(4):
        with RawPeer(node.host, node.port) as peer:
            peer.send(struct.pack(">BBL", 0x01, 0, 1 << 30) + b"\0" * 4096)
            assert is_abort(peer.receive(), reason=6)
            assert peer.closed_by_node()
    assert rss_mb() - before < 50
    assert "A-ASSOCIATE-RQ declares 1073741824 bytes" in caplog.text
    assert echo_works(node)


def test_a_p_data_larger_than_the_advertised_maximum_is_aborted(tmp_path, index_url, registry):
    with node_with(tmp_path, index_url, node={"max_pdu": 4096}) as small:
        with RawPeer(small.host, small.port) as peer:
            assert peer.associate(associate_rq("UNN_US")).type == 0x02
            peer.send(struct.pack(">BBL", 0x04, 0, 64 << 20) + b"\0" * 1024)
            assert is_abort(peer.receive(), reason=6)
            assert peer.closed_by_node()
        assert echo_works(small)


def big_query(size: int) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    identifier.StudyDescription = "X" * size
    return identifier


@pytest.mark.parametrize("calling", ["UNN_WS", "UNN_US"], ids=["may-find", "echo-only"])
def test_an_identifier_past_its_bound_is_refused_and_the_association_kept(
    tmp_path, index_url, registry, calling
):
    with node_with(tmp_path, index_url, query={"max_identifier_bytes": 4096}) as bounded:
        model = StudyRootQueryRetrieveInformationModelFind
        assoc = associate(bounded, calling, [model, VERIFICATION])
        assert assoc.is_established
        before = rss_mb()
        responses = list(assoc.send_c_find(big_query(8 << 20), model))
        assert [r.Status for r, _ in responses] == [0xA700]
        assert "identifier larger than 4096 bytes" in responses[0][0].ErrorComment
        assert rss_mb() - before < 60  # 8 MiB sent, never held whole
        # the association goes on: an identifier within the bound is answered as usual
        small = list(assoc.send_c_find(big_query(10), model))
        expected = status.SUCCESS if calling == "UNN_WS" else status.NOT_AUTHORISED
        assert small[-1][0].Status == expected
        assoc.release()


# -- 2. the ARTIM timer, pending connections, the backlog -------------------------------------


@pytest.fixture
def impatient(tmp_path, index_url, registry):
    with node_with(tmp_path, index_url, node={"acse_timeout": 1.0}) as running:
        yield running


def test_half_an_associate_request_is_aborted_when_artim_expires(impatient, caplog):
    with RawPeer(impatient.host, impatient.port) as peer:
        peer.send(associate_rq("UNN_US")[:40])
        started = time.monotonic()
        assert is_abort(peer.receive())
        assert peer.closed_by_node()
        assert time.monotonic() - started < 5
    assert "no complete A-ASSOCIATE-RQ within 1 s (ARTIM)" in caplog.text


def test_a_request_trickled_byte_by_byte_is_timed_from_the_connection(impatient, caplog):
    request = associate_rq("UNN_US")
    with RawPeer(impatient.host, impatient.port) as peer:
        started = time.monotonic()
        for byte in request[:30]:  # one byte every 50 ms: the first 30 take 1.5 s
            try:
                peer.send(bytes([byte]))
            except OSError:  # closed by the node
                break
            time.sleep(0.05)  # the attacker's pace, not a wait for the node
        assert peer.closed_by_node()
        assert time.monotonic() - started < 5
    assert "no complete A-ASSOCIATE-RQ within 1 s (ARTIM)" in caplog.text


def test_a_silent_connection_is_aborted_when_artim_expires(impatient):
    with RawPeer(impatient.host, impatient.port) as peer:
        assert is_abort(peer.receive())
        assert peer.closed_by_node()


def test_an_unknown_pdu_type_is_aborted_at_once(node, caplog):
    with RawPeer(node.host, node.port) as peer:
        peer.send(struct.pack(">BBL", 0x09, 0, 4) + b"\0" * 4)
        assert is_abort(peer.receive(), reason=1)
        assert peer.closed_by_node(within=2)
    assert "unknown PDU type 0x09" in caplog.text
    with RawPeer(node.host, node.port) as peer:  # a fixed-length PDU with another length
        assert peer.associate(associate_rq("UNN_US")).type == 0x02
        peer.send(struct.pack(">BBL", 0x05, 0, 8) + b"\0" * 8)
        assert is_abort(peer.receive(), reason=6)


def test_connections_without_a_request_never_take_association_slots(
    tmp_path, index_url, registry, caplog
):
    limits = {"max_associations": 2, "max_pending_connections": 4, "acse_timeout": 30.0}
    with node_with(tmp_path, index_url, node=limits) as small:
        silent = [RawPeer(small.host, small.port) for _ in range(12)]
        try:
            for _ in range(5):
                assert echo_works(small)
            # the oldest were closed to make room; the newest four still wait
            assert all(peer.closed_by_node(within=5) for peer in silent[:8])
        finally:
            for peer in silent:
                peer.close()
    assert "more than 4 connections without an A-ASSOCIATE-RQ" in caplog.text


def test_associations_per_address_are_limited(tmp_path, index_url, registry, caplog):
    with node_with(tmp_path, index_url, node={"max_associations_per_address": 1}) as limited:
        first = associate(limited, "UNN_US")
        assert first.is_established
        second = associate(limited, "ANYWHERE")
        assert second.is_rejected
        rsp = second.acceptor.primitive
        assert (rsp.result, rsp.result_source, rsp.diagnostic) == (2, 3, 2)
        first.release()
        assert wait_until(lambda: echo_works(limited))
    assert "node.max_associations_per_address" in caplog.text


def test_an_ae_is_held_to_its_own_max_associations(node, registry, caplog):
    registry.add_ae("UNN_US2", "UNN", host="127.0.0.1", max_associations=1)
    first = associate(node, "UNN_US2")
    assert first.is_established
    try:
        second = associate(node, "UNN_US2")
        rsp = second.acceptor.primitive
        assert second.is_rejected and (rsp.result, rsp.result_source, rsp.diagnostic) == (2, 3, 2)
        assert echo_works(node)  # another AE of the same address is served meanwhile
    finally:
        first.release()
    assert wait_until(lambda: echo_works(node, "UNN_US2"))
    assert "its --max-associations" in caplog.text


def test_the_listen_backlog_is_the_configured_one(tmp_path, index_url, registry):
    with node_with(tmp_path, index_url, node={"listen_backlog": 777}) as running:
        listing = subprocess.run(
            ["ss", "-ltnH", f"sport = :{running.port}"], capture_output=True, text=True
        ).stdout.split()
    assert listing[0] == "LISTEN" and listing[2] == "777"


# -- 3. association negotiation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_kwargs", "expected", "logged"),
    [
        ({"contexts": ()}, (1, 1, 1), "no presentation context proposed"),
        (
            {"contexts": ((2, VERIFICATION, IMPLICIT),)},
            (1, 1, 1),
            "presentation context ID is not an odd number",
        ),
        (
            {"contexts": ((1, VERIFICATION, IMPLICIT), (1, SECONDARY_CAPTURE, IMPLICIT))},
            (1, 1, 1),
            "presentation context ID is used twice",
        ),
        ({"application_context": "1.2.3.4"}, (1, 1, 2), "application context name is not"),
        ({"raw_calling": b"UNN_US\nFORGED"}, (1, 1, 3), "calling AE title is not a valid"),
    ],
    ids=["no-context", "even-id", "duplicate-id", "application-context", "control-in-title"],
)
def test_malformed_requests_are_rejected_with_the_reason(
    node, caplog, request_kwargs, expected, logged
):
    with RawPeer(node.host, node.port) as peer:
        answer = peer.associate(associate_rq("UNN_US", **request_kwargs))
        assert answer.rejection == expected
    assert "association rejected" in caplog.text and logged in caplog.text


@pytest.mark.parametrize("where", ["item", "user-information-sub-item"])
def test_items_of_unknown_type_are_ignored_with_a_log_line(node, caplog, where):
    unknown = struct.pack(">BBH", 0x5F, 0, 3) + b"abc"
    if where == "item":
        body = associate_rq("UNN_US")[6:] + struct.pack(">BBH", 0x99, 0, 2) + b"zz"
        request = struct.pack(">BBL", 0x01, 0, len(body)) + body
    else:
        request = associate_rq("UNN_US", extra_user_items=unknown)
    with RawPeer(node.host, node.port) as peer:
        assert peer.associate(request).context_results == {1: 0}
        peer.send(p_data(1, 0x03, echo_request(1)))
        assert response_command(peer).Status == status.SUCCESS
    assert "ignored A-ASSOCIATE-RQ item(s) of unknown type" in caplog.text


def test_a_context_without_transfer_syntax_is_refused_alone(node, caplog):
    contexts = ((1, VERIFICATION, ()), (3, VERIFICATION, IMPLICIT))
    with RawPeer(node.host, node.port) as peer:
        answer = peer.associate(associate_rq("UNN_US", contexts=contexts))
        assert answer.context_results == {1: 4, 3: 0}
        peer.send(p_data(3, 0x03, echo_request(7)))
        assert response_command(peer).Status == status.SUCCESS
        peer.send(RELEASE_RQ)
        assert peer.receive().type == 0x06
    assert "proposed without a transfer syntax" in caplog.text
    assert NEVER_ACCEPTED_SYNTAX not in ACCEPTED_TRANSFER_SYNTAXES


def test_malformed_requests_leave_no_thread_or_descriptor(node):
    assert echo_works(node)
    baseline = threads_and_descriptors()
    for i in range(30):
        with RawPeer(node.host, node.port) as peer:
            kinds = [
                associate_rq("UNN_US", contexts=((1, VERIFICATION, ()),)),
                associate_rq("UNN_US", contexts=()),
                struct.pack(">BBL", 0x0A, 0, 4) + b"\0" * 4,
            ]
            peer.send(kinds[i % 3])
            peer.receive()
    after = settles(baseline)
    assert after[0] <= baseline[0] and after[1] <= baseline[1]
    assert echo_works(node)


# -- 4. partial files, malformed UIDs -----------------------------------------------------------


def start_store(peer: RawPeer, uid: str = "1.2.826.0.1.3680043.9.16.1") -> None:
    contexts = ((1, SECONDARY_CAPTURE, IMPLICIT), (3, VERIFICATION, IMPLICIT))
    assert peer.associate(associate_rq("UNN_US", contexts=contexts)).type == 0x02
    peer.send(
        p_data(
            1,
            0x03,
            command(
                AffectedSOPClassUID=SECONDARY_CAPTURE,
                CommandField=0x0001,
                MessageID=1,
                Priority=0,
                CommandDataSetType=0x0000,
                AffectedSOPInstanceUID=uid,
            ),
        )
    )


@pytest.mark.parametrize("ending", ["close", "abort", "release"])
def test_a_c_store_cut_off_leaves_no_partial_file(node, ending, caplog):
    with RawPeer(node.host, node.port) as peer:
        start_store(peer)
        for _ in range(4):
            peer.send(p_data(1, 0x00, b"\0" * 8000))
        assert wait_until(lambda: len(incoming(node)) == 1)
        if ending == "abort":
            peer.send(ABORT)
        elif ending == "release":
            peer.send(RELEASE_RQ)
    assert wait_until(lambda: not incoming(node))
    assert "removed the partial file of a cut-off C-STORE" in caplog.text
    assert echo_works(node)


def test_a_command_and_a_large_dataset_in_one_pdu_are_served(node):
    """The command bound counts command fragments only: a P-DATA-TF may carry a command and
    then its dataset (PS3.8 E.2), here 200 KB of it in one PDU."""
    contexts = ((1, SECONDARY_CAPTURE, IMPLICIT),)
    with RawPeer(node.host, node.port) as peer:
        assert peer.associate(associate_rq("UNN_US", contexts=contexts)).type == 0x02
        store = command(
            AffectedSOPClassUID=SECONDARY_CAPTURE,
            CommandField=0x0001,
            MessageID=1,
            Priority=0,
            CommandDataSetType=0x0000,
            AffectedSOPInstanceUID="1.2.826.0.1.3680043.9.16.2",
        )
        peer.send(p_data(1, 0x03, store, (0x02, b"\0" * 200_000)))
        answer = response_command(peer)
        # an empty dataset is refused by the service, not by the bound: the message was read
        assert answer.Status != status.SUCCESS and answer.MessageIDBeingRespondedTo == 1
        assert "command set" not in str(answer.get("ErrorComment", ""))


def test_a_uid_over_64_characters_is_a903_and_the_association_goes_on(node):
    long_uid = "1.2.826.0.1.3680043.9.16." + "1" * 60
    with RawPeer(node.host, node.port) as peer:
        start_store(peer, uid=long_uid)
        peer.send(p_data(1, 0x00, b"\0" * 1000))
        peer.send(p_data(1, 0x02, b"\0" * 1000))
        answer = response_command(peer)
        assert answer.Status == status.MALFORMED_UID
        assert "AffectedSOPInstanceUID longer than 64" in answer.ErrorComment
        peer.send(p_data(3, 0x03, echo_request(2)))
        assert response_command(peer).Status == status.SUCCESS
    assert wait_until(lambda: not incoming(node))


def test_event_reports_sent_to_the_node_are_refused_in_turn_without_a_thread_each(node):
    """pynetdicom serves each N-EVENT-REPORT on a thread of its own; a peer of the node's
    server sending many would start a thread per message. They are served in turn, each
    answered 0x0211: the node sends Storage Commitment reports, it takes none."""
    commitment = "1.2.840.10008.1.20.1"
    with RawPeer(node.host, node.port) as peer:
        assert peer.associate(associate_rq("UNN_US", contexts=((1, commitment, IMPLICIT),))).type
        baseline = threads_and_descriptors()[0]
        for message_id in range(1, 51):
            report = command(
                AffectedSOPClassUID=commitment,
                CommandField=0x0100,
                MessageID=message_id,
                CommandDataSetType=0x0101,
                AffectedSOPInstanceUID="1.2.840.10008.1.20.1.1",
                EventTypeID=1,
            )
            peer.send(p_data(1, 0x03, report))
        answers = [response_command(peer) for _ in range(50)]
        assert threads_and_descriptors()[0] <= baseline + 1
    assert {a.Status for a in answers} == {status.UNRECOGNIZED_OPERATION}
    assert [a.MessageIDBeingRespondedTo for a in answers] == list(range(1, 51))
    assert echo_works(node)


# -- 8. the log -------------------------------------------------------------------------------


def test_a_newline_from_a_peer_cannot_start_a_line_of_the_log(node):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(EscapeControls())
    logger = logging.getLogger("archive_node")
    logger.addHandler(handler)
    try:
        forged = b"X\n2026 ERROR x"
        with RawPeer(node.host, node.port) as peer:
            peer.associate(associate_rq("UNN_US", raw_calling=forged))
        with RawPeer(node.host, node.port) as peer:
            start_store(peer, uid="1.2.3\n2026-12-04 00:00:00,000 ERROR forged")
            peer.send(p_data(1, 0x02, b"\0" * 10))
            peer.receive()
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert lines and all(line[:4].isdigit() and " archive_node" in line for line in lines), lines
    assert any("X\\x0a2026 ERROR x" in line for line in lines)
