"""Several nodes: two `archive-node serve` processes on one PostgreSQL index and one store.

Each test runs two real `serve` processes (tests/helpers/serving_process.py), A and B, standing for
two machines: each has its own config file, port and log, and both name the same PostgreSQL
database and the same storage.path. Clients are real pynetdicom associations on 127.0.0.1.
The promise under test (issue 6): a study stored through one node is found and retrieved
through the other; the registry is one, so an AE registered or removed through one node's CLI
is honoured by the other at once; concurrent stores of one study through both give one study
with each instance once; and one node starting up leaves the other's transfers in progress
alone. The index is read with plain SQL and the store hashed from the files, not through the
product's code. PostgreSQL only: skipped when it is not reachable, unless
ARCHIVE_NODE_REQUIRE_PG=1 (tests/conftest.py).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

from archive_node.net.association import set_tcp_nodelay
from archive_node.net.client import echo, send_files
from tests.helpers import dicom_objects
from tests.helpers.identifiers import identifier
from tests.helpers.postgres import pg_connect, reset_pg
from tests.helpers.retrieving import (
    STUDY_MOVE,
    Destination,
    get_study,
    move,
)
from tests.helpers.serving_process import (
    CALLED,
    CALLING,
    HOST,
    Archive,
    dataset_digest,
    file_sha256,
    incoming_files,
)

WORKSTATION = "UNN_WS"  # registered with find, move and get
DEADLINE = 60.0
STUDY_FIND = StudyRootQueryRetrieveInformationModelFind
REJECT_CALLING_AE = (1, 1, 3)  # rejected-permanent, service-user, calling AE not recognised


@dataclass
class SharedNode(Archive):
    """An Archive whose storage.path is `shared` (the store both nodes use), not root/storage.

    Its config, log and working directory stay in `root`, one per node.
    """

    shared: Path = field(default_factory=Path)

    @property
    def storage(self) -> Path:
        return self.shared


@dataclass
class Pair:
    a: SharedNode
    b: SharedNode
    url: str
    store: Path

    def problems(self) -> str:
        """The WARNING and ERROR lines of both logs, for failure messages."""
        return "\n".join(
            f"{name}: {line}"
            for name, node in (("A", self.a), ("B", self.b))
            for line in node.log().splitlines()
            if " WARNING " in line or " ERROR " in line
        )

    def stop(self) -> None:
        """SIGTERM both; each exits 0 and logged no traceback."""
        for name, node in (("A", self.a), ("B", self.b)):
            code = node.terminate()
            log = node.log()
            assert code == 0, f"node {name} exited with {code}:\n{log}"
            assert "Traceback" not in log, f"node {name}:\n{log}"


@pytest.fixture
def pair(tmp_path, pg_url):
    """Nodes A and B on one emptied PostgreSQL database and one store, both serving.

    A's CLI creates the schema and registers UNN with CALLING (echo, store) and WORKSTATION
    (echo, find, move, get); B only gets a config of its own.
    """
    reset_pg(pg_url)
    store = tmp_path / "store"
    a = SharedNode(tmp_path / "a", index_url=pg_url, shared=store)
    b = SharedNode(tmp_path / "b", index_url=pg_url, shared=store)
    for node in (a, b):
        node.root.mkdir(parents=True)
    assert a.port != b.port
    try:
        a.init()
        b.write_config()
        rights = "echo,find,move,get"
        a.cli("ae", "add", WORKSTATION, "--hospital", "UNN", "--host", HOST, "--allow", rights)
        a.start()
        b.start()
        yield Pair(a, b, pg_url, store)
    finally:
        a.close()
        b.close()


# -- clients -----------------------------------------------------------------------------------


def associate(port: int, calling: str, contexts: list[Any]) -> Any:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for cx in contexts:
        ae.add_requested_context(*cx) if isinstance(cx, tuple) else ae.add_requested_context(cx)
    return ae.associate(
        HOST, port, ae_title=CALLED, evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)]
    )


def rejection(port: int, calling: str) -> tuple[int, int, int] | None:
    """The A-ASSOCIATE-RJ (result, source, reason) the node answers `calling` with, or None
    when it accepts (the association is then released)."""
    assoc = associate(port, calling, [Verification])
    if assoc.is_established:
        assoc.release()
        return None
    assert assoc.is_rejected, f"{calling}: neither accepted nor rejected (aborted?)"
    rsp = assoc.acceptor.primitive
    return (rsp.result, rsp.result_source, rsp.diagnostic)


def find(port: int, level: str, **keys: Any) -> list[Dataset]:
    """The matches of a Study Root C-FIND as WORKSTATION; the final status must be Success."""
    assoc = associate(port, WORKSTATION, [STUDY_FIND])
    assert assoc.is_established
    answers, final = [], None
    try:
        for rsp, ident in assoc.send_c_find(identifier(level, **keys), STUDY_FIND):
            assert rsp, "no C-FIND response"
            if rsp.Status in (0xFF00, 0xFF01):
                answers.append(ident)
            else:
                final = rsp.Status
    finally:
        assoc.release()
    assert final == 0x0000, f"C-FIND final status {final}"
    return answers


def as_dicts(answers: list[Dataset]) -> list[dict[str, str]]:
    """Answers as comparable, order-free plain values."""
    rows = [{elem.keyword: str(elem.value) for elem in ds} for ds in answers]
    return sorted(rows, key=lambda row: sorted(row.items()))


def store_one(port: int, calling: str, path: Path) -> int | None:
    (result,) = send_files([path], HOST, port, calling=calling, called=CALLED, timeout=120)
    return result.status


# -- reading the index and the store from outside -----------------------------------------------


@dataclass(frozen=True)
class Row:
    sop_uid: str
    series_uid: str
    study_uid: str
    path: str
    size: int
    sha256: str
    calling_ae: str


def instance_rows(url: str) -> list[Row]:
    """Every instance row with its series and study UIDs, read with plain SQL."""
    conn = pg_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT i.sop_uid, se.series_uid, st.study_uid, i.path, i.size, i.sha256, "
                "i.calling_ae FROM instance i JOIN series se ON i.series_id = se.id "
                "JOIN study st ON se.study_id = st.id"
            )
            return [Row(*row[:4], int(row[4]), *row[5:]) for row in cur.fetchall()]
    finally:
        conn.close()


def count(url: str, table: str) -> int:
    conn = pg_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")  # table: a literal of this module
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def kept_files(store: Path) -> set[str]:
    """Relative paths of every file in the store outside the incoming area, but for the
    store's identity (.archive-node-store, written by `init`)."""
    return {
        p.relative_to(store).as_posix()
        for p in store.rglob("*")
        if p.is_file()
        and ".incoming" not in p.relative_to(store).parts
        and p != store / ".archive-node-store"
    }


