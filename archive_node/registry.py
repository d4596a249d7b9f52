"""Onboarding: validate and record hospitals and their AEs (the allowlist) in the index."""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Sequence
from pathlib import Path

from .dicom.values import ae_title_problem, hospital_code_problem, normalise_ae_title
from .errors import InvalidInput
from .index import AERecord, HospitalRecord, Index
from .rules.access import (
    DEFAULT_ALLOW,
    SCOPES,
    SERVICES,
    Peer,
    format_allow,
    host_network,
    parse_allow,
)
from .rules.tls import (
    DEFAULT_TLS_MODE,
    MAX_BOUND_CERTIFICATES,
    check_tls_mode,
    fingerprint_of,
    parse_fingerprint,
)

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"  # RFC 1123 host name label
_HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


def check_ae_title(value: str) -> str:
    title = normalise_ae_title(value)
    if problem := ae_title_problem(title):
        raise InvalidInput(f"{value!r}: {problem}")
    return title


def check_hospital_code(value: str) -> str:
    if problem := hospital_code_problem(value):
        raise InvalidInput(f"{value!r}: {problem}")
    return value


def check_host(value: str) -> str:
    """An IP address or a host name; empty means any address."""
    value = value.strip()
    if not value:
        return ""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not _HOSTNAME_RE.fullmatch(value) or re.fullmatch(r"[0-9.]+", value):
        raise InvalidInput(f"{value!r} is neither an IP address nor a host name")
    return value


# The widest ranges an AE's --host takes, by IP version (a regional network's /8; an IPv6
# site's /16), and the IPv4-mapped IPv6 block (RFC 4291 2.5.5.2), matched as IPv4 instead.
MIN_PREFIX = {4: 8, 6: 16}
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def check_ae_host(value: str) -> str:
    """What an AE's --host may be: an IP address, a host name, or an address range in CIDR
    notation (a workstation pool: '10.20.4.0/24', 'fd00:1::/64'); empty means any address.

    A range is taken as written only (strict): '10.20.4.5/24' has host bits set, and whether
    the one workstation or its whole subnet was meant is for the admin to say, not for us to
    guess. A range of every address (/0) is refused: an empty --host says that, on purpose;
    so is a range wider than MIN_PREFIX allows (a pool is a subnet, not half the Internet),
    and an IPv6 range of IPv4-mapped addresses (::ffff:0:0/96 would admit every IPv4 peer:
    give the IPv4 range). A range of one address (/32, /128) is kept as that address. Raises
    InvalidInput.
    """
    value = value.strip()
    if "/" not in value:
        return check_host(value)
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise InvalidInput(
                f"{value!r} is not an address range (CIDR, e.g. 10.20.4.0/24 or fd00:1::/64)"
            ) from None
        raise InvalidInput(
            f"{value!r} has host bits set: the range is {loose}, the address "
            f"{value.partition('/')[0]}; give the one you mean"
        ) from None
    if network.prefixlen == 0:
        raise InvalidInput(f"{value!r} is every address: leave --host empty to admit any address")
    if network.prefixlen < MIN_PREFIX[network.version]:
        raise InvalidInput(
            f"{value!r} is wider than a workstation pool (at least /{MIN_PREFIX[network.version]}"
            "): leave --host empty to admit any address"
        )
    if isinstance(network, ipaddress.IPv6Network) and network.overlaps(_IPV4_MAPPED):
        raise InvalidInput(f"{value!r} holds IPv4-mapped addresses: give the IPv4 range")
    if network.num_addresses == 1:
        return str(network.network_address)
    return str(network)


def check_allow(value: str) -> frozenset[str]:
    """An AE's --allow: at least one right (an AE without any could only be refused: disable
    or remove it instead). Raises InvalidInput."""
    rights = parse_allow(value)
    if not rights:
        raise InvalidInput(
            f"--allow {value!r}: give at least one of {','.join(SERVICES)} "
            "(ae update --disable stops an AE)"
        )
    return rights


def _check_port_and_host(host: str, port: int | None) -> None:
    """A port is where the node calls the AE (C-MOVE, Storage Commitment call-backs): it needs
    one address, not a range."""
    if port is not None and host_network(host) is not None:
        raise InvalidInput(
            f"--port {port} with --host {host}: the node calls an AE at one address, not a "
            "range (an AE of a range cannot be a C-MOVE destination)"
        )


