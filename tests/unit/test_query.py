"""C-FIND identifier to query translation (PS3.4 C.2.2.2 matching, C.4.1 levels) as tables."""

from __future__ import annotations

from fnmatch import fnmatchcase
from io import BytesIO

import pytest
from pydicom import config
from pydicom.dataset import Dataset
from pynetdicom.dsutils import decode, encode

from archive_node.dicom import status
from archive_node.dicom.charsets import choose_character_set
from archive_node.rules.matching import (
    date_key,
    datetime_bounds,
    datetime_span,
    name_key,
    time_bounds,
    time_span,
)
from archive_node.rules.query import (
    PATIENT_ROOT,
    STUDY_ROOT,
    Condition,
    InvalidQuery,
    Query,
    extended_negotiation_answer,
    key_level,
    parse_query,
)
from tests.helpers.identifiers import identifier

UNABLE = 0xC000  # PS3.4 C.4.1.1.4 Failure: Unable to process (a malformed value)
MISMATCH = 0xA900  # PS3.4 C.4.1.1.4 Failure: Identifier does not match SOP Class

# The single unique key values each level needs above it (PS3.4 C.4.1.2.1), per model.
ABOVE: dict[tuple[str, str], dict[str, str]] = {
    (STUDY_ROOT, "STUDY"): {},
    (STUDY_ROOT, "SERIES"): {"StudyInstanceUID": "1.2.3"},
    (STUDY_ROOT, "IMAGE"): {"StudyInstanceUID": "1.2.3", "SeriesInstanceUID": "1.2.3.4"},
    (PATIENT_ROOT, "PATIENT"): {},
    (PATIENT_ROOT, "STUDY"): {"PatientID": "P1"},
    (PATIENT_ROOT, "SERIES"): {"PatientID": "P1", "StudyInstanceUID": "1.2.3"},
    (PATIENT_ROOT, "IMAGE"): {
        "PatientID": "P1",
        "StudyInstanceUID": "1.2.3",
        "SeriesInstanceUID": "1.2.3.4",
    },
}


def find(level: str, model: str = STUDY_ROOT, **keys: object) -> Query:
    """parse_query of an identifier at `level` that also fixes the levels above it."""
    return parse_query(identifier(level, **{**ABOVE[(model, level)], **keys}), model)


def refusal(level: str, model: str = STUDY_ROOT, **keys: object) -> InvalidQuery:
    with pytest.raises(InvalidQuery) as caught:
        find(level, model, **keys)
    return caught.value


def test_status_codes_are_the_standards():
    assert (status.UNABLE_TO_PROCESS, status.IDENTIFIER_MISMATCH) == (UNABLE, MISMATCH)


# -- C.2.2.2.1 single value matching, per VR ----------------------------------------------------


@pytest.mark.parametrize(
    ("level", "keyword", "value", "expected"),
    [
        pytest.param("STUDY", "PatientID", "PAT-001", "PAT-001", id="LO"),
        pytest.param("STUDY", "StudyDescription", " CT Thorax ", "CT Thorax", id="LO-padding"),
        pytest.param("STUDY", "AccessionNumber", "ACC123", "ACC123", id="SH"),
        pytest.param("STUDY", "StudyID", "A%_1", "A%_1", id="SH-percent-underscore-plain"),
        pytest.param("STUDY", "PatientSex", "F", "F", id="CS"),
        pytest.param("SERIES", "Modality", "CT", "CT", id="CS-series"),
        pytest.param("STUDY", "ModalitiesInStudy", "MR", "MR", id="CS-one-of-a-list-key"),
        pytest.param("STUDY", "PatientName", "ØDEGÅRD^ÅSE^^", "ødegård^åse", id="PN-casefold"),
        pytest.param("STUDY", "PatientName", "Doe^John", "doe^john", id="PN-mixed-case"),
        pytest.param("STUDY", "StudyInstanceUID", "1.2.840.10008.1", "1.2.840.10008.1", id="UI"),
        pytest.param(
            "IMAGE",
            "SOPClassUID",
            "1.2.840.10008.5.1.4.1.1.2",
            "1.2.840.10008.5.1.4.1.1.2",
            id="UI-image",
        ),
        pytest.param("SERIES", "SeriesNumber", "3", "3", id="IS"),
        pytest.param("IMAGE", "InstanceNumber", "-1", "-1", id="IS-signed"),
        pytest.param("STUDY", "StudyDate", "20200102", "20200102", id="DA"),
        pytest.param("STUDY", "PatientBirthDate", "19700101", "19700101", id="DA-birth"),
    ],
)
def test_single_value_matching(level, keyword, value, expected):
    query = find(level, **{keyword: value})
    assert query.condition(keyword) == Condition(keyword, "single", (expected,))
    assert keyword in query.requested


@pytest.mark.parametrize(
    ("value", "span"),
    [
        pytest.param("10", ("100000.000000", "105959.999999"), id="hour"),
        pytest.param("1015", ("101500.000000", "101559.999999"), id="minute"),
        pytest.param("101530", ("101530.000000", "101530.999999"), id="second"),
        pytest.param("101530.25", ("101530.250000", "101530.259999"), id="fraction"),
        pytest.param("101530.123456", ("101530.123456", "101530.123456"), id="microsecond"),
    ],
)
def test_single_time_is_the_span_it_covers(value, span):
    query = find("STUDY", StudyTime=value)
    assert query.condition("StudyTime") == Condition("StudyTime", "range", span)


# -- C.2.2.2.3 universal matching -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "*", "  "], ids=["empty", "lone-star", "spaces"])
@pytest.mark.parametrize(
    ("level", "keyword"),
    [
        pytest.param("STUDY", "PatientID", id="LO"),
        pytest.param("STUDY", "AccessionNumber", id="SH"),
        pytest.param("STUDY", "PatientSex", id="CS"),
        pytest.param("STUDY", "PatientName", id="PN"),
        pytest.param("STUDY", "StudyInstanceUID", id="UI"),
        pytest.param("SERIES", "SeriesNumber", id="IS"),
        pytest.param("STUDY", "StudyDate", id="DA"),
        pytest.param("STUDY", "StudyTime", id="TM"),
        pytest.param("STUDY", "ModalitiesInStudy", id="CS-list-key"),
    ],
)
def test_universal_matching_requests_without_condition(level, keyword, value):
    query = find(level, **{keyword: value})
    assert query.condition(keyword) is None
    assert keyword in query.requested


