"""`archive-node audit` on SQLite and PostgreSQL: the records admin commands leave, the
questions and formats, every bad input, tamper evidence (`audit verify` naming the changed,
removed or inserted record), pruning with its checkpoint, the upgrade to schema 7, and the
index file readable by its owner only."""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import stat

import pytest
from peewee import SqliteDatabase

from archive_node.config import CONFIG_ENV, INDEX_URL_ENV, load_config
from archive_node.index import SCHEMA_VERSION
from archive_node.index.audit_rows import AuditFilter
from archive_node.index.tables import SchemaInfo
from archive_node.rules.audit import (
    QUERY,
    Actor,
    AuditEvent,
    Touched,
    timestamp,
)
from archive_node.service import ArchiveService
from tests.helpers.cli import cli_run, fails, ok, write_config


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(INDEX_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cfg(tmp_path, index_url):
    """An initialised index (both backends) with hospitals UNN and NLSH and one AE."""
    path = write_config(tmp_path, index_url)
    ok("init", "-c", path)
    ok("hospital", "add", "UNN", "--name", "University Hospital", "-c", path)
    ok("hospital", "add", "NLSH", "--name", "Nordland", "-c", path)
    ok("ae", "add", "UNN_US", "--hospital", "UNN", "-c", path)
    return path


def records(cfg, *args: str) -> list[dict]:
    return json.loads(ok("audit", "--json", *args, "-c", cfg).output)


def service_of(cfg) -> ArchiveService:
    return ArchiveService.from_config(load_config(cfg))


def queries(cfg) -> None:
    """Three Query records by AEs of two hospitals, touching two patients."""
    service = service_of(cfg)
    for ae_title, hospital, patient in (
        ("UNN_WS", "UNN", "P1"),
        ("NLSH_WS", "NLSH", "P1"),
        ("NLSH_WS", "NLSH", "P2"),
    ):
        service.audit.record(
            AuditEvent(
                QUERY,
                "E",
                "C-FIND",
                Actor("s", ae_title=ae_title, hospital=hospital, address="127.0.0.1"),
                touched=(Touched(patient, "UNN", "1.2.3"),),
            )
        )
    service.index.close()


def test_registry_changes_are_recorded_with_the_os_user(cfg):
    ok("ae", "update", "UNN_US", "--allow", "echo,store,find", "-c", cfg)
    ok("ae", "remove", "UNN_US", "-c", cfg)
    found = records(cfg, "--event", "security alert")
    assert [r["operation"] for r in reversed(found)] == [
        "hospital add",
        "hospital add",
        "ae add",
        "ae update",
        "ae remove",
    ]
    assert {r["user"] for r in found} == {getpass.getuser()}
    assert {r["event_type"] for r in found} == {"110129"}
    update = found[1]
    assert update["detail"]["ae_title"] == "UNN_US" and "find" in update["detail"]["allow"]


def test_asking_per_patient_with_filters_and_formats(cfg):
    queries(cfg)
    mine = records(cfg, "--patient", "P1", "--issuer", "UNN", "--event", "QUERY")
    assert [(r["ae_title"], r["hospital"]) for r in mine] == [
        ("NLSH_WS", "NLSH"),
        ("UNN_WS", "UNN"),
    ]  # newest first
    assert records(cfg, "--patient", "P1", "--issuer", "NLSH") == []
    assert len(records(cfg, "--patient", "P2")) == 1
    assert len(records(cfg, "--hospital", "NLSH", "--event", "query")) == 2
    assert len(records(cfg, "--ae", "UNN_WS")) == 1
    assert len(records(cfg, "--study", "1.2.3")) == 3
    assert records(cfg, "--since", "2000-01-01", "--until", "2000-12-31") == []
    today = timestamp()[:10]
    assert len(records(cfg, "--event", "query", "--since", today, "--until", today)) == 3
    seqs = [r["seq"] for r in records(cfg)]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)

    table = ok("audit", "--patient", "P1", "-c", cfg).output
    header, *rows = table.splitlines()
    assert header.split()[:4] == ["SEQ", "TIME", "EVENT", "OPERATION"]
    assert sum("NLSH_WS" in row for row in rows) == 1
    assert all("P1^^^UNN" in row for row in rows if "C-FIND" in row)

    text = ok("audit", "--csv", "--event", "query", "-c", cfg).output
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {row["patient"] for row in rows} == {"P1^^^UNN", "P2^^^UNN"}
    assert all(row["seq"] for row in rows)


