"""The endpoint's guards that need no node: one readiness check at a time, kept a moment; an
index URL fit for a message whatever form its password takes."""

from __future__ import annotations

import threading
import time

from archive_node.index.database import shown_url
from archive_node.net import health


def test_probes_that_come_together_share_one_readiness_check():
    calls = []
    started = threading.Event()

    def slow_check():
        calls.append(1)
        started.set()
        time.sleep(0.2)  # a slow index: the probes below arrive while it runs
        return "index: slow"

    ready = health.Readiness(slow_check)
    answers = []
    first = threading.Thread(target=lambda: answers.append(ready()))
    first.start()
    started.wait(5)
    others = [threading.Thread(target=lambda: answers.append(ready())) for _ in range(5)]
    for thread in others:
        thread.start()
    for thread in (first, *others):
        thread.join(5)
    assert answers == ["index: slow"] * 6 and len(calls) == 1


def test_a_readiness_answer_is_asked_anew_once_it_is_old(monkeypatch):
    monkeypatch.setattr(health, "READY_MAX_AGE", 0.0)
    answers = iter(["index: down", None])
    ready = health.Readiness(lambda: next(answers))
    assert ready() == "index: down"
    assert ready() is None


def test_an_index_url_never_shows_its_password():
    for url in (
        "postgresql://arch:s3cret@db:5432/archive",
        "postgresql://arch@db/archive?password=s3cret",
        "postgresql://arch@db/archive?sslmode=require&password=s3cret",
    ):
        shown = shown_url(url)
        assert "s3cret" not in shown and "***" in shown and "db" in shown
