"""Validation of DICOM values that reach paths, SQL and the registry (PS3.5 6.2, 9.1)."""

from __future__ import annotations

import re

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