@pytest.mark.parametrize(
    ("model", "level"),
    [
        pytest.param(STUDY_ROOT, "STUDY", id="study-root"),
        pytest.param(PATIENT_ROOT, "PATIENT", id="patient-root"),
    ],
)
def test_absent_keys_are_neither_matched_nor_requested(model, level):
    query = parse_query(identifier(level), model)
    assert query.conditions == ()
    assert query.requested == ({"STUDY": "StudyInstanceUID", "PATIENT": "PatientID"}[level],)
    assert query.study_datetime is None


# -- C.2.2.2.4 wild card matching -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "keyword", "value", "pattern"),
    [
        pytest.param("STUDY", "PatientID", "PAT*", "PAT*", id="LO-star"),
        pytest.param("STUDY", "StudyDescription", "*THORAX*", "*THORAX*", id="LO-stars"),
        pytest.param("STUDY", "AccessionNumber", "ACC?23", "ACC?23", id="SH-question"),
        pytest.param("STUDY", "StudyID", "4*", "4*", id="SH-star"),
        pytest.param("STUDY", "PatientSex", "?", "?", id="CS-lone-question"),
        pytest.param("SERIES", "Modality", "C?", "C?", id="CS-question"),
        pytest.param("STUDY", "ModalitiesInStudy", "M*", "M*", id="CS-list-key"),
        pytest.param("STUDY", "PatientName", "ødegård*", "ødegård*", id="PN-lower"),
        pytest.param("STUDY", "PatientName", "DOE^J*^^", "doe^j*", id="PN-casefold-trailing"),
        pytest.param("STUDY", "StudyDescription", "100%*", "100%*", id="percent-literal"),
        pytest.param("STUDY", "AccessionNumber", "A_B?", "A_B?", id="underscore-literal"),
        pytest.param("STUDY", "PatientName", "O_NEIL%*", "o_neil%*", id="PN-percent-underscore"),
    ],
)
def test_wildcard_matching(level, keyword, value, pattern):
    query = find(level, **{keyword: value})
    assert query.condition(keyword) == Condition(keyword, "wildcard", (pattern,))


@pytest.mark.parametrize(
    ("level", "keyword", "value"),
    [
        pytest.param("STUDY", "StudyInstanceUID", "1.2.*", id="UI-star"),
        pytest.param("IMAGE", "SOPClassUID", "1.2.840.?", id="UI-question"),
        pytest.param("STUDY", "SOPClassesInStudy", "1.2*", id="UI-list-key"),
        pytest.param("STUDY", "StudyDate", "2020*", id="DA-star"),
        pytest.param("STUDY", "PatientBirthDate", "197001??", id="DA-question"),
        pytest.param("STUDY", "StudyTime", "10*", id="TM-star"),
        pytest.param("STUDY", "StudyTime", "10?0", id="TM-question"),
        pytest.param("SERIES", "SeriesNumber", "1*", id="IS-star"),
        pytest.param("IMAGE", "InstanceNumber", "?", id="IS-lone-question"),
    ],
)
def test_wildcards_are_refused_where_the_vr_has_none(level, keyword, value):
    error = refusal(level, **{keyword: value})
    assert (error.status, error.keyword) == (UNABLE, keyword)


# -- C.2.2.2.2 list of UID matching, and lists elsewhere ----------------------------------------


@pytest.mark.parametrize(
    ("level", "keyword", "value", "items"),
    [
        pytest.param(
            "STUDY", "StudyInstanceUID", "1.2.3\\1.2.4", ("1.2.3", "1.2.4"), id="StudyInstanceUID"
        ),
        pytest.param(
            "STUDY",
            "StudyInstanceUID",
            "1.2.3\\1.2.4\\1.2.3",
            ("1.2.3", "1.2.4"),
            id="duplicates-once",
        ),
        pytest.param("SERIES", "SeriesInstanceUID", "1.5\\1.6", ("1.5", "1.6"), id="Series"),
        pytest.param("IMAGE", "SOPInstanceUID", "1.7\\1.8", ("1.7", "1.8"), id="SOPInstance"),
        pytest.param("IMAGE", "SOPClassUID", "1.2.1\\1.2.2", ("1.2.1", "1.2.2"), id="SOPClass"),
        pytest.param(
            "STUDY", "SOPClassesInStudy", "1.2.1\\1.2.2", ("1.2.1", "1.2.2"), id="SOPClassesIn"
        ),
        pytest.param("STUDY", "ModalitiesInStudy", "CT\\MR", ("CT", "MR"), id="ModalitiesIn"),
    ],
)
def test_list_matching(level, keyword, value, items):
    query = find(level, **{keyword: value})
    assert query.condition(keyword) == Condition(keyword, "list", items)


@pytest.mark.parametrize(
    ("level", "keyword", "value"),
    [
        pytest.param("STUDY", "PatientID", "P1\\P2", id="PatientID"),
        pytest.param("STUDY", "AccessionNumber", "A1\\A2", id="AccessionNumber"),
        pytest.param("STUDY", "PatientName", "DOE\\ROE", id="PatientName"),
        pytest.param("STUDY", "StudyDate", "20200101\\20200102", id="StudyDate"),
        pytest.param("SERIES", "Modality", "CT\\MR", id="Modality"),
        pytest.param("SERIES", "SeriesNumber", "1\\2", id="SeriesNumber"),
        pytest.param("STUDY", "ModalitiesInStudy", "CT\\M*", id="wildcard-in-a-list"),
        pytest.param("STUDY", "StudyInstanceUID", "1.2\\", id="empty-list-item"),
        pytest.param("STUDY", "StudyInstanceUID", "1.2\\1.x", id="bad-UID-in-a-list"),
    ],
)
def test_lists_refused(level, keyword, value):
    error = refusal(level, **{keyword: value})
    assert (error.status, error.keyword) == (UNABLE, keyword)


