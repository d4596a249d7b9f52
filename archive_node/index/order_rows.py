"""Index rows of the orders: HL7 senders and the messages taken, scheduled procedure steps (the
Modality Worklist) and performed procedure steps (MPPS)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from ..errors import Conflict, InvalidInput, NotFound
from ..rules.hl7_messages import OrderMessage, PatientFields, StepFields
from ..rules.matching import name_key
from ..rules.worklist import ACTIVE, WorklistQuery, time_matches
from .clock import utcnow
from .find_sql import condition_sql
from .session import Role
from .tables import Hl7Message, Hl7Sender, Hospital, PerformedStep, ProcedureStep, Study

# Each worklist key's column.
_COLUMNS = {
    "PatientName": ProcedureStep.name_key,
    "PatientID": ProcedureStep.patient_id,
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
_FINAL = ("COMPLETED", "DISCONTINUED", "CANCELLED")


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
                ack_code="AA",
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
        issuer: str,
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
        patient = _patient_columns(order.patient, issuer)
        added = changed = 0
        studies: list[str] = []
        for step in order.steps:
            row = ProcedureStep.get_or_none(mine & (ProcedureStep.step_id == step.step_id))
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
                if row.status in _FINAL and order.control == "new":
                    columns["status"] = "SCHEDULED"  # the order placed again
                ProcedureStep.update(**columns).where(ProcedureStep.id == row.id).execute()
                changed += 1
            studies.append(str(columns["study_uid"]))
        outcome = f"order {order.control}: {added} step(s) scheduled, {changed} updated"
        return outcome, list(dict.fromkeys(studies))

    def add_step(
        self,
        hospital: str,
        issuer: str,
        patient: PatientFields,
        step: StepFields,
        source: str,
        then: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """A step made by hand (`orders add`), its own order keyed by its accession number;
        `then` (its audit record) in the same transaction. Raises NotFound (the hospital),
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
                **_patient_columns(patient, issuer),
                **_step_columns(step),
                study_uid=step.study_uid,
            ).execute()
            values = _values(ProcedureStep.get_by_id(pk))
            then(values)
            return values

    def relabel_patient(self, patient: PatientFields, issuer: str) -> int:
        """In the caller's transaction: the demographics of an ADT update on every step of the
        patient (its open steps and its history alike)."""
        columns = _patient_columns(patient, issuer)
        return int(
            ProcedureStep.update(**columns, updated_at=utcnow())
            .where(
                (ProcedureStep.patient_id == columns["patient_id"])
                & (ProcedureStep.issuer == columns["issuer"])
            )
            .execute()
        )

    def merge_patient(self, prior: tuple[str, str], patient: PatientFields, issuer: str) -> int:
        """In the caller's transaction: the steps of patient `prior` become `patient`'s."""
        columns = _patient_columns(patient, issuer)
        return int(
            ProcedureStep.update(**columns, updated_at=utcnow())
            .where((ProcedureStep.patient_id == prior[0]) & (ProcedureStep.issuer == prior[1]))
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
        limit: int = 1000,
    ) -> list[StepRecord]:
        """Steps, newest start first, each with whether instances of it are stored."""
        with self.session():
            query = ProcedureStep.select(ProcedureStep, Hospital.id, Hospital.code).join(Hospital)
            if hospital:
                query = query.where(Hospital.code == hospital)
            if station:
                query = query.where(ProcedureStep.station_ae == station)
            if date:
                query = query.where(ProcedureStep.start_date == date)
            if status:
                query = query.where(ProcedureStep.status == status)
            rows = list(
                query.order_by(
                    ProcedureStep.start_date.desc(), ProcedureStep.start_time.desc()
                ).limit(limit)
            )
            performed = _performed(rows)
            return [
                StepRecord(_values(row), row.hospital.code, row.id in performed) for row in rows
            ]

    def worklist(self, query: WorklistQuery, *, hospital: str, limit: int) -> list[dict[str, Any]]:
        """The open steps of `hospital` that match (PS3.4 K.6.1.2: its conditions in SQL, by
        the rules of C-FIND; the start time on the rows), in start order; at most `limit`."""
        with self.session():
            row = Hospital.get_or_none(Hospital.code == hospital)
            if row is None:
                return []
            where = (ProcedureStep.hospital == row.id) & ProcedureStep.status.in_(ACTIVE)
            for condition in query.conditions:
                where &= condition_sql(self.db, condition, _COLUMNS[condition.keyword])
            select = (
                ProcedureStep.select()
                .where(where)
                .order_by(ProcedureStep.start_date, ProcedureStep.start_time, ProcedureStep.id)
            )
            found = []
            for step in select.limit(limit * 4 if query.time else limit):
                if time_matches(query, step.start_time):
                    found.append(_values(step))
                if len(found) >= limit:
                    break
            return found

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
        self, sop_uid: str, *, hospital: str, status: str, attributes: dict[str, Any]
    ) -> str:
        """Set a performed step's attributes and status; COMPLETED or DISCONTINUED ends its
        scheduled step. Returns the status it had. Raises NotFound (no such step of this
        hospital), InvalidInput (it is COMPLETED or DISCONTINUED: no longer updated)."""
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


