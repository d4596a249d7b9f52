"""The pure TLS rules: fingerprints as people paste them, and which transport fits which AE."""

from __future__ import annotations

import pytest

from archive_node.errors import InvalidInput
from archive_node.rules.tls import (
    PLAIN,
    Transport,
    check_tls_mode,
    destination_refusal,
    format_fingerprint,
    parse_fingerprint,
    transport_refusal,
)

DIGEST = "ab" * 32
OTHER = "cd" * 32
UNBOUND = "ef" * 32


@pytest.mark.parametrize(
    "text",
    [
        "SHA256:" + ":".join(["AB"] * 32),
        "sha256 Fingerprint=" + ":".join(["AB"] * 32),  # openssl x509 -fingerprint -sha256
        "  " + "ab" * 32 + "\n",
        ":".join(["ab"] * 32),
        "SHA-256:" + "Ab" * 32,
    ],
)
def test_fingerprints_are_read_as_people_paste_them(text):
    assert parse_fingerprint(text) == DIGEST


@pytest.mark.parametrize(
    "text",
    ["", "SHA256:", "ab" * 31, "ab" * 33, "SHA1:" + "ab" * 20, "zz" * 32, "MD5:" + "ab" * 32],
)
def test_anything_else_is_not_a_fingerprint(text):
    with pytest.raises(InvalidInput, match="not a SHA-256 fingerprint"):
        parse_fingerprint(text)


def test_fingerprints_are_shown_as_openssl_prints_them():
    shown = format_fingerprint(DIGEST)
    assert shown == "SHA256:" + ":".join(["AB"] * 32)
    assert parse_fingerprint(shown) == DIGEST


def test_tls_modes():
    assert [check_tls_mode(m) for m in ("required", "optional", "off")]
    with pytest.raises(InvalidInput, match="--tls 'sometimes' is not one of required"):
        check_tls_mode("sometimes")


def refusal(tls_mode="optional", bound=(), transport=PLAIN, owner=None, required=True):
    return transport_refusal(
        ae_title="US_1",
        tls_mode=tls_mode,
        bound=frozenset(bound),
        transport=transport,
        owner=owner,
        require_client_certificate=required,
    )


def tls(fingerprint=None):
    return Transport(secure=True, fingerprint=fingerprint)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        # the plain port
        (dict(), None),
        (dict(tls_mode="off"), None),
        (dict(tls_mode="required"), "needs TLS (--tls required) and came on the plain port"),
        (dict(bound=[DIGEST]), "has a bound certificate and came on the plain port"),
        # the TLS port, no client certificate
        (dict(transport=tls()), "no client certificate (tls.require_client_certificate)"),
        (dict(transport=tls(), required=False), None),
        (dict(transport=tls(), bound=[DIGEST], required=False), "no client certificate; the AE"),
        # the TLS port with a certificate
        (dict(transport=tls(DIGEST), bound=[DIGEST], owner="US_1"), None),
        (dict(transport=tls(DIGEST), bound=[OTHER, DIGEST], owner="US_1"), None),
        (dict(transport=tls(UNBOUND)), None),  # CA-signed, bound to no AE, AE binds none
        (dict(transport=tls(UNBOUND), bound=[DIGEST]), "is not the AE's bound one"),
        (dict(transport=tls(OTHER), owner="WS_2"), "is bound to AE WS_2"),
        (dict(transport=tls(OTHER), bound=[DIGEST], owner="WS_2"), "is bound to AE WS_2"),
        (dict(transport=tls(DIGEST), tls_mode="off"), "does not use TLS (--tls off)"),
        (dict(transport=tls(DIGEST), tls_mode="required", owner="US_1", bound=[DIGEST]), None),
    ],
)
def test_transport_refusal(case, expected):
    reason = refusal(**case)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


def test_a_refusal_names_the_certificate_by_its_first_bytes_only():
    reason = refusal(transport=tls(OTHER), owner="WS_2")
    assert reason is not None
    assert "SHA256:CD:CD:CD" in reason and OTHER not in reason.lower().replace(":", "")


@pytest.mark.parametrize(
    ("bound", "presented", "owner", "expected"),
    [
        ((), UNBOUND, None, None),
        ((DIGEST,), DIGEST, "DEST", None),
        ((DIGEST,), UNBOUND, None, "is not its bound one"),
        ((), OTHER, "US_1", "is bound to AE US_1"),
    ],
)
def test_destination_refusal(bound, presented, owner, expected):
    reason = destination_refusal("DEST", frozenset(bound), presented, owner)
    assert reason == expected or (expected and reason and expected in reason)