# -- C.2.2.2.5 range matching ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "value", "bounds"),
    [
        pytest.param("StudyDate", "20200101-20200131", ("20200101", "20200131"), id="DA-a-b"),
        pytest.param("StudyDate", "-20200131", ("", "20200131"), id="DA-to"),
        pytest.param("StudyDate", "20200101-", ("20200101", ""), id="DA-from"),
        pytest.param("StudyDate", "20200101-20200101", ("20200101", "20200101"), id="DA-one-day"),
        pytest.param(
            "PatientBirthDate", "19500101-19591231", ("19500101", "19591231"), id="DA-birth"
        ),
        pytest.param(
            "StudyTime", "1000-1200", ("100000.000000", "120059.999999"), id="TM-a-b-spans"
        ),
        pytest.param("StudyTime", "-1200", ("", "120059.999999"), id="TM-to"),
        pytest.param("StudyTime", "1000-", ("100000.000000", ""), id="TM-from"),
        pytest.param("StudyTime", "10-11", ("100000.000000", "115959.999999"), id="TM-hours"),
        pytest.param("StudyTime", "1015-10", ("101500.000000", "105959.999999"), id="TM-in-hour"),
        pytest.param(
            "StudyTime", "101530.5-101530.7", ("101530.500000", "101530.799999"), id="TM-fraction"
        ),
    ],
)
def test_range_matching(keyword, value, bounds):
    query = find("STUDY", **{keyword: value})
    assert query.condition(keyword) == Condition(keyword, "range", bounds)
    assert query.study_datetime is None


@pytest.mark.parametrize(
    ("date", "time", "combined"),
    [
        pytest.param(
            "20200101-20200105",
            "1000-1800",
            ("20200101100000.000000", "20200105180059.999999"),
            id="both-ranges",
        ),
        pytest.param(
            "20200101-20200102",
            "2200-0600",
            ("20200101220000.000000", "20200102060059.999999"),
            id="overnight",
        ),
        pytest.param("20200101-", "1000-", ("20200101100000.000000", ""), id="both-from"),
        pytest.param("-20200105", "-1200", ("", "20200105120059.999999"), id="both-to"),
    ],
)
def test_combined_study_date_and_time(date, time, combined):
    query = find("STUDY", StudyDate=date, StudyTime=time)
    assert query.study_datetime == combined
    assert query.condition("StudyDate") is None
    assert query.condition("StudyTime") is None
    assert {"StudyDate", "StudyTime"} <= set(query.requested)


@pytest.mark.parametrize(
    ("date", "time", "kept"),
    [
        pytest.param("20200101", "1015", {"StudyDate", "StudyTime"}, id="two-single-values"),
        pytest.param("20200101-20200105", "", {"StudyDate"}, id="time-universal"),
        pytest.param("20200101-20200105", "*", {"StudyDate"}, id="time-lone-star"),
        pytest.param("", "1000-1200", {"StudyTime"}, id="date-universal"),
        # C.2.2.2.5.1 combines only ranges of the same form; the others are matched apart
        pytest.param(
            "20200101", "1000-1200", {"StudyDate", "StudyTime"}, id="single-date-time-range"
        ),
        pytest.param(
            "20200101-20200105", "-1200", {"StudyDate", "StudyTime"}, id="bounded-and-to"
        ),
        pytest.param(
            "20200101-20200105", "1000-", {"StudyDate", "StudyTime"}, id="bounded-and-from"
        ),
        pytest.param(
            "20200101-20200105", "10", {"StudyDate", "StudyTime"}, id="date-range-single-time"
        ),
    ],
)
def test_date_and_time_matched_apart(date, time, kept):
    query = find("STUDY", StudyDate=date, StudyTime=time)
    assert query.study_datetime is None
    assert {c.keyword for c in query.conditions} == kept


# -- malformed values: 0xC000 naming the attribute ------------------------------------------------


@pytest.mark.parametrize(
    ("level", "keyword", "value"),
    [
        pytest.param("STUDY", "StudyDate", "2020-13-45", id="DA-dashes"),
        pytest.param("STUDY", "StudyDate", "abc-def", id="DA-letters-range"),
        pytest.param("STUDY", "StudyDate", "20201301", id="DA-month-13"),
        pytest.param("STUDY", "StudyDate", "20200230", id="DA-february-30"),
        pytest.param("STUDY", "StudyDate", "2020010", id="DA-seven-digits"),
        pytest.param("STUDY", "StudyDate", "20200105-20200101", id="DA-range-backwards"),
        pytest.param("STUDY", "StudyDate", "-", id="DA-dash-alone"),
        pytest.param("STUDY", "StudyDate", "20200101-20200102-", id="DA-two-dashes"),
        pytest.param("STUDY", "PatientBirthDate", "19701301-", id="DA-bad-range-end"),
        pytest.param("STUDY", "StudyTime", "2561", id="TM-hour-25"),
        pytest.param("STUDY", "StudyTime", "1060", id="TM-minute-60"),
        pytest.param("STUDY", "StudyTime", "abc", id="TM-letters"),
        pytest.param("STUDY", "StudyTime", "1200-1000", id="TM-range-backwards"),
        pytest.param("STUDY", "StudyTime", "-", id="TM-dash-alone"),
        pytest.param("STUDY", "StudyInstanceUID", "1.2.abc", id="UI-letters"),
        pytest.param("STUDY", "StudyInstanceUID", "1.2.3.", id="UI-trailing-dot"),
        pytest.param("STUDY", "StudyInstanceUID", "1." + "2" * 63, id="UI-65-chars"),
        pytest.param("SERIES", "SeriesNumber", "abc", id="IS-letters"),
        pytest.param("SERIES", "SeriesNumber", "1.5", id="IS-fraction"),
        pytest.param("SERIES", "SeriesNumber", "2147483648", id="IS-out-of-range"),
        pytest.param("STUDY", "StudyTime", "1200-1000", id="TM-backwards-alone"),
        pytest.param(
            "SERIES",
            "SeriesNumber",
            "+-5",
            id="IS-two-signs",
        ),
        pytest.param(
            "IMAGE",
            "InstanceNumber",
            "--5",
            id="IS-double-minus",
        ),
        pytest.param(
            "SERIES",
            "SeriesNumber",
            "²",
            id="IS-superscript-two",
        ),
    ],
)
def test_malformed_values_are_refused(level, keyword, value):
    error = refusal(level, **{keyword: value})
    assert (error.status, error.keyword) == (UNABLE, keyword)


def test_an_is_pydicom_refuses_to_build():
    ds = identifier("SERIES", StudyInstanceUID="1.2.3")
    ds.add_new(0x00200011, "IS", "1")
    ds[0x00200011]._value = "abc"
    with pytest.raises(InvalidQuery) as caught:
        parse_query(ds, STUDY_ROOT)
    assert (caught.value.status, caught.value.keyword) == (UNABLE, "SeriesNumber")


