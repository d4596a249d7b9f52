"""`archive-node serve` with its HL7 listener, as a real process under `--workers 2`: one
process takes the messages, an order sent over MLLP is listed by `archive-node orders`, no
patient data reaches the log, and SIGTERM stops it cleanly."""

from __future__ import annotations

import json

import pytest

from tests.helpers.hl7 import Mllp, ack_code, orm, pid
from tests.helpers.ports import free_port
from tests.helpers.serving_process import HOST, Archive

SECRET_NAME = "SECRETNAME^HL7"
SECRET_PID = "SECRETPID-HL7"


@pytest.fixture
def archive(tmp_path):
    node = Archive(tmp_path, hl7={"bind": HOST, "port": free_port()})
    node.init()
    node.cli("hl7", "add-sender", "UNN_RIS", "--hospital", "UNN", "--host", HOST)
    try:
        yield node
    finally:
        node.close()


def test_serve_takes_hl7_orders_under_several_workers(archive):
    archive.start("--workers", "2")
    port = int(archive.hl7["port"])  # type: ignore[index]
    message = orm("P-1", patient=pid(SECRET_PID, name=SECRET_NAME))
    with Mllp(HOST, port) as link:
        assert ack_code(link.send(message)) == "AA"
        # a resend on the same connection is acknowledged and applied once
        assert ack_code(link.send(message)) == "AA"
    (step,) = json.loads(archive.cli("orders", "--json").stdout)
    assert (step["accession"], step["patient_id"]) == ("ACC-1", SECRET_PID)
    assert archive.terminate() == 0
    log = archive.log()
    assert log.count("HL7 v2 (MLLP) listening") == 1  # one process of the node takes them
    assert "HL7 ORM^O01 P-1 from UNN_RIS (UNN): AA" in log
    assert SECRET_NAME not in log and SECRET_PID not in log
