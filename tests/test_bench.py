"""The benchmark cannot rot: it runs end to end on a tiny corpus (numbers are not asserted)."""

from __future__ import annotations

import json
import shutil

import pytest

from bench import find as find_bench
from bench import retrieve as retrieve_bench


def test_find_benchmark_runs_on_a_tiny_corpus(tmp_path, capsys):
    out = tmp_path / "find.json"
    assert (
        find_bench.main(
            ["--studies", "200", "--runs", "3", "--backend", "sqlite", "--json", str(out)]
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
    args = ["--instances", "3", "--runs", "1", "--backend", "sqlite", "--json", str(out)]
    assert retrieve_bench.main(args) == 0
    (report,) = json.loads(out.read_text())
    assert report["instances"] == 3 and report["move_instances_per_s"] > 0
    assert report["get_instances_per_s"] > 0 and report["serve_peak_rss_mb"] > 0
    assert "| sqlite | 3 (" in capsys.readouterr().out
