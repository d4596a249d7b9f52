"""`reindex`: a varied corpus kept by real C-STORE, the index dropped, rebuilt from the files
alone and compared with the original; idempotence, resumption, repairs and refusals, through
integrity.reindex and the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid

from archive_node import integrity
from archive_node.config import CONFIG_ENV, INDEX_URL_ENV
from archive_node.errors import NotFound
from archive_node.index import Index
from archive_node.index.tables import Hospital, Instance, Patient, Series, Study
from tests.helpers import dicom_objects
from tests.helpers.cli import cli_run, write_config
from tests.helpers.dimse import push
from tests.helpers.postgres import reset_pg
from tests.helpers.serving import serving

# received_at is rebuilt from each file's mtime (the end of its receipt) while the original
# was stamped at its index commit a few milliseconds later: compared within this many seconds.
RECEIVED_AT_SLACK = 2.0


@pytest.fixture(autouse=True)
def no_config_from_the_shell(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(INDEX_URL_ENV, raising=False)


def keep_corpus(node) -> list[str]:
    """Two hospitals, four AEs, in this order; the SOP Instance UIDs kept."""
    p1_first = generate_uid()
    shared = generate_uid()  # a study NLSH starts and UNN adds to: its hospital is NLSH
    batches = [
        (
            "UNN_US",
            [
                dicom_objects.ct(patient_id="P1", patient_name="HANSEN^KARI", study_uid=p1_first),
                dicom_objects.ct(patient_id="P1", patient_name="HANSEN^KARI", study_uid=p1_first),
                dicom_objects.secondary_capture(
                    patient_id="P1", patient_name="HANSEN^KARI", study_uid=p1_first
                ),
            ],
        ),
        ("NLSH_CAM", [dicom_objects.secondary_capture(patient_id="P3", study_uid=shared)]),
        # the same patient later, married: a new name, no birth date given (the older stays)
        (
            "UNN_WS",
            [_without_birth_date(dicom_objects.ct(patient_id="P1", patient_name="OLSEN^KARI"))],
        ),
        ("UNN_US", [dicom_objects.secondary_capture(patient_id="P3", study_uid=shared)]),
        # the same PatientID from NLSH: another patient (issuer NLSH)...
        ("ANYWHERE", [dicom_objects.ct(patient_id="P1", patient_name="NILSEN^PER")]),
        # ...and one with its own IssuerOfPatientID, whatever hospital sent it
        ("NLSH_CAM", [dicom_objects.secondary_capture(patient_id="P1", issuer="NO-FNR")]),
    ]
    uids = []
    for calling, datasets in batches:
        push(node, calling, datasets)
        uids.extend(ds.SOPInstanceUID for ds in datasets)
    return uids


def _without_birth_date(ds):
    del ds.PatientBirthDate
    return ds


def dump(index: Index) -> dict[str, Any]:
    """Everything the index holds of the kept objects but surrogate ids and created_at, with
    rows referred to by their natural keys; received_at apart (see RECEIVED_AT_SLACK)."""
    with index.session():
        hospitals = {h.id: h.code for h in Hospital.select()}
        patients = {p.id: (p.patient_id, p.issuer) for p in Patient.select()}
        studies = {s.id: s.study_uid for s in Study.select()}
        series = {s.id: s.series_uid for s in Series.select()}
        refer = {"hospital": hospitals, "patient": patients, "study": studies, "series": series}

        def rows(model) -> list[tuple]:
            out = []
            for row in model.select().dicts():
                for name in ("id", "created_at", "received_at"):
                    row.pop(name, None)
                out.append(
                    tuple(sorted((k, refer[k][v] if k in refer else v) for k, v in row.items()))
                )
            return sorted(out)

        return {
            "hospitals": sorted((h.code, h.issuer) for h in Hospital.select()),
            "patients": rows(Patient),
            "studies": rows(Study),
            "series": rows(Series),
            "instances": rows(Instance),
            "received_at": {i.sop_uid: i.received_at for i in Instance.select()},
        }


def assert_same_index(rebuilt: dict[str, Any], original: dict[str, Any]) -> None:
    for key in ("hospitals", "patients", "studies", "series", "instances"):
        assert rebuilt[key] == original[key], key
    assert rebuilt["received_at"].keys() == original["received_at"].keys()
    for uid, when in original["received_at"].items():
        assert abs(_seconds(rebuilt["received_at"][uid]) - _seconds(when)) < RECEIVED_AT_SLACK


def _seconds(value: Any) -> float:
    if isinstance(value, str):  # SQLite hands back text for a value written as text
        value = datetime.fromisoformat(value)
    return value.timestamp()


def lose_database(service) -> None:
    """Lose the index database, as on the day the disk holding it died."""
    service.index.close()
    url = service.index.url
    if url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(url[len("sqlite:///") :] + suffix).unlink(missing_ok=True)
    else:
        reset_pg(url)


def drop_index(service) -> None:
    """Lose the database and `init` a new one."""
    lose_database(service)
    service.index.init_schema()


@contextlib.contextmanager
def fresh_index(url: str) -> Iterator[Index]:
    """The index as another process sees it (after the CLI has rebound the models)."""
    index = Index.open(url)
    try:
        yield index
    finally:
        index.close()


@pytest.fixture
def kept(service, registry) -> tuple[list[str], dict[str, Any]]:
    """The corpus kept by a node that is stopped again, and the index's dump of it."""
    with serving(service) as node:
        uids = keep_corpus(node)
    return uids, dump(service.index)