@pytest.mark.parametrize(
    ("tag", "vr", "value", "keyword"),
    [
        pytest.param(0x00080020, "LO", "20200101", "StudyDate", id="DA-as-LO"),
        pytest.param(0x00100010, "LO", "DOE^JOHN", "PatientName", id="PN-as-LO"),
        pytest.param(0x0020000D, "SH", "1.2.3", "StudyInstanceUID", id="UI-as-SH"),
        pytest.param(0x00280010, "LO", "512", "Rows", id="unknown-key-US-as-LO"),
    ],
)
def test_wrong_explicit_vr_is_refused(tag, vr, value, keyword):
    ds = identifier("STUDY")
    ds.add_new(tag, vr, value)
    with pytest.raises(InvalidQuery) as caught:
        parse_query(ds, STUDY_ROOT)
    assert (caught.value.status, caught.value.keyword) == (UNABLE, keyword)


def test_un_vr_is_read_as_the_dictionary_says(monkeypatch):
    monkeypatch.setattr(config, "replace_un_with_known_vr", False)  # keep the raw UN bytes
    ds = identifier("STUDY")
    ds.add_new(0x00080020, "UN", b"20200101")
    ds.add_new(0x0020000D, "UN", b"1.2.3\\1.2.4\x00")
    assert ds["StudyInstanceUID"].VR == "UN"
    query = parse_query(ds, STUDY_ROOT)
    assert query.condition("StudyDate") == Condition("StudyDate", "single", ("20200101",))
    assert query.condition("StudyInstanceUID") == Condition(
        "StudyInstanceUID", "list", ("1.2.3", "1.2.4")
    )


def test_un_vr_that_is_not_ascii_is_refused(monkeypatch):
    monkeypatch.setattr(config, "replace_un_with_known_vr", False)
    ds = identifier("STUDY")
    ds.add_new(0x00100010, "UN", "ØDEGÅRD".encode("latin-1"))
    with pytest.raises(InvalidQuery) as caught:
        parse_query(ds, STUDY_ROOT)
    assert (caught.value.status, caught.value.keyword) == (UNABLE, "PatientName")


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
@pytest.mark.parametrize(
    ("keys", "keyword"),
    [
        pytest.param({"SeriesNumber": "abc"}, "SeriesNumber", id="IS-letters"),
        pytest.param({"StudyInstanceUID": "1.2.abc"}, "StudyInstanceUID", id="UI-letters"),
        pytest.param({"StudyDate": "20200230"}, "StudyDate", id="DA-no-such-day"),
    ],
)
def test_malformed_values_decoded_from_the_wire(keys, keyword):
    ds = identifier("SERIES", **{"StudyInstanceUID": "1.2.3", **keys})
    decoded = decode(BytesIO(encode(ds, False, True)), False, True)
    with pytest.raises(InvalidQuery) as caught:
        parse_query(decoded, STUDY_ROOT)
    assert (caught.value.status, caught.value.keyword) == (UNABLE, keyword)


# -- C.6 models and levels ------------------------------------------------------------------------

UNIQUE = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}


@pytest.mark.parametrize(
    ("model", "level"),
    [pytest.param(model, level, id=f"{model}-ROOT-{level}") for model, level in ABOVE],
)
def test_every_level_of_each_model(model, level):
    query = find(level, model)
    assert (query.model, query.level) == (model, level)
    assert UNIQUE[level] in query.requested


@pytest.mark.parametrize(
    ("model", "level"),
    [
        pytest.param(STUDY_ROOT, None, id="missing"),
        pytest.param(STUDY_ROOT, "", id="empty"),
        pytest.param(STUDY_ROOT, "FRAME", id="unknown"),
        pytest.param(PATIENT_ROOT, "INSTANCE", id="unknown-patient-root"),
        pytest.param(STUDY_ROOT, "PATIENT", id="PATIENT-in-study-root"),
    ],
)
def test_bad_query_retrieve_level(model, level):
    with pytest.raises(InvalidQuery) as caught:
        parse_query(identifier(level, PatientID="P1"), model)
    assert (caught.value.status, caught.value.keyword) == (MISMATCH, "QueryRetrieveLevel")


@pytest.mark.parametrize(
    ("model", "level", "keys", "keyword"),
    [
        pytest.param(STUDY_ROOT, "SERIES", {}, "StudyInstanceUID", id="SR-SERIES-no-study"),
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"StudyInstanceUID": ""},
            "StudyInstanceUID",
            id="SR-SERIES-universal-study",
        ),
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"StudyInstanceUID": "*"},
            "StudyInstanceUID",
            id="SR-SERIES-lone-star-study",
        ),
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"StudyInstanceUID": "1.2\\1.3"},
            "StudyInstanceUID",
            id="SR-SERIES-list-of-studies",
        ),
        pytest.param(
            STUDY_ROOT,
            "SERIES",
            {"PatientID": "P1"},
            "StudyInstanceUID",
            id="SR-SERIES-patient-is-not-enough",
        ),
        pytest.param(
            STUDY_ROOT,
            "IMAGE",
            {"StudyInstanceUID": "1.2"},
            "SeriesInstanceUID",
            id="SR-IMAGE-no-series",
        ),
        pytest.param(
            STUDY_ROOT,
            "IMAGE",
            {"SeriesInstanceUID": "1.2.3"},
            "StudyInstanceUID",
            id="SR-IMAGE-no-study",
        ),
        pytest.param(PATIENT_ROOT, "STUDY", {}, "PatientID", id="PR-STUDY-no-patient"),
        pytest.param(
            PATIENT_ROOT, "STUDY", {"PatientID": "P*"}, "PatientID", id="PR-STUDY-wildcard"
        ),
        pytest.param(
            PATIENT_ROOT, "STUDY", {"PatientID": "P?"}, "PatientID", id="PR-STUDY-question"
        ),
        pytest.param(
            PATIENT_ROOT,
            "SERIES",
            {"PatientID": "P1"},
            "StudyInstanceUID",
            id="PR-SERIES-no-study",
        ),
        pytest.param(
            PATIENT_ROOT,
            "IMAGE",
            {"PatientID": "P1", "StudyInstanceUID": "1.2"},
            "SeriesInstanceUID",
            id="PR-IMAGE-no-series",
        ),
    ],
)
def test_without_one_unique_key_above_the_level_the_query_is_relational(
    model, level, keys, keyword
):
    """PS3.4 C.4.1.2.2: answered (negotiated or not); the answers carry the unique keys of the
    levels above, the missing one included."""
    query = parse_query(identifier(level, **keys), model)
    assert query.relational
    assert keyword in query.requested
    levels = ("PATIENT", "STUDY", "SERIES", "IMAGE")
    for upper in levels[: levels.index(level) + 1]:
        if model == PATIENT_ROOT or upper != "PATIENT":
            assert UNIQUE[upper] in query.requested


