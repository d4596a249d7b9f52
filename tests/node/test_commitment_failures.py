"""A Storage Commitment failure names its instances (issue 22, finding 8): a WARNING per failed
instance (bounded), and `archive-node commitments --json` lists them; real N-ACTIONs."""

from __future__ import annotations

import json
import logging

import pytest
from pydicom.uid import generate_uid
from pynetdicom.sop_class import CTImageStorage, SecondaryCaptureImageStorage

from archive_node.dicom import status
from archive_node.rules.commitment import (
    MAX_LOGGED_FAILURES,
    Failure,
    failure_lines,
    failure_words,
)
from tests.helpers import dicom_objects
from tests.helpers.cli import cli_run, write_config
from tests.helpers.commitment import modality, n_action, request
from tests.helpers.dimse import store


def _commit(node, references):
    """N-ACTION for `references` as UNN_US; the report (on the association)."""
    ds = request(references)
    with modality("UNN_US") as scu:
        assoc = scu.associate(node)
        try:
            assert n_action(assoc, ds).Status == status.SUCCESS
            _where, _event_type, report = scu.report()
        finally:
            assoc.release()
    return ds.TransactionUID, report


def _commitments_json(tmp_path, index_url):
    config = write_config(tmp_path, index_url, name="cli.toml")
    result = cli_run("--config", config, "commitments", "--json")
    assert result.exit_code == 0, result.output
    return {row["transaction_uid"]: row for row in json.loads(result.output)}


def test_known_and_unknown_instance(node, tmp_path, index_url, caplog):
    ds = dicom_objects.secondary_capture()
    assert store(node, ds) == status.SUCCESS
    unknown, wrong_class = generate_uid(), (CTImageStorage, ds.SOPInstanceUID)
    references = [(ds.SOPClassUID, ds.SOPInstanceUID), (SecondaryCaptureImageStorage, unknown)]
    with caplog.at_level(logging.INFO, logger="archive_node"):
        transaction, report = _commit(node, references)
        transaction_2, _ = _commit(node, [wrong_class])
    assert {i.ReferencedSOPInstanceUID for i in report.FailedSOPSequence} == {unknown}

    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "not committed" in r.getMessage()
    ]
    assert warnings == [
        f"storage commitment {transaction} for UNN_US: {unknown} "
        f"({SecondaryCaptureImageStorage}) not committed: 0x0112 no such object instance",
        f"storage commitment {transaction_2} for UNN_US: {ds.SOPInstanceUID} "
        f"({CTImageStorage}) not committed: 0x0119 class/instance conflict",
    ]
    assert f"storage commitment {transaction} for UNN_US: 1 committed, 1 failed" in caplog.text

    rows = _commitments_json(tmp_path, index_url)
    assert (rows[transaction]["committed"], rows[transaction]["failed"]) == (1, 1)
    assert rows[transaction]["failures"] == [
        {
            "sop_class_uid": SecondaryCaptureImageStorage,
            "sop_instance_uid": unknown,
            "failure_reason": "0x0112",
            "reason": "no such object instance",
        }
    ]
    assert rows[transaction_2]["failures"] == [
        {
            "sop_class_uid": CTImageStorage,
            "sop_instance_uid": ds.SOPInstanceUID,
            "failure_reason": "0x0119",
            "reason": "class/instance conflict",
        }
    ]
    # the table shows how many failed
    config = write_config(tmp_path, index_url, name="cli.toml")
    table = cli_run("--config", config, "commitments").output.splitlines()
    assert "FAILED" in table[0]


def test_all_committed_lists_no_failure(node, tmp_path, index_url, caplog):
    ds = dicom_objects.secondary_capture()
    assert store(node, ds) == status.SUCCESS
    with caplog.at_level(logging.INFO, logger="archive_node"):
        transaction, _ = _commit(node, [(ds.SOPClassUID, ds.SOPInstanceUID)])
    assert "not committed" not in caplog.text
    row = _commitments_json(tmp_path, index_url)[transaction]
    assert (row["committed"], row["failed"], row["failures"]) == (1, 0, [])


def test_the_log_names_at_most_twenty_failures_then_how_many_more(node, caplog):
    unknown = [(SecondaryCaptureImageStorage, generate_uid()) for _ in range(25)]
    with caplog.at_level(logging.INFO, logger="archive_node"):
        transaction, report = _commit(node, unknown)
    assert len(report.FailedSOPSequence) == 25
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and transaction in r.getMessage()
    ]
    assert len(lines) == MAX_LOGGED_FAILURES + 1
    for (_class, uid), line in zip(unknown[:MAX_LOGGED_FAILURES], lines[:-1], strict=True):
        assert uid in line and "0x0112" in line
    assert lines[-1].endswith("and 5 more instance(s) not committed")


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        (0x0110, "0x0110 processing failure"),
        (0x0112, "0x0112 no such object instance"),
        (0x0119, "0x0119 class/instance conflict"),
        (0x0213, "0x0213 resource limitation"),
        (0x0122, "0x0122 referenced SOP class not supported"),
        (0x0131, "0x0131 duplicate transaction UID"),
        (0xC000, "0xC000 failure"),
    ],
)
def test_failure_words(reason, words):
    assert failure_words(reason) == words


@pytest.mark.parametrize(("count", "expected"), [(0, 0), (1, 1), (20, 20), (21, 21), (500, 21)])
def test_failure_lines_are_bounded(count, expected):
    failed = tuple(Failure("1.2.3", f"1.2.3.{n}", 0x0112) for n in range(count))
    lines = failure_lines(failed)
    assert len(lines) == expected
    if count > MAX_LOGGED_FAILURES:
        assert lines[-1] == f"and {count - MAX_LOGGED_FAILURES} more instance(s) not committed"
