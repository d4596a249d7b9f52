"""`archive-node ae --tls --certificate --certificate-fingerprint`: binding client certificates to
AEs from the CLI, every bad input a one-line error that changes nothing."""

from __future__ import annotations

import pytest
from peewee import SqliteDatabase

from archive_node.config import CONFIG_ENV, INDEX_URL_ENV, load_config
from archive_node.index import SCHEMA_VERSION
from archive_node.index.tables import SchemaInfo
from archive_node.service import ArchiveService
from tests.helpers.cli import aes, cli_run, fails, ok, write_config


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(INDEX_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cfg(tmp_path, index_url):
    """An initialised index (both backends) with hospital UNN."""
    path = write_config(tmp_path, index_url)
    ok("init", "-c", path)
    ok("hospital", "add", "UNN", "--name", "University Hospital", "-c", path)
    return path


def test_an_ae_is_optional_by_default_with_no_certificate(cfg):
    ok("ae", "add", "US_1", "--hospital", "UNN", "-c", cfg)
    row = aes(cfg)["US_1"]
    assert (row["tls"], row["certificates"]) == ("optional", [])


def test_binding_by_file_and_by_fingerprint(cfg, pki):
    out = ok(
        "ae", "add", "US_1", "--hospital", "UNN", "--tls", "required",
        "--certificate", pki.modality.certificate, "-c", cfg,
    ).output  # fmt: skip
    assert "TLS required" in out and pki.modality.fingerprint in out
    # what openssl prints is what the node takes
    openssl_style = "sha256 Fingerprint=" + pki.workstation.fingerprint.removeprefix("SHA256:")
    ok(
        "ae",
        "add",
        "WS_1",
        "--hospital",
        "UNN",
        "--certificate-fingerprint",
        openssl_style,
        "-c",
        cfg,
    )
    rows = aes(cfg)
    assert rows["US_1"]["certificates"] == [pki.modality.fingerprint]
    assert rows["US_1"]["tls"] == "required"
    assert rows["WS_1"]["certificates"] == [pki.workstation.fingerprint]
    table = ok("ae", "list", "-c", cfg).output
    assert "TLS" in table and pki.modality.fingerprint[:30] in table


def test_rollover_binds_two_then_one_then_none(cfg, pki):
    ok(
        "ae",
        "add",
        "US_1",
        "--hospital",
        "UNN",
        "--certificate",
        pki.modality.certificate,
        "-c",
        cfg,
    )
    ok(
        "ae", "update", "US_1", "--certificate", pki.modality.certificate,
        "--certificate", pki.unbound.certificate, "-c", cfg,
    )  # fmt: skip
    assert aes(cfg)["US_1"]["certificates"] == [pki.modality.fingerprint, pki.unbound.fingerprint]
    ok("ae", "update", "US_1", "--certificate-fingerprint", pki.unbound.fingerprint, "-c", cfg)
    assert aes(cfg)["US_1"]["certificates"] == [pki.unbound.fingerprint]
    ok("ae", "update", "US_1", "--no-certificate", "-c", cfg)
    assert aes(cfg)["US_1"]["certificates"] == []
    # the modality's certificate is free again for another AE
    ok(
        "ae",
        "add",
        "US_2",
        "--hospital",
        "UNN",
        "--certificate",
        pki.modality.certificate,
        "-c",
        cfg,
    )


def test_a_certificate_opens_one_ae_only(cfg, pki):
    ok(
        "ae",
        "add",
        "US_1",
        "--hospital",
        "UNN",
        "--certificate",
        pki.modality.certificate,
        "-c",
        cfg,
    )
    line = fails(
        "ae", "add", "US_2", "--hospital", "UNN",
        "--certificate", pki.modality.certificate, "-c", cfg,
    )  # fmt: skip
    assert "is bound to AE US_1" in line
    assert set(aes(cfg)) == {"US_1"}  # nothing half-added
    ok("ae", "add", "US_3", "--hospital", "UNN", "-c", cfg)
    line = fails(
        "ae", "update", "US_3", "--certificate-fingerprint", pki.modality.fingerprint, "-c", cfg
    )
    assert "is bound to AE US_1" in line
    assert aes(cfg)["US_3"]["certificates"] == []


def test_removing_an_ae_unbinds_its_certificate(cfg, pki):
    ok(
        "ae",
        "add",
        "US_1",
        "--hospital",
        "UNN",
        "--certificate",
        pki.modality.certificate,
        "-c",
        cfg,
    )
    ok("ae", "remove", "US_1", "-c", cfg)
    ok(
        "ae",
        "add",
        "US_2",
        "--hospital",
        "UNN",
        "--certificate",
        pki.modality.certificate,
        "-c",
        cfg,
    )
    assert aes(cfg)["US_2"]["certificates"] == [pki.modality.fingerprint]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls", "sometimes"], "'sometimes' is not one of"),
        (["--certificate-fingerprint", "SHA1:" + "ab" * 20], "not a SHA-256 fingerprint"),
        (["--certificate-fingerprint", "hello"], "not a SHA-256 fingerprint"),
        (["--certificate", "/nonexistent.pem"], "--certificate /nonexistent.pem: cannot read"),
        (["--certificate", "NOT_PEM"], "no PEM certificate in it"),
        (["--certificate", "BROKEN_PEM"], "the certificate cannot be decoded"),
        (["--tls", "off", "--certificate", "MODALITY"], "not with --tls off"),
        (["--certificate-fingerprint", "ab" * 32] * 5, "at most 4 per AE"),
    ],
    ids=[
        "unknown-mode",
        "sha1",
        "not-hex",
        "no-file",
        "not-pem",
        "broken-pem",
        "off-with-certificate",
        "too-many",
    ],
)
def test_bad_tls_input_is_one_line_and_adds_nothing(cfg, pki, tmp_path, args, message):
    (tmp_path / "not.pem").write_text("hello\n")
    (tmp_path / "broken.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    files = {
        "NOT_PEM": str(tmp_path / "not.pem"),
        "BROKEN_PEM": str(tmp_path / "broken.pem"),
        "MODALITY": str(pki.modality.certificate),
    }
    args = [files.get(a, a) for a in args]
    if args[-1] == "ab" * 32:  # too many: five different fingerprints
        args = [a if a != "ab" * 32 else f"{i:02x}" * 32 for i, a in enumerate(args)]
    result = cli_run("ae", "add", "US_1", "--hospital", "UNN", *args, "-c", cfg)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert aes(cfg) == {}