@pytest.mark.parametrize(
    ("model", "level"),
    [pytest.param(model, level, id=f"{model}-ROOT-{level}") for model, level in ABOVE],
)
def test_one_unique_key_per_level_above_is_hierarchical(model, level):
    assert not find(level, model).relational


@pytest.mark.parametrize(
    ("level", "keys", "keyword"),
    [
        pytest.param("SERIES", {"StudyInstanceUID": "1.2.*"}, "StudyInstanceUID", id="uid-star"),
        pytest.param(
            "IMAGE", {"SeriesInstanceUID": "1.2\\1.*"}, "SeriesInstanceUID", id="uid-list-star"
        ),
        pytest.param("SERIES", {"PatientID": "P1\\P2"}, "PatientID", id="patient-list"),
    ],
)
def test_relational_keys_above_are_still_checked(level, keys, keyword):
    with pytest.raises(InvalidQuery) as caught:
        parse_query(identifier(level, **keys), STUDY_ROOT)
    assert (caught.value.status, caught.value.keyword) == (UNABLE, keyword)


def test_relational_query_matches_keys_of_every_level():
    query = parse_query(
        identifier("SERIES", Modality="CT", PatientName="Doe*", StudyDate="20200101-"), STUDY_ROOT
    )
    assert query.relational
    assert {c.keyword for c in query.conditions} == {"Modality", "PatientName", "StudyDate"}
    assert query.requested == (
        "Modality",
        "PatientName",
        "StudyDate",
        "StudyInstanceUID",
        "SeriesInstanceUID",
    )


@pytest.mark.parametrize(
    ("model", "level", "keyword", "value"),
    [
        pytest.param(STUDY_ROOT, "STUDY", "Modality", "CT", id="SR-STUDY-Modality"),
        pytest.param(STUDY_ROOT, "STUDY", "SeriesInstanceUID", "1.2.9", id="SR-STUDY-Series"),
        pytest.param(STUDY_ROOT, "SERIES", "SOPInstanceUID", "1.2.9", id="SR-SERIES-SOP"),
        pytest.param(STUDY_ROOT, "SERIES", "InstanceNumber", "4", id="SR-SERIES-Instance#"),
        pytest.param(PATIENT_ROOT, "PATIENT", "StudyDate", "20200101", id="PR-PATIENT-Date"),
        pytest.param(PATIENT_ROOT, "PATIENT", "StudyInstanceUID", "1.2", id="PR-PATIENT-Study"),
        pytest.param(
            PATIENT_ROOT, "PATIENT", "NumberOfStudyRelatedInstances", "", id="PR-PATIENT-count"
        ),
    ],
)
def test_keys_below_the_level_are_ignored(model, level, keyword, value):
    query = find(level, model, **{keyword: value})
    assert keyword not in query.requested
    assert keyword not in query.unknown
    assert query.condition(keyword) is None


@pytest.mark.parametrize(
    ("keyword", "model", "level"),
    [
        pytest.param("PatientName", STUDY_ROOT, "STUDY", id="SR-PatientName"),
        pytest.param("PatientID", STUDY_ROOT, "STUDY", id="SR-PatientID"),
        pytest.param("PatientName", PATIENT_ROOT, "PATIENT", id="PR-PatientName"),
        pytest.param("StudyDate", STUDY_ROOT, "STUDY", id="SR-StudyDate"),
        pytest.param("StudyDate", PATIENT_ROOT, "STUDY", id="PR-StudyDate"),
        pytest.param("Modality", STUDY_ROOT, "SERIES", id="SR-Modality"),
        pytest.param("SOPInstanceUID", PATIENT_ROOT, "IMAGE", id="PR-SOPInstanceUID"),
        pytest.param("Rows", STUDY_ROOT, None, id="not-in-the-index"),
    ],
)
def test_key_level(keyword, model, level):
    assert key_level(keyword, model) == level


def test_study_root_matches_patient_keys_at_study_level():
    query = find("STUDY", STUDY_ROOT, PatientName="DOE*", PatientID="P7")
    assert query.condition("PatientName") == Condition("PatientName", "wildcard", ("doe*",))
    assert query.condition("PatientID") == Condition("PatientID", "single", ("P7",))
    assert query.requested == ("PatientName", "PatientID", "StudyInstanceUID")


def test_keys_above_the_level_are_matched_and_requested():
    query = find("IMAGE", STUDY_ROOT, PatientName="Doe", StudyDate="20200101", Modality="CT")
    for keyword in ("PatientName", "StudyDate", "Modality", "SeriesInstanceUID"):
        assert query.condition(keyword) is not None
        assert keyword in query.requested
    assert query.requested[-1] == "SOPInstanceUID"


@pytest.mark.parametrize(
    ("model", "level", "keys"),
    [
        pytest.param(STUDY_ROOT, "STUDY", {"StudyInstanceUID": ""}, id="given-empty"),
        pytest.param(STUDY_ROOT, "SERIES", {"SeriesInstanceUID": "1.5\\1.6"}, id="given-list"),
        pytest.param(STUDY_ROOT, "IMAGE", {}, id="absent"),
        pytest.param(PATIENT_ROOT, "PATIENT", {"PatientName": "DOE"}, id="absent-patient"),
    ],
)
def test_the_unique_key_is_requested_once(model, level, keys):
    query = find(level, model, **keys)
    assert query.requested.count(UNIQUE[level]) == 1


@pytest.mark.parametrize(
    ("model", "level", "keyword", "value"),
    [
        pytest.param(STUDY_ROOT, "STUDY", "NumberOfStudyRelatedInstances", "", id="instances"),
        pytest.param(STUDY_ROOT, "STUDY", "NumberOfStudyRelatedSeries", "7", id="given-value"),
        pytest.param(STUDY_ROOT, "STUDY", "ModalitiesInStudy", "", id="modalities-empty"),
        pytest.param(STUDY_ROOT, "STUDY", "SOPClassesInStudy", "", id="sop-classes-empty"),
        pytest.param(STUDY_ROOT, "SERIES", "NumberOfSeriesRelatedInstances", "", id="series"),
        pytest.param(PATIENT_ROOT, "PATIENT", "NumberOfPatientRelatedStudies", "", id="patient"),
        pytest.param(STUDY_ROOT, "IMAGE", "AvailableTransferSyntaxUID", "", id="syntax"),
    ],
)
def test_computed_keys_are_requested_not_matched(model, level, keyword, value):
    query = find(level, model, **{keyword: value})
    assert keyword in query.requested
    assert query.condition(keyword) is None


