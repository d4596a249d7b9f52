"""The audit export of a real `archive-node serve`: killed (SIGKILL) while the Audit Record
Repository is down, started again once it is back, it delivers every record it had written,
in order, each under its own sequence number (a record sent twice carries the same one)."""

from __future__ import annotations

import re
import sqlite3
import time

import pytest
from pydicom.uid import generate_uid

from tests.helpers import dicom_objects
from tests.helpers.rsyslog import Rsyslog
from tests.helpers.serving_process import Archive, send

SEQUENCE = re.compile(r'\[meta sequenceId="(\d+)"\]')


def head(node: Archive) -> int:
    """The node's last record number, read from its index as an outsider would."""
    with sqlite3.connect(node.url.removeprefix("sqlite:///")) as db:
        (seq,) = db.execute("SELECT seq FROM audit_chain").fetchone()
    return int(seq)


def stores_recorded(node: Archive) -> int:
    with sqlite3.connect(node.url.removeprefix("sqlite:///")) as db:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM audit_record WHERE operation = 'C-STORE'"
        ).fetchone()
    return int(count)


@pytest.fixture
def exporting(tmp_path, pki):
    """A repository (rsyslog over TLS, not started) and a node that exports to it."""
    repository = Rsyslog(tmp_path / "rsyslog", pki.region.issue("audit-repository"))
    (tmp_path / "node").mkdir()
    node = Archive(
        tmp_path / "node",
        audit={
            "repository": repository.url("tls"),
            "ca_certificates": str(pki.region.certificate),
        },
    )
    yield repository, node
    node.close()
    repository.stop()


def store_studies(node: Archive, tmp_path, count: int, patient_id: str) -> int:
    """C-STORE a study per association; the node's last record number once all are sealed."""
    for _ in range(count):
        ds = dicom_objects.secondary_capture(patient_id=patient_id, study_uid=generate_uid())
        path = dicom_objects.write(ds, tmp_path / f"{ds.SOPInstanceUID}.dcm")
        assert send(node, path).status == 0
    deadline = time.monotonic() + 30
    while stores_recorded(node) < count:
        assert time.monotonic() < deadline, node.log()
        time.sleep(0.02)
    return head(node)


def delivered(repository: Rsyslog, node: Archive, written: int, deadline: float) -> list[int]:
    """The sequence numbers received, in order, once records 1 to `written` have arrived."""
    end = time.monotonic() + deadline
    while True:
        numbers = [int(m) for raw in repository.messages() for m in SEQUENCE.findall(raw)]
        if set(range(1, written + 1)) <= set(numbers):
            return numbers
        assert time.monotonic() < end, (written, numbers, node.log()[-3000:])
        time.sleep(0.05)


def test_a_node_killed_while_the_repository_is_down_delivers_everything_later(exporting, tmp_path):
    repository, node = exporting
    node.init()
    node.start()
    written = store_studies(node, tmp_path, 3, "P-KILL")  # three associations: three records
    node.kill()
    assert repository.messages() == []  # it was down all along

    repository.start()
    node.start()
    numbers = delivered(repository, node, written, deadline=60)
    distinct = list(dict.fromkeys(numbers))
    assert distinct == sorted(distinct)  # in order; a repeat keeps its number
    assert sum("P-KILL" in raw for raw in repository.messages()) >= 3
    assert node.terminate() == 0


def test_with_workers_one_process_exports_the_whole_chain_once(exporting, tmp_path):
    repository, node = exporting
    repository.start()
    node.init()
    node.start("--workers", "2")
    written = store_studies(node, tmp_path, 4, "P-WORKERS")  # served by either worker
    numbers = delivered(repository, node, written, deadline=30)
    assert len(numbers) == len(set(numbers))  # one sender: nothing twice
    assert sum("P-WORKERS" in raw for raw in repository.messages()) == 4
    assert node.terminate() == 0
