"""DICOM TLS over real associations: a certificate is worth exactly one AE, --tls required keeps
an AE off the plain port, the handshake stalls nobody else, certificates are re-read without
dropping associations, and C-MOVE destinations and commitment call-backs are called over TLS."""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import struct
import time
import warnings

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.sop_class import Verification

from archive_node.dicom import status
from archive_node.errors import ConfigError, Conflict
from archive_node.net.server import ArchiveServer
from archive_node.registry import bound_certificates
from archive_node.rules.commitment import EVENT_ALL_COMMITTED
from archive_node.rules.tls import fingerprint_of as fingerprint
from archive_node.service import ArchiveService
from tests.helpers import dicom_objects
from tests.helpers.cli import fails, ok, write_config
from tests.helpers.commitment import modality, n_action, request
from tests.helpers.dimse import associate, push
from tests.helpers.identifiers import identifier
from tests.helpers.raw_peer import RawPeer, associate_rq
from tests.helpers.retrieving import Destination, move
from tests.helpers.serving import make_config, serving

DEADLINE = 20.0


def tls_section(pki, **overrides):
    values = {
        "certificate": str(pki.node.certificate),
        "private_key": str(pki.node.private_key),
        "ca_certificates": str(pki.region.certificate),
        "handshake_timeout": 2.0,
    }
    values.update(overrides)
    return values


@pytest.fixture
def tls_config(tmp_path, index_url, pki):
    return make_config(tmp_path, index_url, tls=tls_section(pki))


@pytest.fixture
def tls_service(tls_config, pki):
    """Four AEs: MOD_TLS and WS_TLS need TLS with their bound certificates, OPEN_AE takes
    either port, PLAIN_ONLY does not use TLS."""
    service = ArchiveService.from_config(tls_config)
    service.index.init_schema()
    service.storage.create()
    reg = service.registry
    reg.add_hospital("UNN", "University Hospital of North Norway", issuer="UNN")
    reg.add_ae(
        "MOD_TLS",
        "UNN",
        host="127.0.0.1",
        allow="echo,store",
        tls="required",
        certificates=bound_certificates((pki.modality.fingerprint,)),
    )
    reg.add_ae(
        "WS_TLS",
        "UNN",
        host="127.0.0.1",
        allow="echo,find,move,get",
        tls="required",
        certificates=bound_certificates(files=(str(pki.workstation.certificate),)),
    )
    reg.add_ae("OPEN_AE", "UNN", host="127.0.0.1", allow="echo,store")
    reg.add_ae("PLAIN_ONLY", "UNN", host="127.0.0.1", allow="echo", tls="off")
    yield service
    service.index.close()


@pytest.fixture
def tls_node(tls_service):
    with serving(tls_service, tls=True) as running:
        yield running


def rejection(assoc) -> tuple[int, int, int]:
    assert assoc.is_rejected, "expected an A-ASSOCIATE-RJ, not an abort or an accept"
    rsp = assoc.acceptor.primitive
    return rsp.result, rsp.result_source, rsp.diagnostic


def server_certificate(assoc) -> bytes:
    return assoc.dul.socket.socket.getpeercert(binary_form=True)


# -- accepted -------------------------------------------------------------------------------


def test_bound_certificate_stores_over_tls(tls_node, pki, caplog):
    ds = dicom_objects.secondary_capture()
    with caplog.at_level(logging.INFO, logger="archive_node"):
        assoc = associate(
            tls_node,
            "MOD_TLS",
            [(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])],
            tls=pki.modality.client_context(),
        )
        assert assoc.is_established
        assert isinstance(assoc.dul.socket.socket, ssl.SSLSocket)
        assert assoc.dul.socket.socket.version() in ("TLSv1.2", "TLSv1.3")
        assert assoc.send_c_store(ds).Status == status.SUCCESS
        shown = server_certificate(assoc)
        assoc.release()
    assert tls_node.service.index.instances.find(ds.SOPInstanceUID) is not None
    assert "association accepted: calling MOD_TLS (UNN) from 127.0.0.1 over TLS" in caplog.text
    # the node showed its own certificate
    node_der = ssl.PEM_cert_to_DER_cert(pki.node.certificate.read_text())
    assert fingerprint(shown) == fingerprint(node_der)


def test_optional_ae_connects_on_either_port(tls_node, pki):
    for tls in (None, pki.unbound.client_context()):
        assoc = associate(tls_node, "OPEN_AE", tls=tls)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == status.SUCCESS
        assoc.release()


