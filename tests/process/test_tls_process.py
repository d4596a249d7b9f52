"""`archive-node serve` with DICOM TLS as a real process: SIGHUP makes the node (and each worker
of `serve --workers 2`) show a renewed certificate to new associations while open ones go on,
and a stalled TLS handshake delays no other peer.

The node's certificate and key are copies in tmp_path/live: a renewal is a copy of another
pair over them, then SIGHUP, as an operator (or certbot's deploy hook) does it. Which
certificate a peer was shown is the SHA-256 of the one its TLS socket received.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import time
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification

from archive_node.rules.tls import fingerprint_of as fingerprint
from tests.helpers.certificates import Credentials
from tests.helpers.ports import free_port
from tests.helpers.serving_process import CALLED, HOST, Archive

MODALITY = "MOD_TLS"  # echo only, --tls required, the modality's certificate bound
HANDSHAKE_TIMEOUT = 5.0
RELOADED = "SIGHUP: TLS certificate, key and CAs re-read: new associations use them"
DEADLINE = 30.0


def certificate_of(credentials: Credentials) -> str:
    return fingerprint(ssl.PEM_cert_to_DER_cert(credentials.certificate.read_text()))


def poll(condition, what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"{what}: not within {deadline} s"
        time.sleep(0.01)


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


def catches_sighup(pid: int) -> bool:
    """Whether process `pid` has a SIGHUP handler installed (SigCgt in /proc/PID/status): a
    node that serves does; before that SIGHUP is ignored (or would end it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)))
    return False


def serving_process(assoc: Association, tls_port: int, candidates: set[int]) -> int:
    """The pid among `candidates` that holds the node's end of `assoc`'s connection: found
    by the connection's socket inode in /proc/net/tcp and the processes' open files."""
    client_port = assoc.dul.socket.socket.getsockname()[1]
    local, remote = f"0100007F:{tls_port:04X}", f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp") as table:
        inodes = {
            fields[9]
            for fields in (line.split() for line in table.readlines()[1:])
            if fields[1] == local and fields[2] == remote
        }
    assert len(inodes) == 1, f"the node's socket of {client_port}: {inodes}"
    wanted = f"socket:[{inodes.pop()}]"
    for pid in candidates:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) == wanted:
                    return pid
    raise AssertionError(f"no process of {candidates} holds {wanted}")


@pytest.fixture
def live(tmp_path, pki) -> Path:
    """The node's certificate and key where its config names them: tmp_path/live/node.*."""
    directory = tmp_path / "live"
    directory.mkdir()
    install(pki.node, directory)
    return directory


def install(credentials: Credentials, live: Path) -> None:
    """Put `credentials` in place of the node's certificate and key (overwritten in place)."""
    (live / "node.pem").write_bytes(credentials.certificate.read_bytes())
    (live / "node.key").write_bytes(credentials.private_key.read_bytes())


@pytest.fixture
def archive(tmp_path, pki, live):
    """A node with a plain port and a TLS port (handshake_timeout 5 s), and MOD_TLS
    registered through the CLI with its certificate bound; started by each test."""
    node = Archive(
        tmp_path / "node",
        tls={
            "port": free_port(),
            "certificate": str(live / "node.pem"),
            "private_key": str(live / "node.key"),
            "ca_certificates": str(pki.region.certificate),
            "handshake_timeout": HANDSHAKE_TIMEOUT,
        },
    )
    node.root.mkdir()
    node.init()
    node.cli(
        "ae", "add", MODALITY, "--hospital", "UNN", "--host", HOST, "--allow", "echo",
        "--tls", "required", "--certificate", str(pki.modality.certificate),
    )  # fmt: skip
    try:
        yield node
    finally:
        workers = children(node.proc.pid) if node.proc and node.proc.poll() is None else set()
        for pid in workers:  # never leave a worker behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        node.close()


def tls_port(node: Archive) -> int:
    assert node.tls is not None
    return int(node.tls["port"])


def associate(node: Archive, pki) -> Association:
    """An association of MOD_TLS to the node's TLS port, with its certificate."""
    ae = AE(ae_title=MODALITY)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.connection_timeout = 10  # TCP connect and TLS handshake: a node that never does it
    ae.add_requested_context(Verification)
    return ae.associate(
        HOST,
        tls_port(node),
        ae_title=CALLED,
        tls_args=(pki.modality.client_context(), None),
    )


def shown(assoc: Association) -> str:
    """The fingerprint of the certificate the node showed on `assoc`."""
    return fingerprint(assoc.dul.socket.socket.getpeercert(binary_form=True))


