"""Pure access decisions: may this association open, may this AE make this request."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InvalidInput
from .tls import DEFAULT_TLS_MODE

SERVICES = ("echo", "store", "find", "move", "get", "worklist")
DEFAULT_ALLOW = frozenset({"echo", "store"})
SCOPES = ("hospital", "region")
DEFAULT_SCOPE = "region"

# A-ASSOCIATE-RJ (result, source, reason/diag), PS3.8 9.3.4 and 7.1.1.9
REJECT_CALLED_AE = (1, 1, 7)  # rejected-permanent, service-user, called-AE-title-not-recognized
REJECT_CALLING_AE = (1, 1, 3)  # rejected-permanent, service-user, calling-AE-title-not-recognized
REJECT_BUSY = (
    2,
    3,
    2,
)  # rejected-transient, service-provider (presentation), local-limit-exceeded
REJECT_TRANSIENT = (2, 1, 1)  # rejected-transient, service-user, no-reason-given


def parse_allow(text: str) -> frozenset[str]:
    """Parse a comma list of services such as 'echo,store,find'.

    Raises InvalidInput naming the unknown service.
    """
    items = {item.strip().lower() for item in text.split(",") if item.strip()}
    unknown = sorted(items - set(SERVICES))
    if unknown:
        raise InvalidInput(
            f"unknown service {', '.join(unknown)} in --allow (known: {','.join(SERVICES)})"
        )
    return frozenset(items)


def format_allow(allow: frozenset[str]) -> str:
    """The canonical comma list, in the order of SERVICES."""
    return ",".join(s for s in SERVICES if s in allow)


@dataclass(frozen=True)
class Peer:
    """A registered application entity as the policy sees it."""

    ae_title: str
    hospital: str
    issuer: str
    host: str
    port: int | None
    allow: frozenset[str]
    scope: str
    enabled: bool = True
    max_associations: int | None = None  # at once for this AE (`ae --max-associations`)
    tls: str = DEFAULT_TLS_MODE  # rules/tls.py TLS_MODES
    certificates: frozenset[str] = frozenset()  # bound client certificates' SHA-256 (hex)


@dataclass(frozen=True)
class AssociationDecision:
    """Accept, or reject with the A-ASSOCIATE-RJ triple and a reason for the log."""

    accepted: bool
    reason: str
    reject: tuple[int, int, int] | None = None


def _same_address(a: str, b: str) -> bool:
    """Compare IP addresses, treating an IPv4-mapped IPv6 address as its IPv4 form."""
    try:
        ip_a, ip_b = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return a == b
    ip_a = getattr(ip_a, "ipv4_mapped", None) or ip_a
    ip_b = getattr(ip_b, "ipv4_mapped", None) or ip_b
    return ip_a == ip_b


# What a registered host name stands for: its addresses (service.resolve_host).
Resolver = Callable[[str], frozenset[str]]


def address_matches(peer_address: str, allowed_addresses: frozenset[str]) -> bool:
    """Whether a peer's address is one its registered host stands for."""
    return any(_same_address(peer_address, a) for a in allowed_addresses)


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def host_network(host: str) -> IpNetwork | None:
    """The address range a registered host names in CIDR notation ('10.20.4.0/24',
    'fd00:1::/64': a workstation pool), or None for one address or a host name."""
    if "/" not in host:
        return None
    try:
        return ipaddress.ip_network(host.strip(), strict=True)
    except ValueError:
        return None


def address_in_network(peer_address: str, network: IpNetwork) -> bool:
    """Whether a peer's address is inside `network`; an IPv4-mapped IPv6 address
    (::ffff:10.20.4.7, as a dual-stack socket reports an IPv4 peer) counts as its IPv4 form,
    and an IPv4 address as its mapped form for a range written that way."""
    try:
        ip = ipaddress.ip_address(peer_address.strip())
    except ValueError:
        return False
    forms: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        forms.append(ip.ipv4_mapped)
    if isinstance(ip, ipaddress.IPv4Address):
        forms.append(ipaddress.IPv6Address(f"::ffff:{ip}"))
    return any(form.version == network.version and form in network for form in forms)


def host_admits(host: str, peer_address: str, resolved: frozenset[str]) -> bool:
    """Whether a peer at `peer_address` comes from the registered `host`: inside its range,
    or one of the addresses it `resolved` to (an IP address, or a name's addresses)."""
    network = host_network(host)
    if network is not None:
        return address_in_network(peer_address, network)
    return address_matches(peer_address, resolved)