@pytest.mark.parametrize(
    ("calling", "credentials", "logged"),
    [
        ("MOD_TLS", None, "no client certificate; the AE has a bound one"),
        ("MOD_TLS", "workstation", "is bound to AE WS_TLS"),
        ("MOD_TLS", "unbound", "is not the AE's bound one"),
        ("OPEN_AE", "workstation", "is bound to AE WS_TLS"),
        ("OPEN_AE", None, "no client certificate (tls.require_client_certificate)"),
        ("PLAIN_ONLY", "unbound", "the AE does not use TLS (--tls off)"),
    ],
    ids=[
        "bound-ae-without-certificate",
        "bound-ae-with-another-aes-certificate",
        "bound-ae-with-an-unbound-certificate",
        "unbound-ae-with-another-aes-certificate",
        "no-certificate",
        "tls-off-ae-over-tls",
    ],
)
def test_tls_rejections_are_calling_ae_not_recognized(
    tls_node, pki, caplog, calling, credentials, logged
):
    if credentials is None:
        context = ssl.create_default_context(cafile=str(pki.region.certificate))
        context.check_hostname = False
    else:
        context = getattr(pki, credentials).client_context()
    with caplog.at_level(logging.INFO, logger="archive_node"):
        assoc = associate(tls_node, calling, tls=context)
    assert rejection(assoc) == (1, 1, 3)
    assert f"association rejected: calling {calling} (UNN) from 127.0.0.1 over TLS" in caplog.text
    assert logged in caplog.text


@pytest.mark.parametrize(
    ("calling", "logged"),
    [
        ("MOD_TLS", "the AE needs TLS (--tls required) and came on the plain port"),
        ("WS_TLS", "the AE needs TLS (--tls required) and came on the plain port"),
    ],
)
def test_tls_required_ae_is_rejected_on_the_plain_port(tls_node, caplog, calling, logged):
    with caplog.at_level(logging.INFO, logger="archive_node"):
        assoc = associate(tls_node, calling)
    assert rejection(assoc) == (1, 1, 3)
    assert logged in caplog.text


def test_ae_with_a_bound_certificate_is_rejected_on_the_plain_port(tls_node, pki, caplog):
    tls_node.service.registry.update_ae("MOD_TLS", tls="optional")
    with caplog.at_level(logging.INFO, logger="archive_node"):
        assoc = associate(tls_node, "MOD_TLS")
    assert rejection(assoc) == (1, 1, 3)
    assert "has a bound certificate and came on the plain port" in caplog.text
    # over TLS with its certificate it still gets in
    assoc = associate(tls_node, "MOD_TLS", tls=pki.modality.client_context())
    assert assoc.is_established
    assoc.release()


def test_binding_takes_effect_for_the_next_association(tls_node, pki):
    """Onboarding is one command, at once: binding the certificate, and unbinding it."""
    registry = tls_node.service.registry
    assoc = associate(tls_node, "OPEN_AE", tls=pki.unbound.client_context())
    assert assoc.is_established
    assoc.release()
    with pytest.raises(Conflict, match="is bound to AE MOD_TLS"):  # one certificate, one AE
        registry.update_ae("OPEN_AE", certificates=(fingerprint_hex(pki.modality),))
    registry.update_ae("OPEN_AE", certificates=(fingerprint_hex(pki.unbound),))
    assert associate(tls_node, "OPEN_AE", tls=pki.workstation.client_context()).is_rejected
    assoc = associate(tls_node, "OPEN_AE", tls=pki.unbound.client_context())
    assert assoc.is_established
    assoc.release()


def fingerprint_hex(credentials) -> str:
    return credentials.fingerprint.removeprefix("SHA256:").replace(":", "").lower()


def test_a_certificate_from_another_ca_fails_the_handshake(tls_node, pki, caplog):
    with caplog.at_level(logging.INFO, logger="archive_node"):
        assoc = associate(
            tls_node, "MOD_TLS", tls=pki.rogue.client_context(pki.region.certificate)
        )
        assert not assoc.is_established and not assoc.is_rejected
        poll(lambda: "handshake failed" in caplog.text)
    assert "client certificate refused" in caplog.text or "certificate" in caplog.text
    # the node serves on
    assoc = associate(tls_node, "MOD_TLS", tls=pki.modality.client_context())
    assert assoc.is_established
    assoc.release()