# -- 1. stored through A, found and retrieved through B ----------------------------------------


def test_study_stored_through_one_node_is_found_and_retrieved_through_the_other(pair, tmp_path):
    dest = Destination(tmp_path / "dest")
    try:
        pair.a.cli(
            "ae", "add", "DEST", "--hospital", "UNN", "--host", HOST, "--port", str(dest.port)
        )
        study_uid = generate_uid()
        made = dicom_objects.four_kinds(study_uid, "P1")
        sources = {
            str(ds.SOPInstanceUID): dicom_objects.write(ds, tmp_path / "send" / f"{n}.dcm")
            for n, ds in enumerate(made)
        }
        results = send_files(
            list(sources.values()), HOST, pair.a.port, calling=CALLING, called=CALLED
        )
        assert [r.status for r in results] == [0x0000] * len(sources), results

        # C-FIND through B finds what A stored; A and B give the same answers.
        keys = {"StudyInstanceUID": study_uid, "PatientID": "", "ModalitiesInStudy": ""}
        keys |= {"NumberOfStudyRelatedInstances": "", "NumberOfStudyRelatedSeries": ""}
        (study,) = find(pair.b.port, "STUDY", **keys)
        assert study.StudyInstanceUID == study_uid and study.PatientID == "P1"
        assert int(study.NumberOfStudyRelatedInstances) == len(sources)
        assert as_dicts([study]) == as_dicts(find(pair.a.port, "STUDY", **keys))
        series_uids = {str(ds.SeriesInstanceUID) for ds in made}
        found = set()
        for series_uid in series_uids:
            image_keys = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}
            image_keys |= {"SOPInstanceUID": "", "SOPClassUID": "", "InstanceNumber": ""}
            answers = find(pair.b.port, "IMAGE", **image_keys)
            assert as_dicts(answers) == as_dicts(find(pair.a.port, "IMAGE", **image_keys))
            found |= {str(ds.SOPInstanceUID) for ds in answers}
        assert found == set(sources)

        # C-GET through B: every instance comes back over the association, bytes as sent.
        node_b = SimpleNamespace(host=HOST, port=pair.b.port, ae_title=CALLED)
        final, received = get_study(node_b, WORKSTATION, tmp_path / "got", study_uid)
        assert final.Status == 0x0000, final
        assert final.NumberOfCompletedSuboperations == len(sources)
        assert set(received.files) == set(sources)
        for uid, path in sources.items():
            assert dicom_objects.dataset_bytes(received.files[uid]) == dicom_objects.dataset_bytes(
                path
            )

        # C-MOVE through B into a storage SCP: the same.
        assoc = associate(pair.b.port, WORKSTATION, [STUDY_MOVE])
        assert assoc.is_established
        try:
            final, _, _ = move(assoc, identifier("STUDY", StudyInstanceUID=study_uid), "DEST")
        finally:
            assoc.release()
    finally:
        dest.stop()
    assert final.Status == 0x0000, final
    assert final.NumberOfCompletedSuboperations == len(sources)
    assert set(dest.received.files) == set(sources)
    for uid, path in sources.items():
        assert dicom_objects.dataset_bytes(
            dest.received.files[uid]
        ) == dicom_objects.dataset_bytes(path)
    assert f"stored instance {made[0].SOPInstanceUID}" in pair.a.log()
    assert "stored instance" not in pair.b.log()  # B served it without having received it
    pair.stop()


