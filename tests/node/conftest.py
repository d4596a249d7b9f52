"""Fixtures the DIMSE tests of tests/node share."""

from __future__ import annotations

import pytest

from tests.helpers.retrieving import Destination


@pytest.fixture
def destination(tmp_path, node):
    """DEST, registered for UNN with the port of a storage SCP that takes every syntax."""
    dest = Destination(tmp_path / "dest")
    node.service.registry.add_ae("DEST", "UNN", host="127.0.0.1", port=dest.port, allow="echo")
    yield dest
    dest.stop()