@pytest.mark.parametrize(
    ("level", "keyword", "value"),
    [
        pytest.param("IMAGE", "Rows", 512, id="Rows-image"),
        pytest.param("STUDY", "Rows", 512, id="Rows-study"),
        pytest.param("SERIES", "ProtocolName", "", id="ProtocolName"),
        pytest.param("STUDY", "ReferencedStudySequence", [], id="sequence"),
    ],
)
def test_unknown_attributes_go_to_unknown(level, keyword, value):
    query = find(level, **{keyword: value})
    assert query.unknown == (keyword,)
    assert keyword not in query.requested
    assert query.condition(keyword) is None


def test_node_answered_and_private_attributes_are_left_out():
    ds = identifier(
        "STUDY", RetrieveAETitle="OTHER", InstanceAvailability="NEARLINE", PatientID="P1"
    )
    ds.add_new(0x00091010, "LO", "private")
    query = parse_query(ds, STUDY_ROOT)
    assert query.requested == ("PatientID", "StudyInstanceUID")
    assert query.unknown == ()
    assert [c.keyword for c in query.conditions] == ["PatientID"]


# -- character sets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, (), id="absent"),
        pytest.param("ISO_IR 100", ("ISO_IR 100",), id="latin-1"),
        pytest.param("ISO_IR 192", ("ISO_IR 192",), id="utf-8"),
        pytest.param(["", "ISO 2022 IR 87"], ("", "ISO 2022 IR 87"), id="code-extensions"),
    ],
)
def test_specific_character_set_is_kept_not_requested(value, expected):
    keys = {} if value is None else {"SpecificCharacterSet": value}
    query = find("STUDY", **keys)
    assert query.character_set == expected
    assert "SpecificCharacterSet" not in query.requested
    assert query.conditions == ()


@pytest.mark.parametrize(
    ("charset", "encoded"),
    [
        pytest.param("ISO_IR 100", "ØDEGÅRD*".encode("latin-1"), id="ISO_IR-100"),
        pytest.param("ISO_IR 192", "ØDEGÅRD*".encode(), id="ISO_IR-192"),
    ],
)
def test_decoded_names_match_like_the_utf8_query(charset, encoded):
    ds = identifier("STUDY", SpecificCharacterSet=charset, PatientName="ØDEGÅRD*")
    raw = encode(ds, False, True)
    assert encoded in raw
    query = parse_query(decode(BytesIO(raw), False, True), STUDY_ROOT)
    utf8 = find("STUDY", PatientName="ødegård*")
    assert query.condition("PatientName") == utf8.condition("PatientName")
    pattern = query.condition("PatientName").values[0]
    assert fnmatchcase(name_key("ØDEGÅRD^ÅSE"), pattern)
    assert not fnmatchcase(name_key("ODEGARD^ASE"), pattern)  # accents are significant
    assert query.character_set == (charset,)


# -- rules/matching.py and dicom/values.py ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bounds"),
    [
        pytest.param("10", ("100000.000000", "105959.999999"), id="HH"),
        pytest.param("1015", ("101500.000000", "101559.999999"), id="HHMM"),
        pytest.param("101530", ("101530.000000", "101530.999999"), id="HHMMSS"),
        pytest.param("101530.5", ("101530.500000", "101530.599999"), id="one-digit-fraction"),
        pytest.param("000000", ("000000.000000", "000000.999999"), id="midnight"),
        pytest.param("235960", ("235960.000000", "235960.999999"), id="leap-second"),
    ],
)
def test_time_bounds(text, bounds):
    assert time_bounds(text) == bounds


@pytest.mark.parametrize(
    "text",
    ["", "1", "2400", "1060", "101561", "10:15", "1015.5", "101530.1234567", "ab"],
)
def test_time_bounds_refuses(text):
    with pytest.raises(ValueError):
        time_bounds(text)


@pytest.mark.parametrize(
    ("text", "bounds"),
    [
        pytest.param("2020", ("20200101000000.000000", "20201231235959.999999"), id="year"),
        pytest.param("202002", ("20200201000000.000000", "20200229235959.999999"), id="leap-feb"),
        pytest.param("202102", ("20210201000000.000000", "20210228235959.999999"), id="feb"),
        pytest.param("20200102", ("20200102000000.000000", "20200102235959.999999"), id="day"),
        pytest.param("2020010210", ("20200102100000.000000", "20200102105959.999999"), id="hour"),
        pytest.param(
            "20200102101530.5", ("20200102101530.500000", "20200102101530.599999"), id="fraction"
        ),
        pytest.param(
            "20200102+0100", ("20200102000000.000000", "20200102235959.999999"), id="plus-offset"
        ),
        pytest.param(
            "2020010210-0500", ("20200102100000.000000", "20200102105959.999999"), id="minus"
        ),
    ],
)
def test_datetime_bounds(text, bounds):
    assert datetime_bounds(text) == bounds


@pytest.mark.parametrize(
    "text",
    ["", "20", "20201301", "20200230", "2020010224", "20200102+01", "20200102+01x0", "abcd"],
)
def test_datetime_bounds_refuses(text):
    with pytest.raises(ValueError):
        datetime_bounds(text)


@pytest.mark.parametrize(
    ("stored", "key"),
    [
        pytest.param("20200102", "20200102", id="DA"),
        pytest.param("2020.01.02", "20200102", id="ACR-NEMA"),
        pytest.param(" 20200102 ", "20200102", id="padded"),
        pytest.param("", "", id="absent"),
        pytest.param("20201301", "", id="no-such-month"),
        pytest.param("garbage", "", id="unreadable"),
    ],
)
def test_date_key(stored, key):
    assert date_key(stored) == key


@pytest.mark.parametrize(
    ("stored", "span"),
    [
        pytest.param("101530", ("101530.000000", "101530.999999"), id="TM"),
        pytest.param("10:15:30", ("101530.000000", "101530.999999"), id="ACR-NEMA"),
        pytest.param("10:15:30.25", ("101530.250000", "101530.259999"), id="ACR-NEMA-fraction"),
        pytest.param("10", ("100000.000000", "105959.999999"), id="hour-covers-the-hour"),
        pytest.param("", ("", ""), id="absent"),
        pytest.param("2561", ("", ""), id="unreadable"),
    ],
)
def test_time_span(stored, span):
    assert time_span(stored) == span