# -- 2. the registry is one: changes through A are honoured by B at once ------------------------


def test_ae_registered_or_removed_through_one_node_is_honoured_by_the_other_at_once(
    pair, tmp_path
):
    newcomer = "UNN_DERM"
    source = dicom_objects.write(
        dicom_objects.vl_photo_jpeg(patient_id="P2"), tmp_path / "photo.dcm"
    )
    sop_uid = str(dcmread(source, stop_before_pixels=True).SOPInstanceUID)

    assert rejection(pair.b.port, newcomer) == REJECT_CALLING_AE  # unknown so far

    pair.a.cli("ae", "add", newcomer, "--hospital", "UNN", "--host", HOST, "--allow", "echo,store")
    # B, which has been running all along, accepts it on its very next association.
    assert echo(HOST, pair.b.port, calling=newcomer, called=CALLED) == 0x0000
    assert store_one(pair.b.port, newcomer, source) == 0x0000
    (row,) = [r for r in instance_rows(pair.url) if r.sop_uid == sop_uid]
    assert row.calling_ae == newcomer
    assert file_sha256(pair.store / row.path) == row.sha256

    # Rights changed through A: B answers Not Authorised to a C-STORE, echo still works.
    pair.a.cli("ae", "update", newcomer, "--allow", "echo")
    again = dicom_objects.write(
        dicom_objects.vl_photo_jpeg(patient_id="P2"), tmp_path / "photo2.dcm"
    )
    assert store_one(pair.b.port, newcomer, again) == 0x0124
    assert echo(HOST, pair.b.port, calling=newcomer, called=CALLED) == 0x0000

    # Removed through A: B (and A) reject it at once.
    pair.a.cli("ae", "remove", newcomer)
    offset = len(pair.b.log())
    assert rejection(pair.b.port, newcomer) == REJECT_CALLING_AE
    assert rejection(pair.a.port, newcomer) == REJECT_CALLING_AE
    rejected = rf"association rejected: calling {newcomer} .*calling AE title is not registered"
    assert re.search(rejected, pair.b.log()[offset:]), pair.b.log()

    # And the other way round: registered through B's CLI, honoured by A at once.
    pair.b.cli("ae", "add", "UNN_ENDO", "--hospital", "UNN", "--host", HOST, "--allow", "echo")
    assert echo(HOST, pair.a.port, calling="UNN_ENDO", called=CALLED) == 0x0000
    pair.b.cli("ae", "update", "UNN_ENDO", "--disable")
    assert rejection(pair.a.port, "UNN_ENDO") == REJECT_CALLING_AE
    pair.stop()


# -- 3. concurrent stores of one study through both nodes ---------------------------------------

INSTANCES = 36
SHARED = 24  # sent through both nodes at once, in the same order
SERIES = 6
RESENT = 3  # each node sends this many of the shared instances once more at the end

