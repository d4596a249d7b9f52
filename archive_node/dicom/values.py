"""Validation of DICOM values that reach paths, SQL and the registry (PS3.5 6.2, 9.1)."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import date

_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")
_HOSPITAL_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}")


def is_valid_uid(value: object) -> bool:
    """True for a UID that is safe to use as a path component.

    PS3.5 9.1: digits and dots, at most 64 characters. Components with leading zeros, which
    the standard forbids but some modalities send, are accepted: they are harmless in a path.
    """
    return isinstance(value, str) and len(value) <= 64 and _UID_RE.fullmatch(value) is not None


def ae_title_problem(value: str) -> str | None:
    """Say what is wrong with an AE title, or None when it is valid (PS3.5 6.2, VR AE)."""
    if not value.strip():
        return "an AE title may not be empty"
    if len(value) > 16:
        return "an AE title has at most 16 characters"
    if "\\" in value or not value.isprintable() or not value.isascii():
        return "an AE title is printable ASCII without backslash"
    return None


def normalise_ae_title(value: str) -> str:
    """Leading and trailing spaces are not significant in an AE title (PS3.5 6.2)."""
    return value.strip()


def hospital_code_problem(value: str) -> str | None:
    """Say what is wrong with a hospital code, or None when it is valid."""
    if _HOSPITAL_CODE_RE.fullmatch(value) is None:
        return (
            "a hospital code is 1-16 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return None


# PS3.5 Table 6.2-1: the most characters one value of these VRs holds (PN: per component
# group, of which a name has up to three)
MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "UI": 64, "IS": 12}
# PS3.5 7.1.1: the largest value length a 32-bit length field gives, even (0xFFFFFFFF is
# "undefined"): one encapsulated fragment or one OB value at most
MAX_VALUE_LENGTH = 0xFFFFFFFE
_CS_RE = re.compile(r"[A-Z0-9 _]*")


def text_problem(value: str, vr: str) -> str | None:
    """Say what keeps `value` from being a single value of `vr` (LO, SH, PN, CS), or None.

    PS3.5 6.2: no backslash (it separates values) and no control characters; at most 64
    characters (LO, a PN component group), 16 (SH, CS); PN has at most 3 groups of at most 5
    components; CS is upper case letters, digits, space and underscore.
    """
    if "\\" in value:
        return "may not hold a backslash"
    if not value.isprintable():
        return "may not hold control characters"
    groups = value.split("=") if vr == "PN" else [value]
    if len(groups) > 3:  # PS3.5 6.2.1.1: alphabetic, ideographic, phonetic
        return "has at most 3 component groups (separated by =)"
    if vr == "PN" and any(len(g.split("^")) > 5 for g in groups):  # family^given^middle^...
        return "has at most 5 components (separated by ^)"
    longest = max(len(group) for group in groups)
    if longest > MAX_LENGTH[vr]:
        return f"has at most {MAX_LENGTH[vr]} characters"
    if vr == "CS" and _CS_RE.fullmatch(value) is None:
        return "is upper case letters, digits, space and underscore"
    return None


# -- dates (PS3.5 6.2, VR DA) ----------------------------------------------------------------

# [0-9], not \d: \d also takes other scripts' digits, which no DA, TM or DT may hold.
_DA_RE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")


def parse_date(text: str) -> str:
    """A DA value as YYYYMMDD; raises ValueError unless it is a real calendar date (its message
    never quotes the value, which may be a birth date)."""
    match = _DA_RE.fullmatch(text)
    if match is None:
        raise ValueError("not a date (YYYYMMDD)")
    try:
        date(*(int(part) for part in match.groups()))
    except ValueError:
        raise ValueError("not a calendar date") from None
    return text


# The namespace of the node's name-based UUIDs (PS3.5 B.2): fixed, so a UID derived once is
# derived the same again.
_UID_NAMESPACE = uuid.UUID("c1f0a3e6-5b7d-4e2a-9f3c-6d8b2a1e4f70")


def derived_uid(root: str, *parts: str) -> str:
    """A UID that depends only on `parts`: under `root` (digits of their SHA-256, to 64
    characters), or without a root the 2.25 form of a name-based UUID (PS3.5 B.2)."""
    name = "\x1f".join(parts)
    if not root:
        return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"
    digits = str(int.from_bytes(hashlib.sha256(name.encode()).digest(), "big"))
    return f"{root}.{digits[: 64 - len(root) - 1]}"
