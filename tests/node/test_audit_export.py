"""The audit export against a real rsyslogd as Audit Record Repository: records arrive as DICOM
audit messages over TLS, TCP and UDP; a repository the node does not trust gets nothing; the
backlog of an outage arrives in order once the repository is back; callers never wait."""

from __future__ import annotations

import re
import socket
import threading
import time
import xml.etree.ElementTree as ET

import pytest
from pydicom.dataset import Dataset

from archive_node.errors import IndexUnavailable
from archive_node.index import Index
from archive_node.index.audit_rows import AuditFilter
from archive_node.net.audit_export import AuditExporter, syslog_audit_message
from archive_node.net.syslog import SendFailed, SyslogSender, SyslogTarget
from archive_node.rules import audit
from archive_node.rules.audit import Actor, AuditEvent, Touched, chained
from tests.helpers.ports import LOOPBACK
from tests.helpers.rsyslog import Rsyslog

NODE = "ARCHIVE"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
HEADER = re.compile(
    r"^<(?P<pri>\d+)>1 (?P<time>\S+) (?P<host>\S+) archive-node (?P<pid>\d+) IHE\+RFC-3881 "
    r'\[meta sequenceId="(?P<seq>\d+)"\] '
    "\ufeff(?P<xml><\\?xml .*)$",
    re.DOTALL,
)
MODALITY = Actor(session="s1", ae_title="MOD<&>", hospital="UNN", address="127.0.0.1")


@pytest.fixture(scope="module")
def repository_credentials(pki):
    """The repository's certificate: the region's CA, for 127.0.0.1 and localhost."""
    return pki.region.issue("audit-repository")


@pytest.fixture
def repository(tmp_path, repository_credentials):
    syslog = Rsyslog(tmp_path / "rsyslog", repository_credentials)
    syslog.start()
    yield syslog
    syslog.stop()


@pytest.fixture
def index(sqlite_url):
    index = Index.open(sqlite_url)
    index.init_schema()
    yield index
    index.close()


def sender_for(repository: Rsyslog, transport: str, pki, **kwargs) -> SyslogSender:
    options = {"ca_certificates": str(pki.region.certificate), "timeout": 5.0, **kwargs}
    return SyslogSender(SyslogTarget.parse(repository.url(transport)), **options)


message_for = syslog_audit_message(
    source_id="archive-1", node_address="127.0.0.1", node_ae_title=NODE, hostname="archive-host"
)


def store(patient_id: str = "Ødegård-1", outcome: int = audit.SUCCESS) -> AuditEvent:
    return AuditEvent(
        kind=audit.INSTANCES_TRANSFERRED,
        action=audit.CREATE,
        operation="C-STORE",
        actor=MODALITY,
        outcome=outcome,
        status="" if outcome == audit.SUCCESS else "0xA700 out of resources",
        touched=(Touched(patient_id, "Sykehuset Østfold", "1.2.826.0.1.3680043.8.498.1", 2),),
    )


def query() -> AuditEvent:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientID = "Bjørnstjerne-7"
    return AuditEvent(
        kind=audit.QUERY,
        action=audit.EXECUTE,
        operation="C-FIND",
        actor=Actor(session="s2", ae_title="WS", address="127.0.0.1", user="åse"),
        touched=(Touched("Bjørnstjerne-7", "", "1.2.826.0.1.3680043.8.498.2", 0),),
        detail={"sop_class": FIND, "query": identifier.to_json_dict()},
    )


def move() -> AuditEvent:
    return AuditEvent(
        kind=audit.INSTANCES_TRANSFERRED,
        action=audit.READ,
        operation="C-MOVE",
        actor=Actor(session="s3", ae_title="WS", address="127.0.0.1"),
        destination="VIEWER",
        touched=(Touched("P-9", "", "1.2.826.0.1.3680043.8.498.3", 4),),
    )


def records(*events: AuditEvent) -> list[audit.AuditRecord]:
    found, prev = [], audit.GENESIS
    for seq, event in enumerate(events, 1):
        record = chained(event, node=NODE, seq=seq, prev_hash=prev, time=audit.timestamp())
        found.append(record)
        prev = record.hash
    return found