STORE_CONTEXTS = [
    (dicom_objects.CT_IMAGE, [ExplicitVRLittleEndian]),
    (dicom_objects.SECONDARY_CAPTURE, [ExplicitVRLittleEndian]),
]


def push(port: int, paths: list[Path], step: threading.Barrier, out: list[Any]) -> None:
    """C-STORE `paths` one after the other on one association, in lockstep with the other
    sender (each C-STORE starts when both have had the answer to their previous one), so the
    shared instances, and the first of each series with its directories, arrive at both nodes
    at the same moment. `out` gets (path, status) per instance, or the exception that ended
    the sending."""
    try:
        assoc = associate(port, CALLING, STORE_CONTEXTS)
        assert assoc.is_established
        try:
            for path in paths:
                step.wait(timeout=DEADLINE)
                rsp = assoc.send_c_store(path)
                out.append((path, rsp.get("Status") if rsp else None))
        finally:
            assoc.release()
    except BaseException as exc:  # reported by the main thread
        out.append(exc)
        step.abort()  # the other sender stops at once rather than waiting out the deadline


def test_concurrent_stores_of_one_study_through_both_nodes(pair, tmp_path):
    study_uid = generate_uid()
    series = [generate_uid() for _ in range(SERIES)]
    paths: list[Path] = []
    for n in range(INSTANCES):
        make = dicom_objects.ct if n % SERIES == 1 else dicom_objects.secondary_capture
        ds = make(study_uid=study_uid, series_uid=series[n % SERIES], patient_id="P3")
        ds.InstanceNumber = n + 1
        paths.append(dicom_objects.write(ds, tmp_path / "send" / f"{n}.dcm"))
    uids = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in paths}
    shared, own = paths[:SHARED], paths[SHARED:]
    half = len(own) // 2
    plan = {
        "A": shared + own[:half] + shared[:RESENT],
        "B": shared + own[half:] + shared[-RESENT:],
    }

    assert len(plan["A"]) == len(plan["B"])  # lockstep
    step = threading.Barrier(2)
    outcomes: dict[str, list[Any]] = {"A": [], "B": []}
    senders = [
        threading.Thread(
            target=push, args=(node.port, plan[name], step, outcomes[name]), daemon=True
        )
        for name, node in (("A", pair.a), ("B", pair.b))
    ]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(timeout=DEADLINE)
    assert not any(thread.is_alive() for thread in senders)
    for name in ("A", "B"):
        statuses = [o[1] if isinstance(o, tuple) else o for o in outcomes[name]]
        assert statuses == [0x0000] * len(plan[name]), (
            f"through {name}: {statuses}\n{pair.problems()}"
        )

    # One patient, one study, its series, each instance once.
    assert count(pair.url, "patient") == 1
    assert count(pair.url, "study") == 1
    assert count(pair.url, "series") == SERIES
    rows = instance_rows(pair.url)
    assert len(rows) == INSTANCES
    assert Counter(r.sop_uid for r in rows) == Counter(set(uids))
    assert {r.study_uid for r in rows} == {study_uid}
    assert {r.series_uid for r in rows} == set(series)

    # Each row's file is in the shared store with the row's size and hash, and holds the
    # dataset sent; no other file is left, and the incoming area is empty.
    for row in rows:
        kept = pair.store / row.path
        assert kept.is_file(), f"{row.sop_uid}: row names a missing file {row.path}"
        assert kept.stat().st_size == row.size
        assert file_sha256(kept) == row.sha256, row.sop_uid
        assert dataset_digest(kept) == dataset_digest(uids[row.sop_uid]), row.sop_uid
    assert kept_files(pair.store) == {r.path for r in rows}
    assert incoming_files(pair.store) == []

    # Each instance was stored once over both nodes; every other send was an identical
    # duplicate (never "different content").
    logs = pair.a.log() + pair.b.log()
    for uid in uids:
        assert len(re.findall(rf"\bstored instance {re.escape(uid)}\b", logs)) == 1, uid
    sends = sum(len(p) for p in plan.values())
    assert len(re.findall(r"duplicate of \S+ from \S+, identical", logs)) == sends - INSTANCES
    assert "different content" not in logs and "refused instance" not in logs

    # Both nodes answer the same.
    keys = {"StudyInstanceUID": study_uid}
    keys |= {"NumberOfStudyRelatedInstances": "", "NumberOfStudyRelatedSeries": ""}
    for name, node in (("A", pair.a), ("B", pair.b)):
        (study,) = find(node.port, "STUDY", **keys)
        assert int(study.NumberOfStudyRelatedInstances) == INSTANCES, name
        assert int(study.NumberOfStudyRelatedSeries) == SERIES, name
    pair.stop()


