"""A node served in the test process: its config, the server, a second node, a kept file."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from archive_node.config import build_config
from archive_node.net.server import ArchiveServer
from archive_node.service import ArchiveService
from tests.helpers.environment import FAST_PATHS


def make_config(tmp_path: Path, index_url: str, **sections):
    data = {
        "node": {"port": 0, "bind": "127.0.0.1", "shutdown_grace": 5.0, "fast_paths": FAST_PATHS},
        "storage": {"path": str(tmp_path / "storage"), "min_free_mb": 0},
        "index": {"url": index_url, "busy_timeout": 5.0},
        "hl7": {"bind": "127.0.0.1"},
        "metrics": {"port": 0},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return build_config(data)


@dataclass
class Node:
    server: ArchiveServer
    service: ArchiveService
    host: str
    port: int  # the plain port (0 when the node serves only TLS)
    tls_port: int = 0  # 0: no TLS port
    hl7_port: int = 0  # 0: no HL7 listener
    metrics_port: int = 0  # 0: no metrics endpoint

    @property
    def ae_title(self) -> str:
        return self.service.config.node.ae_title


@contextlib.contextmanager
def serving(
    service: ArchiveService,
    *,
    plain: bool = True,
    tls: bool = False,
    hl7: bool = False,
    metrics: bool = False,
):
    """Run a node for `service` on a free loopback port; with `tls`, a TLS port too (its
    config has tls.*), and without `plain` only that (its config has node.port 0); with
    `hl7`, its HL7 listener on another free port; with `metrics`, its metrics endpoint."""
    server = ArchiveServer(service)
    host, _ = server.start(
        "127.0.0.1",
        0 if plain else None,
        tls_port=0 if tls else None,
        hl7_port=0 if hl7 else None,
        metrics_port=0 if metrics else None,
    )
    try:
        yield Node(
            server,
            service,
            host,
            server.address[1] if plain else 0,
            server.tls_address[1] if tls else 0,
            server.hl7.address[1] if hl7 and server.hl7 and server.hl7.address else 0,
            server.health.address[1] if metrics and server.health else 0,
        )
    finally:
        server.stop(grace=2)


@contextlib.contextmanager
def node_with(tmp_path: Path, index_url: str, **sections):
    """A second node with config overrides, on the same index (and registry) as the test's."""
    with serving(ArchiveService.from_config(make_config(tmp_path, index_url, **sections))) as n:
        yield n


def stored_path(node: Node, sop_uid: str) -> Path:
    """The file the node keeps for `sop_uid`, by its index row (which must exist)."""
    record = node.service.index.instances.find(sop_uid)
    assert record is not None, f"no index row for {sop_uid}"
    return node.service.storage.absolute(record.path)
