"""C-FIND in SQL: a validated Query becomes one indexed SELECT per request, scoped to a hospital,
with every value a bound parameter (PS3.4 C.2.2.2 matching, C.4.1 levels)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from peewee import SQL, Case, ColumnBase, Database, Expression, Field, SqliteDatabase, fn

from ..rules.query import Condition, Query, name_patterns
from .session import Role
from .tables import Hospital, Instance, Patient, PatientAlias, Series, Study


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
    "PatientBirthDate": Patient.birth_key,
    "ReferringPhysicianName": Study.referring_key,
    "StudyTime": Study.time_key,
    "StudyDate": Study.datetime_key,
}


def study_or_patient(study: Field, patient: Field) -> ColumnBase:
    """The study's own value, the patient record's where the study has none."""
    return Case(None, [(study == "", patient)], study)


# Below PATIENT level a study is answered, and matched, with the patient's name, birth date and
# sex its instances gave, not the patient record's latest: a study keeps the demographics it
# arrived with, and each anonymous study its own.
_STUDY_PATIENT_RETURNED: dict[str, ColumnBase] = {
    "PatientName": study_or_patient(Study.patient_name, Patient.patient_name),
    "PatientBirthDate": study_or_patient(Study.birth_date, Patient.birth_date),
    "PatientSex": study_or_patient(Study.sex, Patient.sex),
}
_STUDY_PATIENT_MATCHED: dict[str, ColumnBase] = {
    **_STUDY_PATIENT_RETURNED,
    "PatientName": study_or_patient(Study.name_key, Patient.name_key),
    "PatientBirthDate": study_or_patient(Study.birth_key, Patient.birth_key),
}


def _returned(level: str) -> dict[str, Any]:
    return RETURNED if level == "PATIENT" else {**RETURNED, **_STUDY_PATIENT_RETURNED}


def _matched(level: str) -> dict[str, Any]:
    return MATCHED if level == "PATIENT" else {**MATCHED, **_STUDY_PATIENT_MATCHED}


_ENTITY: dict[str, type[Patient] | type[Study] | type[Series] | type[Instance]] = {
    "PATIENT": Patient,
    "STUDY": Study,
    "SERIES": Series,
    "IMAGE": Instance,
}
_INTEGER_KEYS = frozenset({"SeriesNumber", "InstanceNumber", "NumberOfFrames"})
_DAY_START, _DAY_END = "000000.000000", "235959.999999"


class FindQueries(Role):
    """C-FIND, and the instances a C-MOVE or C-GET names, as SQL."""

    def matches(self, query: Query, *, hospital: str | None, limit: int) -> list[Match]:
        """Entities matching a C-FIND query (at most `limit`); see find_matches."""
        with self.session():
            return find_matches(self.db, query, hospital, limit)

    def computed_keys(
        self, query: Query, matches: list[Match], *, hospital: str | None
    ) -> dict[int, dict[str, Any]]:
        """Counts and lists the query asked for, per match; see computed_keys."""
        with self.session():
            return computed_keys(query, matches, hospital)


def hospital_pk(hospital: str | None) -> int | None:
    """The row id of a hospital code (-1 when there is no such hospital: nothing is its)."""
    if hospital is None:
        return None
    pk = Hospital.select(Hospital.id).where(Hospital.code == hospital).scalar()
    return -1 if pk is None else pk


def find_matches(db: Database, query: Query, hospital: str | None, limit: int) -> list[Match]:
    """Entities at the query's level that match it: at most `limit` of them (which ones, when
    there are more, is the database's choice), sorted in the order they were first stored.
    With `hospital` (scope hospital) only what that hospital's AEs sent is seen."""
    keywords = _returned_keywords(query)
    with_path = query.level == "IMAGE"
    matches = []
    for row in matches_select(db, query, hospital_pk(hospital)).limit(limit).tuples():
        pk, patient, *rest = row
        path = rest.pop(0) if with_path else None
        matches.append(Match(pk, patient, dict(zip(keywords, rest, strict=True)), path))
    # No ORDER BY in SQL: with a LIMIT it could tempt the planner into walking the primary key
    # instead of the index that matches.
    matches.sort(key=lambda m: m.pk)
    return matches


