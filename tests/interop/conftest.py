"""Fixtures the interoperability tests share."""

from __future__ import annotations

import pytest

from tests.interop.test_interop_retrieve import LOOPBACK, STORESCP, start_storescp


@pytest.fixture
def storescp(node, tmp_path):
    """DCMTK's storescp registered for UNN as STORESCP at its loopback address and port."""
    scp = start_storescp(tmp_path / "storescp", tmp_path / "storescp.log")
    try:
        node.service.registry.add_ae(STORESCP, "UNN", host=LOOPBACK, port=scp.port, allow="echo")
        yield scp
    finally:
        scp.stop()
