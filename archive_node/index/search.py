"""C-FIND in SQL: a validated Query becomes one indexed SELECT per request, scoped to a hospital,
with every value a bound parameter (PS3.4 C.2.2.2 matching, C.4.1 levels)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from peewee import Database, Expression, Field, SqliteDatabase, fn

from ..query import Condition, Query
from .models import Hospital, Instance, Patient, Series, Study


@dataclass(frozen=True)
class Match:
    """One entity at the query level: its stored values by DICOM keyword."""

    pk: int
    patient_pk: int
    values: dict[str, Any]
    path: str | None = None  # the stored file, at IMAGE level


# The column each key is answered from.
RETURNED: dict[str, Field] = {
    "PatientID": Patient.patient_id,
    "IssuerOfPatientID": Patient.issuer,
    "PatientName": Patient.patient_name,
    "PatientBirthDate": Patient.birth_date,
    "PatientSex": Patient.sex,
    "StudyInstanceUID": Study.study_uid,
    "StudyDate": Study.study_date,
    "StudyTime": Study.study_time,
    "AccessionNumber": Study.accession_number,
    "StudyID": Study.study_id,
    "StudyDescription": Study.description,
    "ReferringPhysicianName": Study.referring_physician,
    "SeriesInstanceUID": Series.series_uid,
    "Modality": Series.modality,
    "SeriesNumber": Series.series_number,
    "SeriesDescription": Series.description,
    "BodyPartExamined": Series.body_part,
    "SOPInstanceUID": Instance.sop_uid,
    "SOPClassUID": Instance.sop_class_uid,
    "InstanceNumber": Instance.instance_number,
    "NumberOfFrames": Instance.number_of_frames,
    "AvailableTransferSyntaxUID": Instance.transfer_syntax_uid,
}
# Where matching uses a normalised copy instead (values.name_key; the start of the spans of
# values.time_span and datetime_span, whose ends _overlap uses too).
MATCHED: dict[str, Field] = {
    **RETURNED,
    "PatientName": Patient.name_key,
    "ReferringPhysicianName": Study.referring_key,
    "StudyTime": Study.time_key,
    "StudyDate": Study.datetime_key,
}
_ENTITY = {"PATIENT": Patient, "STUDY": Study, "SERIES": Series, "IMAGE": Instance}
_INTEGER_KEYS = frozenset({"SeriesNumber", "InstanceNumber", "NumberOfFrames"})
_DAY_START, _DAY_END = "000000.000000", "235959.999999"


def find_matches(db: Database, query: Query, hospital: str | None, limit: int) -> list[Match]:
    """The entities at the query's level that match it, at most `limit`, in the order they
    were first stored. `hospital` confines them to that hospital's studies (scope hospital)."""
    keywords = _returned_keywords(query)
    with_path = query.level == "IMAGE"
    matches = []
    for row in matches_select(db, query, hospital).limit(limit).tuples():
        pk, patient, *rest = row
        path = rest.pop(0) if with_path else None
        matches.append(Match(pk, patient, dict(zip(keywords, rest, strict=True)), path))
    # No ORDER BY in SQL: with a LIMIT it could tempt the planner into walking the primary key
    # instead of the index that matches.
    matches.sort(key=lambda m: m.pk)
    return matches


def matches_select(db: Database, query: Query, hospital: str | None) -> Any:
    """The SELECT behind find_matches: pk, patient pk, [path,] then the returned columns."""
    entity = _ENTITY[query.level]
    columns = [RETURNED[k] for k in _returned_keywords(query)]
    extra = [Instance.path] if query.level == "IMAGE" else []
    patient_pk = Patient.id if query.level == "PATIENT" else Study.patient
    select = _join_up(entity.select(entity.id, patient_pk, *extra, *columns), query.level)
    where = [_expression(db, c) for c in query.conditions if c.keyword in MATCHED]
    if query.study_datetime is not None:
        where.append(_overlap(Study.datetime_key, Study.datetime_end_key, *query.study_datetime))
    where += _modalities_and_classes(db, query)
    if hospital is not None:
        where.append(_scope(query.level, hospital))
    return select.where(*where) if where else select


