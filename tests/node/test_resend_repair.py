"""An identical resend repairs a kept file that went bad (issue 22, finding 10): real C-STOREs
over real associations into a node served in the test process, on SQLite and PostgreSQL.

Before, a resend whose bytes were the recorded hash answered "identical: nothing new stored"
and left a changed or truncated file as it was (only a missing one was put back); `verify`
kept finding it corrupt. Now the kept file is checked too (its size, then its hash only when
the size matches) and restored from the resend when it differs, logged as a repair naming
UIDs and paths, never the patient.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from archive_node.dicom import status
from archive_node.index import NewInstance
from tests.helpers import dicom_objects
from tests.helpers.cli import cli_run, write_config
from tests.helpers.dimse import store

SECRET_NAME = "Repairdottir^Solveig"
SECRET_ID = "PID-REPAIR-77"


def corrupt_in_place(path: Path) -> None:
    """One byte in the middle changed: the size stays, the hash does not."""
    with open(path, "r+b") as fh:
        fh.seek(path.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 3)


def delete(path: Path) -> None:
    path.unlink()


def verify_cli(tmp_path: Path, index_url: str):
    """`archive-node verify` on the node's index and store: (exit code, output)."""
    result = cli_run("verify", "--config", write_config(tmp_path, index_url, log={}))
    return result.exit_code, result.output


@pytest.mark.parametrize("damage", [corrupt_in_place, truncate, delete])
def test_an_identical_resend_repairs_a_damaged_file(node, tmp_path, index_url, caplog, damage):
    ds = dicom_objects.ct(patient_name=SECRET_NAME, patient_id=SECRET_ID)
    assert store(node, ds) == status.SUCCESS
    record = node.service.index.instances.find(ds.SOPInstanceUID)
    kept = node.service.storage.absolute(record.path)
    damage(kept)
    code, output = verify_cli(tmp_path, index_url)
    assert code == 1 and ("corrupt" in output or "missing" in output), output

    with caplog.at_level(logging.INFO, logger="archive_node"):
        assert store(node, ds) == status.SUCCESS  # the same instance, the same bytes

    healed = node.service.index.instances.find(ds.SOPInstanceUID)
    assert (healed.sha256, healed.size) == (record.sha256, record.size)
    kept = node.service.storage.absolute(healed.path)
    data = kept.read_bytes()
    assert len(data) == record.size and hashlib.sha256(data).hexdigest() == record.sha256
    code, output = verify_cli(tmp_path, index_url)
    assert code == 0 and "no problems" in output, output
    if damage is not delete:
        # kept beside the bad file as a replacement is, the row repointed, the bad file gone
        assert not (node.service.storage.absolute(record.path).exists()) or (
            healed.path == record.path
        )
        repaired = [r for r in caplog.records if "repaired" in r.getMessage()]
        assert len(repaired) == 1 and repaired[0].levelno == logging.WARNING
        assert ds.SOPInstanceUID in repaired[0].getMessage()
        assert "identical: nothing new stored" not in caplog.text
    assert SECRET_NAME not in caplog.text and SECRET_ID not in caplog.text
    # nothing but the one kept file is left beside it (no link or copy of the repair)
    assert sorted(p.name for p in kept.parent.iterdir()) == [kept.name]


def test_an_identical_resend_of_an_intact_file_leaves_it_alone(node, caplog):
    ds = dicom_objects.secondary_capture()
    assert store(node, ds) == status.SUCCESS
    record = node.service.index.instances.find(ds.SOPInstanceUID)
    before = node.service.storage.absolute(record.path).stat()
    with caplog.at_level(logging.INFO, logger="archive_node"):
        assert store(node, ds) == status.SUCCESS
    after = node.service.storage.absolute(record.path).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert "identical: nothing new stored" in caplog.text
    assert "repaired" not in caplog.text


def test_a_repair_never_undoes_a_store_that_came_in_between(node):
    """The repair repoints the row only while it still records the hash the resend matched:
    a replacement committed meanwhile stands, and nothing changes."""
    ds = dicom_objects.ct()
    assert store(node, ds) == status.SUCCESS
    record = node.service.index.instances.find(ds.SOPInstanceUID)
    rows = node.service.index.instances
    new = NewInstance(
        header=dicom_objects.instance_header(sop_instance_uid=ds.SOPInstanceUID),
        path="elsewhere.dcm",
        size=1,
        sha256="0" * 64,
        calling_ae="UNN_US",
        hospital="UNN",
        issuer="UNN",
    )
    assert rows.replace(new, take_over=False, expect_sha256="f" * 64) is None
    assert rows.find(ds.SOPInstanceUID) == record
