"""Crash safety of a real `archive-node serve`: SIGKILL during ingest, a C-MOVE, a commitment.

Each test runs `serve` as a subprocess (tests/helpers/serving_process.py) on SQLite and on
PostgreSQL with storage.fsync on, kills it with SIGKILL at a chosen moment, starts it again on
the same config, and checks the store and the index from outside: read with plain SQL, hashed
from the files.

The promise under test (README, "Storing"): an instance is acknowledged only once its file
is durable and its row committed, so after a crash every acknowledged instance is indexed and
whole, no row names a missing file, partial files are swept at start-up, and the node takes
new work at once.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import MPEG4HP41, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt

from archive_node.index.commitment_rows import DELIVERED, PENDING
from archive_node.net.association import set_tcp_nodelay
from archive_node.rules.commitment import EVENT_ALL_COMMITTED
from tests.helpers import dicom_objects
from tests.helpers.commitment import modality, n_action, referenced, request
from tests.helpers.identifiers import identifier
from tests.helpers.postgres import pg_connect, reset_pg
from tests.helpers.retrieving import STUDY_MOVE, Destination, move
from tests.helpers.serving_process import CALLED, CALLING, HOST, Archive, file_sha256

SENDERS = 4  # concurrent storing associations
PER_SENDER = 50  # instances each has ready; far more than are sent before the kill
ACKED_BEFORE_KILL = 30  # acknowledged instances wanted before the kill
LARGE_SIZE = 64 << 20  # the object caught mid-transfer
PARTIAL_SEEN = 2 << 20  # a temp file this big can only be the large object's
DEADLINE = 60.0
MOVE_SLICES = 40
HOLD_AT = 12  # the destination holds the C-STORE after this many
WORKSTATION = "UNN_WS"


@pytest.fixture(params=["sqlite", "postgresql"])
def archive(request, tmp_path):
    """A node on each backend (PostgreSQL: the session's throwaway database, emptied)."""
    url = ""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        reset_pg(url)
    node = Archive(tmp_path, index_url=url, fsync=True)
    node.init()
    assert "fsync = true" in node.config.read_text()  # files and directories fsynced
    try:
        yield node
    finally:
        node.close()


# -- reading the store and the index from outside ----------------------------------------------


@dataclass(frozen=True)
class Row:
    path: str
    size: int
    sha256: str


def index_rows(url: str) -> dict[str, Row]:
    """Every instance row, by SOP Instance UID, read with plain SQL (not the product's code)."""
    sql = "SELECT sop_uid, path, size, sha256 FROM instance"
    if url.startswith("sqlite:///"):
        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
    else:
        conn = pg_connect(url)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return {uid: Row(path, int(size), sha) for uid, path, size, sha in cur.fetchall()}
    finally:
        conn.close()


def dataset_sha256(path: Path) -> str:
    """SHA-256 of what travels in a C-STORE: the bytes after the File Meta Information."""
    return hashlib.sha256(dicom_objects.dataset_bytes(path)).hexdigest()


def check_rows(archive: Archive, rows: dict[str, Row]) -> None:
    """No row names a missing file; each file has the row's size and SHA-256."""
    for uid, row in rows.items():
        kept = archive.storage / row.path
        assert kept.is_file(), f"index row of {uid} names a missing file {row.path}"
        assert kept.stat().st_size == row.size, uid
        assert file_sha256(kept) == row.sha256, f"{uid}: file differs from its row's SHA-256"


def incoming(archive: Archive) -> list[Path]:
    return sorted(archive.incoming.iterdir()) if archive.incoming.exists() else []


def partial_files(archive: Archive) -> list[Path]:
    """Files in .incoming larger than any small object: the large one's (a running node
    removes the others as it goes, so a file may vanish between listing and stat)."""
    found = []
    for path in incoming(archive):
        try:
            if path.stat().st_size > PARTIAL_SEEN:
                found.append(path)
        except FileNotFoundError:
            pass
    return found


def store_association(contexts: list[tuple[str, str]], port: int) -> Any:
    """An association to the node as CALLING, with TCP_NODELAY as the node's peers use."""
    ae = AE(ae_title=CALLING)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate(
        HOST, port, ae_title=CALLED, evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)]
    )
    assert assoc.is_established
    return assoc