def matches_select(db: Database, query: Query, hospital: int | None) -> Any:
    """The SELECT behind find_matches: pk, patient pk, [path,] then the returned columns.
    `hospital` is a hospital_pk()."""
    entity = _ENTITY[query.level]
    returned = _returned(query.level)
    columns = [returned[k] for k in _returned_keywords(query)]
    extra = [Instance.path] if query.level == "IMAGE" else []
    patient_pk = Patient.id if query.level == "PATIENT" else Study.patient
    select = _join_up(entity.select(entity.id, patient_pk, *extra, *columns), query.level)
    matched = _matched(query.level)
    where: list[ColumnBase] = [
        _expression(db, c, matched[c.keyword])
        for c in query.conditions
        if c.keyword in matched and c.keyword not in _IDENTITY
    ]
    identity = _identity(db, query)
    if identity is not None:
        where.insert(0, identity)
    if query.study_datetime is not None:
        where.append(_overlap(Study.datetime_key, Study.datetime_end_key, *query.study_datetime))
    where += _modalities_and_classes(db, query, hospital, selective=bool(where))
    where.append(_shown(query.level))
    if hospital is not None:
        where.append(_visible(query.level, hospital))
    return select.where(*where) if where else select


def _shown(level: str) -> ColumnBase:
    """Not rejected (IHE IOCM): a rejected instance is not shown, nor a series, study or
    patient whose every instance is (their hidden flag, kept by index/corrections.py)."""
    if level == "IMAGE":
        return Instance.rejection == ""
    hidden = {"PATIENT": Patient.hidden, "STUDY": Study.hidden, "SERIES": Series.hidden}[level]
    return hidden == False  # noqa: E712  (SQL, not Python)


_IDENTITY = ("PatientID", "IssuerOfPatientID")


def _identity(db: Database, query: Query) -> ColumnBase | None:
    """The PatientID and IssuerOfPatientID conditions, met by a patient's own identifier or by
    one it had before a merge or an issuer change (patient_alias): a query naming a merged
    patient finds the patient it became, answered with that one's identifier. One statement:
    the planner serves each side of the OR from its own index."""
    conditions = [c for c in query.conditions if c.keyword in _IDENTITY]
    if not conditions:
        return None
    fields = {"PatientID": PatientAlias.patient_id, "IssuerOfPatientID": PatientAlias.issuer}
    own_fields = {"PatientID": _IP.patient_id, "IssuerOfPatientID": _IP.issuer}
    own = _IP.select(_IP.id).where(
        *[_expression(db, c, own_fields[c.keyword]) for c in conditions]
    )
    aliases = PatientAlias.select(PatientAlias.target).where(
        *[_expression(db, c, fields[c.keyword]) for c in conditions]
    )
    # One IN over a UNION rather than "own OR IN (aliases)": PostgreSQL planned the OR as a scan
    # of every patient and then of every study (6 ms at 20,000 studies); the UNION's few ids
    # are looked up in the study's patient index.
    return Patient.id.in_(own | aliases)


_IP = Patient.alias("ident_p")


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


# -- scope hospital: what a hospital's AEs sent, at every level -------------------------------
# An instance is its hospital's; a series, study or patient is visible to a hospital holding at
# least one of its instances. Correlated EXISTS keeps the planner on the query's own indexes.
_VI, _VS, _VST = Instance.alias("vis_i"), Series.alias("vis_s"), Study.alias("vis_st")


def _of(column: Field, hospital: int) -> Expression:
    """column = hospital, written `column + 0` so that no index on the hospital column is used:
    a hospital has a large share of all rows, and SQLite (without statistics) would otherwise
    walk them all for every candidate instead of the few rows the query's own index finds."""
    return (column + 0) == hospital


def _visible(level: str, hospital: int) -> ColumnBase:
    if level == "IMAGE":
        return _of(Instance.hospital, hospital)
    if level == "SERIES":
        return _series_visible(Series, hospital)
    if level == "STUDY":
        return _study_visible(Study, hospital)
    studies = _VST.select(SQL("1")).where(
        (_VST.patient == Patient.id) & _study_visible(_VST, hospital)
    )
    return fn.EXISTS(studies)


def _series_visible(series: Any, hospital: int) -> ColumnBase:
    own = _VI.select(SQL("1")).where(
        (_VI.series == series.id) & _of(_VI.hospital, hospital) & (_VI.rejection == "")
    )
    return fn.EXISTS(own)


def _study_visible(study: Any, hospital: int) -> Expression:
    # The hospital that sent a study's first instance holds one; others are looked up.
    own = (
        _VS.select(SQL("1"))
        .join(_VI, on=(_VI.series == _VS.id))
        .where((_VS.study == study.id) & _of(_VI.hospital, hospital) & (_VI.rejection == ""))
    )
    return _of(study.hospital, hospital) | fn.EXISTS(own)


