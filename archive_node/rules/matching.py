"""The stored forms C-FIND matches against (PS3.4 C.2.2.2): the instants a date, time or
date-time covers (range matching, C.2.2.2.5) and how person names compare (C.2.2.2.1)."""

from __future__ import annotations

import calendar
import re
import unicodedata
from datetime import date

from ..dicom.values import parse_date

# -- dates and times (PS3.5 6.2, VR DA, TM and DT) ------------------------------------------------

# [0-9], not \d: \d also takes other scripts' digits, which no DA, TM or DT may hold.
_TM_RE = re.compile(r"([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.([0-9]{1,6}))?)?)?")
_DT_RE = re.compile(
    r"([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.([0-9]{1,6}))?)?)?)?)?)?"
)
_OFFSET_RE = re.compile(r"[+-]([0-9]{2})([0-9]{2})")


def time_bounds(text: str) -> tuple[str, str]:
    """The first and last instant a TM value covers, each as HHMMSS.FFFFFF.

    '1015' covers 10:15:00.000000 to 10:15:59.999999 (PS3.5 6.2: trailing components may be
    omitted). Raises ValueError for anything that is not a time of day.
    """
    match = _TM_RE.fullmatch(text)
    if match is None:
        raise ValueError("not a time (HHMMSS.FFFFFF)")
    hh, mm, ss, frac = match.groups()
    if int(hh) > 23 or (mm and int(mm) > 59) or (ss and int(ss) > 60):
        raise ValueError("not a time of day")
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
        raise ValueError("not a date-time (YYYYMMDDHHMMSS.FFFFFF&ZZXX)")
    year, month, day, hh, mm, ss, frac = match.groups()
    try:
        date(int(year), int(month or 1), int(day or 1))
        if hh is not None:
            time_bounds(hh + (mm or "") + (ss or ""))
    except ValueError:
        raise ValueError("not a calendar date-time") from None
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
    """How a person name is compared: each component group (PS3.5 6.2.1: alphabetic,
    ideographic, phonetic, separated by '=') in Unicode NFC, lower case, without its empty
    trailing components. A name with only an alphabetic group is that group's key
    ('ØDEGÅRD^ÅSE^^^' -> 'ødegård^åse'); one with another group is all three, always with
    both '=' ('Yamada^Tarou=山田^太郎' -> 'yamada^tarou=山田^太郎='), so that a pattern with
    two '=' matches each group in its place (find_sql).

    Case is not significant in PN matching, accents are (PS3.4 C.2.2.2.1 allows both). NFC
    makes a decomposed 'ø' equal to a composed one; lower() (not casefold()) keeps every
    letter one character, so 'GRO?' still finds 'GROß'.
    """
    alphabetic, ideographic, phonetic = name_groups(name)
    if not ideographic and not phonetic:
        return alphabetic
    return f"{alphabetic}={ideographic}={phonetic}"


def name_groups(name: str) -> tuple[str, str, str]:
    """The three component groups of a person name, each as group_key() ('' when absent);
    groups after the third, which PS3.5 does not define, are ignored."""
    alphabetic, ideographic, phonetic = [*name.split("="), "", ""][:3]
    return group_key(alphabetic), group_key(ideographic), group_key(phonetic)


def group_key(group: str) -> str:
    """One component group as it is compared: NFC, lower case, components stripped, empty
    trailing components dropped ('DOE^JOHN^^' -> 'doe^john')."""
    components = [part.strip() for part in unicodedata.normalize("NFC", group).split("^")]
    while components and not components[-1]:
        components.pop()
    return "^".join(components).lower()