@pytest.mark.parametrize(
    ("stored_date", "stored_time", "span"),
    [
        pytest.param(
            "20200102",
            "101530",
            ("20200102101530.000000", "20200102101530.999999"),
            id="date-and-time",
        ),
        pytest.param(
            "2020.01.02",
            "10:15",
            ("20200102101500.000000", "20200102101559.999999"),
            id="ACR-NEMA",
        ),
        pytest.param(
            "20200102",
            "",
            ("20200102000000.000000", "20200102235959.999999"),
            id="no-time-is-the-whole-day",
        ),
        pytest.param(
            "20200102",
            "99",
            ("20200102000000.000000", "20200102235959.999999"),
            id="bad-time-is-the-whole-day",
        ),
        pytest.param("", "1015", ("", ""), id="no-date"),
        pytest.param("20200230", "1015", ("", ""), id="bad-date"),
    ],
)
def test_datetime_span(stored_date, stored_time, span):
    assert datetime_span(stored_date, stored_time) == span


@pytest.mark.parametrize(
    ("name", "key"),
    [
        pytest.param("ØDEGÅRD^ÅSE^^^", "ødegård^åse", id="trailing-empty-components"),
        pytest.param("DOE^^JOHN", "doe^^john", id="interior-empty-kept"),
        pytest.param(" DOE ^ JOHN ", "doe^john", id="spaces"),
        pytest.param(
            "Yamada^Tarou=山田^太郎=やまだ^たろう",
            "yamada^tarou=山田^太郎=やまだ^たろう",
            id="groups",
        ),
        pytest.param("Yamada^Tarou=山田^太郎^^", "yamada^tarou=山田^太郎=", id="two-groups"),
        pytest.param("DOE^JOHN=", "doe^john", id="empty-group"),
        pytest.param("DOE^JOHN==", "doe^john", id="empty-groups"),
        pytest.param("=山田^太郎", "=山田^太郎=", id="no-alphabetic-group"),
        pytest.param("==やまだ", "==やまだ", id="phonetic-only"),
        pytest.param("A=B=C=D", "a=b=c", id="a-fourth-group-ignored"),
        pytest.param("MÜLLER^JOSÉ", "müller^josé", id="accents-kept"),
        pytest.param("STRAẞE", "straße", id="one-letter-stays-one-letter"),
        pytest.param("GROß^KARL", "groß^karl", id="sharp-s-kept"),
        pytest.param("O\u0308DEGA\u030aRD", "ödegård", id="decomposed-is-composed"),
        pytest.param("^^^", "", id="only-delimiters"),
    ],
)
def test_name_key(name, key):
    assert name_key(name) == key


# -- answers.choose_character_set -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "texts", "chosen"),
    [
        pytest.param((), ["DOE^JOHN", "CT"], None, id="ascii-default-repertoire"),
        pytest.param((), [], None, id="nothing-to-encode"),
        pytest.param(("ISO_IR 100",), ["DOE^JOHN"], "ISO_IR 100", id="ascii-requested"),
        pytest.param(
            ("", "ISO 2022 IR 87"), ["DOE"], "\\ISO 2022 IR 87", id="ascii-extensions-echoed"
        ),
        pytest.param(("ISO_IR 100",), ["ØDEGÅRD^ÅSE"], "ISO_IR 100", id="latin-1-fits"),
        pytest.param((), ["ØDEGÅRD^ÅSE"], "ISO_IR 192", id="latin-1-unrequested"),
        pytest.param(("ISO_IR 100",), ["Παπαδόπουλος"], "ISO_IR 192", id="greek-in-latin-1"),
        pytest.param(("ISO_IR 100",), ["山田^太郎"], "ISO_IR 192", id="japanese-in-latin-1"),
        pytest.param(("ISO_IR 100",), ["ØDEGÅRD", "山田"], "ISO_IR 192", id="one-misfit"),
        pytest.param(("ISO_IR 126",), ["Παπαδόπουλος"], "ISO_IR 126", id="greek-fits"),
        pytest.param(("ISO_IR 192",), ["山田^太郎"], "ISO_IR 192", id="utf-8-requested"),
        pytest.param(("", "ISO 2022 IR 87"), ["山田"], "ISO_IR 192", id="extensions-not-used"),
        pytest.param(("NO SUCH SET",), ["Ø"], "ISO_IR 192", id="unknown-set"),
    ],
)
def test_choose_character_set(requested, texts, chosen):
    assert choose_character_set(requested, texts) == chosen


# -- values no SQL should see, and PN patterns ---------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        pytest.param("PatientID", "A\x00B", id="LO-nul"),
        pytest.param("AccessionNumber", "A\x1b", id="SH-escape"),
        pytest.param("StudyDescription", "tab\there", id="LO-tab"),
        pytest.param("StudyDescription", "x" * 65, id="LO-65"),
        pytest.param("AccessionNumber", "x" * 17, id="SH-17"),
        pytest.param("Modality", "x" * 17, id="CS-17"),
        pytest.param("PatientName", "A" * 195, id="PN-195"),
        pytest.param("SOPClassesInStudy", "1.2\\" + "1" * 65, id="UI-list-item-65"),
    ],
)
def test_control_characters_and_overlong_values_are_refused(keyword, value):
    level = "SERIES" if keyword == "Modality" else "STUDY"
    keys = {"StudyInstanceUID": "1.2.3"} if level == "SERIES" else {}
    error = refusal(level, **keys, **{keyword: value})
    assert (error.status, error.keyword) == (UNABLE, keyword)


def test_longest_allowed_values_are_accepted():
    query = find("STUDY", StudyDescription="x" * 64, AccessionNumber="y" * 16)
    assert {c.keyword for c in query.conditions} == {"StudyDescription", "AccessionNumber"}


@pytest.mark.parametrize(
    ("pattern", "patterns"),
    [
        pytest.param("HANSEN^*", ("hansen^*", "hansen"), id="any-given-name-or-none"),
        pytest.param("HANSEN^*^*", ("hansen^*^*", "hansen^*", "hansen"), id="two-components"),
        pytest.param("HANSEN^**", ("hansen^**", "hansen"), id="any-run-of-stars"),
        pytest.param("HANSEN^*X", ("hansen^*x",), id="not-only-stars"),
        pytest.param("HANS*", ("hans*",), id="plain-prefix"),
        pytest.param("*^OLA", ("*^ola",), id="given-name"),
    ],
)
def test_name_wildcards_also_match_names_without_the_trailing_components(pattern, patterns):
    assert find("STUDY", PatientName=pattern).condition("PatientName").values == patterns