def _patient_columns(patient: PatientFields, issuer: str) -> dict[str, str]:
    return {
        "patient_id": patient.patient_id,
        "issuer": patient.issuer or issuer,
        "patient_name": patient.name,
        "name_key": name_key(patient.name),
        "birth_date": patient.birth_date,
        "sex": patient.sex,
    }


def _step_columns(step: StepFields) -> dict[str, str]:
    return {
        "accession_number": step.accession_number,
        "requested_procedure_id": step.requested_procedure_id,
        "step_id": step.step_id,
        "modality": step.modality,
        "procedure_code": step.procedure_code,
        "procedure_description": step.procedure_description,
        "station_ae": step.station_ae,
        "start_date": step.start_date,
        "start_time": step.start_time,
    }


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


def _values(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "order_key": row.order_key,
        "patient_id": row.patient_id,
        "issuer": row.issuer,
        "patient_name": row.patient_name,
        "birth_date": row.birth_date,
        "sex": row.sex,
        "accession_number": row.accession_number,
        "requested_procedure_id": row.requested_procedure_id,
        "step_id": row.step_id,
        "modality": row.modality,
        "procedure_code": row.procedure_code,
        "procedure_description": row.procedure_description,
        "station_ae": row.station_ae,
        "start_date": row.start_date,
        "start_time": row.start_time,
        "study_uid": row.study_uid,
        "status": row.status,
        "source": row.source,
    }


def _performed(rows: list[Any]) -> set[int]:
    """Of these steps, those whose instances are stored: a study with the step's Study
    Instance UID, or one of its hospital with its accession number."""
    if not rows:
        return set()
    by_uid = {str(row.study_uid): int(row.id) for row in rows}
    uids = Study.select(Study.study_uid).where(Study.study_uid.in_(list(by_uid)) & ~Study.hidden)
    found = {by_uid[str(uid)] for (uid,) in cast(Iterable[tuple[Any, ...]], uids.tuples())}
    by_accession = {(int(row.hospital_id), str(row.accession_number)): int(row.id) for row in rows}
    accessions = sorted({key[1] for key in by_accession})
    studies = Study.select(Study.hospital, Study.accession_number).where(
        Study.accession_number.in_(accessions) & ~Study.hidden
    )
    for hospital_pk, accession in cast(Iterable[tuple[Any, ...]], studies.tuples()):
        key = (int(hospital_pk), str(accession))
        if key in by_accession:
            found.add(by_accession[key])
    return found


def _scheduled(hospital: int, study_uid: str, accession: str, step_id: str) -> Any:
    base = ProcedureStep.select().where(ProcedureStep.hospital == hospital)
    if study_uid:
        step = base.where(ProcedureStep.study_uid == study_uid).order_by(ProcedureStep.id).first()
        if step is not None:
            return step
    if accession:
        query = base.where(ProcedureStep.accession_number == accession)
        if step_id:
            query = query.where(ProcedureStep.step_id == step_id)
        return query.order_by(ProcedureStep.id).first()
    return None
