"""log.format = "json": one JSON object per line, the association's and request's fields, a
traceback as one string, and nothing a peer sends can break a line."""

from __future__ import annotations

import io
import json
import logging
import threading
import time

import pytest

from archive_node import logs


@pytest.fixture
def json_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.EscapeControls())
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("archive_node.test_json_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream) -> list[dict]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_record_is_one_object(json_log):
    logger, stream = json_log
    logger.info("stored instance %s from %s", "1.2.3", "UNN_US", extra={"status": "0x0000"})
    (entry,) = lines(stream)
    assert entry["level"] == "INFO" and entry["logger"] == "archive_node.test_json_logs"
    assert entry["event"] == "stored instance 1.2.3 from UNN_US"
    assert entry["status"] == "0x0000"
    assert entry["time"].endswith("Z") and entry["time"][10] == "T"


def test_a_peers_newline_cannot_start_a_line(json_log):
    logger, stream = json_log
    logger.warning("refused %s", 'EVIL\n2026-01-01 INFO forged "x"\u2028')
    (entry,) = lines(stream)
    assert "forged" in entry["event"] and "\n" not in entry["event"]


def test_a_traceback_is_one_string(json_log):
    logger, stream = json_log
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    (entry,) = lines(stream)
    assert "Traceback" in entry["exception"] and "ValueError: boom" in entry["exception"]


def test_an_associations_thread_carries_its_fields(json_log):
    logger, stream = json_log
    worker = threading.Thread(target=lambda: logger.info("on the association"))

    def source(thread):
        return (
            {"ae": "UNN_US", "hospital": "UNN", "peer": "127.0.0.1"} if thread is worker else None
        )

    logs.add_context_source(source)
    try:
        worker.start()
        worker.join()
        logger.info("elsewhere")
    finally:
        logs.remove_context_source(source)
    on_it, elsewhere = lines(stream)
    assert (on_it["ae"], on_it["hospital"], on_it["peer"]) == ("UNN_US", "UNN", "127.0.0.1")
    assert "ae" not in elsewhere


def test_a_record_that_ends_a_request_carries_its_status_and_duration(json_log):
    logger, stream = json_log
    started = time.monotonic() - 0.25
    logger.info("stored", extra=logs.request_fields(0xA700, started))
    (entry,) = lines(stream)
    assert entry["status"] == "0xA700" and 0.25 <= entry["duration"] < 5