UNCOMPRESSED = [
    (dicom_objects.CT_IMAGE, ExplicitVRLittleEndian),
    (dicom_objects.SECONDARY_CAPTURE, ExplicitVRLittleEndian),
]


def large_ct(**kw) -> Any:
    """A 512 x 512 16-bit CT slice (~0.5 MB)."""
    ds = dicom_objects.ct(**kw)
    ds.Rows = ds.Columns = 512
    ds.PixelData = os.urandom(512 * 512 * 2)
    return ds


# -- SIGKILL during ingest ---------------------------------------------------------------------


@dataclass
class Outgoing:
    path: Path
    uid: str
    digest: str  # SHA-256 of the dataset bytes sent


@dataclass
class Ledger:
    """What the senders did, under one condition the main thread waits on."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    acked: dict[str, str] = field(default_factory=dict)  # uid -> digest, status 0x0000
    attempted: dict[str, Outgoing] = field(default_factory=dict)
    in_flight: set[int] = field(default_factory=set)
    exhausted: set[int] = field(default_factory=set)
    refused: list[tuple[str, int]] = field(default_factory=list)  # any status but success
    ended: dict[int, str] = field(default_factory=dict)  # how each sender stopped


def ingest_plan(directory: Path) -> list[list[Outgoing]]:
    """PER_SENDER instances for each sender: a secondary capture (~10 KB) twice for every
    ~0.5 MB CT. Senders 0 and 1 write into the same study; 2 into its own; 3 alternates
    between two studies of another patient."""
    study_a, study_b, study_c, study_d = (generate_uid() for _ in range(4))
    studies = {
        0: [(study_a, "P1")],
        1: [(study_a, "P1")],
        2: [(study_b, "P1")],
        3: [(study_c, "P2"), (study_d, "P2")],
    }
    series: dict[tuple[str, str], str] = {}
    plan = []
    for sender in range(SENDERS):
        items = []
        for i in range(PER_SENDER):
            study, patient = studies[sender][i % len(studies[sender])]
            kind = "CT" if i % 3 == 0 else "SC"
            series_uid = series.setdefault((study, f"{sender}{kind}"), generate_uid())
            make = large_ct if kind == "CT" else dicom_objects.secondary_capture
            ds = make(study_uid=study, series_uid=series_uid, patient_id=patient)
            ds.InstanceNumber = i + 1
            path = dicom_objects.write(ds, directory / f"{sender}-{i}.dcm")
            items.append(Outgoing(path, str(ds.SOPInstanceUID), dataset_sha256(path)))
        plan.append(items)
    return plan


def push(port: int, sender: int, items: list[Outgoing], ledger: Ledger) -> None:
    """C-STORE `items` one after the other until done or the node is gone."""
    try:
        assoc = store_association(UNCOMPRESSED, port)
    except BaseException as exc:
        with ledger.cond:
            ledger.ended[sender] = f"no association: {exc!r}"
            ledger.cond.notify_all()
        return
    how = "all sent"
    try:
        for item in items:
            with ledger.cond:
                ledger.attempted[item.uid] = item
                ledger.in_flight.add(sender)
            try:
                rsp = assoc.send_c_store(item.path)
            except Exception as exc:  # the node is gone part way through the send
                how = f"send raised {exc!r}"
                break
            finally:
                with ledger.cond:
                    ledger.in_flight.discard(sender)
            code = rsp.get("Status") if rsp else None
            if code is None:
                how = "no response"
                break
            with ledger.cond:
                if code == 0x0000:
                    ledger.acked[item.uid] = item.digest
                else:
                    ledger.refused.append((item.uid, int(code)))
                ledger.cond.notify_all()
        else:
            with ledger.cond:
                ledger.exhausted.add(sender)
    finally:
        if assoc.is_established:
            assoc.release()
        with ledger.cond:
            ledger.ended[sender] = how
            ledger.cond.notify_all()


def push_large(port: int, path: Path, outcome: list[Any]) -> None:
    assoc = store_association([(dicom_objects.VIDEO_PHOTO, MPEG4HP41)], port)
    try:
        rsp = assoc.send_c_store(path)
        outcome.append(rsp.get("Status") if rsp else None)
    except Exception as exc:
        outcome.append(exc)
    finally:
        if assoc.is_established:
            assoc.release()


def test_sigkill_during_concurrent_ingest(archive, tmp_path):
    plan = ingest_plan(tmp_path / "send")
    large = dicom_objects.write_large_video(tmp_path / "send" / "large.dcm", LARGE_SIZE)
    large_uid = str(dcmread(large, stop_before_pixels=True).SOPInstanceUID)
    archive.start()
    ledger = Ledger()
    senders = [
        threading.Thread(target=push, args=(archive.port, n, items, ledger), daemon=True)
        for n, items in enumerate(plan)
    ]
    large_outcome: list[Any] = []
    large_sender = threading.Thread(
        target=push_large, args=(archive.port, large, large_outcome), daemon=True
    )
    try:
        for thread in senders:
            thread.start()
        with ledger.cond:
            assert ledger.cond.wait_for(
                lambda: len(ledger.acked) >= ACKED_BEFORE_KILL or ledger.refused or ledger.ended,
                timeout=DEADLINE,
            ), "the senders made no progress"
            assert not ledger.refused and not ledger.ended, (ledger.refused, ledger.ended)

        # The large object: kill once its partial file has grown in .incoming.
        large_sender.start()
        deadline = time.monotonic() + DEADLINE
        while not partial_files(archive):
            assert time.monotonic() < deadline, "the large object never arrived in .incoming"
            assert large_sender.is_alive(), large_outcome
            time.sleep(0.002)
        with ledger.cond:
            in_flight = len(ledger.in_flight)
            acked_at_kill = len(ledger.acked)
        archive.kill()
    finally:
        for thread in [*senders, large_sender]:
            if thread.ident is not None:  # started
                thread.join(timeout=DEADLINE)
    assert not any(thread.is_alive() for thread in [*senders, large_sender])

    # The kill caught stores in flight, on associations that still had work to do.
    assert in_flight >= 1, "no C-STORE was in flight at the kill"
    assert ledger.exhausted == set(), "a sender ran out of instances before the kill"
    assert not ledger.refused, ledger.refused
    assert acked_at_kill >= ACKED_BEFORE_KILL
    assert large_outcome and large_outcome[0] != 0x0000, large_outcome
    assert partial_files(archive), "the large object's partial file was not left in .incoming"

    archive.start()  # on the same config, store and index
    # Partial temp files were swept at start-up.
    assert incoming(archive) == []
    assert "partial file(s) of interrupted transfers" in archive.log()

    # A new C-STORE succeeds on the first try right after readiness.
    fresh = dicom_objects.write(dicom_objects.secondary_capture(), tmp_path / "fresh.dcm")
    assoc = store_association(UNCOMPRESSED, archive.port)
    try:
        assert assoc.send_c_store(fresh).Status == 0x0000
    finally:
        assoc.release()
    assert incoming(archive) == []

    rows = index_rows(archive.url)
    # Every acknowledged instance is indexed, on disk with its row's hash, and its dataset
    # bytes are those sent (the node writes its own file meta).
    missing = sorted(set(ledger.acked) - set(rows))
    assert not missing, f"{len(missing)} acknowledged instance(s) not indexed: {missing}"
    for uid, digest in ledger.acked.items():
        kept = archive.storage / rows[uid].path
        assert kept.is_file(), f"acknowledged {uid} has no file"
        assert dataset_sha256(kept) == digest, f"acknowledged {uid} differs from what was sent"
    # No row names a missing file; every file matches its row.
    check_rows(archive, rows)
    # Rows of instances in flight at the kill (committed, answer lost) are whole too.
    for uid in set(rows) & (set(ledger.attempted) - set(ledger.acked)):
        assert dataset_sha256(archive.storage / rows[uid].path) == ledger.attempted[uid].digest
    assert large_uid not in rows
    named = {(archive.storage / row.path).resolve() for row in rows.values()}
    orphans = [
        p
        for p in archive.storage.rglob("*.dcm")
        if ".incoming" not in p.parts and p.resolve() not in named
    ]
    print(
        f"{len(ledger.acked)} acknowledged ({acked_at_kill} at the kill), {in_flight} in "
        f"flight, {len(ledger.attempted)} attempted, {len(rows)} rows after restart, "
        f"{len(orphans)} file(s) without a row"
    )
    assert set(rows) <= set(ledger.attempted) | {str(dcmread(fresh).SOPInstanceUID)}

    # A sender's retry of what was never acknowledged succeeds, and ends up indexed whole
    # (also when the crash left a linked file without its row).
    unanswered = [ledger.attempted[u] for u in sorted(set(ledger.attempted) - set(ledger.acked))]
    assert unanswered, "no C-STORE was left unanswered by the kill"
    assoc = store_association(UNCOMPRESSED, archive.port)
    try:
        assert [assoc.send_c_store(item.path).Status for item in unanswered] == [0] * len(
            unanswered
        )
    finally:
        assoc.release()
    rows = index_rows(archive.url)
    check_rows(archive, rows)
    for item in unanswered:
        assert dataset_sha256(archive.storage / rows[item.uid].path) == item.digest
    assert incoming(archive) == []
    assert archive.terminate() == 0, archive.log()
    assert "Traceback" not in archive.log()


# -- SIGKILL during a C-MOVE -------------------------------------------------------------------


class Gate:
    """A destination's C-STORE handler that holds the (HOLD_AT + 1)th C-STORE until opened."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen = 0
        self.holding = threading.Event()
        self.opened = threading.Event()

    def __call__(self, event: Any) -> int:
        with self.lock:
            self.seen += 1
            hold = self.seen == HOLD_AT + 1
        if hold:
            self.holding.set()
            self.opened.wait(timeout=DEADLINE)
        return 0x0000