def _returned_keywords(query: Query) -> list[str]:
    keywords = [k for k in query.requested if k in RETURNED]
    if "PatientID" in keywords and "IssuerOfPatientID" not in keywords:
        keywords.append("IssuerOfPatientID")  # a patient is (PatientID, IssuerOfPatientID)
    return keywords


def _join_up(select: Any, level: str) -> Any:
    """Join the query level's table to every level above it."""
    if level == "IMAGE":
        select = select.join(Series, on=(Instance.series == Series.id))
    if level in ("IMAGE", "SERIES"):
        select = select.join(Study, on=(Series.study == Study.id))
    if level != "PATIENT":
        select = select.join(Patient, on=(Study.patient == Patient.id))
    return select


def _scope(level: str, hospital: str) -> Expression:
    """Scope `hospital`: only studies received from that hospital, at every level."""
    hospital_id = Hospital.select(Hospital.id).where(Hospital.code == hospital)
    if level == "PATIENT":
        return Patient.id.in_(Study.select(Study.patient).where(Study.hospital.in_(hospital_id)))
    return Study.hospital.in_(hospital_id)


def _expression(db: Database, condition: Condition) -> Expression:
    keyword, kind, values = condition.keyword, condition.kind, condition.values
    field = MATCHED[keyword]
    if keyword == "StudyDate":  # a date is the span of its day on the date-time key
        low, high = values if kind == "range" else (values[0], values[0])
        return _range(field, low + _DAY_START if low else "", high + _DAY_END if high else "")
    if keyword == "StudyTime":  # TM conditions are always spans, single values included
        return _overlap(Study.time_key, Study.time_end_key, *values)
    if kind == "range":
        return _range(field, *values)
    if kind == "wildcard":
        return _wildcard(db, field, values[0])
    converted = [int(v) for v in values] if keyword in _INTEGER_KEYS else list(values)
    if kind == "list":
        return field.in_(converted)
    return field == converted[0]


def _range(field: Field, low: str, high: str) -> Expression:
    """PS3.4 C.2.2.2.5 Range Matching on a normalised key; an unknown value matches no range."""
    expression = field != ""
    if low:
        expression &= field >= low
    if high:
        expression &= field <= high
    return expression


def _overlap(start: Field, end: Field, low: str, high: str) -> Expression:
    """Range matching of a stored value that covers a span (a partial time such as '10' is a
    whole hour): it matches when any instant of it lies in the range.

    A stored date-time span never leaves its day, so a start on or after the day of `low` is
    implied; saying so lets the database walk the index on the start key.
    """
    expression = start != ""
    if low:
        expression &= end >= low
        if start is Study.datetime_key:
            expression &= start >= low[:8]
    if high:
        expression &= start <= high
    return expression


def _wildcard(db: Database, field: Field, pattern: str) -> Expression:
    """PS3.4 C.2.2.2.4: * is any run of characters, ? any one; everything else, % and _
    included, matches only itself. Case-sensitive: PN keys are casefolded on both sides."""
    if isinstance(db, SqliteDatabase):
        # GLOB is case-sensitive and has no % or _; [ opens a class, so it is quoted as [[].
        return Expression(field, "GLOB", pattern.replace("[", "[[]"))
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    # PostgreSQL's LIKE escapes with a backslash by default.
    return Expression(field, "LIKE", escaped.replace("*", "%").replace("?", "_"))


def _modalities_and_classes(db: Database, query: Query) -> list[Expression]:
    """ModalitiesInStudy and SOPClassesInStudy match a study when any of its series or
    instances has one of the values (PS3.4 C.6.2.1.2 and C.6.1.1.3 notes)."""
    where = []
    for keyword, column, source in (
        ("ModalitiesInStudy", Series.modality, Series.select(Series.study)),
        (
            "SOPClassesInStudy",
            Instance.sop_class_uid,
            Series.select(Series.study).join(Instance, on=(Instance.series == Series.id)),
        ),
    ):
        condition = query.condition(keyword)
        if condition is None:
            continue
        if condition.kind == "wildcard":
            having = _wildcard(db, column, condition.values[0])
        else:
            having = column.in_(list(condition.values))
        where.append(Study.id.in_(source.where(having)))
    return where


# -- computed keys (PS3.4 C.3.4 Additional Query/Retrieve Attributes) ---------------------------