def test_reading_the_trail_is_recorded_with_the_patient_asked_about(cfg):
    ok("audit", "--patient", "P9", "--issuer", "UNN", "-c", cfg)
    used = records(cfg, "--event", "Audit Log Used")
    first = used[-1]
    assert first["operation"] == "audit query" and first["user"] == getpass.getuser()
    assert first["touched"] == [
        {"patient_id": "P9", "issuer": "UNN", "study_uid": "", "instances": 0}
    ]
    # "who looked at my record" includes who looked at my audit trail
    assert [r["operation"] for r in records(cfg, "--patient", "P9")][-1] == "audit query"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--event", "Coffee"), "not an audit event"),
        (("--since", "yesterday"), "not an ISO date"),
        (("--until", "2026-13-01"), "not an ISO date"),
        (("--issuer", "UNN"), "--issuer needs --patient"),
        (("--json", "--csv"), "choose one"),
    ],
)
def test_bad_questions_are_one_line_errors(cfg, args, message):
    assert message in fails("audit", *args, "-c", cfg)


def test_a_limit_out_of_range_is_a_usage_error(cfg):
    result = cli_run("audit", "--limit", "0", "-c", cfg)
    assert result.exit_code == 2 and "--limit" in result.output


def test_verify_names_a_changed_a_removed_and_an_inserted_record(cfg):
    queries(cfg)
    assert "chain intact" in ok("audit", "verify", "-c", cfg).output
    service = service_of(cfg)
    db = service.index.db
    with service.index.session():
        db.execute_sql("UPDATE audit_record SET ae_title = 'FORGED' WHERE seq = 2")
    result = cli_run("audit", "verify", "-c", cfg)
    assert result.exit_code == 1 and "record 2: changed" in result.output
    with service.index.session():
        db.execute_sql("UPDATE audit_record SET ae_title = '' WHERE seq = 2")
        # a touched patient taken away changes its record too
        db.execute_sql(
            "DELETE FROM audit_touched WHERE record_id = "
            "(SELECT id FROM audit_record WHERE seq = 6)"
        )
        db.execute_sql("DELETE FROM audit_record WHERE seq = 4")
    result = cli_run("audit", "verify", "-c", cfg)
    assert result.exit_code == 1
    assert "record 4: removed" in result.output and "record 6: changed" in result.output
    service.index.close()


def test_verify_finds_the_last_record_removed_and_one_appended(cfg):
    queries(cfg)
    service = service_of(cfg)
    db = service.index.db
    with service.index.session():
        (last,) = db.execute_sql("SELECT MAX(seq) FROM audit_record").fetchone()
        db.execute_sql(f"DELETE FROM audit_record WHERE seq = {last}")
    result = cli_run("audit", "verify", "-c", cfg)
    assert result.exit_code == 1 and f"record {last}: removed" in result.output
    service.index.close()


def test_pruning_keeps_verification_and_leaves_a_checkpoint(cfg):
    queries(cfg)
    service = service_of(cfg)
    before = service.index.audit.query(AuditFilter())
    cutoff = timestamp()
    checkpoint = service.audit.prune(cutoff, Actor("cli", user="op"))
    assert checkpoint is not None
    assert checkpoint.details["records"] == len(before)
    assert checkpoint.details["pruned_through"] == max(r.seq for r in before)
    service.index.close()
    assert "chain intact" in ok("audit", "verify", "-c", cfg).output
    # the checkpoint removed: the pruned start no longer accounts for itself
    service = service_of(cfg)
    with service.index.session():
        service.index.db.execute_sql(f"DELETE FROM audit_record WHERE seq = {checkpoint.seq}")
    service.index.close()
    result = cli_run("audit", "verify", "-c", cfg)
    assert result.exit_code == 1 and "no checkpoint record" in result.output


