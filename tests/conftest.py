"""Fixtures: a config, an index on SQLite or PostgreSQL, a registry, and a running node."""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from archive_node.config import build_config
from archive_node.net.association import set_tcp_nodelay
from archive_node.net.server import ArchiveServer
from archive_node.service import ArchiveService

PG_ADMIN_URL = os.environ.get(
    "ARCHIVE_NODE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("ARCHIVE_NODE_REQUIRE_PG") == "1"
# ARCHIVE_NODE_TEST_FAST_PATHS=0 runs the nodes of the tests without the speed patches
FAST_PATHS = os.environ.get("ARCHIVE_NODE_TEST_FAST_PATHS", "1") != "0"


def _pg_connect(url: str):
    import psycopg2

    return psycopg2.connect(url, connect_timeout=3)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A throwaway PostgreSQL database for this test session (dropped at the end)."""
    try:
        admin = _pg_connect(PG_ADMIN_URL)
    except Exception as exc:
        message = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
        if REQUIRE_PG:
            pytest.fail(message)
        pytest.skip(message)
    admin.autocommit = True
    name = f"archive_node_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def _reset_pg(url: str) -> None:
    conn = _pg_connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def index_url(request, tmp_path) -> str:
    """The index URL on each backend; PostgreSQL starts from an empty schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/index.sqlite3"
    url = request.getfixturevalue("pg_url")
    _reset_pg(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/index.sqlite3"


def make_config(tmp_path: Path, index_url: str, **sections):
    data = {
        "node": {"port": 0, "bind": "127.0.0.1", "shutdown_grace": 5.0, "fast_paths": FAST_PATHS},
        "storage": {"path": str(tmp_path / "storage"), "min_free_mb": 0},
        "index": {"url": index_url, "busy_timeout": 5.0},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return build_config(data)


@pytest.fixture
def config(tmp_path, index_url):
    return make_config(tmp_path, index_url)


@pytest.fixture
def service(config):
    service = ArchiveService.from_config(config)
    service.index.init_schema()
    service.storage.create()
    yield service
    service.index.close()


@pytest.fixture
def registry(service):
    """Two hospitals with the AEs most tests use."""
    reg = service.registry
    reg.add_hospital("UNN", "University Hospital of North Norway", issuer="UNN")
    reg.add_hospital("NLSH", "Nordland Hospital", issuer="NLSH")
    reg.add_ae("UNN_US", "UNN", host="127.0.0.1", description="ultrasound")
    reg.add_ae("UNN_WS", "UNN", host="127.0.0.1", port=11999, allow="echo,store,find,move,get")
    reg.add_ae("NLSH_CAM", "NLSH", host="127.0.0.1", allow="store")
    reg.add_ae("ANYWHERE", "NLSH", allow="echo,store")
    reg.add_ae("FARAWAY", "NLSH", host="10.255.255.1", allow="echo,store")
    return reg


@dataclass
class Node:
    server: ArchiveServer
    service: ArchiveService
    host: str
    port: int

    @property
    def ae_title(self) -> str:
        return self.service.config.node.ae_title


@contextlib.contextmanager
def serving(service: ArchiveService):
    """Run a node for `service` on a free loopback port."""
    server = ArchiveServer(service)
    host, port = server.start("127.0.0.1", 0)
    try:
        yield Node(server, service, host, port)
    finally:
        server.stop(grace=2)


@contextlib.contextmanager
def node_with(tmp_path: Path, index_url: str, **sections):
    """A second node with config overrides, on the same index (and registry) as the test's."""
    with serving(ArchiveService.from_config(make_config(tmp_path, index_url, **sections))) as n:
        yield n


@pytest.fixture
def node(service, registry):
    with serving(service) as running:
        yield running


def client_ae(calling: str, contexts=()) -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for cx in contexts:
        ae.add_requested_context(*cx) if isinstance(cx, tuple) else ae.add_requested_context(cx)
    if not contexts:
        ae.add_requested_context(Verification)
    return ae


def associate(node: Node, calling: str, contexts=(), called: str | None = None):
    ae = client_ae(calling, contexts)
    return ae.associate(
        node.host,
        node.port,
        ae_title=called or node.ae_title,
        evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)],
    )
