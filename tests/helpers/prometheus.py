"""A real Prometheus server (Debian's `prometheus`) scraping a node's /metrics every second, for
the tests that an operator's monitoring sees what the node counts."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.environment import REQUIRE_PROMETHEUS
from tests.helpers.ports import LOOPBACK, free_port

START_DEADLINE = 30.0
CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: archive-node
    static_configs:
      - targets: ["{target}"]
"""


class Prometheus:
    def __init__(self, directory: Path, target: tuple[str, int]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            message = "prometheus is not installed (apt-get install prometheus)"
            if REQUIRE_PROMETHEUS:
                pytest.fail(message)
            pytest.skip(message)
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        config.write_text(CONFIG.format(target=f"{target[0]}:{target[1]}"))
        self.port = free_port()
        self.log_path = directory / "prometheus.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text(errors="replace")
            try:
                with urllib.request.urlopen(self._url("/-/ready"), timeout=2) as rsp:
                    if rsp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"prometheus not ready in {START_DEADLINE} s")

    def _url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def query(self, expression: str) -> float | None:
        """The value of an instant query with one result, else None."""
        url = self._url("/api/v1/query?" + urllib.parse.urlencode({"query": expression}))
        with urllib.request.urlopen(url, timeout=5) as rsp:
            answer = json.load(rsp)
        results = answer["data"]["result"]
        return float(results[0]["value"][1]) if len(results) == 1 else None

    def wait_for(self, expression: str, expected: float, deadline: float = 30.0) -> float | None:
        """Poll the query until it gives `expected`; the last value seen."""
        seen = None
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            seen = self.query(expression)
            if seen == expected:
                return seen
            time.sleep(0.2)
        return seen

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
