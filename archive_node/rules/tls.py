"""Pure TLS decisions: an AE's TLS mode, certificate fingerprints, and whether an association's
transport (plain, or TLS with or without a client certificate) fits the AE it calls as
(PS3.15 B.9: TLS authenticates the peer; the node makes one certificate worth one AE)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..errors import InvalidInput

# An AE's --tls: what its associations must use, both ways.
#  required: it connects only over TLS, and the node calls it (C-MOVE, commitment) over TLS;
#  optional: it connects over TLS or plain DICOM; the node calls it over plain DICOM;
#  off:      it does not speak TLS: it connects and is called over plain DICOM only.
TLS_MODES = ("required", "optional", "off")
DEFAULT_TLS_MODE = "optional"
MAX_BOUND_CERTIFICATES = 4  # per AE: the current one and those being rolled over to

_HEX = re.compile(r"[0-9a-f]{64}")
# what people paste: 'SHA256:AB:CD:..', openssl x509 -fingerprint's 'sha256 Fingerprint=AB:..',
# or the bare digest with or without colons
_PREFIX = re.compile(r"^(sha-?256\s*fingerprint\s*=|sha-?256\s*:)", re.IGNORECASE)


def check_tls_mode(value: str) -> str:
    if value not in TLS_MODES:
        raise InvalidInput(f"--tls {value!r} is not one of {', '.join(TLS_MODES)}")
    return value


def fingerprint_of(der: bytes) -> str:
    """A certificate's SHA-256 fingerprint (of its DER bytes) as the node keeps it: lowercase
    hex."""
    return hashlib.sha256(der).hexdigest()


def parse_fingerprint(text: str) -> str:
    """A certificate's SHA-256 fingerprint as the node keeps it: 64 lowercase hex digits.

    Takes 'SHA256:AB:CD:...', openssl's 'sha256 Fingerprint=AB:CD:...' or the bare digest.
    Raises InvalidInput saying what a fingerprint looks like."""
    digest = _PREFIX.sub("", text.strip()).replace(":", "").strip().lower()
    if not _HEX.fullmatch(digest):
        raise InvalidInput(
            f"--certificate-fingerprint {text[:80]!r}: not a SHA-256 fingerprint "
            "(SHA256: and 64 hex digits, as `openssl x509 -noout -fingerprint -sha256` prints)"
        )
    return digest


def format_fingerprint(digest: str) -> str:
    """'SHA256:AB:CD:...', as openssl prints it, for people to compare."""
    upper = digest.upper()
    return "SHA256:" + ":".join(upper[i : i + 2] for i in range(0, len(upper), 2))


def short_fingerprint(digest: str) -> str:
    """The first bytes of a fingerprint, enough to tell certificates apart in a log line."""
    return format_fingerprint(digest)[:30] + "..."


@dataclass(frozen=True)
class Transport:
    """How an association came: over TLS or not, and the fingerprint of the client
    certificate it presented (verified against tls.ca_certificates in the handshake)."""

    secure: bool
    fingerprint: str | None = None


PLAIN = Transport(secure=False)


def transport_refusal(
    *,
    ae_title: str,
    tls_mode: str,
    bound: frozenset[str],
    transport: Transport,
    owner: str | None,
    require_client_certificate: bool,
) -> str | None:
    """Why an AE registered with `tls_mode` and `bound` certificate fingerprints may not open
    an association over `transport` (rejected as calling-AE-not-recognized), or None.

    `owner` is the AE the presented certificate is bound to, if any: a certificate is worth
    exactly the AE it is bound to, never another title."""
    if not transport.secure:
        if tls_mode == "required":
            return "the AE needs TLS (--tls required) and came on the plain port"
        if bound:
            return "the AE has a bound certificate and came on the plain port, without it"
        return None
    if tls_mode == "off":
        return "the AE does not use TLS (--tls off) and came on the TLS port"
    presented = transport.fingerprint
    if presented is None:
        if bound:
            return "no client certificate; the AE has a bound one"
        if require_client_certificate:
            return "no client certificate (tls.require_client_certificate)"
        return None
    if owner is not None and owner != ae_title:
        return f"client certificate {short_fingerprint(presented)} is bound to AE {owner}"
    if bound and presented not in bound:
        return f"client certificate {short_fingerprint(presented)} is not the AE's bound one"
    return None


def destination_refusal(
    ae_title: str, bound: frozenset[str], presented: str, owner: str | None
) -> str | None:
    """Why a peer the node called as `ae_title` over TLS is not that AE by the certificate it
    presented (verified against tls.ca_certificates), or None."""
    if owner is not None and owner != ae_title:
        return f"its certificate {short_fingerprint(presented)} is bound to AE {owner}"
    if bound and presented not in bound:
        return f"its certificate {short_fingerprint(presented)} is not its bound one"
    return None
