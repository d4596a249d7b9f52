"""`verify`: files kept by real C-STORE, damage planted on disk and in the index, found by kind
and path; through integrity.verify and through the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tracemalloc
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from archive_node import integrity
from archive_node.config import CONFIG_ENV, INDEX_URL_ENV
from archive_node.dicom.instance_header import read_kept_header
from archive_node.errors import InvalidInput, NotFound
from archive_node.index import NewInstance
from archive_node.index.tables import Instance
from archive_node.integrity import Scope
from tests.helpers import dicom_objects
from tests.helpers.cli import cli_run, write_config
from tests.helpers.dimse import push
from tests.helpers.serving import serving


@pytest.fixture(autouse=True)
def no_config_from_the_shell(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(INDEX_URL_ENV, raising=False)


@dataclass
class Corpus:
    """Two studies kept by C-STORE: A from UNN (two series, five instances), B from NLSH
    (three instances); SOP Instance UID -> relative path of each kept file."""

    study_a: str
    study_b: str
    paths: dict[str, str]
    a: list[str]
    b: list[str]


def keep_corpus(node) -> Corpus:
    study_a, study_b = generate_uid(), generate_uid()
    series = generate_uid()
    a = [dicom_objects.secondary_capture(study_uid=study_a, series_uid=series) for _ in range(4)]
    a.append(dicom_objects.ct(study_uid=study_a))
    b = [dicom_objects.secondary_capture(study_uid=study_b, patient_id="P2") for _ in range(3)]
    push(node, "UNN_US", a)
    push(node, "NLSH_CAM", b)
    index = node.service.index
    paths = {ds.SOPInstanceUID: index.instances.find(ds.SOPInstanceUID).path for ds in a + b}
    return Corpus(
        study_a, study_b, paths, [ds.SOPInstanceUID for ds in a], [ds.SOPInstanceUID for ds in b]
    )


@pytest.fixture
def corpus(service, registry) -> Corpus:
    """The corpus kept by a node that is stopped again: the test owns the store."""
    with serving(service) as node:
        return keep_corpus(node)


def run_verify(service, **scope) -> integrity.VerifyReport:
    return integrity.verify(service.storage, service.index, Scope(**scope))


def found(report) -> set[tuple[str, str, str | None]]:
    return {(p.kind, p.path, p.sop_instance_uid) for p in report.problems}


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def accepted_long_ago(service, sop_uid: str, raw: bytes) -> Path:
    """Make the kept file of `sop_uid` hold `raw`, with its row's size and SHA-256 as at
    receipt: what a node that did not check encodings acknowledged."""
    path = service.storage.absolute(service.index.instances.find(sop_uid).path)
    path.write_bytes(raw)
    with service.index.session(write=True):
        Instance.update(size=len(raw), sha256=hashlib.sha256(raw).hexdigest()).where(
            Instance.sop_uid == sop_uid
        ).execute()
    return path


def set_path(service, sop_uid: str, path: str) -> None:
    with service.index.session(write=True):
        Instance.update(path=path).where(Instance.sop_uid == sop_uid).execute()


# -- integrity.verify --------------------------------------------------------------------------


def test_a_clean_store_verifies_ok(service, corpus):
    report = run_verify(service)
    assert report.ok and report.problems == []
    assert report.checked == len(corpus.paths)
    store = service.storage
    assert report.bytes == sum(store.absolute(p).stat().st_size for p in corpus.paths.values())
    assert report.to_json()["ok"] is True


def test_each_kind_of_damage_is_found_with_its_path(service, corpus, tmp_path):
    store = service.storage
    a, b, paths = corpus.a, corpus.b, corpus.paths
    absolute = {uid: store.absolute(path) for uid, path in paths.items()}

    absolute[a[0]].unlink()  # missing
    flip_byte(absolute[a[1]], absolute[a[1]].stat().st_size // 2)  # corrupt, same size
    os.truncate(absolute[a[2]], absolute[a[2]].stat().st_size - 100)  # corrupt, shorter
    absolute[b[0]].unlink()  # unreadable (as root too): a directory where the file was
    absolute[b[0]].mkdir()
    outside = tmp_path / "elsewhere.dcm"
    shutil.move(absolute[b[1]], outside)
    set_path(service, b[1], "../elsewhere.dcm")  # outside: the row leads out of the store
    # orphans: a new instance in a study's directory, one in a directory of a study the index
    # lacks, a stray copy of an indexed instance, and a file that is not DICOM at all
    stray_series = dicom_objects.secondary_capture(study_uid=corpus.study_a)
    in_study = store.layout(corpus.study_a, generate_uid(), stray_series.SOPInstanceUID)
    dicom_objects.write(stray_series, store.root / in_study)
    unknown = dicom_objects.secondary_capture()
    new_study = store.layout(unknown.StudyInstanceUID, unknown.SeriesInstanceUID, generate_uid())
    dicom_objects.write(unknown, store.root / new_study)
    copy = paths[a[3]].replace(".dcm", ".copy.dcm")
    shutil.copyfile(absolute[a[3]], store.root / copy)
    junk = f"{store.study_directory(corpus.study_b)}/notes.txt"
    (store.root / junk).write_text("not an image")
    (store.incoming / "partial.dcm").write_bytes(b"a transfer in progress")  # left alone

    report = run_verify(service)

    assert found(report) == {
        ("missing", paths[a[0]], a[0]),
        ("corrupt", paths[a[1]], a[1]),
        ("corrupt", paths[a[2]], a[2]),
        ("unreadable", paths[b[0]], b[0]),
        ("outside", "../elsewhere.dcm", b[1]),
        ("orphan", in_study, stray_series.SOPInstanceUID),
        ("orphan", new_study, unknown.SOPInstanceUID),
        ("orphan", copy, a[3]),
        ("orphan", junk, None),
    }
    details = {p.path: p.detail for p in report.problems}
    assert "SHA-256" in details[paths[a[1]]]
    assert "recorded at receipt" in details[paths[a[2]]]
    assert "stray copy" in details[copy] and paths[a[3]] in details[copy]
    assert details[new_study] == "not in the index"
    studies = {p.path: p.study_uid for p in report.problems}
    assert (
        studies[paths[a[0]]] == corpus.study_a and studies[new_study] == unknown.StudyInstanceUID
    )
    assert report.checked == len(paths) - 3  # missing, unreadable and outside were not read
    assert not report.ok and report.to_json()["ok"] is False


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode 000 all the same")
def test_a_file_without_read_permission_is_unreadable(service, corpus):
    path = service.storage.absolute(corpus.paths[corpus.b[2]])
    path.chmod(0)
    try:
        report = run_verify(service)
    finally:
        path.chmod(0o644)
    assert found(report) == {("unreadable", corpus.paths[corpus.b[2]], corpus.b[2])}


class ReplaceDuringRead:
    """A Progress that, after the first file, does what a serving node replacing a duplicate
    does: keep a new copy under another name, point the row at it, remove the old file."""

    def __init__(self, service, sop_uid: str, old: str) -> None:
        self.service, self.sop_uid, self.old = service, sop_uid, old
        self.new = old.replace(".dcm", ".0123456789ab.dcm")
        self.done = False

    def begin(self, label: str, total: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        if not self.done:
            self.done = True
            store = self.service.storage
            shutil.copyfile(store.absolute(self.old), store.root / self.new)
            set_path(self.service, self.sop_uid, self.new)
            store.remove(self.old)

    def end(self) -> None:
        pass


def test_a_file_replaced_while_verify_runs_is_no_problem(service, corpus):
    """Rows are read a page at a time: a row re-pointed between its page and its file's read
    is looked up again rather than reported missing."""
    second = corpus.a[1]  # checked after the first, from the same page
    replacing = ReplaceDuringRead(service, second, corpus.paths[second])
    report = integrity.verify(service.storage, service.index, progress=replacing)
    assert replacing.done and report.ok, report.problems
    assert service.index.instances.find(second).path == replacing.new


def test_filters_restrict_both_passes(service, corpus):
    store, paths = service.storage, corpus.paths
    for uid in (corpus.a[0], corpus.b[0]):
        store.absolute(paths[uid]).unlink()
    orphan_a = dicom_objects.write(
        dicom_objects.secondary_capture(study_uid=corpus.study_a),
        store.root / store.study_directory(corpus.study_a) / "x" / "orphan.dcm",
    )
    orphan_b = dicom_objects.write(
        dicom_objects.secondary_capture(study_uid=corpus.study_b),
        store.root / store.study_directory(corpus.study_b) / "x" / "orphan.dcm",
    )
    in_a = {("missing", paths[corpus.a[0]]), ("orphan", store_relative(store, orphan_a))}
    in_b = {("missing", paths[corpus.b[0]]), ("orphan", store_relative(store, orphan_b))}
    # study B was received three days ago
    three_days_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=3)
    with service.index.session(write=True):
        Instance.update(received_at=three_days_ago).where(Instance.sop_uid.in_(corpus.b)).execute()
    today = datetime.now(UTC).date()

    def kinds_and_paths(**scope):
        return {(p.kind, p.path) for p in run_verify(service, **scope).problems}

    assert kinds_and_paths() == in_a | in_b
    assert kinds_and_paths(hospital="UNN") == in_a
    assert kinds_and_paths(hospital="NLSH") == in_b
    assert kinds_and_paths(study_uid=corpus.study_b) == in_b
    assert kinds_and_paths(since=today) == in_a
    assert kinds_and_paths(until=today - timedelta(days=1)) == in_b
    assert (
        kinds_and_paths(since=today - timedelta(days=3), until=today - timedelta(days=3)) == in_b
    )
    assert kinds_and_paths(hospital="UNN", until=today - timedelta(days=1)) == set()
    checked = run_verify(service, hospital="NLSH")
    assert checked.checked == len(corpus.b) - 1
    # a study the index lacks, named alone: its directory is still looked at
    lost = dicom_objects.secondary_capture()
    lost_path = store.layout(lost.StudyInstanceUID, lost.SeriesInstanceUID, lost.SOPInstanceUID)
    dicom_objects.write(lost, store.root / lost_path)
    assert kinds_and_paths(study_uid=lost.StudyInstanceUID) == {("orphan", lost_path)}


def store_relative(store, path: Path) -> str:
    return path.relative_to(store.root).as_posix()


@pytest.mark.parametrize("index_url", ["sqlite"], indirect=True)
def test_files_are_read_in_chunks(service, registry, tmp_path):
    """A 64 MiB object is hashed without holding it: Python's peak allocation stays a few MiB."""
    store = service.storage
    ds = dicom_objects.video_h264(payload=2)
    source = dicom_objects.write_large_video(
        tmp_path / "large.dcm", 64 << 20, study_uid=ds.StudyInstanceUID
    )
    header, _meta = read_kept_header(source)
    kept = store.keep(
        source, store.layout(header.study_uid, header.series_uid, header.sop_instance_uid)
    )
    facts = store.inspect(store.absolute(kept))
    new = NewInstance(header, kept, facts.size, facts.sha256, "UNN_US", "UNN", "UNN")
    assert service.index.instances.record(new) is None
    assert facts.size > 64 << 20

    tracemalloc.start()
    try:
        report = run_verify(service)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok and report.bytes == facts.size
    assert peak < 8 << 20, f"peak {peak} bytes while reading a {facts.size}-byte file"


