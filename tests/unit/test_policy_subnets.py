"""AEs registered by address range (issue 22, finding 11) as truth tables: what --host takes,
which peer addresses a range admits, and that a range is no C-MOVE destination."""

from __future__ import annotations

import pytest

from archive_node.errors import InvalidInput
from archive_node.registry import check_ae_host, check_allow, check_host
from archive_node.rules.access import (
    REJECT_CALLING_AE,
    Peer,
    address_in_network,
    decide_association,
    host_admits,
    host_network,
    move_refusal,
)


def peer(**kw) -> Peer:
    values = dict(
        ae_title="WS_POOL",
        hospital="UNN",
        issuer="UNN",
        host="10.20.4.0/24",
        port=None,
        allow=frozenset({"echo", "find"}),
        scope="region",
    )
    values.update(kw)
    return Peer(**values)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("10.20.4.0/24", "10.20.4.0/24"),
        (" 10.20.4.0/24 ", "10.20.4.0/24"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("127.0.0.0/8", "127.0.0.0/8"),
        ("fd00:1::/64", "fd00:1::/64"),
        ("FD00:0001:0000::/64", "fd00:1::/64"),  # IPv6 kept in its short form
        ("10.20.4.7/32", "10.20.4.7"),  # a range of one address is that address
        ("fd00::7/128", "fd00::7"),
        ("10.20.4.7", "10.20.4.7"),  # one address, a name and empty as before
        ("scanner.unn.example", "scanner.unn.example"),
        ("", ""),
    ],
)
def test_host_taken(given, kept):
    assert check_ae_host(given) == kept


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("10.20.4.5/24", "host bits set: the range is 10.20.4.0/24"),  # strict: no guessing
        ("fd00:1::5/64", "host bits set: the range is fd00:1::/64"),
        ("0.0.0.0/0", "every address"),  # fail closed: '' says any address, on purpose
        ("::/0", "every address"),
        ("0.0.0.0/1", "wider than a workstation pool"),  # refusing /0 alone is no guard
        ("10.0.0.0/7", "wider than a workstation pool"),
        ("2000::/3", "wider than a workstation pool"),
        ("::ffff:0.0.0.0/96", "IPv4-mapped addresses: give the IPv4 range"),  # every IPv4 peer
        ("::ffff:10.20.4.0/120", "IPv4-mapped addresses"),
        ("10.20.4.0/33", "not an address range"),
        ("10.20.4.0/", "not an address range"),
        ("10.20.4.0/24/8", "not an address range"),
        ("scanner.example/24", "not an address range"),
        ("10.20.4.0/255.255.255.0", None),  # a netmask is taken (ipaddress reads it as /24)
    ],
)
def test_host_refused(given, why):
    if why is None:
        assert check_ae_host(given) == "10.20.4.0/24"
        return
    with pytest.raises(InvalidInput, match=why.replace("(", r"\(")):
        check_ae_host(given)


def test_hl7_senders_still_take_one_address_or_name():
    """check_host (HL7 senders) is unchanged: their check knows no ranges."""
    with pytest.raises(InvalidInput):
        check_host("10.20.4.0/24")


@pytest.mark.parametrize(
    ("host", "address", "admitted"),
    [
        ("10.20.4.0/24", "10.20.4.0", True),
        ("10.20.4.0/24", "10.20.4.77", True),
        ("10.20.4.0/24", "10.20.4.255", True),
        ("10.20.4.0/24", "10.20.5.1", False),
        ("10.20.4.0/24", "10.20.3.255", False),
        ("10.20.4.0/24", "::ffff:10.20.4.77", True),  # IPv4-mapped peer, IPv4 range
        ("10.20.4.0/24", "::ffff:10.20.5.1", False),
        ("127.0.0.0/8", "127.0.0.1", True),
        ("127.0.0.0/8", "::ffff:127.0.0.1", True),
        ("127.0.0.0/8", "::1", False),  # the IPv6 loopback is not in an IPv4 range
        ("10.0.0.0/8", "127.0.0.1", False),
        ("fd00:1::/64", "fd00:1::abcd", True),
        ("fd00:1::/64", "fd00:1:0:0:ffff::1", True),
        ("fd00:1::/64", "fd00:2::1", False),
        ("fd00:1::/64", "10.20.4.77", False),  # an IPv4 peer is never in an IPv6 range...
        ("::ffff:10.20.4.0/120", "10.20.4.77", True),  # ...but its mapped form's
        ("10.20.4.0/24", "not-an-address", False),
        ("10.20.4.0/24", "", False),
    ],
)
def test_range_admits(host, address, admitted):
    network = host_network(host)
    assert network is not None
    assert address_in_network(address, network) is admitted
    assert host_admits(host, address, frozenset()) is admitted
    decision = decide_association("ARCHIVE", "ARCHIVE", peer(host=host), address, frozenset())
    assert decision.accepted is admitted
    if not admitted:
        assert decision.reject == REJECT_CALLING_AE
        assert f"is not the registered host {host}" in decision.reason


@pytest.mark.parametrize(
    ("host", "resolved", "address", "admitted"),
    [
        ("10.20.4.7", frozenset({"10.20.4.7"}), "10.20.4.7", True),  # one address, as before
        ("10.20.4.7", frozenset({"10.20.4.7"}), "10.20.4.8", False),
        ("ws.example", frozenset({"10.20.4.7"}), "10.20.4.7", True),
        ("ws.example", frozenset(), "10.20.4.7", False),
        # a range is matched by itself, whatever a resolver made of its text
        ("10.20.4.0/24", frozenset({"10.20.9.9"}), "10.20.9.9", False),
    ],
)
def test_host_admits_addresses_and_names_as_before(host, resolved, address, admitted):
    assert host_admits(host, address, resolved) is admitted


@pytest.mark.parametrize(
    ("host", "network"),
    [("10.20.4.0/24", "10.20.4.0/24"), ("10.20.4.7", None), ("ws.example", None), ("", None)],
)
def test_host_network(host, network):
    found = host_network(host)
    assert (str(found) if found else None) == network


def test_a_range_is_no_move_destination():
    requester = peer(host="10.20.4.7", allow=frozenset({"move"}))
    pool = peer(host="10.20.4.0/24", port=104)  # as a row could hold: registry refuses it
    assert "address range" in move_refusal(requester, pool, "WS_POOL")
    assert "address range" in move_refusal(requester, peer(port=None), "WS_POOL")
    assert move_refusal(requester, peer(host="10.20.4.8", port=104), "WS_ONE") is None


@pytest.mark.parametrize("allow", ["", " ", ",", " , "])
def test_an_ae_needs_a_right(allow):
    with pytest.raises(InvalidInput, match="at least one of"):
        check_allow(allow)


def test_rights_as_before():
    assert check_allow("find, echo") == frozenset({"echo", "find"})
    with pytest.raises(InvalidInput, match="unknown service"):
        check_allow("fly")