def ready(node: Archive, pids: set[int], pki) -> None:
    """Poll until every one of `pids` serves (its SIGHUP handler is in), and the TLS port
    takes an association."""
    poll(lambda: all(catches_sighup(pid) for pid in pids), "SIGHUP handlers installed")

    def answers() -> bool:
        assoc = associate(node, pki)
        if not assoc.is_established:
            return False
        assoc.release()
        return True

    poll(answers, "an association over TLS")


def echo_and_release(assoc: Association) -> None:
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


# -- SIGHUP ------------------------------------------------------------------------------------


def test_sighup_shows_new_associations_the_renewed_certificate_and_keeps_open_ones(
    archive, pki, live
):
    archive.start()
    ready(archive, {archive.proc.pid}, pki)
    before = associate(archive, pki)
    assert before.is_established
    assert shown(before) == certificate_of(pki.node)

    renewed = pki.region.issue("archive-renewed")
    install(renewed, live)
    mark = len(archive.log())
    archive.proc.send_signal(signal.SIGHUP)
    archive.wait_for_log(RELOADED, after=mark)

    after = associate(archive, pki)
    assert after.is_established
    assert shown(after) == certificate_of(renewed)
    # the association opened before the signal goes on, with what it was set up with
    echo_and_release(before)
    echo_and_release(after)
    assert archive.proc.poll() is None
    assert "Traceback" not in archive.log()
    assert archive.terminate() == 0


def test_sighup_reaches_every_worker(archive, pki, live):
    archive.start("--workers", "2")
    poll(lambda: len(children(archive.proc.pid)) == 2, "two workers")
    workers = children(archive.proc.pid)
    ready(archive, workers, pki)
    before = associate(archive, pki)
    assert before.is_established
    assert shown(before) == certificate_of(pki.node)

    renewed = pki.region.issue("archive-renewed")
    install(renewed, live)
    mark = len(archive.log())
    archive.proc.send_signal(signal.SIGHUP)  # to the supervisor, which passes it on
    poll(lambda: archive.log()[mark:].count(RELOADED) == 2, "both workers re-read")

    # SO_REUSEPORT spreads connections by their source port: enough of them reach both
    served_by: dict[int, int] = {}
    for count in range(1, 41):
        assoc = associate(archive, pki)
        assert assoc.is_established
        assert shown(assoc) == certificate_of(renewed), f"association {count}"
        pid = serving_process(assoc, tls_port(archive), workers)
        served_by[pid] = served_by.get(pid, 0) + 1
        echo_and_release(assoc)
        if count >= 8 and len(served_by) == 2:
            break
    assert set(served_by) == workers, served_by
    echo_and_release(before)
    # no worker ended (and was started again with the new files)
    assert children(archive.proc.pid) == workers
    assert " ended " not in archive.log()
    assert "Traceback" not in archive.log()


# -- the handshake -----------------------------------------------------------------------------


def test_a_stalled_handshake_delays_no_other_peer(archive, pki):
    """Silent connections and a half-sent ClientHello on the TLS port: another peer's
    association is established at once, not after tls.handshake_timeout (5 s)."""
    archive.start()
    ready(archive, {archive.proc.pid}, pki)
    stalled = [socket.create_connection((HOST, tls_port(archive))) for _ in range(4)]
    try:
        stalled[0].sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello
        started = time.monotonic()
        assoc = associate(archive, pki)
        took = time.monotonic() - started
        assert took < 1.5, f"the association waited {took:.1f} s behind stalled handshakes"
        echo_and_release(assoc)
    finally:
        for sock in stalled:
            sock.close()
    assert archive.terminate() == 0


def test_sigterm_does_not_wait_for_stalled_handshakes(archive, pki):
    """Connections still in their TLS handshake hold no association: SIGTERM ends them with
    the node, as it ends plain connections that have not sent an A-ASSOCIATE-RQ, instead of
    waiting out tls.handshake_timeout (30 s here)."""
    assert archive.tls is not None
    archive.tls["handshake_timeout"] = 30.0
    archive.write_config()
    archive.start()
    ready(archive, {archive.proc.pid}, pki)
    stalled = [socket.create_connection((HOST, tls_port(archive))) for _ in range(3)]
    try:
        stalled[0].sendall(b"\x16\x03\x01\x02\x00\x01")
        # each is accepted and in its handshake: a C-ECHO after them has been served
        echo_and_release(associate(archive, pki))
        started = time.monotonic()
        assert archive.terminate() == 0
        took = time.monotonic() - started
    finally:
        for sock in stalled:
            sock.close()
    assert took < 10, f"SIGTERM took {took:.1f} s with handshakes stalled"