def test_prune_command_needs_a_retention(cfg):
    assert "retain_days is 0" in fails("audit", "prune", "-c", cfg)
    assert "no records of ARCHIVE before" in ok("audit", "prune", "--days", "30", "-c", cfg).output


def test_prune_keeps_what_the_repository_has_not_received(tmp_path, index_url):
    cfg = write_config(tmp_path, index_url, audit={"repository": "tcp://127.0.0.1:1"})
    ok("init", "-c", cfg)
    ok("hospital", "add", "UNN", "--name", "University Hospital", "-c", cfg)
    service = service_of(cfg)
    assert service.audit.prune(timestamp(), Actor("cli")) is None  # nothing exported yet
    service.index.audit.mark_sent(service.audit.node, 1)
    checkpoint = service.audit.prune(timestamp(), Actor("cli"))
    assert checkpoint is not None and checkpoint.details["pruned_through"] == 1
    service.index.close()


def test_a_schema_6_index_is_upgraded_with_an_empty_trail(cfg):
    service = service_of(cfg)
    with service.index.session():
        for table in ("audit_touched", "audit_record", "audit_chain", "audit_tally"):
            service.index.db.execute_sql(f'DROP TABLE "{table}"')
    with service.index.session(write=True):
        SchemaInfo.update(value="6").where(SchemaInfo.key == "version").execute()
    service.index.close()
    assert (
        f"upgraded index schema from version 6 to {SCHEMA_VERSION}" in ok("init", "-c", cfg).output
    )
    assert {h["code"] for h in json.loads(ok("hospital", "list", "--json", "-c", cfg).output)} == {
        "UNN",
        "NLSH",
    }
    assert records(cfg, "--event", "Security Alert") == []


def test_the_sqlite_index_is_readable_by_its_owner_only(tmp_path, sqlite_url):
    cfg = write_config(tmp_path, sqlite_url)
    ok("init", "-c", cfg)
    path = sqlite_url.removeprefix("sqlite:///")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o644)  # an index made before the trail: tightened by init
    ok("init", "-c", cfg)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert isinstance(service_of(cfg).index.db, SqliteDatabase)


def test_an_unwritable_trail_fails_the_registry_change_loudly(cfg):
    service = service_of(cfg)
    db = service.index.db
    with service.index.session():
        if db.param == "?":
            db.execute_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_record "
                "BEGIN SELECT RAISE(ABORT, 'no room'); END"
            )
        else:
            db.execute_sql(
                "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'no room'; END $$ LANGUAGE plpgsql"
            )
            db.execute_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_record "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
    service.index.close()
    line = fails("hospital", "add", "HSYK", "--name", "Stavanger", "-c", cfg)
    assert "hospital add is done, but its audit record could not be written" in line
    assert "cannot record this use of it" in fails("audit", "-c", cfg)


def test_import_verify_and_reindex_runs_are_recorded(cfg, tmp_path):
    from tests.helpers.media_files import jpeg, pdf

    photo, document = jpeg(tmp_path / "lesion.jpg"), pdf(tmp_path / "referral.pdf")
    ok(
        "import", photo, document, "--hospital", "UNN", "--patient-id", "P-IMP",
        "--patient-name", "Test^Import", "-c", cfg,
    )  # fmt: skip
    ok("verify", "-c", cfg)
    ok("reindex", "-c", cfg)
    (imported,) = records(cfg, "--patient", "P-IMP", "--event", "import")
    assert (imported["operation"], imported["user"]) == ("import", getpass.getuser())
    assert imported["touched"][0]["instances"] == 2
    assert imported["touched"][0]["issuer"] == "UNN"
    runs = records(cfg, "--event", "security alert")
    by_operation = {r["operation"]: r for r in runs}
    assert by_operation["verify"]["event_type"] == "110142"
    assert by_operation["verify"]["detail"]["checked"] == 2
    assert by_operation["reindex"]["detail"]["files"] == 2
