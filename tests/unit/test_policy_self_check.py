"""The node's own title from the loopback (`archive-node echo ARCHIVE`) as a truth table: who
is admitted for its own C-ECHO, and with what rights."""

from __future__ import annotations

import pytest

from archive_node.rules.access import (
    SELF_CHECK_RIGHTS,
    SERVICES,
    is_loopback,
    may_request,
    not_authorised_comment,
    self_check_peer,
)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),  # all of 127.0.0.0/8
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped, as a dual-stack socket reports it
        ("128.0.0.1", False),
        ("10.0.0.1", False),
        ("192.0.2.10", False),
        ("::2", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1", False),
        ("0.0.0.0", False),
        ("localhost", False),  # a name is not an address
        ("", False),
        ("127.0.0.1/8", False),
    ],
)
def test_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


@pytest.mark.parametrize(
    ("called", "calling", "address", "admitted"),
    [
        ("ARCHIVE", "ARCHIVE", "127.0.0.1", True),
        ("ARCHIVE", "ARCHIVE  ", "127.0.0.1", True),  # padding is not significant
        ("ARCHIVE", "ARCHIVE", "::1", True),
        ("ARCHIVE", "ARCHIVE", "::ffff:127.0.0.1", True),
        ("ARCHIVE", "ARCHIVE", "192.0.2.10", False),  # not from the loopback
        ("ARCHIVE", "ARCHIVE", "10.0.0.1", False),
        ("ARCHIVE", "ARCHIVE", "::ffff:192.0.2.10", False),
        ("ARCHIVE", "archive", "127.0.0.1", False),  # titles are case-sensitive
        ("ARCHIVE", "UNN_US", "127.0.0.1", False),  # another title: the registry decides
        ("OTHER", "ARCHIVE", "127.0.0.1", False),  # not called as the node
        ("ARCHIVE", "ARCHIVE", "localhost", False),
    ],
)
def test_self_check_truth_table(called, calling, address, admitted):
    peer = self_check_peer("ARCHIVE", called, calling, address)
    assert (peer is not None) is admitted


@pytest.mark.parametrize("service", SERVICES)
def test_the_self_check_may_only_echo(service):
    peer = self_check_peer("ARCHIVE", "ARCHIVE", "ARCHIVE", "127.0.0.1")
    assert peer is not None
    assert may_request(peer, service) is (service == "echo")
    assert peer.allow == SELF_CHECK_RIGHTS == frozenset({"echo"})
    assert (peer.host, peer.port, peer.scope) == ("", None, "hospital")
    assert peer.max_associations


@pytest.mark.parametrize("service", SERVICES)
def test_not_authorised_comment_names_the_right_only(service):
    comment = not_authorised_comment(service)
    assert comment == f"AE not allowed {service}"
    assert len(comment) <= 64 and "\\" not in comment
