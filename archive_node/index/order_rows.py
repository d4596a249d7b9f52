"""Index rows of the orders: HL7 senders and the messages taken, scheduled procedure steps (the
Modality Worklist) and performed procedure steps (MPPS)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from peewee import SQL, fn

from ..errors import Conflict, InvalidInput, NotFound
from ..rules.hl7_messages import OrderMessage, PatientFields, StepFields
from ..rules.matching import name_key
from ..rules.worklist import ACTIVE, WorklistQuery
from .clock import utcnow
from .find_sql import condition_sql
from .session import Role
from .tables import Hl7Message, Hl7Sender, Hospital, PerformedStep, ProcedureStep, Study

# Each worklist key's column.
_COLUMNS = {
    "PatientName": ProcedureStep.name_key,
    "PatientID": ProcedureStep.patient_id,
    "PatientBirthDate": ProcedureStep.birth_date,
    "PatientSex": ProcedureStep.sex,
    "IssuerOfPatientID": ProcedureStep.issuer,
    "AccessionNumber": ProcedureStep.accession_number,
    "RequestedProcedureID": ProcedureStep.requested_procedure_id,
    "StudyInstanceUID": ProcedureStep.study_uid,
    "ScheduledStationAETitle": ProcedureStep.station_ae,
    "ScheduledProcedureStepStartDate": ProcedureStep.start_date,
    "Modality": ProcedureStep.modality,
    "ScheduledProcedureStepID": ProcedureStep.step_id,
}
STEP_STATUSES = ("SCHEDULED", "IN PROGRESS", "COMPLETED", "DISCONTINUED", "CANCELLED")


@dataclass(frozen=True)
class SenderRecord:
    facility: str
    hospital: str
    issuer: str
    host: str


@dataclass(frozen=True)
class StepRecord:
    """A scheduled procedure step with its hospital, and whether instances of it are stored
    (its Study Instance UID, or its accession number in its hospital)."""

    values: dict[str, Any]
    hospital: str
    performed: bool = False


class OrderRows(Role):
    """Senders, messages, scheduled and performed steps."""

    # -- HL7 senders ---------------------------------------------------------------------------

    def add_sender(self, facility: str, hospital: str, host: str) -> SenderRecord:
        """Raises NotFound (the hospital), Conflict (the facility is registered)."""
        with self.session(write=True):
            row = Hospital.get_or_none(Hospital.code == hospital)
            if row is None:
                raise NotFound(f"no hospital {hospital}")
            if Hl7Sender.get_or_none(Hl7Sender.facility == facility):
                raise Conflict(f"HL7 sender {facility} is registered already")
            Hl7Sender.create(facility=facility, hospital=row.id, host=host)
            return SenderRecord(facility, row.code, row.issuer, host)

    def sender(self, facility: str) -> SenderRecord | None:
        with self.session():
            row = (
                Hl7Sender.select(Hl7Sender, Hospital)
                .join(Hospital)
                .where(Hl7Sender.facility == facility)
                .first()
            )
            if row is None:
                return None
            return SenderRecord(row.facility, row.hospital.code, row.hospital.issuer, row.host)

    def senders(self, hospital: str | None = None) -> list[SenderRecord]:
        with self.session():
            query = Hl7Sender.select(Hl7Sender, Hospital).join(Hospital)
            if hospital:
                query = query.where(Hospital.code == hospital)
            return [
                SenderRecord(r.facility, r.hospital.code, r.hospital.issuer, r.host)
                for r in query.order_by(Hl7Sender.facility)
            ]

    def remove_sender(self, facility: str) -> None:
        with self.session(write=True):
            if not Hl7Sender.delete().where(Hl7Sender.facility == facility).execute():
                raise NotFound(f"no HL7 sender {facility}")

    # -- messages ------------------------------------------------------------------------------

    def seen(self, facility: str, control_id: str) -> bool:
        """Whether this sender's message control ID was taken (and is still remembered)."""
        with self.session():
            return (
                Hl7Message.select()
                .where((Hl7Message.facility == facility) & (Hl7Message.control_id == control_id))
                .exists()
            )

    def take(
        self,
        facility: str,
        control_id: str,
        message_type: str,
        text: str,
        apply: Callable[[], str],
    ) -> str:
        """Keep a message and apply it (`apply`: its changes, returning what they were) in one
        transaction: committed (durable) before the caller acknowledges it, or nothing at all.
        Raises what `apply` raises; Conflict when the same message was taken meanwhile."""
        with self.session(write=True):
            pk = Hl7Message.insert(
                facility=facility,
                control_id=control_id,
                message_type=message_type,
                text=text,
            ).execute()
            outcome = apply()
            Hl7Message.update(outcome=outcome[:500]).where(Hl7Message.id == pk).execute()
            return outcome

    def prune_messages(self, before: datetime) -> int:
        with self.session(write=True):
            return int(Hl7Message.delete().where(Hl7Message.received_at < before).execute())

    # -- scheduled procedure steps (in the caller's transaction) -------------------------------

    def apply_order(
        self,
        hospital: str,
        order: OrderMessage,
        *,
        source: str,
        new_study_uid: Callable[[StepFields], str],
    ) -> tuple[str, list[str]]:
        """Apply an order message in the caller's transaction (take()): a new or changed order
        schedules (or updates) its steps; a cancel or discontinue ends the steps still open.
        Returns what it did and the Study Instance UIDs of the steps it touched. Raises
        NotFound for a cancel or discontinue of an order the node does not know."""
        hospital_pk = Hospital.get(Hospital.code == hospital).id
        mine = (ProcedureStep.hospital == hospital_pk) & (
            ProcedureStep.order_key == order.order_key
        )
        if order.control in ("cancel", "discontinue"):
            if not ProcedureStep.select().where(mine).exists():
                raise NotFound("the order is not known")
            ended = "CANCELLED" if order.control == "cancel" else "DISCONTINUED"
            ended_studies = [
                str(row.study_uid)
                for row in ProcedureStep.select(ProcedureStep.study_uid).where(mine).distinct()
            ]
            count = (
                ProcedureStep.update(status=ended, updated_at=utcnow(), source=source)
                .where(mine & ProcedureStep.status.in_(ACTIVE))
                .execute()
            )
            return f"order {order.control}: {count} step(s) {ended.lower()}", ended_studies
        given = order.patient
        added = changed = 0
        studies: list[str] = []
        for step in order.steps:
            row = ProcedureStep.get_or_none(mine & (ProcedureStep.step_id == step.step_id))
            # a new step has the patient as the order gives it; a known one keeps what the
            # order leaves out
            patient = _patient_columns(given, partial=row is not None)
            patient.update(patient_id=given.patient_id, issuer=given.issuer)
            columns: dict[str, Any] = {
                **patient,
                **_step_columns(step),
                "source": source,
                "updated_at": utcnow(),
            }
            if row is None:
                columns["study_uid"] = step.study_uid or _order_study_uid(
                    hospital_pk, order.order_key, step, new_study_uid
                )
                ProcedureStep.insert(
                    hospital=hospital_pk, order_key=order.order_key, status="SCHEDULED", **columns
                ).execute()
                added += 1
            else:
                columns["study_uid"] = step.study_uid or row.study_uid
                if row.status == "CANCELLED" and order.control == "new":
                    columns["status"] = "SCHEDULED"  # a cancelled order placed again
                ProcedureStep.update(**columns).where(ProcedureStep.id == row.id).execute()
                changed += 1
            studies.append(str(columns["study_uid"]))
        outcome = f"order {order.control}: {added} step(s) scheduled, {changed} updated"
        return outcome, list(dict.fromkeys(studies))

    def add_step(
        self,
        hospital: str,
        patient: PatientFields,
        step: StepFields,
        source: str,
        then: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """A step made by hand (`orders add`), its own order keyed by its accession number,
        its patient of the hospital's issuer unless `patient` names one; `then` (its audit
        record) in the same transaction. Raises NotFound (the hospital),
        Conflict (the accession has that step already), what `then` raises."""
        with self.session(write=True):
            row = Hospital.get_or_none(Hospital.code == hospital)
            if row is None:
                raise NotFound(f"no hospital {hospital}")
            key = step.accession_number
            exists = ProcedureStep.select().where(
                (ProcedureStep.hospital == row.id)
                & (ProcedureStep.order_key == key)
                & (ProcedureStep.step_id == step.step_id)
            )
            if exists.exists():
                raise Conflict(f"accession {key} has step {step.step_id} already")
            pk = ProcedureStep.insert(
                hospital=row.id,
                order_key=key,
                status="SCHEDULED",
                source=source,
                **{**_patient_columns(patient), "issuer": patient.issuer or row.issuer},
                **_step_columns(step),
                study_uid=step.study_uid,
            ).execute()
            values = _values(ProcedureStep.get_by_id(pk))
            then(values)
            return values

    def relabel_patient(self, patient: PatientFields, hospital: str) -> int:
        """In the caller's transaction: the demographics an ADT update gives (those it leaves
        out stay) on every step of the patient in `hospital` (open steps and history)."""
        columns = _patient_columns(patient, partial=True)
        if not columns:
            return 0
        hospital_pk = Hospital.get(Hospital.code == hospital).id
        return int(
            ProcedureStep.update(**columns, updated_at=utcnow())
            .where(
                (ProcedureStep.hospital == hospital_pk)
                & (ProcedureStep.patient_id == patient.patient_id)
                & (ProcedureStep.issuer == patient.issuer)
            )
            .execute()
        )

    def merge_patient(self, prior_id: str, patient: PatientFields, hospital: str) -> int:
        """In the caller's transaction: the steps of patient `prior_id` (of the same issuer)
        in `hospital` become `patient`'s."""
        hospital_pk = Hospital.get(Hospital.code == hospital).id
        columns = {"patient_id": patient.patient_id, **_patient_columns(patient, partial=True)}
        return int(
            ProcedureStep.update(**columns, updated_at=utcnow())
            .where(
                (ProcedureStep.hospital == hospital_pk)
                & (ProcedureStep.patient_id == prior_id)
                & (ProcedureStep.issuer == patient.issuer)
            )
            .execute()
        )

    # -- reading steps -------------------------------------------------------------------------

    def steps(
        self,
        *,
        hospital: str | None = None,
        station: str | None = None,
        date: str | None = None,
        status: str | None = None,
        performed: bool = False,
        limit: int = 1000,
    ) -> list[StepRecord]:
        """Steps, newest start first, each with whether instances of it are stored (only
        those, with `performed`)."""
        stored = _stored()
        with self.session():
            query = ProcedureStep.select(
                ProcedureStep, Hospital.id, Hospital.code, stored.alias("stored")
            ).join(Hospital)
            if hospital:
                query = query.where(Hospital.code == hospital)
            if station:
                query = query.where(ProcedureStep.station_ae == station)
            if date:
                query = query.where(ProcedureStep.start_date == date)
            if status:
                query = query.where(ProcedureStep.status == status)
            if performed:
                query = query.where(stored)
            rows = query.order_by(
                ProcedureStep.start_date.desc(), ProcedureStep.start_time.desc(), ProcedureStep.id
            ).limit(limit)
            return [
                StepRecord(_values(row), row.hospital.code, bool(cast(Any, row).stored))
                for row in rows
            ]

    def worklist(self, query: WorklistQuery, *, hospital: str, limit: int) -> list[dict[str, Any]]:
        """The open steps of `hospital` that match (PS3.4 K.6.1.2, by the rules of C-FIND, in
        SQL), in start order; at most `limit`."""
        if query.nothing:
            return []
        with self.session():
            row = Hospital.get_or_none(Hospital.code == hospital)
            if row is None:
                return []
            where = (ProcedureStep.hospital == row.id) & ProcedureStep.status.in_(ACTIVE)
            for condition in query.conditions:
                where &= condition_sql(self.db, condition, _COLUMNS[condition.keyword])
            if query.time is not None:  # a stored time is HHMMSS; an unknown one matches none
                low, high = query.time
                where &= ProcedureStep.start_time != ""
                if low:
                    where &= ProcedureStep.start_time >= low[:6]
                if high:
                    where &= ProcedureStep.start_time <= high[:6]
            select = (
                ProcedureStep.select()
                .where(where)
                .order_by(ProcedureStep.start_date, ProcedureStep.start_time, ProcedureStep.id)
                .limit(limit)
            )
            return [_values(step) for step in select]

    # -- performed procedure steps (PS3.4 F.7) -------------------------------------------------

    def create_performed(
        self,
        sop_uid: str,
        *,
        hospital: str,
        ae_title: str,
        study_uid: str,
        accession: str,
        step_id: str,
        attributes: dict[str, Any],
    ) -> bool:
        """A new performed step, IN PROGRESS, linked to the scheduled step of its hospital it
        names (by Study Instance UID, else accession number and step ID), which goes IN
        PROGRESS. Returns whether it was linked. Raises Conflict (the UID exists)."""
        with self.session(write=True):
            if PerformedStep.get_or_none(PerformedStep.sop_uid == sop_uid):
                raise Conflict("a performed procedure step of this SOP Instance UID exists")
            hospital_pk = Hospital.get(Hospital.code == hospital).id
            step = _scheduled(hospital_pk, study_uid, accession, step_id)
            PerformedStep.insert(
                sop_uid=sop_uid,
                hospital=hospital_pk,
                ae_title=ae_title,
                status="IN PROGRESS",
                step=step.id if step else None,
                study_uid=study_uid,
                accession_number=accession,
                attributes=json.dumps(attributes, sort_keys=True),
            ).execute()
            if step is not None and step.status == "SCHEDULED":
                ProcedureStep.update(status="IN PROGRESS", updated_at=utcnow()).where(
                    ProcedureStep.id == step.id
                ).execute()
            return step is not None

    def set_performed(
        self,
        sop_uid: str,
        *,
        hospital: str,
        status: str,
        attributes: dict[str, Any],
        check: Callable[[dict[str, Any], str], None],
    ) -> str:
        """Set a performed step's attributes and status; COMPLETED or DISCONTINUED ends its
        scheduled step. `check(merged attributes, status)` may refuse the result (Refused).
        Returns the status it had. Raises NotFound (no such step of this hospital),
        InvalidInput (it is COMPLETED or DISCONTINUED: no longer updated), Refused."""
        with self.session(write=True):
            row = (
                PerformedStep.select(PerformedStep, Hospital.id, Hospital.code)
                .join(Hospital)
                .where((PerformedStep.sop_uid == sop_uid) & (Hospital.code == hospital))
                .first()
            )
            if row is None:
                raise NotFound("no such performed procedure step")
            if row.status != "IN PROGRESS":
                raise InvalidInput(f"step is {row.status}: it may no longer be updated")
            kept = json.loads(row.attributes)
            kept.update(attributes)
            check(kept, status)
            PerformedStep.update(
                status=status, attributes=json.dumps(kept, sort_keys=True), updated_at=utcnow()
            ).where(PerformedStep.id == row.id).execute()
            if row.step_id is not None and status in ("COMPLETED", "DISCONTINUED"):
                ProcedureStep.update(status=status, updated_at=utcnow()).where(
                    (ProcedureStep.id == row.step_id) & ProcedureStep.status.in_(ACTIVE)
                ).execute()
            return str(row.status)

    def performed(self, sop_uid: str) -> dict[str, Any] | None:
        with self.session():
            row = PerformedStep.get_or_none(PerformedStep.sop_uid == sop_uid)
            if row is None:
                return None
            return {
                "sop_uid": row.sop_uid,
                "status": row.status,
                "step": row.step_id,
                "attributes": json.loads(row.attributes),
            }


def _patient_columns(patient: PatientFields, *, partial: bool = False) -> dict[str, str]:
    """The columns of a step's patient; `partial`: only those the message gives (an ADT
    update), else every one (an order: what it leaves out is empty)."""
    given = {"patient_name": patient.name, "birth_date": patient.birth_date, "sex": patient.sex}
    columns = {k: v or "" for k, v in given.items() if not partial or v is not None}
    if "patient_name" in columns:
        columns["name_key"] = name_key(columns["patient_name"])
    if not partial:
        columns.update(patient_id=patient.patient_id, issuer=patient.issuer)
    return columns


def _step_columns(step: StepFields) -> dict[str, str]:
    """The columns of a step, named as its fields; its Study Instance UID apart (the order's
    may be made, or kept)."""
    return {k: v for k, v in dataclasses.asdict(step).items() if k != "study_uid"}


def _order_study_uid(
    hospital: int, order_key: str, step: StepFields, make: Callable[[StepFields], str]
) -> str:
    """The study of a step that names none: its order's other steps' with the same requested
    procedure (one requested procedure is one study), else a new one."""
    if step.requested_procedure_id:
        sibling = (
            ProcedureStep.select(ProcedureStep.study_uid)
            .where(
                (ProcedureStep.hospital == hospital)
                & (ProcedureStep.order_key == order_key)
                & (ProcedureStep.requested_procedure_id == step.requested_procedure_id)
            )
            .first()
        )
        if sibling is not None:
            return str(sibling.study_uid)
    return make(step)


# What a step's record holds (StepRecord.values, the worklist's answers, `orders --json`).
_VALUES = (
    "id",
    "order_key",
    "patient_id",
    "issuer",
    "patient_name",
    "birth_date",
    "sex",
    *(f.name for f in dataclasses.fields(StepFields)),
    "status",
    "source",
)


def _values(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _VALUES}


def _stored() -> Any:
    """Whether instances of a step are stored: a study shown with its Study Instance UID, or
    one of its hospital with its accession number."""
    by_uid = Study.select(SQL("1")).where(
        (Study.study_uid == ProcedureStep.study_uid) & ~Study.hidden
    )
    by_accession = Study.select(SQL("1")).where(
        (Study.accession_number == ProcedureStep.accession_number)
        & (Study.hospital == ProcedureStep.hospital)
        & ~Study.hidden
    )
    return fn.EXISTS(by_uid) | fn.EXISTS(by_accession)


def _scheduled(hospital: int, study_uid: str, accession: str, step_id: str) -> Any:
    """The scheduled step a performed step names (PS3.4 F.7.2.1.1 Scheduled Step Attributes):
    its step ID in the study, else in the accession; a study or accession alone only when it
    has one step (an order's steps may share their study)."""
    base = (
        ProcedureStep.select().where(ProcedureStep.hospital == hospital).order_by(ProcedureStep.id)
    )
    keys = []
    if study_uid:
        keys.append(ProcedureStep.study_uid == study_uid)
    if accession:
        keys.append(ProcedureStep.accession_number == accession)
    if step_id:
        for key in keys:
            step = base.where(key & (ProcedureStep.step_id == step_id)).first()
            if step is not None:
                return step
    for key in keys:
        steps = list(base.where(key).limit(2))
        if len(steps) == 1:
            return steps[0]
    return None
