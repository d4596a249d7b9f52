"""Association rules over real associations: each A-ASSOCIATE-RJ reason, 0x0124, live registry."""

from __future__ import annotations

import logging
import socket
import sqlite3
import time

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.sop_class import Verification

from archive_node.dicom import status
from archive_node.index.tables import ApplicationEntity
from tests.helpers import dicom_objects
from tests.helpers.dimse import associate
from tests.helpers.serving import node_with


def rejection(assoc) -> tuple[int, int, int]:
    assert assoc.is_rejected, "expected an A-ASSOCIATE-RJ, not an abort or an accept"
    rsp = assoc.acceptor.primitive
    return rsp.result, rsp.result_source, rsp.diagnostic


def test_registered_ae_from_its_host_is_accepted(node, caplog):
    with caplog.at_level(logging.INFO, logger="archive_node"):
        assoc = associate(node, "UNN_US")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == status.SUCCESS
        assoc.release()
    assert "association accepted: calling UNN_US (UNN) from 127.0.0.1" in caplog.text


@pytest.mark.parametrize(
    ("calling", "called", "expected", "logged"),
    [
        ("STRANGER", None, (1, 1, 3), "calling AE title is not registered"),
        ("UNN_US", "NOT_ARCHIVE", (1, 1, 7), "called AE title 'NOT_ARCHIVE' is not ours"),
        ("FARAWAY", None, (1, 1, 3), "is not the registered host 10.255.255.1"),
    ],
    ids=["unregistered", "wrong-called-title", "wrong-address"],
)
def test_rejections_carry_the_standard_reason(node, caplog, calling, called, expected, logged):
    with caplog.at_level(logging.INFO, logger="archive_node"):
        assoc = associate(node, calling, called=called)
    assert rejection(assoc) == expected
    assert "association rejected" in caplog.text and logged in caplog.text
    assert f"calling {calling}" in caplog.text and "from 127.0.0.1" in caplog.text


def test_ae_without_host_may_connect_from_anywhere(node):
    assoc = associate(node, "ANYWHERE")
    assert assoc.is_established
    assoc.release()


def test_service_outside_rights_is_0124_not_an_abort(node):
    # NLSH_CAM may store but not echo
    assoc = associate(
        node,
        "NLSH_CAM",
        [Verification, (dicom_objects.SECONDARY_CAPTURE, [ExplicitVRLittleEndian])],
    )
    assert assoc.is_established
    assert assoc.send_c_echo().Status == status.NOT_AUTHORISED
    assert assoc.send_c_store(dicom_objects.secondary_capture()).Status == status.SUCCESS
    assoc.release()


def test_store_without_store_right_is_0124_and_nothing_kept(node):
    node.service.registry.add_ae("ECHO_ONLY", "UNN", host="127.0.0.1", allow="echo")
    assoc = associate(
        node, "ECHO_ONLY", [(dicom_objects.SECONDARY_CAPTURE, [ExplicitVRLittleEndian])]
    )
    assert assoc.send_c_store(dicom_objects.secondary_capture()).Status == status.NOT_AUTHORISED
    assoc.release()
    assert node.service.index.instances.count() == 0


def test_registry_changes_take_effect_for_the_next_association(node):
    registry = node.service.registry
    assert rejection(associate(node, "NEW_DERM")) == (1, 1, 3)

    registry.add_ae("NEW_DERM", "NLSH", host="127.0.0.1", allow="echo,store")
    assoc = associate(node, "NEW_DERM")
    assert assoc.is_established
    assoc.release()

    registry.update_ae("NEW_DERM", enabled=False)
    assert rejection(associate(node, "NEW_DERM")) == (1, 1, 3)

    registry.update_ae("NEW_DERM", enabled=True, host="10.255.255.7")
    assert rejection(associate(node, "NEW_DERM")) == (1, 1, 3)

    registry.update_ae("NEW_DERM", host="", allow="store")
    assoc = associate(node, "NEW_DERM")
    assert assoc.send_c_echo().Status == status.NOT_AUTHORISED
    assoc.release()

    registry.remove_ae("NEW_DERM")
    assert rejection(associate(node, "NEW_DERM")) == (1, 1, 3)


def test_host_given_as_a_name_is_resolved(node):
    node.service.registry.add_ae("BY_NAME", "UNN", host="localhost")
    assoc = associate(node, "BY_NAME")
    assert assoc.is_established
    assoc.release()


def test_too_many_associations_is_a_transient_rejection(tmp_path, index_url, registry):
    with node_with(tmp_path / "busy", index_url, node={"max_associations": 1}) as busy:
        first = associate(busy, "UNN_US")
        assert first.is_established
        assert rejection(associate(busy, "UNN_US")) == (2, 3, 2)
        first.release()
        # once the first association has ended server-side, there is room again
        deadline = time.monotonic() + 10
        while (again := associate(busy, "UNN_US")).is_rejected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert again.is_established
        again.release()


def test_index_down_fails_closed(node, index_url):
    """An association is never accepted when the registry cannot be read."""
    rename = "ALTER TABLE application_entity RENAME TO application_entity_gone"
    if index_url.startswith("sqlite"):
        conn = sqlite3.connect(index_url[len("sqlite:///") :])
        conn.execute(rename)
        conn.commit()
    else:
        import psycopg2

        conn = psycopg2.connect(index_url)
        with conn, conn.cursor() as cur:
            cur.execute(rename)
    conn.close()
    assert rejection(associate(node, "UNN_US")) == (2, 1, 1)


def test_a_broken_registry_row_rejects_instead_of_admitting(node, index_url):
    """An error while deciding is a transient rejection, never a fall-through to accept."""
    with node.service.index.session(write=True):
        ApplicationEntity.update(allow="echo,teleport").where(
            ApplicationEntity.ae_title == "UNN_US"
        ).execute()
    assert rejection(associate(node, "UNN_US")) == (2, 1, 1)


def _active(node) -> list:
    return [a for a in node.server.ae.active_associations if a.is_alive()]


def _wait_for_no_association(node, deadline: float = 10.0) -> None:
    """Poll until no association is alive (the node's ACSE timeout here is 30 s)."""
    end = time.monotonic() + deadline
    while _active(node):
        assert time.monotonic() < end, f"still alive: {_active(node)}"
        time.sleep(0.01)


def test_a_connection_closed_before_its_association_request_frees_its_slot(node):
    """A load balancer's TCP check connects and closes: pynetdicom alone held the slot (and a
    stopping node) until the ACSE timeout."""
    with socket.create_connection((node.host, node.port)):
        end = time.monotonic() + 10
        while not _active(node):
            assert time.monotonic() < end, "the connection never reached the node"
            time.sleep(0.01)
    _wait_for_no_association(node)


def test_stopping_ends_connections_that_never_asked_for_an_association(node, caplog):
    """A silent connection (a port scan) does not hold the node's stop for its grace period."""
    with socket.create_connection((node.host, node.port)):
        end = time.monotonic() + 10
        while not _active(node):
            assert time.monotonic() < end, "the connection never reached the node"
            time.sleep(0.01)
        with caplog.at_level(logging.WARNING, logger="archive_node"):
            node.server.stop(grace=30)
    assert "aborting" not in caplog.text
    assert not _active(node)
