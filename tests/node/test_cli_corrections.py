"""The correction commands on SQLite and PostgreSQL: what each prints, --dry-run, --json, the
audit record each leaves (user, reason, before and after), every bad input as one line that
changes nothing, and `hospital update --issuer` with and without --merge."""

from __future__ import annotations

import getpass
import json

import pytest
from pydicom.uid import generate_uid

from archive_node.config import CONFIG_ENV, INDEX_URL_ENV, load_config
from archive_node.index.tables import Correction, Instance, Patient, Study
from archive_node.service import ArchiveService
from tests.helpers import dicom_objects
from tests.helpers.cli import cli_run, fails, ok, write_config


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(INDEX_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cfg(tmp_path, index_url):
    path = write_config(tmp_path, index_url)
    ok("init", "-c", path)
    ok("hospital", "add", "UNN", "--name", "University Hospital", "-c", path)
    ok("hospital", "add", "NLSH", "--name", "Nordland", "-c", path)
    return path


@pytest.fixture
def service(cfg):
    service = ArchiveService.from_config(load_config(cfg))
    yield service
    service.index.close()


def a_study(service, patient_id, *, issuer=None, hospital="UNN", name="TEST^PATIENT", count=1):
    """Index rows of a study (no files): what the commands look at."""
    study_uid, series_uid = generate_uid(), generate_uid()
    headers = [
        dicom_objects.index_row(
            service,
            dicom_objects.instance_header(
                patient_id=patient_id,
                issuer_of_patient_id=issuer,
                patient_name=name,
                study_uid=study_uid,
                series_uid=series_uid,
            ),
            hospital=hospital,
        )
        for _ in range(count)
    ]
    return headers


def patient_of(service, study_uid):
    with service.index.session():
        study = Study.get(Study.study_uid == study_uid)
        patient = Patient.get_by_id(study.patient)
        return patient.patient_id, patient.issuer


def corrections(service):
    with service.index.session():
        return Correction.select().count()


def test_study_move_prints_what_changed_and_is_audited(cfg, service):
    study = a_study(service, "WRONG-1")
    a_study(service, "RIGHT-1")
    uid = study[0].study_uid
    out = ok(
        "study", "move", uid, "--to-patient", "RIGHT-1", "--reason", "wrong patient", "-c", cfg
    ).output
    assert "WRONG-1 (UNN) -> RIGHT-1 (UNN)" in out
    assert "patient: WRONG-1 UNN -> RIGHT-1 UNN" in out
    assert patient_of(service, uid) == ("RIGHT-1", "UNN")
    (record,) = json.loads(
        ok(
            "audit", "--json", "--study", uid, "--event", "DICOM Instances Accessed", "-c", cfg
        ).output
    )
    assert record["operation"] == "study move"
    assert record["user"] == getpass.getuser()
    detail = record["detail"]
    assert detail["reason"] == "wrong patient"
    assert detail["before"]["patient"] == ["WRONG-1", "UNN"]
    assert detail["after"]["patient"] == ["RIGHT-1", "UNN"]


def test_dry_run_and_json_change_nothing(cfg, service):
    study = a_study(service, "WRONG-2")
    a_study(service, "RIGHT-2")
    uid = study[0].study_uid
    out = ok(
        "study",
        "move",
        uid,
        "--to-patient",
        "RIGHT-2",
        "--reason",
        "x",
        "--dry-run",
        "--json",
        "-c",
        cfg,
    ).output
    shown = json.loads(out)
    assert shown["dry_run"] is True and shown["kind"] == "study move"
    assert shown["studies"] == [uid]
    assert patient_of(service, uid) == ("WRONG-2", "UNN")
    assert corrections(service) == 0


def test_patient_update_merge_reject_restore_delete_by_command(cfg, service):
    first = a_study(service, "P-1", name="TYPO^NAME", count=2)
    a_study(service, "P-2")
    out = ok(
        "patient",
        "update",
        "P-1",
        "--name",
        "Right^Name",
        "--sex",
        "F",
        "--reason",
        "typo",
        "-c",
        cfg,
    ).output
    assert "name: TYPO^NAME -> Right^Name" in out
    ok(
        "patient",
        "merge",
        "P-1",
        "--issuer",
        "UNN",
        "--into",
        "P-2",
        "--reason",
        "same",
        "-c",
        cfg,
    )
    assert patient_of(service, first[0].study_uid) == ("P-2", "UNN")
    sop = first[0].sop_instance_uid
    assert (
        "1 instance(s) rejected (113001)"
        in ok("reject", sop, "--code", "113001", "--reason", "blurred", "-c", cfg).output
    )
    assert "1 instance(s) restored" in ok("restore", sop, "--reason", "oops", "-c", cfg).output
    assert (
        "2 instance(s) deleted"
        in ok("study", "delete", first[0].study_uid, "--reason", "test study", "-c", cfg).output
    )
    with service.index.session():
        assert Instance.select().where(Instance.sop_uid == sop).count() == 0
    assert corrections(service) == 5
    assert "nothing due" in ok("lifecycle", "run", "-c", cfg).output


def test_hospital_issuer_change_refuses_a_silent_merge(cfg, service):
    unn = a_study(service, "ID-1")
    a_study(service, "ID-1", issuer="UNN-HF", hospital="NLSH")
    line = fails("hospital", "update", "UNN", "--issuer", "UNN-HF", "--reason", "typo", "-c", cfg)
    assert "--merge" in line
    assert patient_of(service, unn[0].study_uid) == ("ID-1", "UNN")
    out = ok(
        "hospital", "update", "UNN", "--issuer", "UNN-HF", "--merge", "--reason", "typo", "-c", cfg
    ).output
    assert "1 merged" in out
    assert patient_of(service, unn[0].study_uid) == ("ID-1", "UNN-HF")
    hospitals = {
        h["code"]: h for h in json.loads(ok("hospital", "list", "--json", "-c", cfg).output)
    }
    assert hospitals["UNN"]["issuer"] == "UNN-HF"
    assert "needs --reason" in fails("hospital", "update", "NLSH", "--issuer", "N2", "-c", cfg)


BAD = [
    (["patient", "update", "NOBODY", "--name", "X", "--reason", "r"], "no patient NOBODY"),
    (["patient", "update", "DUP", "--name", "X", "--reason", "r"], "several issuers"),
    (["patient", "update", "DUP", "--issuer", "UNN", "--reason", "r"], "nothing to change"),
    (
        [
            "patient",
            "update",
            "DUP",
            "--issuer",
            "UNN",
            "--birth-date",
            "1999-01-01",
            "--reason",
            "r",
        ],
        "--birth-date",
    ),
    (["patient", "update", "DUP", "--issuer", "UNN", "--name", "A\\B", "--reason", "r"], "--name"),
    (
        [
            "patient",
            "merge",
            "DUP",
            "--issuer",
            "UNN",
            "--into",
            "DUP",
            "--into-issuer",
            "UNN",
            "--reason",
            "r",
        ],
        "into itself",
    ),
    (
        ["study", "move", "1.2.3", "--to-patient", "DUP", "--issuer", "UNN", "--reason", "r"],
        "no study 1.2.3",
    ),
    (["study", "move", "1.2.3", "--to-patient", "DUP", "--issuer", "UNN"], "--reason"),
    (["study", "delete", "1.2.3", "--reason", " "], "--reason is required"),
    (["reject", "1.2.3", "--code", "113001", "--reason", "r"], "no instance, series or study"),
    (["reject", "x.y", "--code", "113001", "--reason", "r"], "not a UID"),
    (["reject", "1.2.3", "--code", "113000", "--reason", "r"], "113000"),
    (["restore", "1.2.3", "--reason", "r"], "no instance, series or study"),
    (["hospital", "update", "NOPE", "--issuer", "X", "--reason", "r"], "no hospital NOPE"),
    (["hospital", "update", "UNN", "--merge"], "go with --issuer"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_corrections_are_one_line_and_change_nothing(cfg, service, args, message):
    a_study(service, "DUP")
    a_study(service, "DUP", issuer="OTHER")
    result = cli_run(*args, "-c", cfg)
    assert "Traceback" not in result.output and message in result.output, result.output
    if result.exit_code == 1:  # the node's own refusal: one line
        assert result.output.strip().splitlines() == [result.output.strip()]
    else:  # click's: a usage error (an unknown --code, a missing --reason)
        assert result.exit_code == 2, result.output
    assert corrections(service) == 0