def _expression(db: Database, condition: Condition, field: Any) -> Expression:
    """The condition on `field`, the column (or expression) the keyword is matched on."""
    keyword, kind, values = condition.keyword, condition.kind, condition.values
    if keyword == "StudyDate":  # a date is the span of its day on the date-time key
        low, high = values if kind == "range" else (values[0], values[0])
        return _range(field, low + _DAY_START if low else "", high + _DAY_END if high else "")
    if keyword == "StudyTime":  # TM conditions are always spans, single values included
        return _overlap(Study.time_key, Study.time_end_key, *values)
    if keyword in _NAME_KEYS:
        return _name(db, field, kind, values)
    if kind == "range":
        return _range(field, *values)
    if kind == "wildcard":
        return _wildcard(db, field, values)
    converted = [int(v) for v in values] if keyword in _INTEGER_KEYS else list(values)
    if kind == "list":
        return field.in_(converted)
    return field == converted[0]


# Other information models' conditions (the Modality Worklist: index/order_rows.py) are
# matched by the same rules, on their own columns.
condition_sql = _expression

_NAME_KEYS = frozenset({"PatientName", "ReferringPhysicianName"})


def _name(db: Database, field: Field, kind: str, values: tuple[str, ...]) -> Expression:
    """Person name matching by component group (query._name_condition) on a matching.name_key:
    a key without '=' is a name of one (alphabetic) group; one with '=' has exactly two, so
    that in a pattern of three groups joined by '=' no * or ? can reach into another group.

    'single' and 'wildcard' (a value of one group) match a one-group name as before, and a
    name of several groups when any of its groups matches; 'groups' matches each group given
    in its place (a one-group name only when the value gives nothing but its alphabetic
    group). Each group after the first of a trailing-component variant (name_patterns) is
    matched without its component count: a * there may reach over a ^.
    """
    one_group = _pattern_free(db, field, "=")
    if kind == "groups":
        alphabetic, ideographic, phonetic = values
        variants = [name_patterns(group) if group else ("*",) for group in values]
        grouped = _wildcard(
            db,
            field,
            tuple(f"{a}={i}={p}" for a in variants[0] for i in variants[1] for p in variants[2]),
            count_carets=False,
        )
        if ideographic or phonetic:
            return grouped
        return (_one_group(db, field, alphabetic) & one_group) | grouped
    # kind single (a literal group key) or wildcard (name_patterns of one group)
    plain = field == values[0] if kind == "single" else _wildcard(db, field, values) & one_group
    # a group a name does not have is empty: it is no name that an empty variant (the one of
    # '^*' without its trailing component) may match
    # (a variant after the first stands for a group of exactly its number of components, as
    # _wildcard's count_carets says for a one-group name, here counted in that group alone)
    in_any_group = None
    for position, variant in enumerate(values):
        if not variant:
            continue
        for place in range(3):
            groups = ["*", "*", "*"]
            groups[place] = variant
            one = _wildcard(db, field, ("=".join(groups),), count_carets=False)
            if position:
                one &= _group_carets(db, field, place, variant.count("^"))
            if not variant.strip("*"):  # '*' matches an empty group: one the name lacks
                groups[place] = "?*"
                one &= _wildcard(db, field, ("=".join(groups),), count_carets=False)
            in_any_group = one if in_any_group is None else (in_any_group | one)
    if in_any_group is None:
        return plain
    return plain | in_any_group


def _group_carets(db: Database, field: Field, place: int, count: int) -> Expression:
    """A key of three groups (a=i=p) whose group at `place` holds exactly `count` carets: a
    key has exactly two '=', so carets with an '=' on each side where the pattern puts them
    are carets of that group."""

    def at_least(carets: int) -> Expression:
        groups = ["*", "*", "*"]
        groups[place] = "*" + "^*" * carets
        return _wildcard(db, field, ("=".join(groups),), count_carets=False)

    exactly = ~at_least(count + 1)
    return at_least(count) & exactly if count else exactly


def _one_group(db: Database, field: Field, key: str) -> Expression:
    """A one-group name key matching `key` (a group_key, literal or with wildcards)."""
    if "*" in key or "?" in key:
        return _wildcard(db, field, name_patterns(key))
    return field == key


def _pattern_free(db: Database, field: Field, char: str) -> Expression:
    """field holds no `char` (a literal character, not % or _)."""
    if isinstance(db, SqliteDatabase):
        return Expression(field, "NOT GLOB", f"*{char}*")
    return Expression(field, "NOT LIKE", f"%{char}%")


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