def parsed(raw: str) -> tuple[re.Match[str], ET.Element]:
    match = HEADER.match(raw)
    assert match, raw[:200]
    return match, ET.fromstring(match["xml"].encode("utf-8"))


def roles(root: ET.Element) -> dict[str, str | None]:
    found = {}
    for participant in root.findall("ActiveParticipant"):
        code = participant.find("RoleIDCode")
        found[participant.get("UserID")] = None if code is None else code.get("csd-code")
    return found


def patients(root: ET.Element) -> list[str]:
    return [
        o.get("ParticipantObjectID")
        for o in root.findall("ParticipantObjectIdentification")
        if o.get("ParticipantObjectTypeCodeRole") == "1"
    ]


def patient_of(raw: str) -> str:
    """The PatientID of the one patient of a received message (without its issuer)."""
    (patient,) = patients(parsed(raw)[1])
    return patient.split("^")[0]


@pytest.mark.parametrize("transport", ["tls", "tcp", "udp"])
def test_every_record_arrives_as_an_audit_message(repository, pki, transport):
    sent = records(store(), query(), move(), store("P-2", outcome=audit.SERIOUS_FAILURE))
    sender = sender_for(repository, transport, pki)
    try:
        sender.send([message_for(r) for r in sent])
    finally:
        sender.close()
    received = repository.wait_for(4)
    assert len(received) == 4
    messages = [parsed(raw) for raw in received]

    header, stored = messages[0]
    assert header["pri"] == "85"  # authpriv.notice
    assert header["host"] == "archive-host"
    assert header["time"] == sent[0].time
    assert stored.find("EventIdentification/EventID").get("csd-code") == "110104"
    assert stored.find("EventIdentification").get("EventActionCode") == "C"
    assert roles(stored) == {"MOD<&>": "110153", NODE: "110152"}
    assert patients(stored) == ["Ødegård-1^^^Sykehuset Østfold"]
    assert stored.find("AuditSourceIdentification").get("AuditSourceID") == "archive-1"

    _, queried = messages[1]
    assert queried.find("EventIdentification/EventID").get("csd-code") == "110112"
    assert roles(queried) == {"WS": "110153", NODE: "110152"}
    assert patients(queried) == ["Bjørnstjerne-7"]
    query_objects = [
        o
        for o in queried.findall("ParticipantObjectIdentification")
        if o.get("ParticipantObjectID") == FIND
    ]
    assert len(query_objects) == 1 and query_objects[0].find("ParticipantObjectQuery").text

    _, moved = messages[2]
    assert moved.find("EventIdentification").get("EventActionCode") == "R"
    assert roles(moved) == {NODE: "110153", "WS": None, "VIEWER": "110152"}
    assert patients(moved) == ["P-9"]

    header, failed = messages[3]
    assert header["pri"] == "84"  # authpriv.warning
    assert failed.find("EventIdentification").get("EventOutcomeIndicator") == "8"
    assert patients(failed) == ["P-2^^^Sykehuset Østfold"]


def test_a_repository_asking_for_the_node_certificate_gets_it(
    tmp_path, repository_credentials, pki
):
    syslog = Rsyslog(tmp_path / "rsyslog", repository_credentials, client_auth=True)
    syslog.start()
    try:
        sender = sender_for(
            syslog,
            "tls",
            pki,
            certificate=str(pki.node.certificate),
            private_key=str(pki.node.private_key),
        )
        sender.send([message_for(r) for r in records(store())])
        sender.close()
        (raw,) = syslog.wait_for(1)
        assert patients(parsed(raw)[1]) == ["Ødegård-1^^^Sykehuset Østfold"]
    finally:
        syslog.stop()


def test_a_repository_called_by_its_name_has_its_name_checked(repository, pki):
    target = SyslogTarget("tls", "localhost", repository.ports["tls"])
    sender = SyslogSender(target, ca_certificates=str(pki.region.certificate), timeout=5)
    sender.send([message_for(r) for r in records(store())])
    sender.close()
    assert len(repository.wait_for(1)) == 1


