"""The benchmark cannot rot: it runs end to end on a tiny corpus (numbers are not asserted)."""

from __future__ import annotations

import json
import shutil

import pytest
from pydicom import dcmread
from pydicom.encaps import generate_fragments

from bench import audit as audit_bench
from bench import find as find_bench
from bench import importing as import_bench
from bench import ingest as ingest_bench
from bench import media
from bench import orthanc as orthanc_bench
from bench import report as report_bench
from bench import retrieve as retrieve_bench


def test_find_benchmark_runs_on_a_tiny_corpus(tmp_path, capsys):
    out = tmp_path / "find.json"
    assert (
        find_bench.main(
            [
                *("--studies", "200", "--runs", "3", "--backend", "sqlite", "--orthanc", "off"),
                *("--json", str(out)),
            ]
        )
        == 0
    )
    (report,) = json.loads(out.read_text())
    assert report["studies"] == 200 and report["patients"] == 50
    assert report["instances"] >= report["series"] >= 200
    queries = report["queries"]
    scoped = {f"{name} (scope hospital)" for name in find_bench.SCOPED_TYPES}
    assert set(queries) == set(find_bench.query_types(None, None)) | scoped
    assert queries["StudyInstanceUID exact"]["mean_matches"] == 1
    assert "| sqlite | 200 | PatientID exact |" in capsys.readouterr().out


@pytest.mark.skipif(
    not (shutil.which("storescp") and shutil.which("getscu")), reason="DCMTK not installed"
)
def test_retrieve_benchmark_runs_on_a_tiny_study(tmp_path, capsys):
    out = tmp_path / "retrieve.json"
    args = ["--instances", "3", "--runs", "1", "--backend", "sqlite", "--orthanc", "off"]
    assert retrieve_bench.main([*args, "--json", str(out)]) == 0
    (report,) = json.loads(out.read_text())
    assert report["instances"] == 3 and report["move_instances_per_s"] > 0
    assert report["get_instances_per_s"] > 0 and report["serve_peak_rss_mb"] > 0
    assert "| sqlite | 3 (" in capsys.readouterr().out


@pytest.mark.skipif(not shutil.which("ffmpeg"), reason="ffmpeg not installed")
def test_import_benchmark_runs_on_a_tiny_corpus(tmp_path, capsys):
    out = tmp_path / "import.json"
    args = ["--photos", "1", "--video-mb", "2", "--runs", "1", "--json", str(out)]
    assert import_bench.main(args) == 0
    report = json.loads(out.read_text())
    assert report["photos sqlite"]["files/s"] > 0 and report["video sqlite"]["peak_rss_mb"] > 0
    assert "| video sqlite |" in capsys.readouterr().out


ORTHANC = bool(shutil.which("Orthanc") or shutil.which(orthanc_bench.ORTHANC))

needs_dcmtk = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("storescu", "storescp", "getscu", "findscu")),
    reason="DCMTK not installed",
)


def test_media_is_deterministic(tmp_path):
    one = media.media("ct", 2, seed=7, cache=tmp_path / "one")
    two = media.media("ct", 2, seed=7, cache=tmp_path / "two")
    assert [p.read_bytes() for p in one.files] == [p.read_bytes() for p in two.files]
    assert one.study_uid == str(dcmread(one.files[0]).StudyInstanceUID)
    assert media.media("ct", 2, seed=8, cache=tmp_path / "one").study_uid != one.study_uid
    video = media.media("video", 1, seed=7, video_mb=1, cache=tmp_path)
    ds = dcmread(video.files[0])
    assert ds.file_meta.TransferSyntaxUID == media.MPEG4_HP41
    assert ds.SOPClassUID == media.VIDEO_PHOTOGRAPHIC
    assert 1_000_000 <= len(b"".join(generate_fragments(ds.PixelData))) <= 1_000_002