def computed_keys(
    query: Query, matches: list[Match], hospital: str | None
) -> dict[int, dict[str, Any]]:
    """The computed keys the query asked for, for these matches, by match pk. Counts cover
    only what `hospital` may see."""
    wanted = [k for k in query.requested if k.startswith("NumberOf") or k.endswith("InStudy")]
    result: dict[int, dict[str, Any]] = defaultdict(dict)
    if not wanted or not matches:
        return result
    scope = _scope("STUDY", hospital) if hospital is not None else None
    patients = sorted({m.patient_pk for m in matches})
    pks = [m.pk for m in matches]
    patient_of = {m.pk: m.patient_pk for m in matches}

    def per_patient(keyword: str, select: Any) -> None:
        counts = dict(_scoped(select, scope).where(Study.patient.in_(patients)).tuples())
        for m in matches:
            result[m.pk][keyword] = counts.get(patient_of[m.pk], 0)

    if "NumberOfPatientRelatedStudies" in wanted:
        per_patient(
            "NumberOfPatientRelatedStudies",
            Study.select(Study.patient, fn.COUNT(Study.id)).group_by(Study.patient),
        )
    if "NumberOfPatientRelatedSeries" in wanted:
        per_patient(
            "NumberOfPatientRelatedSeries",
            Series.select(Study.patient, fn.COUNT(Series.id))
            .join(Study, on=(Series.study == Study.id))
            .group_by(Study.patient),
        )
    if "NumberOfPatientRelatedInstances" in wanted:
        per_patient(
            "NumberOfPatientRelatedInstances",
            Instance.select(Study.patient, fn.COUNT(Instance.id))
            .join(Series, on=(Instance.series == Series.id))
            .join(Study, on=(Series.study == Study.id))
            .group_by(Study.patient),
        )
    if query.level == "STUDY":
        _study_keys(wanted, pks, result)
    if query.level == "SERIES" and "NumberOfSeriesRelatedInstances" in wanted:
        _counts(
            result,
            pks,
            "NumberOfSeriesRelatedInstances",
            Instance.select(Instance.series, fn.COUNT(Instance.id))
            .where(Instance.series.in_(pks))
            .group_by(Instance.series),
        )
    return result


def _scoped(select: Any, scope: Expression | None) -> Any:
    return select if scope is None else select.where(scope)


def _counts(
    result: dict[int, dict[str, Any]], pks: Iterable[int], keyword: str, select: Any
) -> None:
    """Fill `keyword` from a SELECT of (pk, count) rows; 0 for the pks it does not name."""
    counts = dict(select.tuples())
    for pk in pks:
        result[pk][keyword] = counts.get(pk, 0)


def _study_keys(wanted: list[str], pks: list[int], result: dict[int, dict[str, Any]]) -> None:
    if "NumberOfStudyRelatedSeries" in wanted:
        _counts(
            result,
            pks,
            "NumberOfStudyRelatedSeries",
            Series.select(Series.study, fn.COUNT(Series.id))
            .where(Series.study.in_(pks))
            .group_by(Series.study),
        )
    if "NumberOfStudyRelatedInstances" in wanted:
        _counts(
            result,
            pks,
            "NumberOfStudyRelatedInstances",
            Instance.select(Series.study, fn.COUNT(Instance.id))
            .join(Series, on=(Instance.series == Series.id))
            .where(Series.study.in_(pks))
            .group_by(Series.study),
        )
    if "ModalitiesInStudy" in wanted:
        _distinct(
            result,
            pks,
            "ModalitiesInStudy",
            Series.select(Series.study, Series.modality).where(Series.study.in_(pks)).distinct(),
        )
    if "SOPClassesInStudy" in wanted:
        _distinct(
            result,
            pks,
            "SOPClassesInStudy",
            Instance.select(Series.study, Instance.sop_class_uid)
            .join(Series, on=(Instance.series == Series.id))
            .where(Series.study.in_(pks))
            .distinct(),
        )


def _distinct(
    result: dict[int, dict[str, Any]], pks: Iterable[int], keyword: str, select: Any
) -> None:
    values: dict[int, set[str]] = defaultdict(set)
    for pk, value in select.tuples():
        if value:
            values[pk].add(value)
    for pk in pks:
        result[pk][keyword] = sorted(values.get(pk, ()))