def rebuild(service, **kwargs) -> integrity.ReindexReport:
    return integrity.reindex(service.storage, service.index, **kwargs)


class Interrupted(Exception):
    """What stops a run part way in these tests (Ctrl-C, a kill, a crash)."""


class StopAfter:
    """A Progress that interrupts the indexing phase after `files` files were indexed."""

    def __init__(self, files: int) -> None:
        self.files = files
        self.phase = 0
        self.done = 0

    def begin(self, label: str, total: int) -> None:
        self.phase += 1

    def advance(self, amount: int) -> None:
        if self.phase == 2:
            self.done += 1
            if self.done == self.files:
                raise Interrupted

    def end(self) -> None:
        pass


def corpus_problems(report) -> set[tuple[str, str]]:
    return {(p.kind, p.path) for p in report.problems}


# -- integrity.reindex -------------------------------------------------------------------------


def test_rebuilds_an_index_equal_to_the_original(service, kept):
    uids, original = kept
    drop_index(service)
    report = rebuild(service)
    assert report.ok and report.problems == []
    assert (report.files, report.indexed, report.already_indexed) == (len(uids), len(uids), 0)
    assert report.hospitals_created == ["UNN", "NLSH"]  # in the order their files came
    rebuilt = dump(service.index)
    assert_same_index(rebuilt, original)
    # what the corpus was made to show, spelled out
    patients = {(p["patient_id"], p["issuer"]): p for p in map(dict, rebuilt["patients"])}
    assert set(patients) == {
        ("P1", "UNN"),
        ("P1", "NLSH"),
        ("P1", "NO-FNR"),
        # the same number from UNN without an issuer, in NLSH's study: NLSH's patient (the
        # issuer is the study's), not one of UNN's own
        ("P3", "NLSH"),
    }
    unn = patients[("P1", "UNN")]
    assert (unn["patient_name"], unn["birth_date"]) == ("OLSEN^KARI", "19700101")
    with service.index.session():
        assert {h.code: (h.name, h.issuer) for h in Hospital.select()} == {
            "UNN": ("UNN", "UNN"),
            "NLSH": ("NLSH", "NLSH"),
        }
    assert integrity.verify(service.storage, service.index).ok


def test_a_second_run_changes_nothing(service, kept):
    uids, original = kept
    drop_index(service)
    rebuild(service)
    first = dump(service.index)
    again = rebuild(service)
    assert again.ok and (again.indexed, again.already_indexed) == (0, len(uids))
    assert again.hospitals_created == []
    assert dump(service.index) == first
    # on an index that never lost anything, reindex finds nothing to do either
    assert_same_index(first, original)


@pytest.mark.parametrize("stop_after", [1, 4])
def test_an_interrupted_run_resumes(service, kept, stop_after):
    uids, original = kept
    drop_index(service)
    with pytest.raises(Interrupted):
        rebuild(service, progress=StopAfter(stop_after))
    assert service.index.instances.count() == stop_after  # a consistent prefix, oldest first
    resumed = rebuild(service)
    assert resumed.ok
    assert (resumed.indexed, resumed.already_indexed) == (len(uids) - stop_after, stop_after)
    assert_same_index(dump(service.index), original)


def test_a_file_without_provenance_needs_a_default_hospital(service, kept):
    uids, original = kept
    store = service.storage
    legacy = dicom_objects.ct(patient_id="OLD1")
    path = store.layout(legacy.StudyInstanceUID, legacy.SeriesInstanceUID, legacy.SOPInstanceUID)
    dicom_objects.write(legacy, store.root / path)  # kept by an older release: no sender recorded
    drop_index(service)

    report = rebuild(service)
    assert not report.ok
    assert [(p.kind, p.path, p.sop_instance_uid) for p in report.problems] == [
        ("unattributed", path, legacy.SOPInstanceUID)
    ]
    assert "--default-hospital" in report.problems[0].detail
    assert_same_index(dump(service.index), original)

    with pytest.raises(NotFound, match="no hospital LEGACY"):
        rebuild(service, default_hospital="LEGACY")
    service.registry.add_hospital("LEGACY", "Files of the old PACS", issuer="OLDPACS")
    report = rebuild(service, default_hospital="LEGACY")
    assert report.ok and report.indexed == 1 and report.already_indexed == len(uids)
    record = service.index.instances.find(legacy.SOPInstanceUID)
    assert (record.hospital, record.calling_ae, record.path) == ("LEGACY", "", path)
    assert [s.issuer for s in service.index.instances.studies(patient_id="OLD1")] == ["OLDPACS"]


