"""Orthanc in the benchmark (issue 23): it runs as configured, is filled with the same corpus
as the node, answers the same clients, and the report judges the node against its figures."""

from __future__ import annotations

import json
import shutil

import pytest
from pydicom import dcmread

from archive_node.index import Index
from bench import find as find_bench
from bench import orthanc
from bench import report as report_bench
from bench import retrieve as retrieve_bench
from bench.corpus import populate

needs_orthanc = pytest.mark.skipif(
    not (shutil.which("Orthanc") or shutil.which(orthanc.ORTHANC)), reason="Orthanc not installed"
)
needs_dcmtk = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("storescu", "storescp", "getscu", "movescu", "findscu")),
    reason="DCMTK not installed",
)


@pytest.fixture(scope="module")
def corpus_rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    url = f"sqlite:///{root}/index.sqlite3"
    index = Index.open(url)
    index.init_schema()
    corpus = populate(index, 120, seed=3)
    find_bench.mark_rare_modality(index, corpus)
    index.close()
    return orthanc.corpus_rows(url)


def test_the_hand_packed_tiny_file_is_pydicoms(corpus_rows, tmp_path):
    """Every byte of tiny_file equals what pydicom writes for the same dataset."""
    assert len(corpus_rows) >= 120
    names = {row[1] for row in corpus_rows}
    assert any(not name.isascii() for name in names)  # Ø, Å, Æ: UTF-8, odd lengths padded
    for row in corpus_rows:
        assert orthanc.tiny_file(row) == orthanc.encode(orthanc.tiny_dataset(row))
    path = tmp_path / "one.dcm"
    path.write_bytes(orthanc.tiny_file(corpus_rows[0]))
    ds = dcmread(path)
    assert ds.SOPInstanceUID == corpus_rows[0][13] and ds.PatientName == corpus_rows[0][1]


def test_the_configuration_is_the_measured_one(tmp_path):
    conf = orthanc.config(tmp_path, 4242, 8042, {"STORESCP": ("127.0.0.1", 11112)})
    assert conf["SyncStorageArea"] is True and conf["Plugins"] == []
    assert conf["StorageCompression"] is False and conf["RemoteAccessAllowed"] is False
    assert conf["IndexDirectory"] == str(tmp_path / "index")
    assert conf["DicomModalities"]["storescp"]["Port"] == 11112
    assert conf["DicomCheckCalledAet"] is False
    assert all(conf[f"DicomAlwaysAllow{what}"] for what in ("Store", "Find", "Move", "Get"))


@needs_orthanc
@needs_dcmtk
def test_orthanc_serves_counts_and_is_filled_over_rest(corpus_rows, tmp_path):
    with orthanc.serving(tmp_path / "o", sync=False) as server:
        assert server.count() == 0
        some = corpus_rows[:20]
        assert orthanc.post_instances(server, (orthanc.tiny_file(r) for r in some)) == 20
        assert server.count() == 20
        config = json.loads((tmp_path / "o" / "orthanc.json").read_text())
        assert config["SyncStorageArea"] is False
    with orthanc.serving(tmp_path / "o") as server:  # a restart keeps what it holds
        assert server.count() == 20


@needs_orthanc
@needs_dcmtk
def test_orthanc_find_is_measured_over_the_same_corpus(tmp_path):
    found = orthanc.find_run(200, 3, 1)
    node = find_bench.run("sqlite", 200, 3, 1)
    assert found["backend"] == "orthanc" and found["instances"] == node["instances"]
    assert set(found["queries"]) == set(find_bench.query_types(None, None))
    for name in ("StudyInstanceUID exact", "AccessionNumber exact"):
        assert found["queries"][name]["mean_matches"] == 1
    # the same draws find the same studies in both
    for name in ("PatientID exact", "StudyDate one week", "StudyDate range ~150 hits"):
        assert found["queries"][name]["mean_matches"] == node["queries"][name]["mean_matches"]
    assert found["findscu"]["responses"] == 200 and found["serve_peak_rss_mb"] > 0
    assert node["serve_peak_rss_mb"] > 0


@needs_orthanc
@needs_dcmtk
def test_orthanc_retrieve_moves_and_gets_the_study(tmp_path):
    got = retrieve_bench.orthanc_run(3, 1, cache=tmp_path)
    assert got["backend"] == "orthanc" and got["instances"] == 3
    assert got["move_instances_per_s"] > 0 and got["get_instances_per_s"] > 0
    assert got["serve_peak_rss_mb"] > 0