@needs_dcmtk
def test_ingest_benchmark_runs_on_a_tiny_corpus(tmp_path, capsys):
    out = tmp_path / "ingest.json"
    args = ["--kinds", "sc,ct,video", "--sc", "4", "--ct", "2", "--video-mb", "2"]
    args += ["--associations", "1,2", "--runs", "1", "--backend", "sqlite"]
    assert ingest_bench.main([*args, "--cache", str(tmp_path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {k: v["instances"] for k, v in report["corpus"].items()} == {
        "sc": 4,
        "ct": 2,
        "video": 1,
    }
    receivers = {"archive-node sqlite", "DCMTK storescp", "pynetdicom storescp"}
    if ORTHANC:
        receivers.add(orthanc_bench.LABEL)
    expected = {(r, k, n) for r in receivers for k in ("sc", "ct") for n in (1, 2)}
    expected |= {(r, "video", 1) for r in receivers}  # one video: one association
    rows = report["results"]
    assert {(r["receiver"], r["kind"], r["associations"]) for r in rows} == expected
    for row in rows:  # every receiver got every object, in every run
        assert row["received"] == [row["instances"]], row
        assert row["instances_per_s"] > 0 and row["mb_per_s"] > 0
        if row["associations"] == 1:
            assert row["peak_rss_mb"] > 0
    senders = {sent["receiver"]: sent for sent in report["video_send"]}
    assert set(senders) == {"archive-node sqlite", *([orthanc_bench.LABEL] if ORTHANC else [])}
    assert all(sent["peak_rss_mb"] > 0 for sent in senders.values())
    assert "| video | 1 | archive-node sqlite | 1 (2.0) |" in capsys.readouterr().out


@needs_dcmtk
@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not installed")
def test_ingest_benchmark_runs_over_tls_beside_plain(tmp_path, capsys):
    out = tmp_path / "ingest.json"
    args = ["--kinds", "ct", "--ct", "2", "--associations", "1", "--runs", "2", "--tls"]
    args += ["--backend", "sqlite", "--baselines", "none", "--cache", str(tmp_path)]
    assert ingest_bench.main([*args, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {r["receiver"]: r for r in report["results"]}
    assert set(rows) == {"archive-node sqlite", "archive-node sqlite (TLS)"}
    assert all(row["received"] == [2, 2] for row in rows.values())
    (ratio,) = report["tls_ratio"]
    assert ratio["receiver"] == "archive-node sqlite" and ratio["ratio"] > 0
    assert "| ct | 1 | archive-node sqlite |" in capsys.readouterr().out.split("TLS / plain")[1]


@needs_dcmtk
@pytest.mark.parametrize(
    ("name", "backend", "fast_paths", "label"),
    [
        ("sqlite", "sqlite", True, "archive-node sqlite"),
        ("postgresql-plain", "postgresql", False, "archive-node postgresql, fast paths off"),
        (
            "sqlite-without-reactor",
            "sqlite",
            ("messages", "file_sending", "file_meta"),
            "archive-node sqlite without reactor",
        ),
    ],
)
def test_configurations_name_a_backend_and_the_speed_patches(name, backend, fast_paths, label):
    assert find_bench.configuration(name) == (backend, fast_paths)
    assert find_bench.configuration_label(name) == label


def test_a_configuration_without_an_unknown_patch_is_refused():
    with pytest.raises(ValueError, match="no speed patch turbo"):
        find_bench.configuration("sqlite-without-turbo")


def test_report_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "report.json"
    args = ["--backend", "sqlite", "--kinds", "sc,video", "--sc", "3", "--video-mb", "1"]
    args += ["--associations", "1", "--runs", "1", "--studies", "200", "--find-runs", "3"]
    args += ["--instances", "2", "--cache", str(tmp_path), "--json", str(out)]
    assert report_bench.main(args) == 0
    report = json.loads(out.read_text())
    assert {"nproc", "memory_mb", "kernel", "python", "pynetdicom", "pydicom", "dcmtk"} <= set(
        report["machine"]
    )
    assert report["command"].endswith("--json " + str(out))
    assert all(r["received"] == [r["instances"]] for r in report["ingest"]["results"])
    # the node with its speed patches, and beside it without them (node.fast_paths = false)
    # and Orthanc beside them, when it is installed
    measured = ["sqlite", "sqlite-plain", *(["orthanc"] if ORTHANC else [])]
    assert [r["backend"] for r in report["find"]] == measured
    for found in report["find"]:
        assert found["studies"] == 200 and found["findscu"]["responses"] == 200
    assert [r["backend"] for r in report["retrieve"]] == measured
    assert all(retrieved["instances"] == 2 for retrieved in report["retrieve"])
    receivers = {r["receiver"] for r in report["ingest"]["results"]}
    assert {"archive-node sqlite", "archive-node sqlite, fast paths off"} <= receivers
    figures = [row["figure"] for row in report["table"]]
    assert any(f.startswith("C-STORE secondary captures of 10 KB x 3, 1 assoc") for f in figures)
    assert "peak RSS sending the video (C-MOVE into DCMTK storescp), MB" in figures
    assert any(f.startswith("C-FIND StudyDate range ~150 hits at 200 studies") for f in figures)
    assert any(f.startswith("C-MOVE 2-slice CT study") for f in figures)
    printed = capsys.readouterr().out
    assert printed.startswith(
        "| figure | archive-node sqlite | archive-node sqlite, fast paths off | DCMTK storescp |"
    )
    assert report["markdown"] in printed


def test_audit_configurations_name_the_trail_off():
    assert find_bench.with_audit(["sqlite", "postgresql"], "both") == [
        "sqlite",
        "sqlite-audit-off",
        "postgresql",
        "postgresql-audit-off",
    ]
    assert find_bench.with_audit(["sqlite-plain"], "off") == ["sqlite-plain-audit-off"]
    assert find_bench.configuration("sqlite-plain-audit-off") == ("sqlite", False)
    assert not find_bench.audited("sqlite-audit-off") and find_bench.audited("sqlite")
    label = find_bench.configuration_label("postgresql-audit-off")
    assert label == "archive-node postgresql, audit off"


def test_audit_question_benchmark_runs_on_a_tiny_trail(tmp_path, capsys):
    out = tmp_path / "audit.json"
    args = ["query", "--records", "2000", "--patients", "100", "--queries", "20"]
    args += ["--commands", "1", "--backend", "sqlite", "--json", str(out)]
    assert audit_bench.main(args) == 0
    (report,) = json.loads(out.read_text())
    assert report["records"] == 2000 and report["touched_rows"] > 1800
    assert report["query"]["mean_records"] > 0 and report["query"]["p95_ms"] > 0
    (found,) = report["command"]["records"]
    assert found > 0  # the command found the patient's records (its own comes after)
    assert any("audit_touched_patient_id_issuer" in line for line in report["explain"]["plan"])
    assert "| sqlite | 2,000 (" in capsys.readouterr().out


@needs_dcmtk
def test_audit_overhead_benchmark_runs_the_node_with_and_without_the_trail(tmp_path, capsys):
    out = tmp_path / "overhead.json"
    args = ["overhead", "--rounds", "1", "--sc", "3", "--ct", "0", "--associations", "1"]
    args += ["--studies", "200", "--find-runs", "3", "--instances", "2", "--workers", "1"]
    assert audit_bench.main([*args, "--cache", str(tmp_path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    figures = {f["figure"]: f for f in report["figures"]}
    assert "C-STORE SC x 3, 1 assoc, inst/s" in figures
    assert "C-MOVE 2 CT, inst/s" in figures
    assert any(f.startswith("C-FIND PatientID exact at 200 studies") for f in figures)
    for figure in figures.values():
        assert len(figure["runs_on"]) == len(figure["runs_off"]) == 1
        assert figure["audit_on"] > 0 and figure["audit_off"] > 0
    assert "| figure | audit off | audit on |" in capsys.readouterr().out