def move_association(port: int) -> Any:
    ae = AE(ae_title=WORKSTATION)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(STUDY_MOVE)
    assoc = ae.associate(
        HOST, port, ae_title=CALLED, evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)]
    )
    assert assoc.is_established
    return assoc


def run_move(port: int, study_uid: str, outcome: list[Any]) -> None:
    assoc = move_association(port)
    try:
        outcome.append(move(assoc, identifier("STUDY", StudyInstanceUID=study_uid), "DEST"))
    except BaseException as exc:  # the node died under it
        outcome.append(exc)
    finally:
        if assoc.is_established:
            assoc.release()


def test_sigkill_during_move(archive, tmp_path):
    """The destination takes Implicit VR only, so each Explicit VR slice goes out as a
    re-encoded temporary copy (`.incoming/outgoing-*`): one exists when the node is killed."""
    gate = Gate()
    dest = Destination(
        tmp_path / "dest",
        classes=[dicom_objects.CT_IMAGE],
        syntaxes=[ImplicitVRLittleEndian],
        on_store=gate,
    )
    try:
        archive.cli(
            "ae", "add", "DEST", "--hospital", "UNN", "--host", HOST, "--port", str(dest.port)
        )
        archive.cli(
            "ae", "add", WORKSTATION, "--hospital", "UNN", "--host", HOST, "--allow", "move"
        )
        archive.start()
        study_uid = generate_uid()
        series_uid = generate_uid()
        slices = {}
        assoc = store_association(UNCOMPRESSED, archive.port)
        try:
            for n in range(MOVE_SLICES):
                ds = large_ct(study_uid=study_uid, series_uid=series_uid, patient_id="P1")
                ds.InstanceNumber = n + 1
                path = dicom_objects.write(ds, tmp_path / "send" / f"ct{n}.dcm")
                assert assoc.send_c_store(path).Status == 0x0000
                slices[str(ds.SOPInstanceUID)] = path
        finally:
            assoc.release()
        before = index_rows(archive.url)
        assert set(before) == set(slices)

        outcome: list[Any] = []
        mover = threading.Thread(
            target=run_move, args=(archive.port, study_uid, outcome), daemon=True
        )
        mover.start()
        try:
            assert gate.holding.wait(timeout=DEADLINE), f"the move stalled: {outcome}"
            received = len(dest.received.files)
            temporary = [p.name for p in incoming(archive) if p.name.startswith("outgoing-")]
            archive.kill()
        finally:
            gate.opened.set()
            mover.join(timeout=DEADLINE)
        assert not mover.is_alive()
        assert 0 < received < MOVE_SLICES, received
        assert received == HOLD_AT
        assert temporary, "no re-encoded copy in .incoming while the move was sending"
        # The move never completed: the SCU lost the association without a final success.
        assert outcome
        assert isinstance(outcome[0], BaseException) or outcome[0][0].Status != 0x0000

        archive.start()
        assert not [p for p in incoming(archive) if p.name.startswith("outgoing-")]
        assert incoming(archive) == []
        assert "partial file(s) of interrupted transfers" in archive.log()

        # The index is as it was: same rows, same hashes, files present.
        after = index_rows(archive.url)
        assert after == before
        check_rows(archive, after)

        # The same C-MOVE now completes; every slice arrives (duplicates are fine).
        assoc = move_association(archive.port)
        try:
            final, _, _ = move(assoc, identifier("STUDY", StudyInstanceUID=study_uid), "DEST")
        finally:
            assoc.release()
        assert final.Status == 0x0000, final
        assert final.NumberOfCompletedSuboperations == MOVE_SLICES
        assert final.get("NumberOfFailedSuboperations", 0) == 0
        assert set(dest.received.files) == set(slices)
        for uid, path in slices.items():
            arrived = dcmread(dest.received.files[uid])
            assert arrived.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
            assert arrived.PixelData == dcmread(path).PixelData
        assert incoming(archive) == []
    finally:
        dest.stop()
    assert archive.terminate() == 0, archive.log()
    assert "Traceback" not in archive.log()