def test_unknown_hospital_and_bad_scope_are_refused(service, corpus):
    with pytest.raises(NotFound, match="no hospital NOPE"):
        run_verify(service, hospital="NOPE")
    with pytest.raises(InvalidInput, match="not a valid UID"):
        run_verify(service, study_uid="1.2.abc")
    today = datetime.now(UTC).date()
    with pytest.raises(InvalidInput, match="after"):
        run_verify(service, since=today, until=today - timedelta(days=1))


def malformed_corpus(service, corpus) -> dict[str, tuple[str, str]]:
    """Two of the corpus's files as an older node kept them: Pixel Data cut short, and one
    stray byte at the end. SOP Instance UID -> (path, the problem found)."""
    a = corpus.a
    cut = service.storage.absolute(corpus.paths[a[0]]).read_bytes()
    at = len(cut) - 100 * 100 - 12  # the secondary capture's Pixel Data element
    accepted_long_ago(service, a[0], cut[:-62])
    odd = service.storage.absolute(corpus.paths[a[1]]).read_bytes()
    accepted_long_ago(service, a[1], odd + b"\0")
    return {
        a[0]: (corpus.paths[a[0]], f"(7FE0,0010) length 10000 > 9938 bytes left at byte {at}"),
        a[1]: (corpus.paths[a[1]], f"odd dataset length: 1 stray byte(s) at byte {len(odd)}"),
    }