@pytest.mark.parametrize(
    ("keys", "keyword", "secret", "says"),
    [
        (
            {"PatientBirthDate": "19xx0101"},
            "PatientBirthDate",
            "19xx",
            "not a DICOM date or range",
        ),
        ({"PatientBirthDate": "1970-13-45"}, "PatientBirthDate", "1970", "not a DICOM date"),
        ({"PatientBirthDate": "1970\n0101"}, "PatientBirthDate", "1970", "control characters"),
        ({"StudyDate": "2020-13-45"}, "StudyDate", "2020", "not a DICOM date or range"),
        ({"StudyDate": "20200102-20200101"}, "StudyDate", "2020", "ends before it starts"),
        ({"StudyTime": "2561"}, "StudyTime", "2561", "not a DICOM time or range"),
        ({"StudyInstanceUID": "1.2.SECRET"}, "StudyInstanceUID", "SECRET", "not a valid UID"),
        ({"StudyDate": "2020*"}, "StudyDate", "2020", "no wildcards"),
    ],
)
def test_errors_name_the_keyword_never_the_value(keys, keyword, secret, says):
    """Issue 16: an Error Comment (and the log line made of it) names the keyword and what is
    wrong, never the value: any key's value may be patient data."""
    error = refusal("STUDY", **keys)
    assert secret not in str(error)
    assert str(error).startswith(keyword) and says in str(error)
    assert error.keyword == keyword


def test_an_unknown_level_is_not_repeated():
    error = refusal_of(identifier("SECRET"))
    assert "SECRET" not in str(error) and error.keyword == "QueryRetrieveLevel"


def refusal_of(ds: Dataset) -> InvalidQuery:
    with pytest.raises(InvalidQuery) as caught:
        parse_query(ds, STUDY_ROOT)
    return caught.value


def test_value_errors_do_not_quote_the_value():
    for parse, text in ((time_bounds, "99"), (datetime_bounds, "2020SECRET")):
        with pytest.raises(ValueError) as caught:
            parse(text)
        assert text not in str(caught.value)


def test_requested_sequence_remembers_its_item_keys():
    item = Dataset()
    item.CodeMeaning = ""
    query = find("STUDY", AnatomicRegionSequence=[item], ProcedureCodeSequence=[])
    assert query.sequence_keys == {
        "AnatomicRegionSequence": ("CodeMeaning",),
        "ProcedureCodeSequence": (),
    }
    assert {"AnatomicRegionSequence", "ProcedureCodeSequence"} <= set(query.unknown)


@pytest.mark.parametrize(
    ("requested", "texts", "expected"),
    [
        pytest.param(("ISO_IR 6",), ["ØDEGÅRD"], "ISO_IR 192", id="IR6-is-ascii"),
        pytest.param(("ISO 2022 IR 6",), ["ØDEGÅRD"], "ISO_IR 192", id="2022-IR6-is-ascii"),
        pytest.param(("ISO_IR 6",), ["HANSEN"], "ISO_IR 6", id="IR6-ascii-text"),
        pytest.param(("ISO_IR 101",), ["Łódź"], "ISO_IR 101", id="latin2"),
    ],
)
def test_character_set_table(requested, texts, expected):
    assert choose_character_set(requested, texts) == expected


@pytest.mark.parametrize(
    "text", ["121500.\u0660", "\u0661\u0662\u0661\u0665"], ids=["arabic-fraction", "arabic-digits"]
)
def test_times_take_only_ascii_digits(text):
    with pytest.raises(ValueError):
        time_bounds(text)


# -- C.5.1.1 SOP Class Extended Negotiation --------------------------------------------------

STUDY_FIND, PATIENT_FIND = "1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"


@pytest.mark.parametrize(
    ("offered", "answer"),
    [
        pytest.param({STUDY_FIND: b"\x01"}, {STUDY_FIND: b"\x01"}, id="relational-one-byte"),
        pytest.param({STUDY_FIND: b"\x00"}, {STUDY_FIND: b"\x00"}, id="not-asked"),
        pytest.param(
            {PATIENT_FIND: b"\x01\x01\x01\x01\x01"},
            {PATIENT_FIND: b"\x01\x01\x00\x00\x00"},
            id="five-bytes: relational and date-time accepted, fuzzy, timezone, view not",
        ),
        pytest.param(
            {STUDY_FIND: b"\x01\x01\x01\x01\x01\x01\x01"},
            {STUDY_FIND: b"\x01\x01\x00\x00\x00"},
            id="longer-than-defined",
        ),
        pytest.param({STUDY_FIND: b"\x02"}, {STUDY_FIND: b"\x00"}, id="undefined-value"),
        pytest.param({STUDY_FIND: b""}, {}, id="empty"),
        pytest.param({STUDY_MOVE: b"\x01"}, {}, id="relational-retrieval-not-answered"),
        pytest.param({"1.2.840.10008.5.1.4.1.1.2": b"\x01"}, {}, id="storage-class"),
        pytest.param({STUDY_FIND + "\0": b"\x01"}, {STUDY_FIND: b"\x01"}, id="padded-uid"),
    ],
)
def test_extended_negotiation_answer(offered, answer):
    assert extended_negotiation_answer(offered) == answer


# -- PS3.5 6.2.1 person name component groups (issue 17 point 8) -------------------------------


@pytest.mark.parametrize(
    ("value", "condition"),
    [
        pytest.param("Yamada^Tarou", ("single", ("yamada^tarou",)), id="one-group-any-group"),
        pytest.param("*山田*", ("wildcard", ("*山田*",)), id="one-group-wildcard"),
        pytest.param("=山田*", ("groups", ("", "山田*", "")), id="ideographic-only"),
        pytest.param("==やまだ^*", ("groups", ("", "", "やまだ^*")), id="phonetic-only"),
        pytest.param(
            "Yamada^Tarou=山田^太郎",
            ("groups", ("yamada^tarou", "山田^太郎", "")),
            id="two-groups",
        ),
        pytest.param("YAMADA=*=*", ("groups", ("yamada", "", "")), id="star-groups-universal"),
        # pydicom reads 'Doe^John=' as 'Doe^John' (one group, any group): '=*' says "alphabetic"
        pytest.param("Doe^John=*", ("groups", ("doe^john", "", "")), id="alphabetic-explicit"),
        pytest.param("==", None, id="only-delimiters-universal"),
        pytest.param("*=*", None, id="only-stars-universal"),
    ],
)
def test_person_name_groups(value, condition):
    got = find("STUDY", PatientName=value).condition("PatientName")
    if condition is None:
        assert got is None
    else:
        assert got == Condition("PatientName", *condition)