def _wildcard(
    db: Database, field: Field, patterns: tuple[str, ...], *, count_carets: bool = True
) -> Expression:
    """PS3.4 C.2.2.2.4: * is any run of characters, ? any one; everything else, % and _
    included, matches only itself. Case-sensitive: PN keys are lower-cased on both sides.
    Several patterns match when any does; one after the first (query._name_patterns: a name
    without its trailing all-star components) only a value of its number of components."""
    expression = None
    for position, pattern in enumerate(patterns):
        if isinstance(db, SqliteDatabase):
            # GLOB is case-sensitive and has no % or _; [ opens a class, so it is quoted.
            one = Expression(field, "GLOB", pattern.replace("[", "[[]"))
        else:
            escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            # PostgreSQL's LIKE escapes with a backslash by default.
            one = Expression(field, "LIKE", escaped.replace("*", "%").replace("?", "_"))
        if position and count_carets:
            carets = fn.LENGTH(field) - fn.LENGTH(fn.REPLACE(field, "^", ""))
            one = one & (carets == pattern.count("^"))
        expression = one if expression is None else (expression | one)
    assert expression is not None
    return expression


_MS, _MI = Series.alias("mod_s"), Instance.alias("mod_i")


def _modalities_and_classes(
    db: Database, query: Query, hospital: int | None, *, selective: bool
) -> list[ColumnBase]:
    """ModalitiesInStudy and SOPClassesInStudy match a study when any of its (visible) series
    or instances has one of the values (PS3.4 C.6.2.1.2).

    With another condition to narrow the studies, each candidate is checked (EXISTS);
    alone, the studies are found through the modality index (IN).
    """
    where: list[ColumnBase] = []
    for keyword, column in (
        ("ModalitiesInStudy", _MS.modality),
        ("SOPClassesInStudy", _MI.sop_class_uid),
    ):
        condition = query.condition(keyword)
        if condition is None:
            continue
        if selective:  # an identity the modality index cannot serve: the study's series are few
            column = fn.COALESCE(column, "")
        if condition.kind == "wildcard":
            test = _wildcard(db, column, condition.values)
        else:
            test = column.in_(list(condition.values))
        test &= _MS.hidden == False  # noqa: E712  (SQL)
        if hospital is not None:
            test &= _of(_MI.hospital, hospital)
        if keyword == "SOPClassesInStudy" or hospital is not None:
            test &= _MI.rejection == ""

        def source(*columns: Any, with_instances: bool) -> Any:
            select = _MS.select(*columns)
            return select.join(_MI, on=(_MI.series == _MS.id)) if with_instances else select

        with_instances = keyword == "SOPClassesInStudy" or hospital is not None
        if selective:
            related = source(SQL("1"), with_instances=with_instances)
            where.append(fn.EXISTS(related.where((_MS.study == Study.id) & test)))
        else:
            studies = source(_MS.study, with_instances=with_instances)
            where.append(Study.id.in_(studies.where(test)))
    return where


# -- computed keys (PS3.4 C.3.4 Additional Query/Retrieve Attributes) ---------------------------


def _among(field: Field, keys: list[int]) -> Expression:
    """field IN (the row ids `keys`), their placeholders written at once: peewee renders each
    value of an IN list as a node of its own, ~10 us apiece, and a page of 150 matches asks
    three such lists (a third of a 150-hit query's index time went there)."""
    ids = [int(key) for key in keys]  # row ids: integers, bound as parameters all the same
    if not ids:
        return field.in_([])
    param = field.model._meta.database.param
    return Expression(field, "IN", SQL(f"({', '.join([param] * len(ids))})", ids))


def computed_keys(
    query: Query, matches: list[Match], hospital: str | None
) -> dict[int, dict[str, Any]]:
    """The computed keys the query asked for, for these matches, by match pk. With `hospital`
    (scope hospital) they count only what that hospital's AEs sent."""
    wanted = [k for k in query.requested if k.startswith("NumberOf") or k.endswith("InStudy")]
    result: dict[int, dict[str, Any]] = defaultdict(dict)
    if not wanted or not matches:
        return result
    own = hospital_pk(hospital)
    pks = [m.pk for m in matches]
    patients = sorted({m.patient_pk for m in matches})
    by_patient: dict[str, dict[int, Any]] = {}
    for keyword, counted in (
        ("NumberOfPatientRelatedStudies", Study),
        ("NumberOfPatientRelatedSeries", Series),
        ("NumberOfPatientRelatedInstances", Instance),
    ):
        if keyword in wanted and counted is Instance:
            by_patient[keyword] = _instance_counts(Study.patient, patients, own)
        elif keyword in wanted:
            select = _count_select(Study.patient, counted, own)
            by_patient[keyword] = dict(
                select.where(_among(Study.patient, patients)).group_by(Study.patient).tuples()
            )
    for m in matches:
        for keyword, counts in by_patient.items():
            result[m.pk][keyword] = counts.get(m.patient_pk, 0)
    if query.level == "STUDY":
        _study_keys(wanted, pks, own, result)
    if query.level == "SERIES" and "NumberOfSeriesRelatedInstances" in wanted:
        counts = _instance_counts(Series.id, pks, own)
        for pk in pks:
            result[pk]["NumberOfSeriesRelatedInstances"] = counts.get(pk, 0)
    return result