def test_a_repository_the_node_does_not_trust_gets_nothing(repository, pki, index):
    index.audit.append(NODE, [store(), move()])
    untrusting = SyslogSender(
        SyslogTarget.parse(repository.url("tls")),
        ca_certificates=str(pki.rogue.ca),
        timeout=5,
    )
    exporter = AuditExporter(index, node=NODE, sender=untrusting, message_for=message_for)
    with pytest.raises(OSError) as caught:
        exporter.export_once()
    assert isinstance(caught.value, SendFailed) and caught.value.sent == 0
    assert "certificate" in str(caught.value)
    assert [r.seq for r in index.audit.unsent(NODE, limit=10)] == [1, 2]
    # the same records go once the node trusts the repository's CA
    exporter.sender = sender_for(repository, "tls", pki)
    assert exporter.export_once() == 2
    exporter.sender.close()
    assert index.audit.unsent(NODE, limit=10) == []
    assert len(repository.wait_for(2)) == 2
    assert repository.messages() == repository.wait_for(2)


def wait_until(condition, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("transport", ["tls", "tcp"])
def test_records_survive_the_repository_being_down(
    tmp_path, repository_credentials, pki, index, transport, caplog
):
    syslog = Rsyslog(tmp_path / "rsyslog", repository_credentials)  # not started: down
    index.audit.append(NODE, [store(f"P-{n}") for n in range(1, 6)])
    exporter = AuditExporter(
        index,
        node=NODE,
        sender=sender_for(syslog, transport, pki),
        message_for=message_for,
        batch=2,
        retry_interval=0.05,
        max_backoff=0.2,
    )
    exporter.start()
    try:
        wait_until(lambda: exporter.failures >= 3)
        assert index.audit.unsent_count(NODE) == 5
        warnings = [r for r in caplog.records if r.name == "archive_node.net.audit_export"]
        assert warnings and all(r.levelname == "WARNING" for r in warnings)
        assert all("P-" not in r.getMessage() for r in warnings)

        syslog.start()  # the repository comes back: the backlog arrives, in order
        received = syslog.wait_for(5)
        assert [patient_of(raw) for raw in received] == [f"P-{n}" for n in range(1, 6)]
        wait_until(lambda: index.audit.unsent_count(NODE) == 0)

        syslog.stop()  # down again, with the exporter's connection open
        index.audit.append(NODE, [store("P-6")])
        exporter.wake()
        wait_until(lambda: exporter.failures >= 1)
        assert index.audit.unsent_count(NODE) == 1
        syslog.start()
        received = syslog.wait_for(6)
        assert patient_of(received[5]) == "P-6"
        wait_until(lambda: index.audit.unsent_count(NODE) == 0)
        assert len(syslog.messages()) == 6
    finally:
        exporter.stop()
        syslog.stop()


def test_new_records_go_on_wake_and_on_the_poll(repository, pki, index):
    exporter = AuditExporter(
        index,
        node=NODE,
        sender=sender_for(repository, "tcp", pki),
        message_for=message_for,
        poll_interval=0.2,
    )
    exporter.start()
    try:
        index.audit.append(NODE, [store("P-woken")])
        exporter.wake()
        assert patient_of(repository.wait_for(1)[0]) == "P-woken"
        index.audit.append(NODE, [store("P-polled")])  # another process: no wake
        assert patient_of(repository.wait_for(2, deadline=2)[1]) == "P-polled"
    finally:
        exporter.stop()
    assert not exporter.running


def test_stopping_sends_what_was_recorded_until_then(repository, pki, index):
    exporter = AuditExporter(
        index,
        node=NODE,
        sender=sender_for(repository, "tls", pki),
        message_for=message_for,
        poll_interval=60,
    )
    exporter.start()
    index.audit.append(NODE, [store("P-last")])  # no wake: the poll is a minute away
    exporter.stop()
    assert index.audit.unsent_count(NODE) == 0
    assert patient_of(repository.wait_for(1)[0]) == "P-last"


def test_the_exporter_does_not_block_the_caller(tmp_path, pki, index):
    """A repository that accepts the connection and never answers the TLS handshake holds
    the exporter's thread, never the threads that record and wake it."""
    with socket.socket() as silent:
        silent.bind((LOOPBACK, 0))
        silent.listen(8)  # never accepted: the handshake waits for the sender's timeout
        target = SyslogTarget("tls", LOOPBACK, silent.getsockname()[1])
        sender = SyslogSender(target, ca_certificates=str(pki.region.certificate), timeout=1.0)
        index.audit.append(NODE, [store()])
        exporter = AuditExporter(
            index, node=NODE, sender=sender, message_for=message_for, retry_interval=0.05
        )
        started = time.monotonic()
        exporter.start()
        for n in range(20):
            index.audit.append(NODE, [store(f"P-{n}")])
            exporter.wake()
        assert time.monotonic() - started < 0.5
        assert exporter.running
        wait_until(lambda: exporter.failures >= 1, deadline=5)
        exporter.stop(timeout=5)
        assert not exporter.running
    assert index.audit.unsent_count(NODE) == 21


class FlakyIndex:
    """The real index whose audit role fails its first `failures` reads, as an index being
    restarted does."""

    def __init__(self, index: Index, failures: int) -> None:
        self.failures = failures
        self.index = index
        self.audit = self

    def unsent(self, node: str, limit: int):
        if self.failures:
            self.failures -= 1
            raise IndexUnavailable("the index database could not be reached")
        return self.index.audit.unsent(node, limit)

    def mark_sent(self, node: str, seq: int) -> None:
        self.index.audit.mark_sent(node, seq)


def test_an_unavailable_index_is_retried(repository, pki, index):
    index.audit.append(NODE, [store("P-1"), store("P-2")])
    exporter = AuditExporter(
        FlakyIndex(index, failures=2),
        node=NODE,
        sender=sender_for(repository, "tcp", pki),
        message_for=message_for,
        retry_interval=0.05,
    )
    exporter.start()
    try:
        received = repository.wait_for(2)
        assert [patient_of(raw) for raw in received] == ["P-1", "P-2"]
        wait_until(lambda: index.audit.unsent_count(NODE) == 0)
    finally:
        exporter.stop()


class PartialSender:
    """Writes the first `writes` messages of a send to a real repository, then fails."""

    def __init__(self, sender: SyslogSender, writes: int) -> None:
        self.sender = sender
        self.writes = writes
        self.lock = threading.Lock()

    def send(self, messages):
        if len(messages) > self.writes:
            self.sender.send(messages[: self.writes])
            raise SendFailed(self.writes, ConnectionResetError(104, "Connection reset by peer"))
        self.sender.send(messages)

    def close(self):
        self.sender.close()


def test_a_send_that_fails_part_way_keeps_what_got_through(repository, pki, index):
    index.audit.append(NODE, [store(f"P-{n}") for n in range(1, 5)])
    sender = PartialSender(sender_for(repository, "tcp", pki), writes=3)
    exporter = AuditExporter(index, node=NODE, sender=sender, message_for=message_for)
    with pytest.raises(OSError):
        exporter.export_once()
    assert [r.seq for r in index.audit.unsent(NODE, limit=10)] == [4]
    assert exporter.export_once() == 1
    sender.close()
    received = repository.wait_for(4)
    assert [patient_of(raw) for raw in received] == [f"P-{n}" for n in range(1, 5)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_store_query_and_move_arrive_at_rsyslog_over_tls(
    backend, repository, pki, tmp_path, request
):
    """The issue's 'done when', at the repository: a hospital's store, another hospital's
    query and a move to a third AE arrive over TLS as audit messages naming the patient."""
    from archive_node.dicom import status
    from archive_node.service import ArchiveService
    from tests.helpers import dicom_objects
    from tests.helpers.dimse import associate, find, push
    from tests.helpers.identifiers import identifier
    from tests.helpers.postgres import reset_pg
    from tests.helpers.retrieving import STUDY_MOVE, Destination, move
    from tests.helpers.serving import make_config, serving

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/index.sqlite3"
    else:
        url = request.getfixturevalue("pg_url")
        reset_pg(url)
    config = make_config(
        tmp_path,
        url,
        audit={
            "repository": repository.url("tls"),
            "ca_certificates": str(pki.region.certificate),
        },
    )
    service = ArchiveService.from_config(config)
    service.index.init_schema()
    registry = service.registry
    registry.add_hospital("UNN", "UNN", issuer="UNN")
    registry.add_hospital("NLSH", "NLSH", issuer="NLSH")
    registry.add_hospital("HSYK", "HSYK", issuer="HSYK")
    registry.add_ae("UNN_US", "UNN", host="127.0.0.1", allow="store")
    registry.add_ae("NLSH_WS", "NLSH", host="127.0.0.1", allow="find,move")
    study_uid = "1.2.826.0.1.3680043.10.511.9.1"
    datasets = [
        dicom_objects.secondary_capture(patient_id="Ø-55", issuer="UNN", study_uid=study_uid)
        for _ in range(2)
    ]
    dest = Destination(tmp_path / "dest")
    try:
        registry.add_ae("HSYK_PACS", "HSYK", host="127.0.0.1", port=dest.port)
        with serving(service) as node:
            push(node, "UNN_US", datasets)
            sealed = time.monotonic() + 10  # the store's record is sealed as the node ends it
            while not service.index.audit.query(AuditFilter(ae_title="UNN_US")):
                assert time.monotonic() < sealed
                time.sleep(0.01)
            final, answers = find(node, identifier("STUDY", PatientID="Ø-55"), calling="NLSH_WS")
            assert final.Status == status.SUCCESS and len(answers) == 1
            assoc = associate(node, "NLSH_WS", [STUDY_MOVE])
            final, _, _ = move(assoc, identifier("STUDY", StudyInstanceUID=study_uid), "HSYK_PACS")
            assoc.release()
            assert final.Status == status.SUCCESS

            def about_the_patient() -> list[tuple[str, ET.Element]]:
                found = []
                for raw in repository.messages():
                    header, root = parsed(raw)
                    if any(p.startswith("Ø-55") for p in patients(root)):
                        found.append((header["seq"], root))
                return found

            deadline = time.monotonic() + 30
            while len(about_the_patient()) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        dest.stop()
        service.index.close()
    arrived = about_the_patient()
    events = [
        (
            root.find("EventIdentification/EventID").get("csd-code"),
            root.find("EventIdentification").get("EventActionCode"),
            sorted(p.get("UserID") for p in root.findall("ActiveParticipant")),
        )
        for _, root in arrived
    ]
    assert events == [
        ("110104", "C", ["ARCHIVE", "UNN_US"]),
        ("110112", "E", ["ARCHIVE", "NLSH_WS"]),
        ("110104", "R", ["ARCHIVE", "HSYK_PACS", "NLSH_WS"]),
        ("110104", "R", ["ARCHIVE", "HSYK_PACS", "NLSH_WS"]),
    ]
    assert all(patients(root) == ["Ø-55^^^UNN"] for _, root in arrived)
    seqs = [int(seq) for seq, _ in arrived]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4


def test_sighup_rereads_the_repository_ca(repository, pki, tmp_path, sqlite_url):
    """A repository the node does not trust yet gets nothing; once the right CA is in the
    file and the node re-reads it (what SIGHUP does), the backlog arrives."""
    import shutil

    from archive_node.service import ArchiveService
    from tests.helpers.serving import make_config, serving

    ca_file = tmp_path / "repository-ca.pem"
    shutil.copyfile(pki.rogue.ca, ca_file)  # the wrong CA: every handshake fails
    config = make_config(
        tmp_path,
        sqlite_url,
        audit={"repository": repository.url("tls"), "ca_certificates": str(ca_file)},
    )
    service = ArchiveService.from_config(config)
    service.index.init_schema()
    try:
        with serving(service) as node:
            exporter = node.server.exporter
            deadline = time.monotonic() + 10
            while exporter.failures == 0:  # the start record could not be sent
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert repository.messages() == []
            shutil.copyfile(pki.region.certificate, ca_file)
            node.server.reload_tls()
            started = repository.wait_for(1, deadline=40)
            assert "110120" in started[0]  # the node's Application Start
    finally:
        service.index.close()
