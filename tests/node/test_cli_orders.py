"""The order commands on SQLite and PostgreSQL: `hl7 add-sender|senders|remove-sender`,
`orders` with its filters and --json, `orders add`; each bad input one line that changes
nothing; registry changes audited."""

from __future__ import annotations

import json

import pytest

from archive_node.config import CONFIG_ENV, INDEX_URL_ENV, load_config
from archive_node.index.tables import AuditRecordRow, Hl7Sender, ProcedureStep
from archive_node.service import ArchiveService
from tests.helpers.cli import fails, ok, write_config

ADD = (
    "orders", "add", "--hospital", "UNN", "--patient-id", "P-1", "--name", "NORDMANN^KARI",
    "--birth-date", "19800102", "--sex", "F", "--accession", "DERM-1", "--modality", "XC",
    "--station", "UNN_DERM", "--date", "20261205", "--time", "1030",
    "--procedure", "Skin lesion photo",
)  # fmt: skip


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(INDEX_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cfg(tmp_path, index_url):
    path = write_config(tmp_path, index_url, node={"uid_root": "1.2.826.0.1.3680043.10.999"})
    ok("init", "-c", path)
    ok("hospital", "add", "UNN", "--name", "University Hospital", "-c", path)
    ok("hospital", "add", "NLSH", "--name", "Nordland", "-c", path)
    return path


@pytest.fixture(autouse=True)
def service(cfg):
    """The test's index, open, so that the tables the tests read are bound to it."""
    service = ArchiveService.from_config(load_config(cfg))
    yield service
    service.index.close()


def test_hl7_senders(cfg):
    out = ok("hl7", "add-sender", "UNN_RIS", "--hospital", "UNN", "--host", "10.20.0.5", "-c", cfg)
    assert "UNN_RIS registered for UNN from 10.20.0.5" in out.output
    senders = json.loads(ok("hl7", "senders", "--json", "-c", cfg).output)
    assert senders == [
        {"facility": "UNN_RIS", "hospital": "UNN", "issuer": "UNN", "host": "10.20.0.5"}
    ]
    assert "UNN_RIS" in ok("hl7", "senders", "-c", cfg).output
    assert AuditRecordRow.select().where(AuditRecordRow.operation == "hl7 add-sender").exists()
    ok("hl7", "remove-sender", "UNN_RIS", "-c", cfg)
    assert Hl7Sender.select().count() == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("UNN_RIS", "--hospital", "NOPE", "--host", "10.0.0.1"), "no hospital NOPE"),
        (("UNN_RIS", "--hospital", "UNN", "--host", "not a host!"), "neither an IP address"),
        (("BAD|NAME", "--hospital", "UNN", "--host", "10.0.0.1"), "without '|'"),
        (("X" * 65, "--hospital", "UNN", "--host", "10.0.0.1"), "1-64"),
    ],
)
def test_bad_senders_are_refused(cfg, args, says):
    assert says in fails("hl7", "add-sender", *args, "-c", cfg)
    assert Hl7Sender.select().count() == 0


def test_a_sender_is_registered_once(cfg):
    ok("hl7", "add-sender", "UNN_RIS", "--hospital", "UNN", "--host", "10.20.0.5", "-c", cfg)
    line = fails(
        "hl7", "add-sender", "UNN_RIS", "--hospital", "NLSH", "--host", "10.0.0.1", "-c", cfg
    )
    assert "registered already" in line
    assert "no HL7 sender NOPE" in fails("hl7", "remove-sender", "NOPE", "-c", cfg)


def test_orders_add_and_list(cfg):
    out = ok(*ADD, "-c", cfg).output
    assert "scheduled DERM-1 (XC) on UNN_DERM 20261205 103000" in out
    assert "Study Instance UID 1.2.826.0.1.3680043.10.999." in out
    (step,) = json.loads(ok("orders", "--json", "-c", cfg).output)
    assert step["accession"] == "DERM-1"
    assert step["status"] == "SCHEDULED"
    assert step["performed"] == "no"
    assert step["patient_name"] == "NORDMANN^KARI"
    assert step["source"].startswith("admin ")
    table = ok("orders", "-c", cfg).output
    assert "DERM-1" in table and "UNN_DERM" in table
    assert "(none)" in ok("orders", "--station", "OTHER", "-c", cfg).output
    assert "(none)" in ok("orders", "--hospital", "NLSH", "-c", cfg).output
    assert "(none)" in ok("orders", "--date", "20261206", "-c", cfg).output
    assert "DERM-1" in ok("orders", "--status", "scheduled", "-c", cfg).output
    assert "(none)" in ok("orders", "--status", "PERFORMED", "-c", cfg).output
    assert "--status is one of" in fails("orders", "--status", "DONE", "-c", cfg)
    # the same accession twice is refused
    assert "has step DERM-1 already" in fails(*ADD, "-c", cfg)
    (record,) = AuditRecordRow.select().where(AuditRecordRow.operation == "orders add")
    assert (record.event, record.action) == ("Order Record", "C")


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("--date", "2026-12-05"), "--date is YYYYMMDD"),
        (("--time", "10:30"), "--date is YYYYMMDD and --time HHMM"),
        (("--station", "A" * 17), "--station"),
        (("--modality", "ultra sound"), "--modality"),
        (("--accession", "A" * 17), "--accession"),
        (("--patient-id", " "), "--patient-id"),
        (("--birth-date", "19801302"), "--birth-date"),
        (("--hospital", "NOPE"), "no hospital NOPE"),
    ],
)
def test_bad_orders_are_refused(cfg, change, says):
    args = list(ADD)
    option, value = change
    args[args.index(option) + 1] = value
    assert says in fails(*args, "-c", cfg)
    assert ProcedureStep.select().count() == 0