# A literal, not a bound parameter: the planner may then use the partial index of rejected
# instances (instance_rejected, tables.py), whose WHERE is this very term.
_REJECTED = Instance.rejection != SQL("''")


def _instance_counts(group: Field, keys: list[int], own: int | None) -> dict[int, int]:
    """Instances shown per `group` (a patient, study or series id) among `keys`. Unscoped, all
    are counted from the indexes alone (no instance row is read) and the rejected, few and in
    a partial index of their own, taken off; scoped, the instances' rows are read anyway."""
    to_study = group.model is Study
    if own is not None:
        scoped: Any = _instances(group, fn.COUNT(Instance.id), own=own, to_study=to_study)
        return dict(scoped.where(_among(group, keys)).group_by(group).tuples())

    def counted(*where: Any) -> dict[int, int]:
        select: Any = Instance.select(group, fn.COUNT(Instance.id)).join(
            Series, on=(Instance.series == Series.id)
        )
        if to_study:
            select = select.join(Study, on=(Series.study == Study.id))
        return dict(select.where(_among(group, keys), *where).group_by(group).tuples())

    counts = counted()
    for pk, rejected in counted(_REJECTED).items():
        counts[pk] -= rejected
    return counts


def _instances(*columns: Any, own: int | None, to_study: bool = True) -> Any:
    """SELECT columns FROM instance JOIN series [JOIN study], only `own` hospital's instances
    when scoped: every count is a count of instances someone may see."""
    select = Instance.select(*columns).join(Series, on=(Instance.series == Series.id))
    if to_study:
        select = select.join(Study, on=(Series.study == Study.id))
    select = select.where(Instance.rejection == "")
    return select if own is None else select.where(_of(Instance.hospital, own))


def _count_select(group: Field, counted: Any, own: int | None) -> Any:
    """SELECT group, COUNT(counted rows) of studies or series (instances: _instance_counts):
    from the counted table up when everything is seen, through the instances when only one
    hospital's are (series and studies have instances)."""
    if own is not None:
        to_study = group.model is Study
        return _instances(group, fn.COUNT(counted.id.distinct()), own=own, to_study=to_study)
    select = counted.select(group, fn.COUNT(counted.id)).where(_shown(_LEVEL[counted]))
    if counted is not Study and group.model is Study:
        select = select.join(Study, on=(Series.study == Study.id))
    return select


_LEVEL = {Study: "STUDY", Series: "SERIES"}


def _counts(
    result: dict[int, dict[str, Any]], pks: Iterable[int], keyword: str, select: Any
) -> None:
    """Fill `keyword` from a SELECT of (pk, count) rows; 0 for the pks it does not name."""
    counts = dict(select.tuples())
    for pk in pks:
        result[pk][keyword] = counts.get(pk, 0)


def _study_keys(
    wanted: list[str], pks: list[int], own: int | None, result: dict[int, dict[str, Any]]
) -> None:
    if "NumberOfStudyRelatedInstances" in wanted:
        counts = _instance_counts(Series.study, pks, own)
        for pk in pks:
            result[pk]["NumberOfStudyRelatedInstances"] = counts.get(pk, 0)
    if "NumberOfStudyRelatedSeries" in wanted:
        select = _count_select(Series.study, Series, own)
        _counts(
            result,
            pks,
            "NumberOfStudyRelatedSeries",
            select.where(_among(Series.study, pks)).group_by(Series.study),
        )
    for keyword, column in (
        ("ModalitiesInStudy", Series.modality),
        ("SOPClassesInStudy", Instance.sop_class_uid),
    ):
        if keyword not in wanted:
            continue
        if own is None and column.model is Series:  # every series has instances: skip them
            select = Series.select(Series.study, column).where(_shown("SERIES"))
        else:
            select = _instances(Series.study, column, own=own, to_study=False)
        _distinct(result, pks, keyword, select.where(_among(Series.study, pks)).distinct())


def _distinct(
    result: dict[int, dict[str, Any]], pks: Iterable[int], keyword: str, select: Any
) -> None:
    values: dict[int, set[str]] = defaultdict(set)
    for pk, value in select.tuples():
        if value:
            values[pk].add(value)
    for pk in pks:
        result[pk][keyword] = sorted(values.get(pk, ()))