def test_deep_finds_the_malformed_files_kept_before_receipt_checked_them(service, corpus):
    expected = malformed_corpus(service, corpus)
    assert run_verify(service).ok  # sizes and hashes are as recorded
    report = integrity.verify(service.storage, service.index, Scope(), deep=True)
    assert {(p.kind, p.path, p.sop_instance_uid) for p in report.problems} == {
        ("malformed", path, uid) for uid, (path, _) in expected.items()
    }
    for problem in report.problems:
        assert problem.detail == (
            f"{expected[problem.sop_instance_uid][1]} "
            "(as received: kept before receipt checked it)"
        )
        assert problem.study_uid == corpus.study_a
    assert report.checked == len(corpus.paths)


def test_deep_reports_a_damaged_file_as_corrupt_only(service, corpus):
    malformed_corpus(service, corpus)
    path = service.storage.absolute(corpus.paths[corpus.a[0]])
    flip_byte(path, 200)  # after receipt: the hash no longer matches
    report = integrity.verify(service.storage, service.index, Scope(), deep=True)
    kinds = {p.sop_instance_uid: p.kind for p in report.problems}
    assert kinds == {corpus.a[0]: "corrupt", corpus.a[1]: "malformed"}


def test_deep_on_a_well_formed_store_finds_nothing(service, corpus):
    report = integrity.verify(service.storage, service.index, Scope(), deep=True)
    assert report.ok and report.checked == len(corpus.paths)


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_verify_clean_and_damaged(service, corpus, index_url, tmp_path):
    cfg = write_config(tmp_path, index_url)
    result = cli_run("verify", "--config", cfg, "--json")
    assert result.exit_code == 0, result.output
    clean = json.loads(result.output)
    assert set(clean) == {"checked", "bytes", "seconds", "problems", "ok"}
    assert clean["ok"] is True and clean["checked"] == len(corpus.paths)
    assert clean["problems"] == []

    human = cli_run("verify", "--config", cfg)
    assert human.exit_code == 0
    assert human.output.startswith(f"checked {len(corpus.paths)} files, ")
    assert "MB/s): no problems" in human.output

    missing = corpus.paths[corpus.b[0]]
    service.storage.absolute(missing).unlink()
    result = cli_run("verify", "--config", cfg, "--json")
    assert result.exit_code == 1
    damaged = json.loads(result.output)
    assert damaged["ok"] is False
    assert damaged["problems"] == [
        {
            "kind": "missing",
            "path": missing,
            "sop_instance_uid": corpus.b[0],
            "study_uid": corpus.study_b,
            "detail": "the index names a file that is not in the store",
        }
    ]
    human = cli_run("verify", "--config", cfg)
    assert human.exit_code == 1
    assert "1 problem(s)" in human.output
    (line,) = [ln for ln in human.output.splitlines() if ln.startswith("missing")]
    assert missing in line and corpus.b[0] in line
    assert "P2" not in human.output and "TEST^PATIENT" not in human.output  # no IDs or names

    scoped = cli_run("verify", "--config", cfg, "--json", "--hospital", "UNN")
    assert scoped.exit_code == 0 and json.loads(scoped.output)["checked"] == len(corpus.a)
    today = datetime.now(UTC).date().isoformat()
    dated = cli_run("verify", "-c", cfg, "--json", "--since", today, "--until", today)
    assert dated.exit_code == 1 and json.loads(dated.output)["problems"][0]["path"] == missing
    study = cli_run("verify", "-c", cfg, "--json", "--study", corpus.study_a)
    assert study.exit_code == 0