def check_port(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= 65535:
        raise InvalidInput(f"port {value} is outside 1-65535")
    return value


def check_max_associations(value: int | None) -> int | None:
    """At least 1 (None: no limit of the AE's own)."""
    if value is not None and value < 1:
        raise InvalidInput(
            f"--max-associations {value}: at least 1 (ae update --max-associations 0 clears it)"
        )
    return value


MAX_PLACEHOLDER_IDS = 20


def parse_placeholder_ids(value: str) -> tuple[str, ...]:
    """A comma list of placeholder PatientIDs ('UNKNOWN,000000'); empty clears. Each must be a
    valid LO (PS3.5 6.2: at most 64 characters, no backslash, no control characters), at most
    MAX_PLACEHOLDER_IDS of them; repeats are kept once."""
    if not value.strip():
        return ()
    values = [item.strip() for item in value.split(",")]
    for item in values:
        if not item:
            raise InvalidInput("--placeholder-ids: an empty item (empty IDs are always anonymous)")
        if len(item) > 64:
            raise InvalidInput(f"--placeholder-ids: {item[:20]!r}...: more than 64 characters")
        if "\\" in item or not item.isprintable():
            raise InvalidInput(
                f"--placeholder-ids: {item!r}: a backslash or control character (not an LO)"
            )
    unique = tuple(dict.fromkeys(values))
    if len(unique) > MAX_PLACEHOLDER_IDS:
        raise InvalidInput(
            f"--placeholder-ids: {len(unique)} values, at most {MAX_PLACEHOLDER_IDS}"
        )
    return unique


MAX_CERTIFICATE_FILE = 1 << 20  # a PEM certificate with its chain is a few KiB


def certificate_fingerprint(path: str | Path) -> str:
    """The SHA-256 fingerprint of the (first) certificate in a PEM file, as the node keeps it.
    Raises InvalidInput naming the file."""
    try:
        if Path(path).stat().st_size > MAX_CERTIFICATE_FILE:
            raise InvalidInput(
                f"--certificate {path}: over {MAX_CERTIFICATE_FILE // 1024} KiB: not a certificate"
            )
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a PEM file"
        raise InvalidInput(f"--certificate {path}: cannot read: {reason}") from None
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise InvalidInput(f"--certificate {path}: no PEM certificate in it")
    try:
        der = ssl.PEM_cert_to_DER_cert(text[start : stop + len(end)])
    except ValueError:
        der = b""
    if not _one_der_sequence(der):
        raise InvalidInput(f"--certificate {path}: the certificate cannot be decoded")
    return fingerprint_of(der)


def _one_der_sequence(der: bytes) -> bool:
    """Whether `der` is one DER SEQUENCE, as an X.509 certificate is (RFC 5280 4.1): its tag,
    then a length that spans exactly the rest."""
    if len(der) < 2 or der[0] != 0x30:
        return False
    if der[1] < 0x80:
        return 2 + der[1] == len(der)
    count = der[1] & 0x7F
    if not 1 <= count <= 4 or len(der) < 2 + count:
        return False
    return 2 + count + int.from_bytes(der[2 : 2 + count], "big") == len(der)


def bound_certificates(
    fingerprints: Sequence[str] = (), files: Sequence[str | Path] = ()
) -> tuple[str, ...]:
    """The certificates to bind to an AE, given as fingerprints and as certificate files."""
    bound = [parse_fingerprint(text) for text in fingerprints]
    bound += [certificate_fingerprint(path) for path in files]
    unique = tuple(dict.fromkeys(bound))
    if len(unique) > MAX_BOUND_CERTIFICATES:
        raise InvalidInput(
            f"{len(unique)} certificates: at most {MAX_BOUND_CERTIFICATES} per AE "
            "(the current one and those being rolled over to)"
        )
    return unique


def _check_tls_binding(tls: str, certificates: tuple[str, ...]) -> None:
    if tls == "off" and certificates:
        raise InvalidInput("a certificate is bound to an AE that uses TLS: not with --tls off")


def check_scope(value: str) -> str:
    if value not in SCOPES:
        raise InvalidInput(f"scope {value!r} is not one of {', '.join(SCOPES)}")
    return value


def peer_from_record(record: AERecord) -> Peer:
    return Peer(
        ae_title=record.ae_title,
        hospital=record.hospital,
        issuer=record.issuer,
        host=record.host,
        port=record.port,
        allow=parse_allow(record.allow),
        scope=record.scope,
        enabled=record.enabled,
        max_associations=record.max_associations,
        tls=record.tls,
        certificates=frozenset(record.certificates),
    )


class Registry:
    """Hospitals and AEs. Changes are read by the next association: no restart needed."""

    def __init__(self, index: Index) -> None:
        self.index = index

    def add_hospital(
        self,
        code: str,
        name: str,
        issuer: str | None = None,
        placeholder_ids: str | None = None,
    ) -> HospitalRecord:
        """`placeholder_ids`: a comma list (parse_placeholder_ids)."""
        code = check_hospital_code(code)
        if not name.strip():
            raise InvalidInput("a hospital needs a name")
        issuer = (issuer or code).strip()
        if not issuer or len(issuer) > 64 or "\\" in issuer:
            raise InvalidInput(f"issuer {issuer!r}: 1-64 characters without backslash")
        placeholders = parse_placeholder_ids(placeholder_ids or "")
        return self.index.registry.add_hospital(code, name.strip(), issuer, placeholders)

    def update_hospital(
        self, code: str, *, name: str | None = None, placeholder_ids: str | None = None
    ) -> HospitalRecord:
        """Change the name or the placeholder IDs (a comma list; '' clears them). They apply
        to studies that arrive from then on. Raises NotFound, InvalidInput."""
        if name is None and placeholder_ids is None:
            raise InvalidInput("nothing to change: give --name or --placeholder-ids")
        if name is not None and not name.strip():
            raise InvalidInput("a hospital needs a name")
        return self.index.registry.update_hospital(
            check_hospital_code(code),
            name=name.strip() if name is not None else None,
            placeholder_ids=(
                parse_placeholder_ids(placeholder_ids) if placeholder_ids is not None else None
            ),
        )

    def list_hospitals(self) -> list[HospitalRecord]:
        return self.index.registry.list_hospitals()

    def remove_hospital(self, code: str) -> None:
        self.index.registry.remove_hospital(code)

    def add_ae(
        self,
        ae_title: str,
        hospital: str,
        *,
        host: str = "",
        port: int | None = None,
        allow: str | None = None,
        scope: str = "region",
        description: str = "",
        max_associations: int | None = None,
        tls: str = DEFAULT_TLS_MODE,
        certificates: tuple[str, ...] = (),
    ) -> AERecord:
        """`certificates`: fingerprints from bound_certificates(). Raises InvalidInput,
        NotFound, Conflict."""
        rights = check_allow(allow) if allow is not None else DEFAULT_ALLOW
        _check_tls_binding(check_tls_mode(tls), certificates)
        host = check_ae_host(host)
        _check_port_and_host(host, check_port(port))
        return self.index.registry.add_ae(
            check_ae_title(ae_title),
            hospital,
            host=host,
            port=port,
            allow=format_allow(rights),
            scope=check_scope(scope),
            description=description,
            max_associations=check_max_associations(max_associations),
            tls=tls,
            certificates=certificates,
        )

    def update_ae(
        self,
        ae_title: str,
        *,
        hospital: str | None = None,
        host: str | None = None,
        port: int | None = None,
        clear_port: bool = False,
        allow: str | None = None,
        scope: str | None = None,
        description: str | None = None,
        enabled: bool | None = None,
        max_associations: int | None = None,
        tls: str | None = None,
        certificates: tuple[str, ...] | None = None,
    ) -> AERecord:
        """Change the fields given; `max_associations` 0 clears the AE's own limit;
        `certificates` replaces the bound ones (() unbinds them all)."""
        changes: dict[str, object] = {}
        if host is not None:
            changes["host"] = check_ae_host(host)
        if clear_port:
            changes["port"] = None
        elif port is not None:
            changes["port"] = check_port(port)
        if allow is not None:
            changes["allow"] = format_allow(check_allow(allow))
        if scope is not None:
            changes["scope"] = check_scope(scope)
        if description is not None:
            changes["description"] = description
        if enabled is not None:
            changes["enabled"] = enabled
        if max_associations == 0:
            changes["max_associations"] = None
        elif max_associations is not None:
            changes["max_associations"] = check_max_associations(max_associations)
        title = check_ae_title(ae_title)
        if host is not None or (port is not None and not clear_port):
            current = self.index.registry.get_ae(title)
            _check_port_and_host(
                check_ae_host(host) if host is not None else current.host,
                None if clear_port else port if port is not None else current.port,
            )
        if tls is not None:
            changes["tls"] = check_tls_mode(tls)
        if tls is not None or certificates is not None:
            current = self.index.registry.get_ae(title)
            _check_tls_binding(
                tls if tls is not None else current.tls,
                certificates if certificates is not None else current.certificates,
            )
        return self.index.registry.update_ae(
            title, hospital=hospital, certificates=certificates, **changes
        )

    def certificate_owner(self, fingerprint: str) -> str | None:
        """The title of the AE a client certificate is bound to, or None."""
        return self.index.registry.certificate_owner(fingerprint)

    def list_aes(self, hospital: str | None = None) -> list[AERecord]:
        return self.index.registry.list_aes(hospital)

    def remove_ae(self, ae_title: str) -> None:
        self.index.registry.remove_ae(check_ae_title(ae_title))

    def peer(self, ae_title: str) -> Peer | None:
        """The registered AE as the policy sees it, or None."""
        record = self.index.registry.find_ae(normalise_ae_title(ae_title))
        return peer_from_record(record) if record else None