def test_update_to_tls_off_with_a_bound_certificate_is_refused(cfg, pki):
    ok(
        "ae",
        "add",
        "US_1",
        "--hospital",
        "UNN",
        "--certificate",
        pki.modality.certificate,
        "-c",
        cfg,
    )
    assert "not with --tls off" in fails("ae", "update", "US_1", "--tls", "off", "-c", cfg)
    ok("ae", "update", "US_1", "--tls", "off", "--no-certificate", "-c", cfg)
    row = aes(cfg)["US_1"]
    assert (row["tls"], row["certificates"]) == ("off", [])


def test_no_certificate_with_certificates_is_refused(cfg, pki):
    ok("ae", "add", "US_1", "--hospital", "UNN", "-c", cfg)
    line = fails(
        "ae", "update", "US_1", "--no-certificate", "--certificate", pki.modality.certificate,
        "-c", cfg,
    )  # fmt: skip
    assert "--no-certificate" in line


def test_a_schema_5_index_is_upgraded_its_aes_optional_without_certificates(cfg, tmp_path):
    ok("ae", "add", "US_1", "--hospital", "UNN", "--port", "4006", "-c", cfg)
    service = ArchiveService.from_config(load_config(cfg))
    db = service.index.db
    sqlite = isinstance(db, SqliteDatabase)
    with service.index.session():  # make it look like a schema 5 index
        if sqlite:  # SQLite's DROP COLUMN rechecks foreign keys; outside a transaction only
            db.execute_sql("PRAGMA foreign_keys = OFF")
        db.execute_sql('DROP TABLE "ae_certificate"')
        db.execute_sql('ALTER TABLE "application_entity" DROP COLUMN "tls"')
        if sqlite:
            db.execute_sql("PRAGMA foreign_keys = ON")
    with service.index.session(write=True):
        SchemaInfo.update(value="5").where(SchemaInfo.key == "version").execute()
    service.index.close()
    assert (
        f"upgraded index schema from version 5 to {SCHEMA_VERSION}" in ok("init", "-c", cfg).output
    )
    row = aes(cfg)["US_1"]
    assert (row["tls"], row["certificates"], row["port"]) == ("optional", [], 4006)


def test_a_certificate_file_over_its_bound_is_refused_unread(cfg, tmp_path):
    huge = tmp_path / "huge.pem"
    with huge.open("wb") as fh:
        fh.truncate(2 << 20)  # sparse: 2 MiB that read as NUL bytes
    line = fails("ae", "add", "US_1", "--hospital", "UNN", "--certificate", huge, "-c", cfg)
    assert "over 1024 KiB: not a certificate" in line
    assert aes(cfg) == {}