def _ingest(values: dict[tuple[str, str, int], float]) -> dict:
    return {
        "associations": [1, 2],
        "corpus": {"sc": {"instances": 10, "mb": 0.1, "mean_kb": 10.4}},
        "results": [
            {
                "receiver": receiver,
                "kind": kind,
                "associations": n,
                "instances_per_s": v,
                "mb_per_s": v / 100,
                "peak_rss_mb": 50.0,
            }
            for (receiver, kind, n), v in values.items()
        ],
        "video_send": [],
    }


def test_report_judges_ingest_against_orthanc_and_postgresql_against_sqlite():
    label = orthanc.LABEL
    ingest = _ingest(
        {
            ("archive-node sqlite", "sc", 1): 600,
            ("archive-node postgresql", "sc", 1): 470,  # < 0.8 x 600
            (label, "sc", 1): 540,
            ("archive-node sqlite", "sc", 2): 500,  # < Orthanc's 700
            ("archive-node postgresql", "sc", 2): 450,  # >= 0.8 x 500
            (label, "sc", 2): 700,
        }
    )
    one, two, rss = report_bench.ingest_rows(ingest, ["sqlite", "postgresql"])
    assert (one.orthanc, two.orthanc) == (540, 700)
    assert one.met == {"sqlite": True, "postgresql": False}
    assert two.met == {"sqlite": False, "postgresql": True}
    assert rss.met == {"sqlite": True, "postgresql": True} and rss.orthanc == 50.0
    text = report_bench.table([one, two, rss], ["sqlite", "postgresql"])
    assert "| 600 | 470 | - | - | 540 | - | - | 1.11 / 0.87 |" in text
    assert "| yes / no |" in text and "| no / yes |" in text


def test_report_turns_latency_ratios_round_and_judges_against_measured_orthanc():
    queries = {
        name: {"p50_ms": 2.0, "p95_ms": 4.0, "mean_matches": 1.0}
        for name in ("PatientID exact", "StudyDate range ~150 hits")
    }
    theirs = {
        name: {"p50_ms": 8.0, "p95_ms": 9.0, "mean_matches": 1.0}
        for name in ("PatientID exact", "StudyDate range ~150 hits")
    }
    large = {"responses": 5000, "responses_per_s": 6000.0}
    reports = [
        {
            "backend": "sqlite",
            "studies": 100_000,
            "queries": queries,
            "findscu": large,
            "serve_peak_rss_mb": 90.0,
        },
        {
            "backend": "orthanc",
            "studies": 100_000,
            "queries": theirs,
            "findscu": {"responses": 5000, "responses_per_s": 3000.0},
            "serve_peak_rss_mb": 45.0,
        },
    ]
    rows = report_bench.find_rows(reports, ["sqlite"])
    exact = rows[0]
    assert exact.orthanc == 8.0 and exact.orthanc_shown == "8.0 / 9.0"
    assert exact.met == {"sqlite": True}
    text = report_bench.table(rows, ["sqlite"])
    assert "| 2.0 / 4.0 | - | - | 8.0 / 9.0 | - | - | 4.00 | p95 < 5 ms | yes |" in text
    assert "| 6,000 | - | - | 3,000 | - | - | 2.00 | >= 5,000 responses/s | yes |" in text
    assert "| 90.0 | - | - | 45.0 | - | - | 0.50 | < 120 MB | yes |" in text
    retrieve = [
        {
            "backend": "sqlite",
            "instances": 1000,
            "mb": 525,
            "move_instances_per_s": 600,
            "move_mb_per_s": 315,
            "get_instances_per_s": 400,
            "get_mb_per_s": 210,
            "serve_peak_rss_mb": 80,
        },
        {
            "backend": "orthanc",
            "instances": 1000,
            "mb": 525,
            "move_instances_per_s": 565,
            "move_mb_per_s": 297,
            "get_instances_per_s": 500,
            "get_mb_per_s": 262,
            "serve_peak_rss_mb": 60,
        },
    ]
    move, _, get, _, _ = report_bench.retrieve_rows(retrieve, ["sqlite"])
    assert (move.orthanc, move.met, get.met) == (565, {"sqlite": True}, {"sqlite": False})
