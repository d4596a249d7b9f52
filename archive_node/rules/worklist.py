"""The Modality Worklist (PS3.4 K.6): a C-FIND identifier as matching conditions on scheduled
procedure steps, and each step as a response identifier with the keys it asked for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ..dicom import status
from .find_answers import give_character_set, vr_of
from .query import Condition, InvalidQuery, Key, key_condition

WORKLIST_FIND = "1.2.840.10008.5.1.4.31"  # Modality Worklist Information Model - FIND
STEP_SEQUENCE = "ScheduledProcedureStepSequence"
ACTIVE = ("SCHEDULED", "IN PROGRESS")  # offered; COMPLETED, DISCONTINUED, CANCELLED are not
# PS3.3 C.4.10: Scheduled Procedure Step Status of each step status
_SPS_STATUS = {"SCHEDULED": "SCHEDULED", "IN PROGRESS": "STARTED"}

# Matching keys (PS3.4 K.6.1.2.2, Table K.6-1): those of the identifier, and those of its
# Scheduled Procedure Step Sequence item. `level` says where: 'top' or 'step'.
KEYS: dict[str, Key] = {
    key.keyword: key
    for key in (
        Key("PatientName", "top", "PN"),
        Key("PatientID", "top", "LO"),
        Key("PatientBirthDate", "top", "DA"),
        Key("PatientSex", "top", "CS"),
        Key("IssuerOfPatientID", "top", "LO"),
        Key("AccessionNumber", "top", "SH"),
        Key("RequestedProcedureID", "top", "SH"),
        Key("StudyInstanceUID", "top", "UI", multiple=True),
        Key("ScheduledStationAETitle", "step", "AE", multiple=True),
        Key("ScheduledProcedureStepStartDate", "step", "DA"),
        Key("ScheduledProcedureStepStartTime", "step", "TM"),
        Key("Modality", "step", "CS", multiple=True),
        Key("ScheduledProcedureStepID", "step", "SH"),
    )
}
# Required matching keys (Table K.6-1, R) the node holds no value for: a value there matches no
# step of the node's, rather than every one.
UNMATCHABLE = frozenset({"ScheduledPerformingPhysicianName"})
# The columns of a step (index/order_rows.py) each key answers from.
TOP_VALUES = {
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "IssuerOfPatientID": "issuer",
    "PatientBirthDate": "birth_date",
    "PatientSex": "sex",
    "AccessionNumber": "accession_number",
    "RequestedProcedureID": "requested_procedure_id",
    "RequestedProcedureDescription": "procedure_description",
    "StudyInstanceUID": "study_uid",
}
STEP_VALUES = {
    "ScheduledStationAETitle": "station_ae",
    "ScheduledProcedureStepStartDate": "start_date",
    "ScheduledProcedureStepStartTime": "start_time",
    "Modality": "modality",
    "ScheduledProcedureStepID": "step_id",
    "ScheduledProcedureStepDescription": "procedure_description",
}
_STEP_DEFAULTS = (
    "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "Modality",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepStatus",
)


@dataclass(frozen=True)
class WorklistQuery:
    """A validated Modality Worklist identifier."""

    conditions: tuple[Condition, ...]  # matched in SQL, each on its column
    time: tuple[str, str] | None  # ScheduledProcedureStepStartTime range (HHMMSS.FFFFFF)
    requested: tuple[str, ...]  # top-level keywords to answer
    step_keys: tuple[str, ...]  # keywords to answer in the step item ([] when not asked)
    character_set: tuple[str, ...] = ()
    nothing: bool = False  # a key the node cannot match has a value: no step matches


def parse_worklist_query(identifier: Dataset) -> WorklistQuery:
    """Validate a worklist identifier (PS3.4 K.6.1.2). Raises InvalidQuery: 0xC000 for a
    malformed value, 0xA900 for a Scheduled Procedure Step Sequence of more than one item."""
    conditions: list[Condition] = []
    requested: list[str] = []
    step_keys: list[str] = []
    time: tuple[str, str] | None = None
    nothing = False
    try:
        elements = list(identifier)
    except Exception as exc:
        raise InvalidQuery(
            status.UNABLE_TO_PROCESS, f"identifier cannot be decoded ({type(exc).__name__})"
        ) from None
    for element in elements:
        keyword = element.keyword
        if not keyword or element.tag.is_private or keyword == "SpecificCharacterSet":
            continue
        if keyword == STEP_SEQUENCE:
            items = element.value or []
            if len(items) > 1:
                raise InvalidQuery(
                    status.IDENTIFIER_MISMATCH,
                    f"{STEP_SEQUENCE} has more than one item",
                    STEP_SEQUENCE,
                )
            # the item's keys; an empty sequence or item asks for the whole item (C.2.2.2.6)
            named = [sub.keyword for sub in (items[0] if items else []) if sub.keyword]
            step_keys = [] if named else list(_STEP_DEFAULTS)
            for sub in items[0] if items else []:
                if not sub.keyword or sub.tag.is_private:
                    continue
                if sub.keyword not in step_keys:
                    step_keys.append(sub.keyword)
                if sub.keyword in UNMATCHABLE:
                    nothing = nothing or _has_value(sub)
                    continue
                key = KEYS.get(sub.keyword)
                if key is None or key.level != "step":
                    continue
                condition = key_condition(key, sub)
                if condition is None:
                    continue
                if sub.keyword == "ScheduledProcedureStepStartTime":
                    time = (condition.values[0], condition.values[-1])
                else:
                    conditions.append(condition)
            requested.append(keyword)
            continue
        requested.append(keyword)
        key = KEYS.get(keyword)
        if key is not None and key.level == "top":
            condition = key_condition(key, element)
            if condition is not None:
                conditions.append(condition)
    charset = (
        identifier.get("SpecificCharacterSet") if "SpecificCharacterSet" in identifier else None
    )
    values = charset if isinstance(charset, MultiValue | list) else [charset] if charset else []
    return WorklistQuery(
        tuple(conditions),
        time,
        tuple(dict.fromkeys(requested)),
        tuple(step_keys),
        tuple(str(v).strip() for v in values),
        nothing,
    )


def _has_value(element: Any) -> bool:
    """Whether a key asks for a match (a value other than universal matching's '' or '*')."""
    try:
        value = element.value
    except Exception:
        return True
    return str(value or "").strip() not in ("", "*")


def worklist_answer(query: WorklistQuery, step: dict[str, Any]) -> Dataset:
    """One pending response: the requested keys, with the step's values where it has them
    and empty otherwise (PS3.4 K.6.1.2.2: every return key is returned), in a character set
    that carries them."""
    answer = Dataset()
    for keyword in query.requested:
        if keyword == STEP_SEQUENCE:
            item = Dataset()
            for sub in query.step_keys:
                _put(item, sub, _step_value(sub, step))
            answer.ScheduledProcedureStepSequence = [item]
            continue
        _put(answer, keyword, _top_value(keyword, step))
    if "PatientID" in query.requested and "IssuerOfPatientID" not in query.requested:
        answer.IssuerOfPatientID = step["issuer"]
    give_character_set(answer, query.character_set)
    return answer


def _top_value(keyword: str, step: dict[str, Any]) -> Any:
    column = TOP_VALUES.get(keyword)
    if column is not None:
        return step[column] or None
    if keyword == "RequestedProcedureCodeSequence" and step["procedure_code"]:
        return [_code(step["procedure_code"])]
    return None


def _step_value(keyword: str, step: dict[str, Any]) -> Any:
    column = STEP_VALUES.get(keyword)
    if column is not None:
        return step[column] or None
    if keyword == "ScheduledProcedureStepStatus":
        return _SPS_STATUS.get(step["status"], "SCHEDULED")
    if keyword == "ScheduledProtocolCodeSequence" and step["procedure_code"]:
        return [_code(step["procedure_code"])]
    return None


def _code(text: str) -> Dataset:
    """An HL7 code^meaning^scheme as a code sequence item (PS3.3 8.8)."""
    value, meaning, scheme = [*text.split("^"), "", ""][:3]
    item = Dataset()
    item.CodeValue = value[:16]
    item.CodingSchemeDesignator = (scheme or "L")[:16]
    item.CodeMeaning = meaning[:64]
    return item


def _put(dataset: Dataset, keyword: str, value: Any) -> None:
    tag = tag_for_keyword(keyword)
    if tag is None:
        return
    vr = vr_of(tag)
    dataset.add_new(tag, vr, (value or []) if vr == "SQ" else value)