# -- 4. one node starting up leaves the other's transfer in progress alone ----------------------

LARGE_SIZE = 24 << 20
HOLD_AFTER = 12 << 20  # bytes let through towards A before the relay holds the rest back
PARTIAL_SEEN = 4 << 20  # an incoming file this big can only be the large object's


class HoldingRelay:
    """A one-connection TCP relay on loopback to `target_port` that, once `hold_after` bytes
    have gone towards the target, passes no more that way until release(): a transfer caught
    part way, for as long as the test needs. Bytes back from the target always pass."""

    def __init__(self, target_port: int, hold_after: int) -> None:
        self.target_port = target_port
        self.hold_after = hold_after
        self.forwarded = 0
        self.holding = threading.Event()
        self.released = threading.Event()
        self.sockets: list[socket.socket] = []
        self.listener = socket.socket()
        self.listener.bind((HOST, 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        self.listener.close()
        upstream = socket.create_connection((HOST, self.target_port))
        self.sockets += [client, upstream]
        threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()
        self._pump(client, upstream, True)

    def _pump(self, source: socket.socket, sink: socket.socket, towards_target: bool) -> None:
        try:
            while data := source.recv(65536):
                if towards_target and self.forwarded >= self.hold_after:
                    self.holding.set()
                    self.released.wait(timeout=DEADLINE)
                sink.sendall(data)
                if towards_target:
                    self.forwarded += len(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        for sock in [self.listener, *self.sockets]:
            sock.close()


def large_partials(store: Path) -> list[Path]:
    found = []
    for path in incoming_files(store):
        try:
            if path.stat().st_size >= PARTIAL_SEEN:
                found.append(path)
        except FileNotFoundError:  # a small transfer finished meanwhile
            pass
    return found


def test_restarting_one_node_leaves_the_others_transfer_alone(pair, tmp_path):
    large = dicom_objects.write_large_video(
        tmp_path / "send" / "large.dcm", LARGE_SIZE, patient_id="P4"
    )
    sop_uid = str(dcmread(large, stop_before_pixels=True).SOPInstanceUID)
    relay = HoldingRelay(pair.a.port, HOLD_AFTER)
    outcome: list[Any] = []

    def send_large() -> None:
        try:
            outcome.append(store_one(relay.port, CALLING, large))
        except BaseException as exc:  # reported by the main thread
            outcome.append(exc)

    sender = threading.Thread(target=send_large, daemon=True)
    try:
        sender.start()
        assert relay.holding.wait(timeout=DEADLINE), f"the transfer never got going: {outcome}"
        deadline = time.monotonic() + DEADLINE
        while not (partials := large_partials(pair.store)):
            assert time.monotonic() < deadline, "A's partial file never appeared"
            time.sleep(0.01)
        (partial,) = partials
        size_before = partial.stat().st_size

        # B restarts on the same store while A's transfer is part way.
        assert pair.b.terminate() == 0, pair.b.log()
        pair.b.start()
        survived = partial.exists()
        relay.release()
        sender.join(timeout=DEADLINE)
    finally:
        relay.close()
    assert not sender.is_alive()

    b_log = pair.b.log()
    assert outcome == [0x0000], (
        f"A's store answered {outcome}; A's partial file {partial.relative_to(pair.store)} "
        f"({size_before} bytes) {'survived' if survived else 'was removed by'} B's restart.\n"
        f"B's log:\n{b_log}\nA's log:\n{pair.a.log()}"
    )
    assert survived, f"B's start-up removed A's partial file {partial}:\n{b_log}"
    assert "partial file(s)" not in b_log

    (row,) = [r for r in instance_rows(pair.url) if r.sop_uid == sop_uid]
    kept = pair.store / row.path
    assert file_sha256(kept) == row.sha256
    assert dataset_digest(kept) == dataset_digest(large)
    assert incoming_files(pair.store) == []
    (match,) = find(pair.b.port, "STUDY", PatientID="P4", NumberOfStudyRelatedInstances="")
    assert int(match.NumberOfStudyRelatedInstances) == 1
    pair.stop()