def decide_association(
    our_title: str,
    called_title: str,
    peer: Peer | None,
    peer_address: str,
    allowed_addresses: frozenset[str],
) -> AssociationDecision:
    """Decide whether an association request may proceed (PS3.8 7.1.1.9 reasons).

    `allowed_addresses` is what the peer's registered host resolves to; it is ignored when the
    peer was registered without a host or with an address range (host_admits).
    """
    if called_title.strip() != our_title.strip():
        return AssociationDecision(
            False, f"called AE title {called_title.strip()!r} is not ours", REJECT_CALLED_AE
        )
    if peer is None:
        return AssociationDecision(False, "calling AE title is not registered", REJECT_CALLING_AE)
    if not peer.enabled:
        return AssociationDecision(False, "calling AE is disabled", REJECT_CALLING_AE)
    if peer.host and not host_admits(peer.host, peer_address, allowed_addresses):
        return AssociationDecision(
            False,
            f"peer address {peer_address} is not the registered host {peer.host}",
            REJECT_CALLING_AE,
        )
    return AssociationDecision(True, "registered")


def may_request(peer: Peer, service: str) -> bool:
    """True when the AE's rights include this DIMSE service (else 0x0124 Not Authorised)."""
    return service in peer.allow


def not_authorised_comment(service: str) -> str:
    """The Error Comment of a 0x0124 (Refused: Not Authorised): the right the AE lacks, one of
    SERVICES, and nothing else (no patient, no other hospital); an LO of at most 64
    characters (PS3.5 6.2, PS3.7 C.5.3)."""
    return f"AE not allowed {service}"[:64]


# `archive-node echo ARCHIVE`: the node checking itself calls as its own title, registered or
# not. Accepted from the loopback only, with the echo right only: any other request on that
# association is answered 0x0124 by the same per-request check as every AE's.
SELF_CHECK_RIGHTS = frozenset({"echo"})
SELF_CHECK_HOSPITAL = "-"  # no hospital: nothing it could store or see belongs to one
SELF_CHECK_MAX_ASSOCIATIONS = 4  # a health check needs one at a time


def is_loopback(address: str) -> bool:
    """127.0.0.0/8 or ::1, also as an IPv4-mapped IPv6 address (::ffff:127.0.0.1); a name or
    anything else that is not an IP address is not."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def self_check_peer(
    our_title: str, called_title: str, calling_title: str, address: str
) -> Peer | None:
    """The peer an association of the node's own title from the loopback is admitted as (its
    own C-ECHO, e.g. `archive-node echo ARCHIVE`): C-ECHO only, no hospital, no host. None
    for any other title, called title or address: the registry decides those (and a
    registered AE of the node's own title keeps its registered rights: the caller asks the
    registry first)."""
    ours = our_title.strip()
    if calling_title.strip() != ours or called_title.strip() != ours:
        return None
    if not is_loopback(address):
        return None
    return Peer(
        ae_title=ours,
        hospital=SELF_CHECK_HOSPITAL,
        issuer="",
        host="",
        port=None,
        allow=SELF_CHECK_RIGHTS,
        scope="hospital",
        max_associations=SELF_CHECK_MAX_ASSOCIATIONS,
    )


def visible_hospital(peer: Peer) -> str | None:
    """The hospital whose studies alone this AE may find and retrieve; None for scope region."""
    return peer.hospital if peer.scope == "hospital" else None


# The Error Comment of every 0xA801 for a destination the requester may not use: the same
# whatever the reason, so that no AE can learn which titles exist in other hospitals.
UNKNOWN_DESTINATION = "move destination unknown"


def move_refusal(requester: Peer, destination: Peer | None, title: str) -> str | None:
    """Why a C-MOVE may not send to the AE titled `title` (answered 0xA801), or None.

    PS3.4 C.4.2.1.4 leaves the destination's address to the SCP: it comes from the registry,
    never from the request, so a destination is a registered, enabled AE with a host (one
    address or name, not a range) and a port. An AE of scope hospital sends only to its own
    hospital's AEs: what it may see stays in its hospital.

    The reason is for the node's log only (it names another hospital); the requester is told
    UNKNOWN_DESTINATION whatever it is.
    """
    if destination is None:
        return f"move destination {title!r} is not a registered AE"
    if not destination.enabled:
        return f"move destination {title!r} is disabled"
    if host_network(destination.host) is not None:
        return f"move destination {title!r} is registered with an address range, not one address"
    if not destination.host or not destination.port:
        return f"move destination {title!r} is registered without a host and port"
    if requester.scope == "hospital" and destination.hospital != requester.hospital:
        return (
            f"move destination {title!r} belongs to hospital {destination.hospital}, "
            f"not {requester.hospital}"
        )
    return None
