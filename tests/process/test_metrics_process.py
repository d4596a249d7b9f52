"""A real `serve --workers 2` watched as an operations team watches it: a real Prometheus server
scrapes its /metrics and sees the C-STOREs of both workers as one count; /healthz and /readyz
answer from the supervisor; with log.format json every line of its log is one JSON object with
the association's fields, and no patient data."""

from __future__ import annotations

import json
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import dicom_objects
from tests.helpers.ports import free_port
from tests.helpers.prometheus import Prometheus
from tests.helpers.serving_process import CALLING, HOST, Archive, send

INSTANCES = 12  # one association each: both workers take some (all on one: 1 in 2,048)
PATIENT_ID = "PROM-PID-0815"
PATIENT_NAME = "Scrapesen^Kari"


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=10) as rsp:
            return rsp.status, rsp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_prometheus_sees_the_stores_of_every_worker(tmp_path):
    metrics_port = free_port()
    archive = Archive(
        tmp_path,
        metrics={"bind": HOST, "port": metrics_port},
        log_settings={"format": "json"},
    )
    archive.init()
    prometheus = Prometheus(tmp_path / "prometheus", (HOST, metrics_port))
    try:
        archive.start("--workers", "2")
        assert _get(metrics_port, "/healthz") == (200, "ok\n")
        assert _get(metrics_port, "/readyz") == (200, "ready\n")
        for number in range(INSTANCES):  # one association each: the kernel spreads them
            ds = dicom_objects.secondary_capture(patient_id=PATIENT_ID, patient_name=PATIENT_NAME)
            path = dicom_objects.write(ds, tmp_path / f"sc{number}.dcm")
            assert send(archive, path).status == 0
        seen = prometheus.wait_for(
            'sum(archive_node_stores_total{family="secondary-capture",outcome="success"})',
            INSTANCES,
        )
        assert seen == INSTANCES, prometheus.log_path.read_text(errors="replace")
        assert prometheus.query('up{job="archive-node"}') == 1

        code, body = _get(metrics_port, "/metrics")
        assert code == 200
        stores = [
            sample
            for family in text_string_to_metric_families(body)
            for sample in family.samples
            if sample.name == "archive_node_stores_total"
        ]
        assert sum(s.value for s in stores) == INSTANCES
        assert PATIENT_ID not in body and "Scrapesen" not in body
        assert archive.terminate() == 0
    finally:
        archive.close()
        prometheus.stop()

    records = [json.loads(line) for line in archive.log().splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "event"} <= set(r) for r in records)
    assert all(r["time"].endswith("Z") for r in records)
    stored = [r for r in records if r.get("ae") == CALLING and "stored" in r["event"]]
    assert len(stored) == INSTANCES
    assert all(r["hospital"] == "UNN" and r["peer"] == HOST for r in stored)
    assert all(r["status"] == "0x0000" and 0 <= r["duration"] < 60 for r in stored)
    assert len({r["pid"] for r in stored}) == 2  # the count above summed two workers' files
    log_text = archive.log()
    assert PATIENT_ID not in log_text and "Scrapesen" not in log_text
