"""DICOM TLS between the node and Debian's DCMTK (built with OpenSSL), on both index backends.

storescu, echoscu, findscu and storescp speak TLS themselves: `+tls KEY CERT` presents a
certificate, `+tla` none, `+cf CA` is the CA a peer's certificate must chain to (PEM is the
default, `-pem`). DCMTK 3.6.7's getscu and movescu have no TLS options: where the installed one
lacks `+tls` (its --help says), it calls the node through a socat TLS tunnel that presents the
workstation's certificate, so the node sees a TLS association with that certificate and the
tool's own DIMSE messages. The node's C-MOVE sub-associations go to a DCMTK storescp started
with `+tls` (it accepts TLS only), which logs the certificate the node presented.

What is asserted of a rejection is what the operator sees: DCMTK's exit code and words, and
the node's log line with its reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from archive_node.dicom import status
from archive_node.registry import bound_certificates
from archive_node.service import ArchiveService
from tests.helpers import dicom_objects
from tests.helpers.certificates import Credentials
from tests.helpers.cli import ok, write_config
from tests.helpers.dcmtk import (
    counts,
    dcmtk,
    files_by_uid,
    final_response,
    output,
    run,
    stop_process,
)
from tests.helpers.dimse import associate, push
from tests.helpers.environment import REQUIRE_DCMTK
from tests.helpers.identifiers import identifier
from tests.helpers.ports import LOOPBACK, free_port
from tests.helpers.retrieving import STUDY_MOVE, move
from tests.helpers.serving import make_config, serving, stored_path

# the tools that must take +tls themselves, and those that may call through a tunnel instead
TLS_TOOLS = ("storescu", "echoscu", "findscu", "storescp")
TUNNELLED_TOOLS = ("getscu", "movescu")
TOOLS = {tool: dcmtk(tool) for tool in (*TLS_TOOLS, *TUNNELLED_TOOLS)}


def takes_tls(tool: str) -> bool:
    """Whether DCMTK's `tool` was built with OpenSSL and has the TLS options."""
    path = TOOLS[tool]
    if path is None:
        return False
    help_text = subprocess.run(
        [path, "--help"], capture_output=True, text=True, timeout=10, check=False
    )
    return "--enable-tls" in help_text.stdout + help_text.stderr


MISSING = [tool for tool, path in TOOLS.items() if path is None]
WITHOUT_TLS = [tool for tool in TLS_TOOLS if TOOLS[tool] is not None and not takes_tls(tool)]
NATIVE_TLS = {tool: takes_tls(tool) for tool in TUNNELLED_TOOLS}
SOCAT = shutil.which("socat")
PROBLEMS = []
if MISSING:
    PROBLEMS.append(f"DCMTK {', '.join(MISSING)} not installed")
if WITHOUT_TLS:
    PROBLEMS.append(f"DCMTK {', '.join(WITHOUT_TLS)} built without OpenSSL")
UNFIT = "; ".join(PROBLEMS)

pytestmark = [
    pytest.mark.dcmtk,
    pytest.mark.skipif(bool(UNFIT) and not REQUIRE_DCMTK, reason=UNFIT),
]

MODALITY = "MOD_TLS"  # echo,store; --tls required; the modality's certificate bound
WORKSTATION = "WS_TLS"  # echo,find,move,get; --tls required; the workstation's bound
STORESCP = "STORESCP"  # the Move Destination, registered by each test that starts it
STARTUP = 10.0  # seconds for storescp or socat to listen
OVER_TLS = "association accepted: calling {} (UNN) from 127.0.0.1 over TLS"  # the node's log


@pytest.fixture(autouse=True)
def _dcmtk_with_tls() -> None:
    if UNFIT:
        pytest.fail(f"{UNFIT}, but ARCHIVE_NODE_REQUIRE_DCMTK=1")


# -- the node ----------------------------------------------------------------------------------