def test_the_node_is_checked_by_its_peers_ca(tls_node, pki):
    """A peer that trusts only another CA refuses the node's certificate."""
    rogue_trusting = pki.modality.client_context(ca=pki.rogue.ca)
    assoc = associate(tls_node, "MOD_TLS", tls=rogue_trusting)
    assert not assoc.is_established


@pytest.mark.parametrize("weakness", ["tls1.1", "cbc-cipher"])
def test_weak_protocols_and_ciphers_are_refused(tls_node, pki, caplog, weakness):
    """BCP 195 (PS3.15 B.9): TLS 1.2 or newer, AEAD cipher suites only."""
    context = pki.modality.client_context()
    if weakness == "tls1.1":
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        with warnings.catch_warnings():  # deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    else:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers("ECDHE-RSA-AES128-SHA:AES128-SHA")
    assoc = associate(tls_node, "MOD_TLS", tls=context)
    assert not assoc.is_established
    assoc = associate(tls_node, "MOD_TLS", tls=pki.modality.client_context())
    assert assoc.is_established
    assoc.release()


def test_without_required_client_certificates_an_unbound_ae_connects_encrypted(
    tmp_path, index_url, pki, tls_service
):
    config = make_config(
        tmp_path, index_url, tls=tls_section(pki, require_client_certificate=False)
    )
    anonymous = ssl.create_default_context(cafile=str(pki.region.certificate))
    anonymous.check_hostname = False
    with serving(ArchiveService.from_config(config), tls=True) as node:
        assoc = associate(node, "OPEN_AE", tls=anonymous)
        assert assoc.is_established
        assoc.release()
        # an AE with a bound certificate still needs it
        assert rejection(associate(node, "MOD_TLS", tls=anonymous)) == (1, 1, 3)


# -- the handshake ----------------------------------------------------------------------------


def poll(condition, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.02)


def test_a_stalled_handshake_delays_no_other_peer(tls_node, pki, caplog):
    """Silent connections and a half-sent ClientHello hold their own sockets only; each is
    closed after tls.handshake_timeout (2 s here)."""
    stalled = [socket.create_connection(("127.0.0.1", tls_node.tls_port)) for _ in range(4)]
    stalled[0].sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, no more
    try:
        with caplog.at_level(logging.INFO, logger="archive_node"):
            started = time.monotonic()
            assoc = associate(tls_node, "MOD_TLS", tls=pki.modality.client_context())
            took = time.monotonic() - started
            assert assoc.is_established
            assert assoc.send_c_echo().Status == status.SUCCESS
            assoc.release()
            assert took < 1.5, f"the association waited {took:.1f} s behind stalled handshakes"
            for sock in stalled:
                sock.settimeout(DEADLINE)
                assert sock.recv(1024) == b"", "a stalled handshake was not closed"
        assert "handshake failed: not completed in 2 s (tls.handshake_timeout)" in caplog.text
    finally:
        for sock in stalled:
            sock.close()


def test_plain_dicom_on_the_tls_port_fails_the_handshake(tls_node, caplog):
    with caplog.at_level(logging.INFO, logger="archive_node"):
        assoc = associate(tls_node, "OPEN_AE", called=None, tls=None)  # plain port: fine
        assert assoc.is_established
        assoc.release()
        sock = socket.create_connection(("127.0.0.1", tls_node.tls_port))
        sock.sendall(b"\x01\x00\x00\x00\x00\x44" + b"\x00" * 0x44)  # an A-ASSOCIATE-RQ
        sock.settimeout(DEADLINE)
        try:
            while sock.recv(1024):
                pass
        except ConnectionResetError:
            pass
        sock.close()
        poll(lambda: "handshake failed" in caplog.text)


# -- certificates re-read (SIGHUP) ------------------------------------------------------------