# -- SIGKILL during Storage Commitment ---------------------------------------------------------


def commitment_rows(url: str) -> dict[str, str]:
    """State of each Storage Commitment request, by Transaction UID, read with plain SQL."""
    sql = "SELECT transaction_uid, state FROM commitment_request"
    conn: Any = (
        sqlite3.connect(url.removeprefix("sqlite:///"))
        if url.startswith("sqlite:///")
        else pg_connect(url)
    )
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return dict(cur.fetchall())
    finally:
        conn.close()


def test_sigkill_during_commitment(archive, tmp_path):
    """Killed while its report waits for the modality's answer on the requesting association,
    the node sends the report again after the restart, on an association of its own to the
    modality's registered port: an unanswered report is not a delivered one."""
    hold = threading.Event()
    with modality(CALLING, hold=hold) as scu:
        archive.cli("ae", "update", CALLING, "--port", str(scu.listen()))
        archive.start()
        refs = []
        assoc = store_association(UNCOMPRESSED, archive.port)
        try:
            for n in range(3):
                ds = dicom_objects.ct(patient_id="P1")
                path = dicom_objects.write(ds, tmp_path / "send" / f"ct{n}.dcm")
                assert assoc.send_c_store(path).Status == 0x0000
                refs.append((ds.SOPClassUID, ds.SOPInstanceUID))
        finally:
            assoc.release()
        ds = request(refs)
        requesting = scu.associate(None, archive.port)
        try:
            assert n_action(requesting, ds).Status == 0x0000
            where, event_type, _ = scu.report(timeout=DEADLINE)
            assert (where, event_type) == ("association", EVENT_ALL_COMMITTED)
            assert commitment_rows(archive.url) == {ds.TransactionUID: PENDING}
            archive.kill()  # while the node waits for the answer to its report
        finally:
            hold.set()
            requesting.abort()
        archive.start()
        where, event_type, info = scu.report(timeout=DEADLINE)
        assert (where, event_type) == ("listener", EVENT_ALL_COMMITTED)
        assert info.TransactionUID == ds.TransactionUID
        assert referenced(info) == {uid for _, uid in refs}
        deadline = time.monotonic() + DEADLINE
        while commitment_rows(archive.url) != {ds.TransactionUID: DELIVERED}:
            assert time.monotonic() < deadline, commitment_rows(archive.url)
            time.sleep(0.05)
        check_rows(archive, index_rows(archive.url))
        assert incoming(archive) == []