@pytest.fixture
def tls_service(tmp_path, index_url, pki):
    """A node whose TLS port trusts the region's CA (its plain port is node.port, 0 here)."""
    config = make_config(
        tmp_path,
        index_url,
        tls={
            "certificate": str(pki.node.certificate),
            "private_key": str(pki.node.private_key),
            "ca_certificates": str(pki.region.certificate),
            "handshake_timeout": 5.0,
        },
    )
    service = ArchiveService.from_config(config)
    service.index.init_schema()
    service.storage.create()
    reg = service.registry
    reg.add_hospital("UNN", "University Hospital of North Norway", issuer="UNN")
    reg.add_ae(
        MODALITY,
        "UNN",
        host=LOOPBACK,
        allow="echo,store",
        tls="required",
        certificates=bound_certificates((pki.modality.fingerprint,)),
    )
    reg.add_ae(
        WORKSTATION,
        "UNN",
        host=LOOPBACK,
        allow="echo,find,move,get",
        tls="required",
        certificates=bound_certificates(files=(str(pki.workstation.certificate),)),
    )
    yield service
    service.index.close()


@pytest.fixture
def tls_only(tls_service):
    """The node serving TLS only (node.port = 0)."""
    with serving(tls_service, plain=False, tls=True) as running:
        yield running


@pytest.fixture
def both_ports(tls_service):
    with serving(tls_service, tls=True) as running:
        yield running


@pytest.fixture
def cli_config(tmp_path, index_url) -> Path:
    """A config for the CLI on the node's index: onboarding as the README tells it."""
    return write_config(tmp_path, index_url, name="cli.toml")


def stored_study(node, pki, count: int = 2) -> tuple[str, set[str]]:
    """`count` secondary captures of one new study, stored by the modality over TLS; the
    study's UID and its instances'."""
    datasets = [dicom_objects.secondary_capture(patient_id="TLS-1")]
    study_uid = datasets[0].StudyInstanceUID
    datasets += [
        dicom_objects.secondary_capture(patient_id="TLS-1", study_uid=study_uid)
        for _ in range(count - 1)
    ]
    push(node, MODALITY, datasets, tls=pki.modality.client_context())
    return str(study_uid), {str(ds.SOPInstanceUID) for ds in datasets}


def assert_kept_byte_for_byte(node, received: dict[str, Path], uids: set[str]) -> None:
    assert set(received) == uids
    for uid in uids:
        assert dicom_objects.dataset_bytes(received[uid]) == dicom_objects.dataset_bytes(
            stored_path(node, uid)
        ), f"instance {uid} changed on the way"


def poll(condition, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.01)


# -- DCMTK's side ------------------------------------------------------------------------------


def tls_options(credentials: Credentials | None, ca: Path) -> list[str]:
    """DCMTK's options to present `credentials` (None: anonymous TLS, +tla) and to trust `ca`
    for the peer's certificate (DCMTK requires the peer's certificate by default, -rc)."""
    if credentials is None:
        return ["+tla", "+cf", str(ca)]
    return ["+tls", str(credentials.private_key), str(credentials.certificate), "+cf", str(ca)]