def test_reload_gives_new_associations_the_new_certificate_and_keeps_open_ones(
    tmp_path, index_url, pki, tls_service, caplog
):
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(pki.node.certificate, live / "node.pem")
    shutil.copy(pki.node.private_key, live / "node.key")
    config = make_config(
        tmp_path,
        index_url,
        tls=tls_section(
            pki, certificate=str(live / "node.pem"), private_key=str(live / "node.key")
        ),
    )
    with serving(ArchiveService.from_config(config), tls=True) as node:
        before = associate(node, "MOD_TLS", tls=pki.modality.client_context())
        assert before.is_established
        old = fingerprint(server_certificate(before))
        renewed = pki.region.issue("archive-renewed")
        shutil.copy(renewed.certificate, live / "node.pem")
        shutil.copy(renewed.private_key, live / "node.key")
        with caplog.at_level(logging.INFO, logger="archive_node"):
            assert node.server.reload_tls()
        assert "TLS certificate, key and CAs re-read" in caplog.text
        after = associate(node, "MOD_TLS", tls=pki.modality.client_context())
        assert after.is_established
        new = fingerprint(server_certificate(after))
        assert new != old
        assert new == fingerprint_hex(renewed)
        # the association opened before goes on
        assert before.send_c_echo().Status == status.SUCCESS
        assert after.send_c_echo().Status == status.SUCCESS
        before.release()
        after.release()
        # a broken file is logged, and the certificate in use kept
        (live / "node.key").write_text("not a key\n")
        with caplog.at_level(logging.INFO, logger="archive_node"):
            assert not node.server.reload_tls()
        assert "TLS not re-read, the certificate in use is kept" in caplog.text
        kept = associate(node, "MOD_TLS", tls=pki.modality.client_context())
        assert fingerprint(server_certificate(kept)) == new
        kept.release()


# -- TLS-only node, and configuration errors --------------------------------------------------


def test_tls_only_node(tmp_path, index_url, pki, tls_service):
    config = make_config(tmp_path, index_url, node={"port": 0}, tls=tls_section(pki))
    with serving(ArchiveService.from_config(config), plain=False, tls=True) as node:
        assert node.port == 0
        assoc = associate(node, "MOD_TLS", tls=pki.modality.client_context())
        assert assoc.is_established
        assoc.release()


def test_a_node_without_any_port_refuses_to_start(tmp_path, index_url, tls_service):
    server = ArchiveServer(
        ArchiveService.from_config(make_config(tmp_path, index_url, node={"port": 0}))
    )
    with pytest.raises(ConfigError, match=r"node\.port and tls\.port are both 0"):
        server.start("127.0.0.1")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"certificate": "/nonexistent/node.pem"},
            "tls.certificate: /nonexistent/node.pem: no such",
        ),
        (
            {"private_key": "/nonexistent/node.key"},
            "tls.private_key: /nonexistent/node.key: no such",
        ),
        (
            {"ca_certificates": "/nonexistent/ca.pem"},
            "tls.ca_certificates: /nonexistent/ca.pem: no",
        ),
        ({"private_key": "WRONG_KEY"}, "not a PEM certificate and its matching key"),
        ({"ca_certificates": "NOT_PEM"}, "tls.ca_certificates"),
        ({"private_key": "ENCRYPTED"}, "tls.private_key: the key is encrypted"),
    ],
    ids=[
        "no-certificate",
        "no-key",
        "no-ca",
        "key-of-another-certificate",
        "ca-not-pem",
        "encrypted-key",
    ],
)
def test_unusable_tls_files_stop_the_start_with_one_line(
    tmp_path, index_url, pki, change, message
):
    substitutes = {
        "WRONG_KEY": str(pki.workstation.private_key),
        "NOT_PEM": str(write(tmp_path / "ca.txt", "hello\n")),
        "ENCRYPTED": str(encrypted_key(tmp_path, pki)),
    }
    change = {k: substitutes.get(v, v) for k, v in change.items()}
    config = make_config(tmp_path, index_url, tls=tls_section(pki, port=0, **change))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as raised:
        ArchiveServer(ArchiveService.from_config(config))
    assert "\n" not in str(raised.value)


def write(path, text):
    path.write_text(text)
    return path


