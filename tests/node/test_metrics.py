"""The metrics endpoint of a node in the test process: /metrics moves with real associations,
/healthz and /readyz answer as a load balancer needs, labels never carry patient data."""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import time
import urllib.error
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydicom.dataset import Dataset

from archive_node.dicom import status
from archive_node.net import health
from archive_node.service import ArchiveService
from tests.helpers import dicom_objects
from tests.helpers.dimse import associate, find, store
from tests.helpers.retrieving import STUDY_MOVE, four_kinds_study, get_study, identifier, move
from tests.helpers.serving import make_config, serving
from tests.helpers.tcp_proxy import TcpProxy

PATIENT_NAME = "Metricsson^Ingrid"
PATIENT_ID = "MET-PID-4711"


def http_get(node, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET on the node's metrics endpoint."""
    url = f"http://127.0.0.1:{node.metrics_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def samples(node) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics: (name, labels) -> value."""
    code, content_type, body = http_get(node, "/metrics")
    assert code == 200 and content_type.startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(all_samples, name: str, **labels) -> float:
    wanted = frozenset(labels.items())
    return sum(v for (n, found), v in all_samples.items() if n == name and wanted <= found)


@pytest.fixture(autouse=True)
def fresh_readiness(monkeypatch):
    """Each probe asks anew: these tests change what /readyz reports between two probes."""
    monkeypatch.setattr(health, "READY_MAX_AGE", 0.0)


@pytest.fixture
def metered(service, registry):
    with serving(service, metrics=True) as running:
        yield running


def test_store_moves_the_counters_by_family_and_outcome(metered, registry, tmp_path):
    registry.add_ae("UNN_VIEW", "UNN", host="127.0.0.1", allow="echo,find")
    before = samples(metered)
    ds = dicom_objects.ct(patient_id=PATIENT_ID, patient_name=PATIENT_NAME)
    assert store(metered, ds) == status.SUCCESS
    assert store(metered, ds, calling="UNN_VIEW") == status.NOT_AUTHORISED
    after = samples(metered)
    for name, labels in (
        ("archive_node_stores_total", {"family": "ct", "outcome": "success"}),
        ("archive_node_store_duration_seconds_count", {"family": "ct", "outcome": "success"}),
        ("archive_node_stores_total", {"family": "ct", "outcome": "failure"}),
    ):
        assert value(after, name, **labels) == value(before, name, **labels) + 1, name
    assert value(after, "archive_node_refusals_total", service="C-STORE", status="0x0124") == 1
    size = len(dicom_objects.dataset_bytes(dicom_objects.write(ds, tmp_path / "ct.dcm")))
    grown = value(after, "archive_node_store_bytes_total", family="ct", outcome="success")
    assert grown >= size
    accepted = value(
        after, "archive_node_associations_total", outcome="accepted", ae="UNN_US", hospital="UNN"
    )
    assert accepted >= 1


def test_find_counts_matches_and_refusals(metered):
    for number in range(3):
        ds = dicom_objects.secondary_capture(patient_id=f"{PATIENT_ID}-{number}")
        assert store(metered, ds) == status.SUCCESS
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    final, matches = find(metered, query)
    assert final.Status == status.SUCCESS and len(matches) == 3
    final, _ = find(metered, query, calling="NLSH_CAM")  # registered without find
    assert final is None or final.Status == status.NOT_AUTHORISED
    found = samples(metered)
    assert value(found, "archive_node_find_matches_total", service="C-FIND") == 3
    assert value(found, "archive_node_requests_total", service="C-FIND", outcome="success") == 1
    assert value(found, "archive_node_refusals_total", service="C-FIND", status="0x0124") >= 1


def test_rejected_associations_are_counted_without_the_peers_titles(metered):
    for calling in ("NOBODY_1", "NOBODY_2", "NOBODY_3"):
        assoc = associate(metered, calling, [dicom_objects.CT_IMAGE])
        assert not assoc.is_established
    found = samples(metered)
    rejected = value(
        found,
        "archive_node_associations_total",
        outcome="rejected",
        ae="(unregistered)",
        reason="permanent-calling-AE-title-not-recognized",
    )
    assert rejected == 3
    assert not any("NOBODY" in str(labels) for _, labels in found)


def test_labels_carry_no_patient_data(metered):
    ds = dicom_objects.ct(patient_id=PATIENT_ID, patient_name=PATIENT_NAME)
    assert store(metered, ds) == status.SUCCESS
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = PATIENT_ID
    query.PatientName = ""
    assert find(metered, query)[0].Status == status.SUCCESS
    _, _, body = http_get(metered, "/metrics")
    for secret in (PATIENT_ID, "Metricsson", ds.StudyInstanceUID, ds.SOPInstanceUID):
        assert secret not in body


def test_state_gauges(metered):
    found = samples(metered)
    free = value(found, "archive_node_store_free_bytes")
    assert abs(free - shutil.disk_usage(metered.service.storage.root).free) < 1 << 30
    assert value(found, "archive_node_store_reserve_bytes") == 0  # the tests' min_free_mb
    assert value(found, "archive_node_commitment_reports_pending") == 0
    assert value(found, "archive_node_info") == 1


def test_health_and_readiness(metered):
    assert http_get(metered, "/healthz")[::2] == (200, "ok\n")
    assert http_get(metered, "/readyz")[::2] == (200, "ready\n")
    code, _, body = http_get(metered, "/nothing-here")
    assert code == 404 and "/metrics" in body
    request = urllib.request.Request(
        f"http://127.0.0.1:{metered.metrics_port}/metrics", method="POST", data=b"x"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405


def test_readiness_follows_the_store(metered):
    incoming = metered.service.storage.incoming
    shutil.rmtree(incoming)  # the store cannot be written where the node writes transfers
    code, _, body = http_get(metered, "/readyz")
    assert code == 503 and body.startswith("not ready: store: cannot write")
    incoming.mkdir()
    assert http_get(metered, "/readyz")[0] == 200


def test_readiness_follows_the_reserve(tmp_path, index_url, registry):
    config = make_config(tmp_path / "full", index_url, storage={"min_free_mb": 1 << 40})
    service = ArchiveService.from_config(config)
    with serving(service, metrics=True) as running:
        code, _, body = http_get(running, "/readyz")
        assert code == 503 and "below the reserve" in body
        assert http_get(running, "/healthz")[0] == 200  # alive all the same
        found = samples(running)
        assert value(found, "archive_node_store_reserve_bytes") == (1 << 40) * 1024 * 1024


def test_readiness_follows_the_index(tmp_path, pg_url, index_url):
    """/readyz is 503 while the PostgreSQL index cannot be reached, 200 again when it can; the
    index errors are counted, and the node's DICOM side keeps answering C-ECHO."""
    if not index_url.startswith("postgresql"):
        pytest.skip("SQLite is a file: it cannot be stopped apart from the node")
    host_port = index_url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = TcpProxy((host, int(port)))
    try:
        proxied = index_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        service = ArchiveService.from_config(make_config(tmp_path, proxied))
        service.index.init_schema()
        service.storage.create()
        with serving(service, metrics=True) as running:
            assert http_get(running, "/readyz")[0] == 200
            proxy.stop()
            code, _, body = http_get(running, "/readyz")
            assert code == 503 and body.startswith("not ready: index: ")
            assert "password" not in body
            assert value(samples(running), "archive_node_index_errors_total") >= 1
            proxy.start()
            assert _eventually_ready(running)
    finally:
        proxy.stop()


def _eventually_ready(node, attempts: int = 50) -> bool:
    """A pooled connection cut by the outage fails once more at most: poll, never sleep."""
    return any(http_get(node, "/readyz")[0] == 200 for _ in range(attempts))


def test_too_many_requests_at_once_are_answered_503(metered):
    held = []
    try:
        for _ in range(health.MAX_REQUESTS):  # connections that never send their request
            sock = socket.create_connection(("127.0.0.1", metered.metrics_port))
            held.append(sock)
        code = None
        for _ in range(50):  # the endpoint takes the held ones in its accept loop
            code = http_get(metered, "/healthz")[0]
            if code == 503:
                break
        assert code == 503
    finally:
        for sock in held:
            sock.close()
    for _ in range(50):  # their slots come back when they close
        if http_get(metered, "/healthz")[0] == 200:
            break
    assert http_get(metered, "/healthz")[0] == 200


def test_retrieves_count_their_sub_operations(metered, destination, tmp_path):
    study_uid, sent = four_kinds_study(metered)
    assoc = associate(metered, "UNN_WS", [STUDY_MOVE])
    try:
        final, _, _ = move(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
    finally:
        assoc.release()
    assert final.Status == status.SUCCESS
    final, _ = get_study(metered, "UNN_WS", tmp_path / "got", study_uid)
    assert final.Status == status.SUCCESS
    found = samples(metered)
    for service in ("C-MOVE", "C-GET"):
        assert value(found, "archive_node_requests_total", service=service, outcome="success") == 1
        completed = value(
            found, "archive_node_suboperations_total", service=service, outcome="completed"
        )
        assert completed == len(sent)
        assert value(found, "archive_node_request_duration_seconds_count", service=service) == 1


def test_a_connection_that_trickles_its_request_is_cut(metered, monkeypatch, capfd, caplog):
    """A client may not hold a slot by sending a byte now and then: each connection ends after
    REQUEST_DEADLINE whatever it sends."""
    monkeypatch.setattr(health, "REQUEST_DEADLINE", 0.5)
    caplog.set_level(logging.DEBUG, logger="archive_node.net.health")
    sock = socket.create_connection(("127.0.0.1", metered.metrics_port), timeout=10)
    try:
        sock.sendall(b"GET /metrics HTTP/1.0\r\n")
        cut = False
        for _ in range(100):  # a header line every 50 ms, never the blank line that ends them
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                sock.settimeout(0.05)
                if sock.recv(1) == b"":
                    cut = True
                    break
            except TimeoutError:
                continue
            except OSError:
                cut = True
                break
        assert cut
    finally:
        sock.close()
    assert http_get(metered, "/healthz")[0] == 200
    # the cut request's handler fails writing its answer: one log line, no traceback on stderr
    for _ in range(500):
        if any("ended" in r.getMessage() for r in caplog.records):
            break
        time.sleep(0.01)
    assert any("request from 127.0.0.1 ended" in r.getMessage() for r in caplog.records)
    assert "Traceback" not in capfd.readouterr().err


def test_readiness_follows_a_store_taken_over(metered):
    """Another index took the store over (reindex --adopt-store): the node serving it for
    the old one is not ready, and says why."""
    storage = metered.service.storage
    storage.claim_identity(str(uuid.uuid4()))
    storage.expect_identity(storage.identity())
    assert http_get(metered, "/readyz")[0] == 200
    storage.replace_identity(str(uuid.uuid4()))
    code, _, body = http_get(metered, "/readyz")
    assert code == 503 and "belongs to another index" in body
    storage.expect_identity(None)


@pytest.mark.parametrize(
    ("request_bytes", "answer"),
    [
        (b"NONSENSE\r\n\r\n", b" 400 "),
        (b"GET /" + b"x" * 70000 + b" HTTP/1.0\r\n\r\n", b" 414 "),
        (b"GET /metrics HTTP/1.0\r\n" + b"X: y\r\n" * 200 + b"\r\n", b" 431 "),
        # no line end: the read times out (REQUEST_TIMEOUT) and it is closed unanswered
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40, b""),
    ],
    ids=["not-http", "request-line-too-long", "too-many-headers", "tls-hello"],
)
def test_a_malformed_request_gets_an_error_and_the_endpoint_goes_on(
    metered, request_bytes, answer
):
    with socket.create_connection(("127.0.0.1", metered.metrics_port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # it may close before reading all of a long one
            sock.sendall(request_bytes)
        reply = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                reply += chunk
    code = answer.strip()
    if not code:
        assert reply == b""
        assert http_get(metered, "/healthz")[0] == 200
        return
    # a status line (HTTP/1.0 and later), or the error page alone (a request taken as HTTP/0.9)
    assert reply.startswith(b"HTTP/1.0 " + code) or b"Error code: " + code in reply, reply[:80]
    assert http_get(metered, "/healthz")[0] == 200
