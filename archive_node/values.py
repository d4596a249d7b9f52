"""Validation of DICOM values that reach paths, SQL and the registry (PS3.5 6.2, 9.1)."""

from __future__ import annotations

import calendar
import re
import unicodedata
from datetime import UTC, date, datetime

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


# -- dates and times (PS3.5 6.2, VR DA, TM and DT) ------------------------------------------------

# [0-9], not \d: \d also takes other scripts' digits, which no DA, TM or DT may hold.
_DA_RE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_TM_RE = re.compile(r"([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.([0-9]{1,6}))?)?)?")
_DT_RE = re.compile(
    r"([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.([0-9]{1,6}))?)?)?)?)?)?"
)
_OFFSET_RE = re.compile(r"[+-]([0-9]{2})([0-9]{2})")


def parse_date(text: str) -> str:
    """A DA value as YYYYMMDD; raises ValueError unless it is a real calendar date."""
    match = _DA_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a date (YYYYMMDD)")
    try:
        date(*(int(part) for part in match.groups()))
    except ValueError:
        raise ValueError(f"{text!r} is not a calendar date") from None
    return text


def time_bounds(text: str) -> tuple[str, str]:
    """The first and last instant a TM value covers, each as HHMMSS.FFFFFF.

    '1015' covers 10:15:00.000000 to 10:15:59.999999 (PS3.5 6.2: trailing components may be
    omitted). Raises ValueError for anything that is not a time of day.
    """
    match = _TM_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a time (HHMMSS.FFFFFF)")
    hh, mm, ss, frac = match.groups()
    if int(hh) > 23 or (mm and int(mm) > 59) or (ss and int(ss) > 60):
        raise ValueError(f"{text!r} is not a time of day")
    low = f"{hh}{mm or '00'}{ss or '00'}.{(frac or '').ljust(6, '0')}"
    high = f"{hh}{mm or '59'}{ss or '59'}.{(frac or '').ljust(6, '9')}"
    return low, high


def datetime_bounds(text: str) -> tuple[str, str]:
    """The first and last instant a DT value covers, as YYYYMMDDHHMMSS.FFFFFF (offset dropped).

    Raises ValueError for anything that is not a date-time.
    """
    value, offset = text, ""
    for sign in "+-":
        if sign in text[4:]:
            cut = text.index(sign, 4)
            value, offset = text[:cut], text[cut:]
    match = _DT_RE.fullmatch(value)
    if match is None or (offset and _OFFSET_RE.fullmatch(offset) is None):
        raise ValueError(f"{text!r} is not a date-time (YYYYMMDDHHMMSS.FFFFFF&ZZXX)")
    year, month, day, hh, mm, ss, frac = match.groups()
    try:
        date(int(year), int(month or 1), int(day or 1))
        if hh is not None:
            time_bounds(hh + (mm or "") + (ss or ""))
    except ValueError:
        raise ValueError(f"{text!r} is not a calendar date-time") from None
    last_day = str(calendar.monthrange(int(year), int(month))[1]) if month else "31"
    low = f"{year}{month or '01'}{day or '01'}{hh or '00'}{mm or '00'}{ss or '00'}"
    high = f"{year}{month or '12'}{day or last_day}{hh or '23'}{mm or '59'}{ss or '59'}"
    return f"{low}.{(frac or '').ljust(6, '0')}", f"{high}.{(frac or '').ljust(6, '9')}"


def date_key(stored: str) -> str:
    """A stored DA as YYYYMMDD for range matching ('' when absent or unreadable).

    The ACR-NEMA form YYYY.MM.DD, which old modalities still send, is read too.
    """
    try:
        return parse_date(stored.strip().replace(".", ""))
    except ValueError:
        return ""


def time_span(stored: str) -> tuple[str, str]:
    """The first and last instant a stored TM covers, as HHMMSS.FFFFFF ('1015' is 10:15:00 to
    10:15:59.999999); ('', '') when absent or unreadable. The ACR-NEMA form HH:MM:SS is read."""
    try:
        return time_bounds(stored.strip().replace(":", ""))
    except ValueError:
        return "", ""


def datetime_span(stored_date: str, stored_time: str) -> tuple[str, str]:
    """The first and last instant a stored Study Date and Time cover, as
    YYYYMMDDHHMMSS.FFFFFF, for range matching (PS3.4 C.2.2.2.5); a missing or unreadable time
    covers the whole day, a missing date gives ('', '')."""
    day = date_key(stored_date)
    if not day:
        return "", ""
    start, end = time_span(stored_time)
    return day + (start or "000000.000000"), day + (end or "235959.999999")


# -- person names (PS3.5 6.2.1, VR PN) --------------------------------------------------------


def name_key(name: str) -> str:
    """How a person name is compared: its alphabetic component group, in Unicode NFC, lower
    case, without the empty trailing components ('ØDEGÅRD^ÅSE^^^' -> 'ødegård^åse').

    Case is not significant in PN matching, accents are (PS3.4 C.2.2.2.1 allows both). NFC
    makes a decomposed 'ø' equal to a composed one; lower() (not casefold()) keeps every
    letter one character, so 'GRO?' still finds 'GROß'.
    """
    alphabetic = unicodedata.normalize("NFC", name.split("=", 1)[0])
    components = [part.strip() for part in alphabetic.split("^")]
    while components and not components[-1]:
        components.pop()
    return "^".join(components).lower()


def utcnow() -> datetime:
    """Now in UTC, without tzinfo: how the index keeps times."""
    return datetime.now(UTC).replace(tzinfo=None)
