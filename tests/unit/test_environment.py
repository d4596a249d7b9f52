"""CI must not pass by skipping: where a peer or backend is required, it must be present."""

from __future__ import annotations

import os
import shutil
import sys

import pytest


@pytest.mark.skipif(
    os.environ.get("ARCHIVE_NODE_REQUIRE_DCMTK") != "1", reason="DCMTK not required outside CI"
)
def test_dcmtk_is_installed_when_required():
    for tool in ("echoscu", "storescu", "findscu", "movescu", "getscu", "storescp", "dcmdump"):
        found = shutil.which(tool)
        assert found, f"{tool} missing but ARCHIVE_NODE_REQUIRE_DCMTK=1"
        # pynetdicom installs apps of the same names in the venv: an activated venv would
        # make the interop tests talk to pynetdicom instead of a peer nobody here wrote
        assert not found.startswith(sys.prefix), f"{found} is pynetdicom's, not DCMTK's"


@pytest.mark.skipif(
    os.environ.get("ARCHIVE_NODE_REQUIRE_PG") != "1", reason="PostgreSQL not required outside CI"
)
def test_postgresql_is_reachable_when_required(pg_url):
    assert pg_url.startswith("postgresql://")


@pytest.mark.skipif(
    os.environ.get("ARCHIVE_NODE_REQUIRE_RSYSLOG") != "1", reason="rsyslog not required outside CI"
)
def test_rsyslog_with_tls_is_installed_when_required():
    assert shutil.which("rsyslogd") or os.path.exists("/usr/sbin/rsyslogd")
    modules = [
        p
        for p in (
            "/usr/lib/x86_64-linux-gnu/rsyslog",
            "/usr/lib/aarch64-linux-gnu/rsyslog",
            "/usr/lib/rsyslog",
        )
        if os.path.isdir(p)
    ]
    assert any(os.path.exists(os.path.join(p, "lmnsd_gtls.so")) for p in modules), (
        "rsyslog-gnutls missing but ARCHIVE_NODE_REQUIRE_RSYSLOG=1"
    )


@pytest.mark.skipif(
    os.environ.get("ARCHIVE_NODE_REQUIRE_PROMETHEUS") != "1",
    reason="Prometheus not required outside CI",
)
def test_prometheus_is_installed_when_required():
    assert shutil.which("prometheus"), "prometheus missing but ARCHIVE_NODE_REQUIRE_PROMETHEUS=1"
