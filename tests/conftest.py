"""Fixtures: a config, an index on SQLite or PostgreSQL, a registry, and a running node."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

# The helpers' asserts explain themselves as a test module's do.
pytest.register_assert_rewrite("tests.helpers")

from archive_node.service import ArchiveService  # noqa: E402
from tests.helpers.environment import PG_ADMIN_URL, REQUIRE_PG  # noqa: E402
from tests.helpers.postgres import pg_connect, reset_pg  # noqa: E402
from tests.helpers.serving import make_config, serving  # noqa: E402

TESTS = Path(__file__).resolve().parent
# Each kind of test is a directory below tests/, and each test carries its kind as a marker.
KINDS = {
    "unit": "pure: no running node and no database",
    "node": "in process: a real index, a node served in the test process, the CLI by CliRunner",
    "process": "real `archive-node serve` subprocesses",
    "interop": "the node against DCMTK and other peers nobody here wrote",
}


def pytest_configure(config):
    for kind, what in KINDS.items():
        config.addinivalue_line("markers", f"{kind}: {what} (tests/{kind}/)")


def pytest_collection_modifyitems(config, items):
    """Mark every test with its kind: the directory below tests/ it is in."""
    for item in items:
        path = Path(item.path).resolve()
        if path.is_relative_to(TESTS):
            kind = path.relative_to(TESTS).parts[0]
            if kind in KINDS:
                item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A throwaway PostgreSQL database for this test session (dropped at the end)."""
    try:
        admin = pg_connect(PG_ADMIN_URL)
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


@pytest.fixture(params=["sqlite", "postgresql"])
def index_url(request, tmp_path) -> str:
    """The index URL on each backend; PostgreSQL starts from an empty schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/index.sqlite3"
    url = request.getfixturevalue("pg_url")
    reset_pg(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/index.sqlite3"


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


@pytest.fixture
def node(service, registry):
    with serving(service) as running:
        yield running


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """Test certificates: the region's CA, the node's and its peers' certificates, a rogue
    CA's (tests/helpers/certificates.py)."""
    from tests.helpers.certificates import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"))