def encrypted_key(tmp_path, pki):
    import subprocess

    target = tmp_path / "encrypted.key"
    subprocess.run(
        [
            "openssl", "pkey", "-in", str(pki.node.private_key), "-aes256",
            "-passout", "pass:secret", "-out", str(target),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return target


def test_tls_port_without_certificates_is_a_config_error(tmp_path, index_url):
    with pytest.raises(ConfigError, match=r"tls\.certificate: must be set when tls\.port is set"):
        make_config(tmp_path, index_url, tls={"port": 2762})


# -- the node calling over TLS: C-MOVE destinations, commitment call-backs ---------------------


def stored_study(node, pki, count=2) -> str:
    """`count` secondary captures of one new study, stored by MOD_TLS over TLS; its UID."""
    first = dicom_objects.secondary_capture()
    datasets = [first] + [
        dicom_objects.secondary_capture(study_uid=first.StudyInstanceUID) for _ in range(count - 1)
    ]
    push(node, "MOD_TLS", datasets, tls=pki.modality.client_context())
    return first.StudyInstanceUID


def move_contexts():
    from tests.helpers.retrieving import STUDY_MOVE

    return [STUDY_MOVE]


def test_c_move_to_a_tls_destination_goes_over_tls(tls_node, pki, tmp_path):
    study_uid = stored_study(tls_node, pki)
    destination = Destination(
        tmp_path / "dest", ae_title="WS_TLS", ssl_context=pki.workstation.server_context()
    )
    try:
        tls_node.service.registry.update_ae("WS_TLS", port=destination.port)
        assoc = associate(
            tls_node, "WS_TLS", move_contexts(), tls=pki.workstation.client_context()
        )
        final, _, _ = move(assoc, identifier("STUDY", StudyInstanceUID=study_uid), "WS_TLS")
        assoc.release()
        assert final.Status == status.SUCCESS
        assert final.NumberOfCompletedSuboperations == 2
        assert len(destination.received.files) == 2
        # over TLS, and the node showed its certificate
        assert len(destination.peer_certificates) == 1
        assert fingerprint(destination.peer_certificates[0]) == fingerprint_hex(pki.node)
    finally:
        destination.stop()


@pytest.mark.parametrize(
    "impostor", ["another-aes-certificate", "an-unbound-certificate", "another-ca"]
)
def test_c_move_to_a_tls_destination_checks_it_is_that_ae(
    tls_node, pki, tmp_path, caplog, impostor
):
    """The destination is known by the certificate bound to it: another AE's, an unbound
    one or another CA's fails the sub-operations, and no instance leaves the node."""
    study_uid = stored_study(tls_node, pki)
    credentials = {
        "another-aes-certificate": pki.modality,
        "an-unbound-certificate": pki.unbound,
        "another-ca": pki.rogue,
    }[impostor]
    destination = Destination(
        tmp_path / "dest",
        ae_title="WS_TLS",
        ssl_context=credentials.server_context(ca=pki.region.certificate),
    )
    try:
        tls_node.service.registry.update_ae("WS_TLS", port=destination.port)
        assoc = associate(
            tls_node, "WS_TLS", move_contexts(), tls=pki.workstation.client_context()
        )
        with caplog.at_level(logging.INFO, logger="archive_node"):
            final, _, _ = move(assoc, identifier("STUDY", StudyInstanceUID=study_uid), "WS_TLS")
        assoc.release()
        assert final.Status != status.SUCCESS
        assert destination.received.files == {}
        if impostor != "another-ca":
            assert "over TLS is not that AE" in caplog.text
            # the requester learns nothing of other AEs' titles
            assert final.ErrorComment == "WS_TLS: its TLS certificate is not its own"
    finally:
        destination.stop()


def test_c_move_to_a_plain_destination_stays_plain(tls_node, pki, tmp_path):
    """--tls optional: the destination's registered port is a plain DICOM one."""
    study_uid = stored_study(tls_node, pki, count=1)
    destination = Destination(tmp_path / "dest", ae_title="OPEN_AE")
    try:
        tls_node.service.registry.update_ae("OPEN_AE", port=destination.port)
        assoc = associate(
            tls_node, "WS_TLS", move_contexts(), tls=pki.workstation.client_context()
        )
        final, _, _ = move(assoc, identifier("STUDY", StudyInstanceUID=study_uid), "OPEN_AE")
        assoc.release()
        assert final.Status == status.SUCCESS
        assert len(destination.received.files) == 1
        assert destination.peer_certificates == []
    finally:
        destination.stop()


def test_storage_commitment_call_back_goes_over_tls(tls_node, pki):
    ds = dicom_objects.secondary_capture()
    refs = [(ds.SOPClassUID, ds.SOPInstanceUID)]
    tls_node.service.registry.update_ae("MOD_TLS", allow="echo,store")
    with modality("MOD_TLS", answer_on_association=False) as scu:
        scu.ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
        tls_node.service.registry.update_ae(
            "MOD_TLS", port=scu.listen(ssl_context=pki.modality.server_context())
        )
        assoc = scu.associate(tls_node, tls=pki.modality.client_context())
        assert assoc.send_c_store(ds).Status == status.SUCCESS
        commitment = request(refs)
        assert n_action(assoc, commitment).Status == 0
        assoc.abort()
        where, event_type, info = scu.report()
        assert (where, event_type) == ("listener", EVENT_ALL_COMMITTED)
        assert info.TransactionUID == commitment.TransactionUID


def test_silent_tls_connections_past_the_pending_limit_close_the_oldest(
    tmp_path, index_url, pki, tls_service, capfd
):
    """node.max_pending_connections bounds connections in their handshake too: the oldest go
    at once (long before tls.handshake_timeout), with nothing but a log line."""
    config = make_config(
        tmp_path,
        index_url,
        node={"max_pending_connections": 2},
        tls=tls_section(pki, handshake_timeout=30.0),
    )
    with serving(ArchiveService.from_config(config), tls=True) as node:
        silent = []
        try:
            for _ in range(4):  # accepted in the order they connect (the kernel's queue)
                silent.append(socket.create_connection(("127.0.0.1", node.tls_port)))
            for sock in silent[:2]:
                sock.settimeout(5.0)
                assert sock.recv(1024) == b"", "an evicted connection stayed open"
            assoc = associate(node, "MOD_TLS", tls=pki.modality.client_context())
            assert assoc.is_established
            assoc.release()
        finally:
            for sock in silent:
                sock.close()
    assert "Traceback" not in capfd.readouterr().err


def test_protocol_breaches_over_tls_get_their_pdu_over_tls(tls_node, pki):
    """A-ASSOCIATE-RJ for a malformed request and A-ABORT for an oversized PDU reach a TLS
    peer as they reach a plain one (PS3.8 9.3.4, 9.3.8)."""
    with RawPeer("127.0.0.1", tls_node.tls_port, tls=pki.modality.client_context()) as peer:
        answer = peer.associate(associate_rq("MOD_TLS", contexts=()))
        assert answer.type == 0x03
        assert answer.rejection == (1, 1, 1)
    with RawPeer("127.0.0.1", tls_node.tls_port, tls=pki.modality.client_context()) as peer:
        peer.send(struct.pack(">BBL", 0x01, 0, 1 << 30))  # an A-ASSOCIATE-RQ of 1 GiB
        answer = peer.receive()
        assert answer is not None and answer.type == 0x07
        assert peer.closed_by_node()


# -- the bundled client over TLS ---------------------------------------------------------------


def test_the_cli_calls_a_tls_only_node_over_tls(tls_node, pki, tmp_path, index_url):
    """With node.port = 0 the CLI's clients call the TLS port with the node's certificate."""
    cfg = write_config(
        tmp_path, index_url, name="cli.toml", node={"port": 0}, tls=tls_section(pki)
    )
    port = str(tls_node.tls_port)
    out = ok("echo", "ARCHIVE", "--calling-aet", "OPEN_AE", "--port", port, "-c", cfg).output
    assert "over TLS: status 0x0000" in out
    ds = dicom_objects.secondary_capture()
    path = tmp_path / "sc.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert (
        "1 of 1 stored"
        in ok("send", path, "--calling-aet", "OPEN_AE", "--port", port, "-c", cfg).output
    )
    assert tls_node.service.index.instances.find(ds.SOPInstanceUID) is not None
    # the node's certificate is not the workstation's: that AE stays closed to it
    line = fails("find", "--calling-aet", "WS_TLS", "--port", port, "-c", cfg)
    assert "association with ARCHIVE at" in line and "over TLS rejected (permanent)" in line


@pytest.mark.parametrize("impostor", [False, True])
def test_cli_echo_calls_a_tls_ae_as_the_node_would(tls_node, pki, tmp_path, index_url, impostor):
    """`archive-node echo AET` is the onboarding check of a TLS destination: over TLS, and
    refused when the AE's certificate is not the one bound to it."""
    credentials = pki.modality if impostor else pki.workstation
    destination = Destination(
        tmp_path / "dest",
        classes=[Verification],
        ae_title="WS_TLS",
        ssl_context=credentials.server_context(ca=pki.region.certificate),
    )
    try:
        tls_node.service.registry.update_ae("WS_TLS", port=destination.port)
        cfg = write_config(tmp_path, index_url, name="cli.toml", tls=tls_section(pki))
        if impostor:
            line = fails("echo", "WS_TLS", "-c", cfg)
            assert "over TLS is not that AE" in line and "bound to AE MOD_TLS" in line
        else:
            out = ok("echo", "WS_TLS", "-c", cfg).output
            assert "C-ECHO WS_TLS at 127.0.0.1" in out and "over TLS: status 0x0000" in out
    finally:
        destination.stop()