def scu(
    tool: str,
    node,
    calling: str,
    *args: str | Path,
    port: int | None = None,
    files: tuple[Path, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run DCMTK's `tool` as `calling` against the node's TLS port (or `port`), with `files`
    (storescu's) after the port."""
    path = TOOLS[tool]
    assert path is not None
    return run(
        path,
        *map(str, args),
        "-aet",
        calling,
        "-aec",
        node.ae_title,
        node.host,
        str(port or node.tls_port),
        *map(str, files),
    )


def listening(port: int) -> bool:
    """Whether a socket listens on `port`, on any address, IPv4 or IPv6 (storescp binds the
    IPv6 wildcard). Read from Linux /proc: no connection is made, which a TLS server would
    log as a failed handshake."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in lines.readlines()[1:]:
                fields = line.split()  # local address:port in hex, ..., state (0A: LISTEN)
                if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                    return True
    return False


@dataclass
class Server:
    """A DCMTK storescp or a socat tunnel on a loopback port, its output on a file."""

    proc: subprocess.Popen
    port: int
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)


@contextlib.contextmanager
def listening_process(command, log: Path) -> Iterator[Server]:
    """Start `command(port)` on a free port, polled until it listens; stopped at the end."""
    for _ in range(3):  # the free port may be taken before the process binds it
        port = free_port()
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [str(a) for a in command(port)],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TCP_NODELAY": "1"},
            )
        server = Server(proc, port, log)
        deadline = time.monotonic() + STARTUP
        while proc.poll() is None and not listening(port):
            if time.monotonic() > deadline:
                server.stop()
                raise AssertionError(f"{command(port)[0]} not listening after {STARTUP} s")
            time.sleep(0.01)
        if proc.poll() is None:
            try:
                yield server
            finally:
                server.stop()
            return
    raise AssertionError(f"{command(0)[0]} did not start: {log.read_text(errors='replace')}")


@contextlib.contextmanager
def storescp(tmp_path: Path, credentials: Credentials, ca: Path) -> Iterator[Server]:
    """DCMTK storescp over TLS only, presenting `credentials`, requiring its caller's
    certificate to chain to `ca`; it keeps what it receives in tmp_path/storescp."""
    directory = tmp_path / "storescp"
    directory.mkdir()

    def command(port: int) -> list[object]:
        return [
            TOOLS["storescp"],
            "-d",
            *tls_options(credentials, ca),
            "-aet",
            STORESCP,
            "-od",
            directory,
            port,
        ]

    with listening_process(command, tmp_path / "storescp.log") as server:
        yield server


@contextlib.contextmanager
def tunnel(tmp_path: Path, node, credentials: Credentials, ca: Path) -> Iterator[int]:
    """A loopback port whose connections socat carries to the node's TLS port over TLS,
    presenting `credentials` and checking the node's certificate against `ca`."""
    if SOCAT is None:
        message = "socat not installed: DCMTK's getscu and movescu 3.6.7 cannot do TLS alone"
        if REQUIRE_DCMTK:
            pytest.fail(message + ", and ARCHIVE_NODE_REQUIRE_DCMTK=1")
        pytest.skip(message)

    def command(port: int) -> list[object]:
        return [
            SOCAT,
            "-d",
            "-d",
            f"TCP-LISTEN:{port},bind={LOOPBACK},reuseaddr,fork",
            f"OPENSSL:{node.host}:{node.tls_port},cert={credentials.certificate},"
            f"key={credentials.private_key},cafile={ca},verify=1",
        ]

    with listening_process(command, tmp_path / "socat.log") as server:
        yield server.port


@contextlib.contextmanager
def tls_port_for(tool: str, tmp_path: Path, node, credentials: Credentials, ca: Path):
    """(options, port) by which `tool` calls the node's TLS port with `credentials`: its own
    +tls if it has it, else plain DICOM into a socat tunnel."""
    if NATIVE_TLS[tool]:
        yield tls_options(credentials, ca), node.tls_port
    else:
        with tunnel(tmp_path, node, credentials, ca) as port:
            yield [], port


# -- C-STORE: storescu -------------------------------------------------------------------------


def test_storescu_with_its_bound_certificate_stores_into_a_tls_only_node(
    tls_only, pki, tmp_path, caplog
):
    ds = dicom_objects.secondary_capture()
    path = dicom_objects.write(ds, tmp_path / "sc.dcm")
    with caplog.at_level(logging.INFO, logger="archive_node"):
        proc = scu(
            "storescu",
            tls_only,
            MODALITY,
            "-v",
            *tls_options(pki.modality, pki.region.certificate),
            files=(path,),
        )
    assert proc.returncode == 0, output(proc)
    assert "Received Store Response (Success)" in output(proc)
    kept = stored_path(tls_only, ds.SOPInstanceUID)
    assert dicom_objects.dataset_bytes(kept) == dicom_objects.dataset_bytes(path)
    assert OVER_TLS.format(MODALITY) in caplog.text


@pytest.mark.parametrize(
    ("presented", "logged"),
    [
        (None, "no client certificate; the AE has a bound one"),
        ("workstation", f"is bound to AE {WORKSTATION}"),
        ("unbound", "is not the AE's bound one"),
    ],
    ids=["anonymous-tls", "another-aes-certificate", "an-unbound-certificate"],
)
def test_storescu_is_rejected_without_the_aes_certificate(
    tls_only, pki, tmp_path, caplog, presented, logged
):
    ds = dicom_objects.secondary_capture()
    path = dicom_objects.write(ds, tmp_path / "sc.dcm")
    credentials = getattr(pki, presented) if presented else None
    with caplog.at_level(logging.INFO, logger="archive_node"):
        proc = scu(
            "storescu",
            tls_only,
            MODALITY,
            "-v",
            *tls_options(credentials, pki.region.certificate),
            files=(path,),
        )
    assert proc.returncode != 0
    assert "Association Rejected" in output(proc), output(proc)
    assert "Calling AE Title Not Recognized" in output(proc)
    rejected = f"association rejected: calling {MODALITY} (UNN) from 127.0.0.1 over TLS"
    assert rejected in caplog.text
    assert logged in caplog.text
    assert tls_only.service.index.instances.find(ds.SOPInstanceUID) is None


def test_storescu_with_another_cas_certificate_fails_the_handshake(
    tls_only, pki, tmp_path, caplog
):
    """No DICOM answer at all: the node ends the connection in the TLS handshake."""
    ds = dicom_objects.secondary_capture()
    path = dicom_objects.write(ds, tmp_path / "sc.dcm")
    with caplog.at_level(logging.INFO, logger="archive_node"):
        proc = scu(
            "storescu",
            tls_only,
            MODALITY,
            "-v",
            *tls_options(pki.rogue, pki.region.certificate),
            files=(path,),
        )
        assert proc.returncode != 0
        assert "Association Request Failed" in output(proc), output(proc)
        assert "Association Rejected" not in output(proc)
        poll(lambda: "handshake failed" in caplog.text)
    refused = "TLS connection from 127.0.0.1 closed: handshake failed: client certificate refused"
    assert refused in caplog.text
    assert tls_only.service.index.instances.find(ds.SOPInstanceUID) is None


def test_storescu_of_a_tls_required_ae_is_rejected_on_the_plain_port(
    both_ports, pki, tmp_path, caplog
):
    ds = dicom_objects.secondary_capture()
    path = dicom_objects.write(ds, tmp_path / "sc.dcm")
    with caplog.at_level(logging.INFO, logger="archive_node"):
        proc = scu("storescu", both_ports, MODALITY, "-v", port=both_ports.port, files=(path,))
    assert proc.returncode != 0
    assert "Association Rejected" in output(proc), output(proc)
    assert "Calling AE Title Not Recognized" in output(proc)
    assert "the AE needs TLS (--tls required) and came on the plain port" in caplog.text
    assert both_ports.service.index.instances.find(ds.SOPInstanceUID) is None
    # the same storescu on the same node's TLS port gets in
    proc = scu(
        "storescu",
        both_ports,
        MODALITY,
        "-v",
        *tls_options(pki.modality, pki.region.certificate),
        files=(path,),
    )
    assert proc.returncode == 0, output(proc)
    assert both_ports.service.index.instances.find(ds.SOPInstanceUID) is not None


# -- C-ECHO, C-FIND, C-GET ---------------------------------------------------------------------


def test_echoscu_over_tls(tls_only, pki):
    proc = scu(
        "echoscu",
        tls_only,
        WORKSTATION,
        "-v",
        *tls_options(pki.workstation, pki.region.certificate),
    )
    assert proc.returncode == 0, output(proc)
    assert "Received Echo Response (Success)" in output(proc)


def test_findscu_over_tls_finds_the_study(tls_only, pki):
    study_uid, _ = stored_study(tls_only, pki)
    proc = scu(
        "findscu",
        tls_only,
        WORKSTATION,
        "-v",
        *tls_options(pki.workstation, pki.region.certificate),
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientID=TLS-1",
        "-k",
        "StudyInstanceUID",
        "-k",
        "NumberOfStudyRelatedInstances",
    )
    text = output(proc)
    assert proc.returncode == 0, text
    assert text.count("(Pending)") == 1, text
    # findscu -v prints a UID of odd length with its NUL padding inside the brackets
    assert re.search(rf"UI \[{re.escape(study_uid)}\x00?\]", text), text
    assert re.search(r"IS \[2 ?\]\s+#\s+\d+, 1 NumberOfStudyRelatedInstances", text), text
    assert "Received Final Find Response (Success)" in text


def test_getscu_over_tls_gets_the_files(tls_only, pki, tmp_path, caplog):
    study_uid, uids = stored_study(tls_only, pki)
    received = tmp_path / "getscu"
    received.mkdir()
    with (
        caplog.at_level(logging.INFO, logger="archive_node"),
        tls_port_for("getscu", tmp_path, tls_only, pki.workstation, pki.region.certificate) as (
            options,
            port,
        ),
    ):
        proc = scu(
            "getscu",
            tls_only,
            WORKSTATION,
            "-d",
            *options,
            "-S",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study_uid}",
            "-od",
            received,
            port=port,
        )
    assert proc.returncode == 0, output(proc)
    final = final_response(proc, "C-GET RSP")
    assert (final.status, *counts(final)) == (status.SUCCESS, 2, 0, 0)
    assert_kept_byte_for_byte(tls_only, files_by_uid(received), uids)
    assert OVER_TLS.format(WORKSTATION) in caplog.text


# -- C-MOVE into a storescp over TLS -----------------------------------------------------------


@pytest.fixture
def storescp_credentials(pki) -> Credentials:
    """storescp's own certificate from the region's CA, bound to STORESCP when registered."""
    return pki.region.issue("storescp")


def register_storescp(cli_config: Path, port: int, certificate: Path) -> None:
    ok(
        "ae", "add", STORESCP, "--hospital", "UNN", "--host", LOOPBACK, "--port", str(port),
        "--allow", "echo", "--tls", "required", "--certificate", certificate, "-c", cli_config,
    )  # fmt: skip


def test_movescu_moves_into_a_tls_storescp_over_tls(
    tls_only, pki, tmp_path, cli_config, storescp_credentials, caplog
):
    study_uid, uids = stored_study(tls_only, pki)
    with storescp(tmp_path, storescp_credentials, pki.region.certificate) as scp:
        register_storescp(cli_config, scp.port, storescp_credentials.certificate)
        with (
            caplog.at_level(logging.INFO, logger="archive_node"),  # after the CLI set levels
            tls_port_for(
                "movescu", tmp_path, tls_only, pki.workstation, pki.region.certificate
            ) as (options, port),
        ):
            proc = scu(
                "movescu",
                tls_only,
                WORKSTATION,
                "-d",
                *options,
                "-S",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study_uid}",
                "-aem",
                STORESCP,
                port=port,
            )
        assert proc.returncode == 0, output(proc)
        final = final_response(proc, "C-MOVE RSP")
        assert (final.status, *counts(final)) == (status.SUCCESS, 2, 0, 0)
        assert OVER_TLS.format(WORKSTATION) in caplog.text
        assert_kept_byte_for_byte(tls_only, files_by_uid(tmp_path / "storescp"), uids)
        # over TLS, where the node showed its own certificate, for the workstation's move
        log = scp.text()
        assert "Transport connection: TLS over TCP/IP" in log, log
        assert re.search(r"Peer X\.509v3 Certificate\n.*Subject\s*: /CN=archive\n", log), log
        assert re.findall(r"Move Originator AE Title\s*: (\S*)", log) == [WORKSTATION] * 2


@pytest.mark.parametrize("impostor", ["modality", "unbound"])
def test_a_storescp_without_the_destinations_certificate_gets_nothing(
    tls_only, pki, tmp_path, cli_config, storescp_credentials, caplog, impostor
):
    """STORESCP is bound to its own certificate: a storescp on its port that presents another
    AE's (or one bound to none, from the same CA) is not STORESCP, and nothing is sent. (The
    C-MOVE is asked by pynetdicom over TLS: this needs no tunnel.)"""
    study_uid, _ = stored_study(tls_only, pki)
    with storescp(tmp_path, getattr(pki, impostor), pki.region.certificate) as scp:
        register_storescp(cli_config, scp.port, storescp_credentials.certificate)
        assoc = associate(
            tls_only,
            WORKSTATION,
            [STUDY_MOVE],
            tls=pki.workstation.client_context(),
        )
        assert assoc.is_established
        with caplog.at_level(logging.INFO, logger="archive_node"):
            final, pending, _ = move(
                assoc, identifier("STUDY", StudyInstanceUID=study_uid), STORESCP
            )
        assoc.release()
        # Refused: Out of Resources - Unable to perform sub-operations (PS3.4 Table C.4-2);
        # the Error Comment (LO, 64 characters) says which destination, the log why
        assert final.Status == status.SUB_OPERATIONS_FAILED, f"0x{final.Status:04X}"
        assert pending == []
        assert (
            final.NumberOfCompletedSuboperations,
            final.NumberOfFailedSuboperations,
        ) == (0, 2)
        assert final.ErrorComment == f"{STORESCP}: its TLS certificate is not its own"
        reason = "is bound to AE MOD_TLS" if impostor == "modality" else "is not its bound one"
        logged = rf"{STORESCP} over TLS is not that AE: its certificate \S+ {reason}"
        assert re.search(logged, caplog.text)
        assert list((tmp_path / "storescp").iterdir()) == []
        assert "Association Acknowledged" not in scp.text()
