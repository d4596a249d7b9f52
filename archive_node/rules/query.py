"""C-FIND identifiers to validated queries: models, levels, unique keys and the matching rules of
PS3.4 C.2.2.2 and C.4.1 (no database here)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from ..dicom import status
from ..dicom.values import MAX_LENGTH, is_valid_uid, parse_date
from ..errors import Refused
from .matching import datetime_bounds, group_key, name_groups, time_bounds

# PS3.4 C.6: the Query/Retrieve information models and their levels, top down.
PATIENT_ROOT = "PATIENT"
STUDY_ROOT = "STUDY"
MODEL_LEVELS: dict[str, tuple[str, ...]] = {
    PATIENT_ROOT: ("PATIENT", "STUDY", "SERIES", "IMAGE"),
    STUDY_ROOT: ("STUDY", "SERIES", "IMAGE"),
}
# PS3.4 C.6.1.1 / C.6.2.1: the unique key of each level.
UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
# PS3.4 C.6.1.3 / C.6.2.3: the SOP classes of each model and service.
FIND_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.2.1.1": PATIENT_ROOT,  # Patient Root Query/Retrieve - FIND
    "1.2.840.10008.5.1.4.1.2.2.1": STUDY_ROOT,  # Study Root Query/Retrieve - FIND
}
MOVE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.2.1.2": PATIENT_ROOT,  # Patient Root Query/Retrieve - MOVE
    "1.2.840.10008.5.1.4.1.2.2.2": STUDY_ROOT,  # Study Root Query/Retrieve - MOVE
}
GET_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.2.1.3": PATIENT_ROOT,  # Patient Root Query/Retrieve - GET
    "1.2.840.10008.5.1.4.1.2.2.3": STUDY_ROOT,  # Study Root Query/Retrieve - GET
}
_INTEGER_RE = re.compile(r"[+-]?[0-9]{1,12}")  # PS3.5 6.2 IS: an optional sign, then digits
_RANK = {"PATIENT": 0, "STUDY": 1, "SERIES": 2, "IMAGE": 3}


@dataclass(frozen=True)
class Key:
    """An attribute the index knows: its level, VR, and how it may be matched."""

    keyword: str
    level: str
    vr: str
    computed: bool = False  # derived from the levels below (counts, lists): returned only
    multiple: bool = False  # a backslash list means "any of" (UI lists, ModalitiesInStudy)


KEYS: dict[str, Key] = {
    key.keyword: key
    for key in (
        Key("PatientID", "PATIENT", "LO"),
        Key("IssuerOfPatientID", "PATIENT", "LO"),
        Key("PatientName", "PATIENT", "PN"),
        Key("PatientBirthDate", "PATIENT", "DA"),
        Key("PatientSex", "PATIENT", "CS"),
        Key("NumberOfPatientRelatedStudies", "PATIENT", "IS", computed=True),
        Key("NumberOfPatientRelatedSeries", "PATIENT", "IS", computed=True),
        Key("NumberOfPatientRelatedInstances", "PATIENT", "IS", computed=True),
        Key("StudyInstanceUID", "STUDY", "UI", multiple=True),
        Key("StudyDate", "STUDY", "DA"),
        Key("StudyTime", "STUDY", "TM"),
        Key("AccessionNumber", "STUDY", "SH"),
        Key("StudyID", "STUDY", "SH"),
        Key("StudyDescription", "STUDY", "LO"),
        Key("ReferringPhysicianName", "STUDY", "PN"),
        Key("ModalitiesInStudy", "STUDY", "CS", multiple=True),
        Key("SOPClassesInStudy", "STUDY", "UI", multiple=True),
        Key("NumberOfStudyRelatedSeries", "STUDY", "IS", computed=True),
        Key("NumberOfStudyRelatedInstances", "STUDY", "IS", computed=True),
        Key("SeriesInstanceUID", "SERIES", "UI", multiple=True),
        Key("Modality", "SERIES", "CS"),
        Key("SeriesNumber", "SERIES", "IS"),
        Key("SeriesDescription", "SERIES", "LO"),
        Key("BodyPartExamined", "SERIES", "CS"),
        Key("NumberOfSeriesRelatedInstances", "SERIES", "IS", computed=True),
        Key("SOPInstanceUID", "IMAGE", "UI", multiple=True),
        Key("SOPClassUID", "IMAGE", "UI", multiple=True),
        Key("InstanceNumber", "IMAGE", "IS"),
        Key("NumberOfFrames", "IMAGE", "IS"),
        Key("AvailableTransferSyntaxUID", "IMAGE", "UI", computed=True),
    )
}
# Set by the node in every response (PS3.4 C.4.1.1.3.2 and C.6.1.1.x), not echoed from requests.
ANSWERED_BY_NODE = frozenset(
    {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "InstanceAvailability"}
)
# VRs on which * and ? are wildcards (PS3.4 C.2.2.2.4); elsewhere they are malformed values.
_WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})


class InvalidQuery(Refused):
    """A Query/Retrieve identifier that cannot be answered (its status is 0xA900 or 0xC000,
    or a retrieve's 0xA701)."""


def _malformed(keyword: str, message: str) -> InvalidQuery:
    """0xC000 (Unable to process): a value in the identifier that cannot be matched.

    The message goes to the peer as the Error Comment and to the log: it names the keyword and
    what is wrong, never the value (any key's value may be patient data)."""
    return InvalidQuery(status.UNABLE_TO_PROCESS, message, keyword)


def _undecodable(keyword: str, exc: Exception) -> InvalidQuery:
    """A value pydicom cannot read: its exception quotes the value, so only its type is kept."""
    return _malformed(keyword, f"{keyword}: cannot be decoded ({type(exc).__name__})")


@dataclass(frozen=True)
class Condition:
    """One key that restricts the matches (universal matching makes no condition).

    kind: 'single' (one value, exact), 'list' (any of the values), 'wildcard' (one pattern of
    * and ?), 'range' ((low, high), either may be '' for an open end), or, for PN, 'groups'
    (a pattern per component group, '' for any). PN values are matching.group_key()s (see
    _name_condition); TM and DT ranges are bounds normalised by time_bounds/datetime_bounds.
    """

    keyword: str
    kind: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Query:
    """A validated C-FIND request: what to match at which level, and what to return."""

    model: str
    level: str
    conditions: tuple[Condition, ...]
    requested: tuple[str, ...]  # keywords to answer, in the request's order
    character_set: tuple[str, ...] = ()  # the request's Specific Character Set
    # StudyDate and StudyTime combined into one date-time range (PS3.4 C.2.2.2.5.1)
    study_datetime: tuple[str, str] | None = None
    # requested keys the index does not hold: read from the file at IMAGE level, else empty
    unknown: tuple[str, ...] = ()
    # for requested sequences: the keys their first item names (none: the whole items)
    sequence_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # a relational query (PS3.4 C.4.1.2.2): some level above is not fixed by one unique key
    relational: bool = False

    def condition(self, keyword: str) -> Condition | None:
        return next((c for c in self.conditions if c.keyword == keyword), None)


def level_rank(level: str) -> int:
    return _RANK[level]


def key_level(keyword: str, model: str) -> str | None:
    """The level a known key belongs to in this model; in Study Root the patient's attributes
    are part of the STUDY level (PS3.4 C.6.2.1)."""
    key = KEYS.get(keyword)
    if key is None:
        return None
    if model == STUDY_ROOT and key.level == "PATIENT":
        return "STUDY"
    return key.level


def parse_query(identifier: Dataset, model: str) -> Query:
    """Validate a C-FIND identifier against the model's levels and the matching rules.

    A level above the query level that is not fixed by one value of its unique key makes the
    query relational (PS3.4 C.4.1.2.2, C.4.1.3.2): it is answered whether or not the SCU
    negotiated relational-queries, as Orthanc and DCMTK expect, and its answers carry the
    unique keys of every level above (C.4.1.3.1.1) so that the SCU can retrieve what it found.

    Raises InvalidQuery with 0xA900 when the identifier does not fit the model (no or unknown
    Query/Retrieve Level) and 0xC000 when a value is malformed (a date that is no date, a UID
    with letters, a wildcard where none is allowed, an attribute with the wrong VR).
    """
    levels = MODEL_LEVELS[model]
    level = _level(identifier, levels)
    character_set = _character_set(identifier)
    conditions: list[Condition] = []
    requested: list[str] = []
    unknown: list[str] = []
    sequence_keys: dict[str, tuple[str, ...]] = {}
    values: dict[str, str] = {}
    for tag in list(identifier.keys()):
        keyword = keyword_for_tag(tag)
        if tag.group in (0x0000, 0x0002) or tag.is_private or not keyword:
            continue
        try:
            element = identifier[tag]
        except Exception as exc:  # pydicom converts raw values on access: 'abc' as an IS
            raise _undecodable(keyword, exc) from None
        if keyword in ANSWERED_BY_NODE:
            continue
        _check_vr(element)
        own_level = key_level(keyword, model)
        if own_level is None or element.VR == "SQ":  # sequence matching is not offered
            unknown.append(keyword)
            if element.VR == "SQ":
                sequence_keys[keyword] = _item_keys(element)
            continue
        if level_rank(own_level) > level_rank(level):
            continue  # a key below the query level is not part of this query (C.4.1.1.3)
        requested.append(keyword)
        key = KEYS[keyword]
        if key.computed:
            continue  # counts and lists the node computes: returned, not matched
        text = _value_text(element, key)
        values[keyword] = text
        condition = _condition(key, text)
        if condition is not None:
            conditions.append(condition)

    relational = not _hierarchical(model, level, values)
    for upper in MODEL_LEVELS[model][: levels.index(level) + 1]:
        unique = UNIQUE_KEYS[upper]
        if unique not in requested:
            requested.append(unique)  # the unique keys of the level and those above
    study_datetime = _combined_study_datetime(values, conditions)
    if study_datetime is not None:
        conditions = [c for c in conditions if c.keyword not in ("StudyDate", "StudyTime")]
    for condition in conditions:
        low, high = (*condition.values, "", "")[:2]
        if condition.kind == "range" and low and high and low > high:
            raise _malformed(
                condition.keyword, f"{condition.keyword}: the range ends before it starts"
            )
    if (
        study_datetime is not None
        and all(study_datetime)
        and study_datetime[0] > study_datetime[1]
    ):
        raise _malformed(
            "StudyDate", "StudyDate and StudyTime: the combined range ends before it starts"
        )
    return Query(
        model=model,
        level=level,
        conditions=tuple(conditions),
        requested=tuple(requested),
        character_set=character_set,
        study_datetime=study_datetime,
        unknown=tuple(unknown),
        sequence_keys=sequence_keys,
        relational=relational,
    )


def _item_keys(element: Any) -> tuple[str, ...]:
    """The keywords a requested sequence's first item names (PS3.4 C.2.2.2.6); none when it
    has no item, or one that cannot be read: then its items are answered whole."""
    try:
        items = element.value
        return tuple(e.keyword for e in items[0] if e.keyword) if items else ()
    except Exception:
        return ()


def _level(identifier: Dataset, levels: tuple[str, ...]) -> str:
    try:
        raw = identifier.get("QueryRetrieveLevel")
    except Exception:
        raw = None
    level = str(raw or "").strip().upper()
    if not level:
        raise InvalidQuery(
            status.IDENTIFIER_MISMATCH, "QueryRetrieveLevel is missing", "QueryRetrieveLevel"
        )
    if level not in levels:
        raise InvalidQuery(
            status.IDENTIFIER_MISMATCH,
            f"QueryRetrieveLevel: not one of {', '.join(levels)}",
            "QueryRetrieveLevel",
        )
    return level


def _character_set(identifier: Dataset) -> tuple[str, ...]:
    try:
        raw = identifier.get("SpecificCharacterSet")
    except Exception:
        return ()
    if not raw:
        return ()
    values = raw if isinstance(raw, MultiValue | list) else [raw]
    return tuple(str(v).strip() for v in values)


def _check_vr(element: Any) -> None:
    """An explicit VR that contradicts the data dictionary is a malformed identifier."""
    try:
        expected = dictionary_VR(element.tag)
    except KeyError:
        return
    # UN: an SCU that does not know the attribute; the value is read as the dictionary says
    if element.VR in (*expected.split(" or "), "UN"):
        return
    raise _malformed(
        element.keyword, f"{element.keyword} has VR {element.VR}, the standard's is {expected}"
    )


def _value_text(element: Any, key: Key) -> str:
    """The value as the request's text ('' for universal matching)."""
    try:
        value = element.value
    except Exception as exc:
        raise _undecodable(key.keyword, exc) from None
    if value is None or isinstance(value, Sequence):
        return ""
    if isinstance(value, MultiValue | list | tuple):  # _condition refuses lists where not allowed
        return "\\".join(str(v).strip() for v in value)
    if isinstance(value, bytes):
        try:
            return value.decode("ascii").strip(" \x00")
        except UnicodeDecodeError:
            raise _malformed(key.keyword, f"{key.keyword} is not text") from None
    return str(value).strip()


def _condition(key: Key, text: str) -> Condition | None:
    """Apply PS3.4 C.2.2.2 to one key's value; None for universal matching."""
    keyword, vr = key.keyword, key.vr
    _check_text(key, text)
    if text == "" or text == "*":
        return None  # C.2.2.2.3 Universal Matching (a lone * is universal too, C.2.2.2.4)
    if "\\" in text:
        if not key.multiple:
            raise _malformed(keyword, f"{keyword} takes one value, not a list")
        items = tuple(item.strip() for item in text.split("\\"))
        for item in items:
            _check_single(key, item)
        return Condition(keyword, "list", tuple(dict.fromkeys(items)))  # C.2.2.2.2
    wildcard = "*" in text or "?" in text
    if wildcard and vr not in _WILDCARD_VRS:
        raise _malformed(keyword, f"{keyword}: no wildcards in a {vr} value")
    if vr in ("DA", "TM", "DT"):
        return _date_time_condition(key, text)
    if vr == "PN":
        return _name_condition(keyword, text)
    if wildcard:
        return Condition(keyword, "wildcard", (text,))  # C.2.2.2.4
    _check_single(key, text)
    return Condition(keyword, "single", (text,))  # C.2.2.2.1


def key_condition(key: Key, element: Any) -> Condition | None:
    """One matching key of an identifier (an element of it, or of a sequence item in it) as a
    Condition by PS3.4 C.2.2.2; None for universal matching. For other information models
    than Query/Retrieve (the Modality Worklist, PS3.4 K.6), with their own keys. Raises
    InvalidQuery (0xC000) naming the key."""
    _check_vr(element)
    return _condition(key, _value_text(element, key))


def _name_condition(keyword: str, text: str) -> Condition | None:
    """Person name matching (PS3.4 C.2.2.2.1, C.2.2.2.4) on every component group a value
    gives (PS3.5 6.2.1); None when it has nothing to match (universal).

    A value without '=' is one group, matched against each of a name's groups: 'HANSEN^OLA'
    finds the alphabetic group, '*山田*' the ideographic one of 'Yamada^Tarou=山田^太郎' (kind
    'single' or 'wildcard', values as name_patterns). A value with '=' gives each group its
    place: '=山田*' matches ideographic groups only, 'Yamada^Tarou=山田^太郎' both groups; an
    empty or '*' group matches anything (kind 'groups', values: the three group_key()s, ''
    for any).
    """
    if "=" not in text:
        key = group_key(text)
        if not key:
            return None
        if "*" in key or "?" in key:
            return Condition(keyword, "wildcard", name_patterns(key))
        return Condition(keyword, "single", (key,))
    groups = tuple(group if group.strip("*") else "" for group in name_groups(text))
    if not any(groups):
        return None
    return Condition(keyword, "groups", groups)


def name_patterns(key: str) -> tuple[str, ...]:
    """A PN group's wildcard (a group_key) as patterns, any of which may match: stored keys
    lose their empty trailing components, so a trailing component that matches nothing ('*',
    '**') may be absent: 'HANSEN^*' must also find a stored 'HANSEN'. Each pattern after the
    first stands for names of exactly its number of components (a * in it must not swallow a
    ^ of a longer name: '*E*^ola' is not to find 'ÆRØ^Åse^ola' for '*E*^ola^*')."""
    components = key.split("^")
    patterns = ["^".join(components)]
    while len(components) > 1 and not components[-1].strip("*"):
        components.pop()
        patterns.append("^".join(components))
    return tuple(patterns)


# PS3.5 6.2: the longest value of each VR a matching key may have (PN: three groups of 64
# and the two '=' between them).
_MAX_LENGTH = {**MAX_LENGTH, "PN": 3 * MAX_LENGTH["PN"] + 2}


def _check_text(key: Key, text: str) -> None:
    """Refuse control characters and values longer than the VR allows, before any SQL sees
    them (a NUL or a 100 kB pattern is no query)."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise _malformed(key.keyword, f"{key.keyword} contains control characters")
    limit = _MAX_LENGTH.get(key.vr)
    longest = max((len(item) for item in text.split("\\")), default=0)
    if limit is not None and longest > limit:
        raise _malformed(
            key.keyword, f"{key.keyword} is longer than {limit} characters ({key.vr})"
        )


def _check_single(key: Key, text: str) -> None:
    keyword = key.keyword
    if not text:
        raise _malformed(keyword, f"{keyword} has an empty list item")
    if key.vr == "UI":
        if not is_valid_uid(text):
            raise _malformed(keyword, f"{keyword}: not a valid UID")
    elif key.vr == "IS":
        if _INTEGER_RE.fullmatch(text) is None or not -(2**31) <= int(text) < 2**31:
            raise _malformed(keyword, f"{keyword}: not an integer")
    elif "*" in text or "?" in text:
        raise _malformed(keyword, f"{keyword}: no wildcards in a list")


def _date_time_condition(key: Key, text: str) -> Condition:
    """C.2.2.2.5 Range Matching (a-b, -b, a-) and single values of DA, TM and DT."""
    keyword, vr = key.keyword, key.vr
    try:
        parts = _split_range(text, vr)
        if parts is None:
            low, high = _bounds(vr, text)
            if vr == "DA":
                return Condition(keyword, "single", (low,))
            return Condition(keyword, "range", (low, high))  # a partial TM/DT covers a span
        start, end = parts
        if not start and not end:
            raise ValueError("a range needs at least one end")
        low = _bounds(vr, start)[0] if start else ""
        high = _bounds(vr, end)[1] if end else ""
    except ValueError:
        raise _malformed(keyword, f"{keyword}: not a DICOM {_VR_NAMES[vr]} or range") from None
    # A backwards range is refused by parse_query, once it knows whether a time range is part
    # of a combined date-time range (22:00 one day to 06:00 the next is fine there).
    return Condition(keyword, "range", (low, high))


_VR_NAMES = {"DA": "date", "TM": "time", "DT": "date-time"}


def _split_range(text: str, vr: str) -> tuple[str, str] | None:
    """The two ends of a range, or None for a single value; raises ValueError."""
    if vr != "DT":
        if text.count("-") > 1:
            raise ValueError("more than one '-'")
        return tuple(text.split("-", 1)) if "-" in text else None  # type: ignore[return-value]
    # DT values may carry a -ZZXX offset: the range's '-' is the one after a complete value.
    for index, char in enumerate(text):
        if char == "-" and (index == 0 or _is_dt(text[:index])):
            rest = text[index + 1 :]
            if not rest or _is_dt(rest):
                return text[:index], rest
    return None


def _is_dt(text: str) -> bool:
    try:
        datetime_bounds(text)
    except ValueError:
        return False
    return True


def _bounds(vr: str, text: str) -> tuple[str, str]:
    if vr == "DA":
        day = parse_date(text)
        return day, day
    if vr == "TM":
        return time_bounds(text)
    return datetime_bounds(text)


def _combined_study_datetime(
    values: dict[str, str], conditions: list[Condition]
) -> tuple[str, str] | None:
    """StudyDate and StudyTime both ranges of the same form (a-b, a- or -b): one date-time
    range from the first date at the first time to the last date at the last time (PS3.4
    C.2.2.2.5.1, combined datetime matching). Otherwise each is matched on its own."""
    date_condition = next((c for c in conditions if c.keyword == "StudyDate"), None)
    time_condition = next((c for c in conditions if c.keyword == "StudyTime"), None)
    if date_condition is None or time_condition is None:
        return None
    date_form, time_form = _range_form(values["StudyDate"]), _range_form(values["StudyTime"])
    if date_form is None or date_form != time_form:
        return None
    date_low, date_high = date_condition.values
    time_low, time_high = time_condition.values
    low = f"{date_low}{time_low}" if date_low else ""
    high = f"{date_high}{time_high}" if date_high else ""
    return low, high


def _range_form(text: str) -> tuple[bool, bool] | None:
    """Which ends a DA or TM range gives ((low, high)), or None for a single value."""
    if "-" not in text:
        return None
    start, end = text.split("-", 1)
    return bool(start), bool(end)


def _hierarchical(model: str, level: str, values: dict[str, str]) -> bool:
    """Whether every level above the query level is fixed by a single value of its unique key
    (PS3.4 C.4.1.2.1 hierarchical search); otherwise the query is relational."""
    levels = MODEL_LEVELS[model]
    for upper in levels[: levels.index(level)]:
        text = values.get(UNIQUE_KEYS[upper], "")
        if not text or "*" in text or "?" in text or "\\" in text:
            return False
    return True


def _check_hierarchy(model: str, level: str, values: dict[str, str]) -> None:
    """PS3.4 C.4.1.2.1 hierarchical search: every level above the query level is fixed by a
    single value of its unique key."""
    for upper in MODEL_LEVELS[model]:
        if upper == level:
            return
        keyword = UNIQUE_KEYS[upper]
        text = values.get(keyword, "")
        if not text or "*" in text or "?" in text or "\\" in text:
            raise InvalidQuery(
                status.IDENTIFIER_MISMATCH,
                f"{keyword} must have one value in a {level} level query",
                keyword,
            )


def parse_retrieve(identifier: Dataset, model: str) -> Query:
    """Validate a C-MOVE or C-GET identifier: what to retrieve is named by unique keys only
    (PS3.4 C.4.2.1.4.1 and C.4.3.1.3.1, hierarchical retrieval C.4.2.2.1).

    The level's unique key must hold one value or, for UIDs, a list (C.2.2.2.2); every level
    above it one value of its unique key. IssuerOfPatientID may qualify PatientID. Other keys
    are not matched. The Query returned has no requested keys and conditions on those keys.

    A Study Root retrieve at PATIENT level (which Orthanc sends for a whole patient, though
    the model has no such level) is read as a Patient Root one: the patient's studies, named
    by PatientID (and IssuerOfPatientID).

    Raises InvalidQuery with 0xA900 for a missing or unknown level, a missing, universal or
    wildcard unique key, a list above the level; 0xC000 for a malformed value (a UID with
    letters, a list of PatientIDs).
    """
    level = _level(identifier, MODEL_LEVELS[PATIENT_ROOT])
    levels = MODEL_LEVELS[PATIENT_ROOT if level == "PATIENT" else model]
    unique_keys = [UNIQUE_KEYS[upper] for upper in levels[: levels.index(level) + 1]]
    keywords = unique_keys + (["IssuerOfPatientID"] if "PatientID" in unique_keys else [])
    values: dict[str, str] = {}
    for keyword in keywords:
        if keyword not in identifier:
            continue
        try:
            element = identifier[keyword]
        except Exception as exc:
            raise _undecodable(keyword, exc) from None
        _check_vr(element)
        values[keyword] = _value_text(element, KEYS[keyword])
    for keyword, text in values.items():
        if text != "*" and ("*" in text or "?" in text):
            raise InvalidQuery(
                status.IDENTIFIER_MISMATCH,
                f"{keyword} must name what to retrieve, not a pattern",
                keyword,
            )
    unique = UNIQUE_KEYS[level]
    if values.get(unique, "") in ("", "*"):
        raise InvalidQuery(
            status.IDENTIFIER_MISMATCH,
            f"{unique} is required to retrieve at {level} level",
            unique,
        )
    _check_hierarchy(PATIENT_ROOT if level == "PATIENT" else model, level, values)
    conditions = [_condition(KEYS[keyword], text) for keyword, text in values.items()]
    return Query(
        model=model,
        level=level,
        conditions=tuple(c for c in conditions if c is not None),
        requested=(),
    )


# PS3.4 C.5.1.1: the C-FIND service-class-application-information bytes, in order, and
# whether the node performs each: relational-queries (yes, negotiated or not), combined
# date-time matching (yes, C.2.2.2.5.1), fuzzy semantic matching of person names, timezone
# query adjustment, Enhanced Multi-Frame Image Conversion (no).
_FIND_OPTIONS = (True, True, False, False, False)


def extended_negotiation_answer(offered: dict[str, bytes]) -> dict[str, bytes]:
    """The SOP Class Extended Negotiation items to answer (PS3.7 D.3.3.5), by SOP class: for
    each Query/Retrieve FIND class offered, each sub-field the node performs is accepted (the
    offered 1 returned), every other one turned down (0); as many bytes as were offered, at
    most the five the standard defines (C.5.1.1.2). Other classes (retrieve, storage) are not
    answered: relational retrieval is not offered (C.5.2.1, C.5.3.1), which no answer says."""
    answer: dict[str, bytes] = {}
    for sop_class, info in offered.items():
        uid = str(sop_class).strip("\0 ")
        if uid not in FIND_SOP_CLASSES or not info:
            continue
        fields = bytes(info)[: len(_FIND_OPTIONS)]
        answer[uid] = bytes(
            1 if value == 1 and performed else 0
            for value, performed in zip(fields, _FIND_OPTIONS, strict=False)
        )
    return answer
