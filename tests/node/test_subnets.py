"""AEs registered by address range, and no AE without rights (issue 22, finding 11): the CLI
takes, shows and refuses them; real associations from 127.0.0.1 are admitted by range."""

from __future__ import annotations

import json
import logging

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.sop_class import Verification

from archive_node.dicom import status
from archive_node.rules.access import UNKNOWN_DESTINATION
from tests.helpers import dicom_objects
from tests.helpers.cli import aes, fails, ok, write_config
from tests.helpers.dimse import associate, store
from tests.helpers.identifiers import identifier
from tests.helpers.retrieving import STUDY_MOVE, move


@pytest.fixture
def cli_config(tmp_path, index_url, node):
    """A config for the CLI on the index of the node of the test."""
    return write_config(tmp_path, index_url, name="cli.toml")


def _add(cfg, title, *options):
    return ok("ae", "add", title, "--hospital", "UNN", *options, "--config", cfg)


def test_a_range_is_registered_listed_and_admits_its_addresses(node, cli_config):
    added = _add(cli_config, "UNN_POOL", "--host", "127.0.0.0/8", "--allow", "echo,find")
    assert "host 127.0.0.0/8" in added.output
    _add(cli_config, "UNN_FAR", "--host", "10.0.0.0/8")
    _add(cli_config, "UNN_V6", "--host", "FD00:0001::/64")
    listed = aes(cli_config)
    assert listed["UNN_POOL"]["host"] == "127.0.0.0/8"
    assert listed["UNN_V6"]["host"] == "fd00:1::/64"
    table = ok("ae", "list", "--config", cli_config).output
    assert "127.0.0.0/8" in table and "10.0.0.0/8" in table

    assoc = associate(node, "UNN_POOL")  # from 127.0.0.1
    assert assoc.is_established
    assert assoc.send_c_echo().Status == status.SUCCESS
    assoc.release()
    for outside in ("UNN_FAR", "UNN_V6"):
        refused = associate(node, outside)
        assert refused.is_rejected
        rsp = refused.acceptor.primitive
        assert (rsp.result, rsp.result_source, rsp.diagnostic) == (1, 1, 3)


def test_updating_to_a_range_takes_effect_for_the_next_association(node, cli_config):
    _add(cli_config, "UNN_MOVES", "--host", "10.0.0.0/8")
    assert associate(node, "UNN_MOVES").is_rejected
    ok("ae", "update", "UNN_MOVES", "--host", "127.0.0.0/24", "--config", cli_config)
    assoc = associate(node, "UNN_MOVES")
    assert assoc.is_established
    assoc.release()


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1/8", "host bits set: the range is 127.0.0.0/8"),
        ("0.0.0.0/0", "every address"),
        ("::/0", "every address"),
        ("10.0.0.0/40", "not an address range"),
    ],
)
def test_a_bad_range_is_one_line(node, cli_config, host, why):
    assert why in fails("ae", "add", "UNN_BAD", "--hospital", "UNN", "--host", host,
                        "--config", cli_config)  # fmt: skip
    _add(cli_config, "UNN_OK", "--host", "127.0.0.1")
    assert why in fails("ae", "update", "UNN_OK", "--host", host, "--config", cli_config)
    assert aes(cli_config)["UNN_OK"]["host"] == "127.0.0.1"


def test_a_range_has_no_port(node, cli_config):
    line = fails("ae", "add", "UNN_POOL", "--hospital", "UNN", "--host", "127.0.0.0/8",
                 "--port", "104", "--config", cli_config)  # fmt: skip
    assert "one address, not a range" in line
    _add(cli_config, "UNN_ONE", "--host", "127.0.0.1", "--port", "11999")
    line = fails("ae", "update", "UNN_ONE", "--host", "127.0.0.0/8", "--config", cli_config)
    assert "one address, not a range" in line
    _add(cli_config, "UNN_POOL", "--host", "127.0.0.0/8")
    line = fails("ae", "update", "UNN_POOL", "--port", "104", "--config", cli_config)
    assert "one address, not a range" in line
    # the port cleared with the change: taken
    ok("ae", "update", "UNN_ONE", "--host", "127.0.0.0/8", "--port", "", "--config", cli_config)
    assert (aes(cli_config)["UNN_ONE"]["host"], aes(cli_config)["UNN_ONE"]["port"]) == (
        "127.0.0.0/8",
        None,
    )


def test_a_range_is_not_a_move_destination(node, cli_config, caplog):
    ds = dicom_objects.secondary_capture()
    assert store(node, ds) == status.SUCCESS
    _add(cli_config, "UNN_POOL", "--host", "127.0.0.0/8")
    assoc = associate(node, "UNN_WS", [STUDY_MOVE])
    try:
        with caplog.at_level(logging.INFO, logger="archive_node"):
            final, _, _ = move(
                assoc, identifier("STUDY", StudyInstanceUID=ds.StudyInstanceUID), "UNN_POOL"
            )
    finally:
        assoc.release()
    assert final.Status == status.MOVE_DESTINATION_UNKNOWN
    assert final.ErrorComment == UNKNOWN_DESTINATION
    assert "is registered with an address range" in caplog.text


@pytest.mark.parametrize("allow", ["", " , "])
def test_an_ae_without_rights_is_refused(node, cli_config, allow):
    line = fails("ae", "add", "UNN_NONE", "--hospital", "UNN", "--allow", allow,
                 "--config", cli_config)  # fmt: skip
    assert "at least one of echo,store,find,move,get,worklist" in line
    assert "UNN_NONE" not in aes(cli_config)
    line = fails("ae", "update", "UNN_US", "--allow", allow, "--config", cli_config)
    assert "at least one of" in line
    assert json.loads(ok("ae", "list", "--json", "--config", cli_config).output)
    assert aes(cli_config)["UNN_US"]["allow"] == "echo,store"
    # and its associations go on with the rights it had
    assoc = associate(
        node, "UNN_US", [Verification, (dicom_objects.SECONDARY_CAPTURE, [ExplicitVRLittleEndian])]
    )
    assert assoc.send_c_echo().Status == status.SUCCESS
    assoc.release()
