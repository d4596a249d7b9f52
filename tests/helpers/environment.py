"""The environment variables that shape a test run: backends and tools required, fast paths."""

from __future__ import annotations

import os

PG_ADMIN_URL = os.environ.get(
    "ARCHIVE_NODE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# CI sets these: the tests of a required backend or tool fail there instead of skipping.
REQUIRE_PG = os.environ.get("ARCHIVE_NODE_REQUIRE_PG") == "1"
REQUIRE_DCMTK = os.environ.get("ARCHIVE_NODE_REQUIRE_DCMTK") == "1"
REQUIRE_MEDIA_TOOLS = os.environ.get("ARCHIVE_NODE_REQUIRE_MEDIA_TOOLS") == "1"
REQUIRE_RSYSLOG = os.environ.get("ARCHIVE_NODE_REQUIRE_RSYSLOG") == "1"  # the audit repository
REQUIRE_PROMETHEUS = os.environ.get("ARCHIVE_NODE_REQUIRE_PROMETHEUS") == "1"  # the scraper
# ARCHIVE_NODE_TEST_FAST_PATHS=0 runs the nodes of the tests without the speed patches
# (node.fast_paths in every config the tests write, in process or for a `serve` process)
FAST_PATHS = os.environ.get("ARCHIVE_NODE_TEST_FAST_PATHS", "1") != "0"