def test_cli_verify_deep(service, corpus, index_url, tmp_path):
    expected = malformed_corpus(service, corpus)  # before the CLI opens the index
    cfg = write_config(tmp_path, index_url)
    assert cli_run("verify", "--config", cfg).exit_code == 0  # without --deep: as recorded
    result = cli_run("verify", "--config", cfg, "--deep", "--json")
    assert result.exit_code == 1
    problems = json.loads(result.output)["problems"]
    assert {(p["kind"], p["sop_instance_uid"]) for p in problems} == {
        ("malformed", uid) for uid in expected
    }
    human = cli_run("verify", "--config", cfg, "--deep", "--study", corpus.study_a)
    assert human.exit_code == 1 and "2 problem(s)" in human.output
    lines = [ln for ln in human.output.splitlines() if ln.startswith("malformed")]
    assert len(lines) == 2 and any("(7FE0,0010) length 10000 > 9938" in ln for ln in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hospital", "NOPE"], "Error: no hospital NOPE"),
        (["--study", "1.2.x"], "is not a valid UID"),
        (["--since", "2024-02-30"], "Invalid value for '--since'"),
        (["--since", "2024-02-02", "--until", "2024-02-01"], "is after --until"),
    ],
)
def test_cli_verify_refusals_are_one_line(service, registry, index_url, tmp_path, args, message):
    cfg = write_config(tmp_path, index_url)
    result = cli_run("verify", "--config", cfg, *args)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and message in result.output


def test_cli_verify_before_init_says_run_init(tmp_path):
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path}/fresh.sqlite3")
    result = cli_run("verify", "--config", cfg)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: index sqlite:///{tmp_path}/fresh.sqlite3 does not exist: run `archive-node "
        "init` first (or check index.url and the directory the command runs in)"
    ]
    assert not (tmp_path / "fresh.sqlite3").exists()  # a read-only command creates no index