def test_a_duplicate_sop_instance_is_indexed_once(service, kept):
    uids, original = kept
    store = service.storage
    with service.index.session():
        kept_path = Instance.get(Instance.sop_uid == uids[0]).path
    copy = kept_path.replace(".dcm", ".copy.dcm")
    shutil.copyfile(store.absolute(kept_path), store.root / copy)  # newer: the stray one
    drop_index(service)
    report = rebuild(service)
    assert [(p.kind, p.path, p.sop_instance_uid) for p in report.problems] == [
        ("duplicate", copy, uids[0])
    ]
    assert kept_path in report.problems[0].detail
    assert not report.ok and store.absolute(copy).is_file()  # left on disk
    assert_same_index(dump(service.index), original)


def test_a_row_whose_file_was_moved_is_repointed(service, kept):
    uids, original = kept
    store = service.storage
    moved_uid = uids[1]
    with service.index.session():
        old = Instance.get(Instance.sop_uid == moved_uid).path
    new = old.replace(".dcm", ".restored.dcm")
    os.rename(store.absolute(old), store.root / new)  # keeps its mtime
    report = rebuild(service)  # the index was not lost: a repair
    assert report.ok and report.indexed == 0
    assert [(p.kind, p.path, p.sop_instance_uid) for p in report.problems] == [
        ("repointed", new, moved_uid)
    ]
    assert old in report.problems[0].detail and "same content" in report.problems[0].detail
    assert service.index.instances.find(moved_uid).path == new
    assert integrity.verify(service.storage, service.index).ok
    repaired = dump(service.index)
    original["instances"] = [
        tuple((k, new if (k == "path" and v == old) else v) for k, v in row)
        for row in original["instances"]
    ]
    assert_same_index(repaired, original)


def test_files_that_are_not_dicom_are_reported_and_the_rest_indexed(service, kept):
    uids, original = kept
    store = service.storage
    with service.index.session():
        study_dir = Instance.get(Instance.sop_uid == uids[0]).path.rsplit("/", 2)[0]
    junk = f"{study_dir}/junk.dcm"
    (store.root / junk).write_bytes(b"\x00" * 300)
    (store.root / "notes.txt").write_text("moved the files on Tuesday")
    drop_index(service)
    report = rebuild(service)
    assert corpus_problems(report) == {("unreadable", junk), ("unreadable", "notes.txt")}
    assert not report.ok and report.indexed == len(uids)
    assert_same_index(dump(service.index), original)


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_reindex(service, kept, index_url, tmp_path):
    uids, original = kept
    cfg = write_config(tmp_path, index_url)
    lose_database(service)

    # a new index over a store that holds files is not taken by `init`: reindex adopts it
    init = cli_run("init", "--config", cfg)
    assert init.exit_code == 1 and "Traceback" not in init.output
    assert "the store holds files: run `archive-node reindex`" in init.output

    result = cli_run("reindex", "--config", cfg, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report) >= {
        "files",
        "indexed",
        "already_indexed",
        "hospitals_created",
        "problems",
        "store_identity",
        "adopted_store",
        "ok",
    }
    assert report["adopted_store"] is True
    assert (report["files"], report["indexed"], report["already_indexed"]) == (
        len(uids),
        len(uids),
        0,
    )
    assert report["hospitals_created"] == ["UNN", "NLSH"] and report["ok"] is True

    again = cli_run("reindex", "--config", cfg)
    assert again.exit_code == 0
    assert again.output.splitlines()[0].startswith(
        f"{len(uids)} files in the store: 0 indexed, {len(uids)} already indexed, 0 problem(s)"
    )
    with fresh_index(index_url) as index:
        assert_same_index(dump(index), original)

    legacy = dicom_objects.secondary_capture(patient_id="OLD1")
    store = service.storage
    path = store.layout(legacy.StudyInstanceUID, legacy.SeriesInstanceUID, legacy.SOPInstanceUID)
    dicom_objects.write(legacy, store.root / path)
    unattributed = cli_run("reindex", "--config", cfg, "--json")
    assert unattributed.exit_code == 1
    body = json.loads(unattributed.output)
    assert body["ok"] is False and [p["kind"] for p in body["problems"]] == ["unattributed"]
    assert body["problems"][0]["path"] == path
    human = cli_run("reindex", "--config", cfg)
    assert human.exit_code == 1
    assert any(
        line.startswith("unattributed") and path in line for line in human.output.splitlines()
    )
    assert "OLD1" not in human.output  # no patient IDs

    refused = cli_run("reindex", "--config", cfg, "--default-hospital", "NOPE")
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [
        "Error: no hospital NOPE: register it first (archive-node hospital add)"
    ]
    attributed = cli_run("reindex", "--config", cfg, "--default-hospital", "UNN", "--json")
    assert attributed.exit_code == 0 and json.loads(attributed.output)["indexed"] == 1
    assert cli_run("verify", "--config", cfg).exit_code == 0
