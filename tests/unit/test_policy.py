"""The access policy as a truth table: association decisions and per-request rights."""

from __future__ import annotations

import pytest

from archive_node.errors import InvalidInput
from archive_node.rules.access import (
    REJECT_CALLED_AE,
    REJECT_CALLING_AE,
    Peer,
    decide_association,
    format_allow,
    may_request,
    parse_allow,
)


def peer(**kw) -> Peer:
    values = dict(
        ae_title="US1",
        hospital="UNN",
        issuer="UNN",
        host="192.0.2.10",
        port=None,
        allow=frozenset({"echo", "store"}),
        scope="region",
        enabled=True,
    )
    values.update(kw)
    return Peer(**values)


RESOLVED = frozenset({"192.0.2.10"})


@pytest.mark.parametrize(
    ("called", "the_peer", "address", "resolved", "accepted", "reject"),
    [
        ("ARCHIVE", peer(), "192.0.2.10", RESOLVED, True, None),
        ("ARCHIVE  ", peer(), "192.0.2.10", RESOLVED, True, None),  # trailing spaces
        ("OTHER", peer(), "192.0.2.10", RESOLVED, False, REJECT_CALLED_AE),
        ("archive", peer(), "192.0.2.10", RESOLVED, False, REJECT_CALLED_AE),  # case matters
        ("ARCHIVE", None, "192.0.2.10", RESOLVED, False, REJECT_CALLING_AE),
        ("ARCHIVE", peer(enabled=False), "192.0.2.10", RESOLVED, False, REJECT_CALLING_AE),
        ("ARCHIVE", peer(), "192.0.2.11", RESOLVED, False, REJECT_CALLING_AE),
        ("ARCHIVE", peer(), "::ffff:192.0.2.10", RESOLVED, True, None),  # v4-mapped v6
        ("ARCHIVE", peer(host="scanner.example"), "192.0.2.10", RESOLVED, True, None),
        (
            "ARCHIVE",
            peer(host="scanner.example"),
            "192.0.2.10",
            frozenset(),
            False,
            REJECT_CALLING_AE,
        ),  # a name that does not resolve admits nobody
        ("ARCHIVE", peer(host=""), "203.0.113.5", frozenset(), True, None),  # any address
        # the called title is checked first, even for an unknown caller
        ("OTHER", None, "192.0.2.10", RESOLVED, False, REJECT_CALLED_AE),
    ],
)
def test_decide_association(called, the_peer, address, resolved, accepted, reject):
    decision = decide_association("ARCHIVE", called, the_peer, address, resolved)
    assert decision.accepted is accepted
    assert decision.reject == reject
    assert decision.reason


@pytest.mark.parametrize("service", ["echo", "store", "find", "move", "get"])
@pytest.mark.parametrize(
    "allow", ["echo", "echo,store", "find,move,get", "echo,store,find,move,get", ""]
)
def test_may_request_truth_table(allow, service):
    rights = parse_allow(allow)
    assert may_request(peer(allow=rights), service) is (service in allow.split(","))


def test_parse_allow_normalises_and_refuses_unknown():
    assert parse_allow(" Store , echo ,") == frozenset({"echo", "store"})
    assert format_allow(parse_allow("get,echo,find")) == "echo,find,get"
    with pytest.raises(InvalidInput, match="delete"):
        parse_allow("echo,delete")
