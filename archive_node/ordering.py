"""Orders and patients from the hospitals' own systems: HL7 v2 messages taken (orders become
scheduled procedure steps, ADT updates and merges become corrections), the Modality Worklist
answered from those steps, and Modality Performed Procedure Steps kept.

A message is kept and applied in one index transaction, committed before its ACK (AA) is sent;
one that is refused (AE, AR) changes nothing. A resend of a message control ID (MSH-10) taken
before from the same sender is acknowledged AA and not applied again.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .auditing import AuditTrail, QueryRecord, local_actor, new_session
from .config import Config
from .correcting import Corrections
from .dicom import status
from .dicom.values import ae_title_problem, derived_uid, is_valid_uid, text_problem
from .errors import (
    AuditUnavailable,
    Conflict,
    IndexUnavailable,
    InvalidInput,
    NotFound,
    Refused,
)
from .index import Index
from .index.clock import utcnow
from .index.order_rows import STEP_STATUSES, SenderRecord, StepRecord
from .rules.access import Peer, Resolver, address_matches
from .rules.audit import (
    CREATE,
    NODE_AUTHENTICATION,
    ORDER_RECORD,
    UPDATE,
    Actor,
    AuditEvent,
    Touched,
)
from .rules.corrections import Demographics
from .rules.hl7_messages import (
    CHARSETS,
    INTERNAL_ERROR,
    UNKNOWN_KEY,
    Content,
    Header,
    MessageRefused,
    OrderMessage,
    PatientFields,
    PatientUpdate,
    Received,
    StepFields,
    acknowledgement,
    interpret,
    parse_timestamp,
    read_message,
)
from .rules.query import InvalidQuery
from .rules.worklist import (
    WORKLIST_FIND,
    parse_worklist_query,
    worklist_answer,
)

log = logging.getLogger(__name__)

PERFORMED_STATUSES = ("IN PROGRESS", "COMPLETED", "DISCONTINUED")  # PS3.3 C.4.14
MAX_PERFORMED_BYTES = 1 << 20  # the attributes of a performed step kept, as JSON
# PS3.4 Table F.7.2-1: attributes an N-CREATE must give a value (SCU requirement 1)
CREATE_REQUIRED = (
    "ScheduledStepAttributesSequence",
    "PerformedProcedureStepID",
    "PerformedStationAETitle",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepStatus",
    "Modality",
)
# PS3.4 F.7.2.2.2: what a step set COMPLETED or DISCONTINUED must hold (DICOM JSON tags)
FINAL_REQUIRED = {
    "00400250": "PerformedProcedureStepEndDate",
    "00400251": "PerformedProcedureStepEndTime",
}
NO_LONGER_UPDATED = "Performed Procedure Step Object may no longer be updated"  # F.7.2.2.4


@dataclass(frozen=True)
class MppsOutcome:
    """The answer to an N-CREATE or N-SET: its status, Error Comment and Error ID."""

    status: int
    comment: str = ""
    error_id: int | None = None


@dataclass(frozen=True)
class WorklistResponse:
    """One C-FIND response of the worklist: pending with an identifier, or final."""

    status: int
    identifier: Any = None
    comment: str = ""
    keyword: str = ""


class Orders:
    """HL7 messages, the worklist and performed procedure steps of every hospital."""

    def __init__(
        self,
        config: Config,
        index: Index,
        audit: AuditTrail,
        corrections: Corrections,
        resolver: Resolver,
    ) -> None:
        self.config = config
        self.index = index
        self.audit = audit
        self.corrections = corrections
        self.resolver = resolver

    # -- HL7 v2 ---------------------------------------------------------------------------------

    def take_message(self, raw: bytes, address: str) -> bytes:
        """Take one HL7 message (its MLLP block) from a peer at `address`; return its ACK,
        encoded as the message was. Never raises: every failure is an AE or AR."""
        header: Header | None = None
        try:
            received = read_message(raw)
            header = received.header
            sender = self._sender(header, address)
            outcome = self._apply(received, sender, address)
            log.info(
                "HL7 %s %s from %s (%s): AA, %s",
                header.kind,
                header.control_id[:40],
                header.facility,
                sender.hospital,
                outcome,
            )
            return self._acknowledge(header, "AA")
        except Exception as exc:  # never a connection left without an answer
            if isinstance(exc, MessageRefused):
                refused = exc
            else:
                log.exception("HL7 message from %s: internal error", address)
                refused = MessageRefused("AE", "MSH^1", INTERNAL_ERROR, "internal error")
            return self._refusal(header, refused, address)

    def refuse_block(self, raw_head: bytes, refused: MessageRefused, address: str) -> bytes:
        """The AR of a block not taken as a message (broken framing, over
        hl7.max_message_bytes): with its header, if the head of it can be read, so that
        MSA-2 names its control ID."""
        try:
            header: Header | None = read_message(raw_head.split(b"\r", 1)[0] + b"\r").header
        except MessageRefused:
            header = None
        return self._refusal(header, refused, address)

    def _refusal(self, header: Header | None, refused: MessageRefused, address: str) -> bytes:
        log.warning(
            "HL7 %s %s from %s at %s: %s, %s: %s",
            header.kind if header else "message",
            header.control_id[:40] if header else "-",
            header.facility[:64] if header else "-",
            address,
            refused.ack,
            refused.location,
            refused.text,
        )
        return self._acknowledge(header, refused.ack, refused)

    def _acknowledge(
        self, header: Header | None, code: str, error: MessageRefused | None = None
    ) -> bytes:
        """The ACK, in the message's character set (ASCII when its header is unknown)."""
        node = self.config.node.ae_title
        ack = acknowledgement(
            header,
            code,
            application=node,
            facility=node,
            control_id=uuid.uuid4().hex[:20],
            text=error.text if error else "",
            error=error,
        )
        codec = CHARSETS.get(header.charset.upper(), "ascii") if header else "ascii"
        return ack.encode(codec, errors="replace")

    def _sender(self, header: Header, address: str) -> SenderRecord:
        """The registered sender of a message, from its registered address. Raises
        MessageRefused (AR) otherwise, the same words whichever it is."""
        try:
            sender = self.index.orders.sender(header.facility)
        except IndexUnavailable as exc:
            log.error("HL7 message not taken: %s", exc)
            raise MessageRefused("AE", "MSH^1", INTERNAL_ERROR, "index unavailable") from None
        allowed = self.resolver(sender.host) if sender and sender.host else frozenset()
        if sender is None or (sender.host and not address_matches(address, allowed)):
            why = "not registered" if sender is None else f"not from {sender.host}"
            log.warning("HL7 sending facility %s at %s: %s", header.facility[:64], address, why)
            # a Security Alert, as a rejected association is (bounded per address)
            self.audit.alert(
                Actor(new_session(), address=address, user=f"hl7:{header.facility}"[:64]),
                "HL7 message",
                f"sending facility {why}",
                event_type=NODE_AUTHENTICATION,
                status="AR",
            )
            raise MessageRefused(
                "AR", "MSH^1^4", UNKNOWN_KEY, "sending facility not registered from this address"
            )
        return sender

    def _apply(self, received: Received, sender: SenderRecord, address: str) -> str:
        header = received.header
        content = interpret(received, sender.issuer)
        try:
            if self.index.orders.seen(header.facility, header.control_id):
                return "a resend of a message taken before: not applied again"
            changed: list[bool] = []
            outcome = self.index.orders.take(
                header.facility,
                header.control_id,
                header.kind,
                received.text,
                lambda: self._change(header, content, sender, address, changed),
            )
        except Conflict as exc:  # the same message, taken meanwhile by another connection?
            if self.index.orders.seen(header.facility, header.control_id):
                return "a resend of a message taken before: not applied again"
            log.error("HL7 %s not applied: %s", header.kind, exc)
            raise MessageRefused(
                "AE", "MSH^1", INTERNAL_ERROR, "not applied: it contradicts itself or the index"
            ) from None
        except (IndexUnavailable, AuditUnavailable) as exc:
            log.error("HL7 %s not applied: %s", header.kind, exc)
            raise MessageRefused(
                "AE", "MSH^1", INTERNAL_ERROR, "not applied: the archive cannot keep it now"
            ) from None
        if changed:
            self.corrections.flush_journal()
        return outcome

    def _change(
        self,
        header: Header,
        content: Content,
        sender: SenderRecord,
        address: str,
        changed: list[bool],
    ) -> str:
        """In the message's transaction: what it asks, and its audit record (an Order Record
        for an order; a Patient Record, by the correction, for ADT). Raises AuditUnavailable
        (the message is not applied)."""
        actor = Actor(
            new_session(),
            hospital=sender.hospital,
            address=address,
            user=f"hl7:{header.facility}"[:64],
        )
        if isinstance(content, tuple):
            return "; ".join(self._order(header, order, sender, actor) for order in content)
        patient = content.patient
        identity = (patient.patient_id, patient.issuer)
        frame = self.corrections.frame(
            f"HL7 {header.kind} {header.control_id[:40]} from {header.facility}", actor=actor
        )
        rows = self.index.corrections
        if isinstance(content, PatientUpdate):
            steps = self.index.orders.relabel_patient(patient, sender.hospital)
            try:
                rows.update_patient(
                    identity,
                    name=patient.name,
                    birth_date=patient.birth_date,
                    sex=patient.sex,
                    frame=frame,
                )
                changed.append(True)
                archive = "the archive's patient updated"
            except NotFound:
                archive = "no images of the patient"
            except InvalidInput:
                archive = "the archive's patient has these values"
            return f"patient update: {steps} order step(s), {archive}"
        steps = self.index.orders.merge_patient(content.prior_id, patient, sender.hospital)
        try:
            rows.merge_patients(
                (content.prior_id, patient.issuer),
                identity,
                frame=frame,
                create_target=Demographics(
                    patient.name or "", patient.birth_date or "", patient.sex or ""
                ),
            )
            changed.append(True)
            archive = "the archive's patients merged"
        except NotFound:
            archive = "no images of the prior patient"
        except InvalidInput:
            raise MessageRefused(
                "AE", "MRG^1^1", UNKNOWN_KEY, "the prior patient cannot be merged into this one"
            ) from None
        return f"patient merge: {steps} order step(s), {archive}"

    def _order(
        self, header: Header, order: OrderMessage, sender: SenderRecord, actor: Actor
    ) -> str:
        """In the message's transaction: one order, and its Order Record."""
        try:
            outcome, studies = self.index.orders.apply_order(
                sender.hospital,
                order,
                source=f"hl7 {header.facility} {header.control_id[:40]}",
                new_study_uid=lambda step: self._new_study_uid(sender, order, step),
            )
        except NotFound:
            raise MessageRefused(
                "AE", f"ORC^{order.orc}^2", UNKNOWN_KEY, "the order is not known"
            ) from None
        patient = order.patient
        self.audit.record(
            AuditEvent(
                ORDER_RECORD,
                CREATE if order.control == "new" else UPDATE,
                f"HL7 {header.kind}",
                actor,
                touched=tuple(Touched(patient.patient_id, patient.issuer, uid) for uid in studies),
                detail={
                    "order": order.order_key,
                    "control": order.control,
                    "message": header.control_id[:64],
                    "outcome": outcome,
                },
            )
        )
        return outcome

    def _new_study_uid(self, sender: SenderRecord, order: OrderMessage, step: StepFields) -> str:
        """The Study Instance UID of a step its order names none for: under node.uid_root,
        the same for the same order and requested procedure."""
        return derived_uid(
            self.config.node.uid_root,
            "order",
            sender.hospital,
            order.order_key,
            step.requested_procedure_id or step.step_id,
        )

    def prune_messages(self) -> int:
        """Forget message control IDs older than hl7.remember_days."""
        before = utcnow() - timedelta(days=self.config.hl7.remember_days)
        return self.index.orders.prune_messages(before)

    # -- the Modality Worklist (PS3.4 K.6) ------------------------------------------------------

    def worklist(
        self, peer: Peer, identifier: Any, actor: Actor | None
    ) -> Iterator[WorklistResponse]:
        """Answer a worklist C-FIND: a pending response per open step of the AE's own hospital
        that matches, then the final status; a Query audit record before the first answer."""
        audited = QueryRecord(self.audit, actor, identifier, "WORKLIST", WORKLIST_FIND)
        try:
            query = parse_worklist_query(identifier)
        except InvalidQuery as exc:
            log.warning(
                "worklist C-FIND from %s refused: 0x%04X %s", peer.ae_title, exc.status, exc
            )
            audited.refused(exc.status, str(exc))
            yield WorklistResponse(exc.status, comment=str(exc), keyword=exc.keyword or "")
            return
        limit = self.config.query.max_results
        try:
            steps = self.index.orders.worklist(query, hospital=peer.hospital, limit=limit + 1)
            overflow = len(steps) > limit
            del steps[limit:]
            log.info(
                "worklist C-FIND from %s (%s): %s%d step(s)",
                peer.ae_title,
                peer.hospital,
                "more than " if overflow else "",
                len(steps),
            )
            audited.answered("WORKLIST", [_Answered(step) for step in steps], overflow, limit)
            for step in steps:
                yield WorklistResponse(status.PENDING, worklist_answer(query, step))
        except AuditUnavailable as exc:
            yield WorklistResponse(status.QUERY_FAILED, comment=str(exc))
            return
        except IndexUnavailable as exc:
            log.error("worklist C-FIND from %s failed: %s", peer.ae_title, exc)
            yield WorklistResponse(status.QUERY_FAILED, comment="index unavailable")
            return
        except Exception as exc:  # as C-FIND's: a clear failure, never a traceback to the peer
            log.exception("worklist C-FIND from %s failed unexpectedly", peer.ae_title)
            yield WorklistResponse(
                status.QUERY_FAILED, comment=f"internal error: {type(exc).__name__}"
            )
            return
        if overflow:
            comment = f"more than {limit} matches, {limit} sent: narrow the query"
            yield WorklistResponse(status.OUT_OF_RESOURCES, comment=comment)
            return
        yield WorklistResponse(status.SUCCESS)

    # -- Modality Performed Procedure Step (PS3.4 F.7) ------------------------------------------

    def create_performed(self, peer: Peer, sop_uid: str, attributes: Any) -> MppsOutcome:
        """N-CREATE (PS3.4 F.7.2.1): the step starts IN PROGRESS, with the Type 1 attributes
        of Table F.7.2-1."""
        if not is_valid_uid(sop_uid):
            return MppsOutcome(status.INVALID_ATTRIBUTE_VALUE, "SOP Instance UID is not a UID")
        try:
            missing = [k for k in CREATE_REQUIRED if not attributes.get(k)]
            state = str(attributes.get("PerformedProcedureStepStatus", "") or "").strip()
            scheduled = attributes.get("ScheduledStepAttributesSequence") or []
            first = scheduled[0] if scheduled else {}
            study_uid = str(first.get("StudyInstanceUID", "") or "").strip()
            accession = str(first.get("AccessionNumber", "") or "").strip()
            step_id = str(first.get("ScheduledProcedureStepID", "") or "").strip()
            kept = _json(attributes)
        except Exception as exc:
            return MppsOutcome(
                status.INVALID_ATTRIBUTE_VALUE, f"cannot be decoded: {type(exc).__name__}"
            )
        if missing:
            return MppsOutcome(status.MISSING_ATTRIBUTE, f"{missing[0]} is missing")
        if state != "IN PROGRESS":
            return MppsOutcome(
                status.INVALID_ATTRIBUTE_VALUE, "PerformedProcedureStepStatus must be IN PROGRESS"
            )
        if study_uid and not is_valid_uid(study_uid):
            return MppsOutcome(status.INVALID_ATTRIBUTE_VALUE, "StudyInstanceUID is not a UID")
        if kept is None:
            return MppsOutcome(status.RESOURCE_LIMITATION, "the step's attributes are too large")
        try:
            linked = self.index.orders.create_performed(
                sop_uid,
                hospital=peer.hospital,
                ae_title=peer.ae_title,
                study_uid=study_uid,
                accession=accession[:64],
                step_id=step_id[:64],
                attributes=kept,
            )
        except Conflict as exc:
            return MppsOutcome(status.DUPLICATE_SOP_INSTANCE, str(exc))
        except IndexUnavailable as exc:
            log.error("MPPS N-CREATE from %s failed: %s", peer.ae_title, exc)
            return MppsOutcome(status.PROCESSING_FAILURE, "index unavailable")
        log.info(
            "MPPS %s from %s (%s): IN PROGRESS%s",
            sop_uid,
            peer.ae_title,
            peer.hospital,
            ", linked to its scheduled step" if linked else ", no scheduled step of it",
        )
        return MppsOutcome(status.SUCCESS)

    def set_performed(self, peer: Peer, sop_uid: str, modification: Any) -> MppsOutcome:
        """N-SET (PS3.4 F.7.2.2): of the AE's own hospital's steps. COMPLETED and
        DISCONTINUED need their end date and time, and are final: a later N-SET is 0x0110 with
        Error ID A710 (F.7.2.2.4)."""
        try:
            state = str(modification.get("PerformedProcedureStepStatus", "") or "").strip()
            kept = _json(modification)
        except Exception as exc:
            return MppsOutcome(
                status.INVALID_ATTRIBUTE_VALUE, f"cannot be decoded: {type(exc).__name__}"
            )
        if state and state not in PERFORMED_STATUSES:
            return MppsOutcome(
                status.INVALID_ATTRIBUTE_VALUE,
                f"PerformedProcedureStepStatus is not one of {', '.join(PERFORMED_STATUSES)}",
            )
        if kept is None:
            return MppsOutcome(status.RESOURCE_LIMITATION, "the step's attributes are too large")
        try:
            before = self.index.orders.set_performed(
                sop_uid,
                hospital=peer.hospital,
                status=state or "IN PROGRESS",
                attributes=kept,
                check=_check_performed,
            )
        except NotFound:
            return MppsOutcome(status.NO_SUCH_SOP_INSTANCE, "no such performed procedure step")
        except InvalidInput:
            return MppsOutcome(status.PROCESSING_FAILURE, NO_LONGER_UPDATED, error_id=0xA710)
        except Refused as exc:
            return MppsOutcome(exc.status, str(exc))
        except IndexUnavailable as exc:
            log.error("MPPS N-SET from %s failed: %s", peer.ae_title, exc)
            return MppsOutcome(status.PROCESSING_FAILURE, "index unavailable")
        log.info("MPPS %s from %s: %s -> %s", sop_uid, peer.ae_title, before, state or before)
        return MppsOutcome(status.SUCCESS)

    # -- admin ------------------------------------------------------------------------------------

    def add_sender(self, facility: str, hospital: str, host: str) -> SenderRecord:
        facility = facility.strip()
        if not facility or len(facility) > 64 or not facility.isprintable() or "|" in facility:
            raise InvalidInput("a sending facility is 1-64 printable characters without '|'")
        if not host:
            raise InvalidInput("--host is required: the address the sender connects from")
        return self.index.orders.add_sender(facility, hospital, host)

    def add_step(
        self,
        hospital: str,
        *,
        patient_id: str,
        issuer: str | None,
        name: str,
        birth_date: str,
        sex: str,
        accession: str,
        modality: str,
        station: str,
        date: str,
        time: str,
        procedure: str,
    ) -> dict[str, Any]:
        """A step made by hand. Raises InvalidInput naming the bad option, NotFound."""
        checks = [
            (patient_id, "LO", "--patient-id"),
            (name, "PN", "--name"),
            (accession, "SH", "--accession"),
            (modality, "CS", "--modality"),
            (procedure, "LO", "--procedure"),
        ]
        if issuer is not None:
            checks.append((issuer, "LO", "--issuer"))
        for value, vr, option in checks:
            problem = text_problem(value, vr)
            if problem:
                raise InvalidInput(f"{option}: {problem}")
        for value, option in ((patient_id, "--patient-id"), (accession, "--accession")):
            if not value.strip():
                raise InvalidInput(f"{option} may not be empty")
        if ae_title_problem(station):
            raise InvalidInput(f"--station: {ae_title_problem(station)}")
        start_date, start_time = parse_timestamp(date + time)
        if not start_date or len(date) != 8 or len(time) not in (0, 4, 6):
            raise InvalidInput("--date is YYYYMMDD and --time HHMM")
        if sex not in ("", "M", "F", "O"):
            raise InvalidInput("--sex is M, F or O")
        if birth_date and parse_timestamp(birth_date + "0000")[0] != birth_date:
            raise InvalidInput("--birth-date is YYYYMMDD")
        study_uid = self._hand_study_uid(hospital, accession)
        actor = local_actor()

        def record(step: dict[str, Any]) -> None:
            self.audit.record(
                AuditEvent(
                    ORDER_RECORD,
                    CREATE,
                    "orders add",
                    actor,
                    touched=(Touched(step["patient_id"], step["issuer"], step["study_uid"]),),
                    detail={"order": step["order_key"], "station": step["station_ae"]},
                )
            )

        return self.index.orders.add_step(
            hospital,
            PatientFields(patient_id.strip(), issuer or "", name, birth_date, sex),
            StepFields(
                accession_number=accession.strip(),
                requested_procedure_id=accession.strip(),
                step_id=accession.strip(),
                modality=modality.upper(),
                procedure_code="",
                procedure_description=procedure,
                station_ae=station.strip(),
                start_date=start_date,
                start_time=start_time,
                study_uid=study_uid,
            ),
            f"admin {actor.user}"[:64],
            record,
        )

    def _hand_study_uid(self, hospital: str, accession: str) -> str:
        return derived_uid(self.config.node.uid_root, "order", hospital, accession, accession)

    def steps(self, **filters: Any) -> list[StepRecord]:
        status_filter = filters.get("status")
        if status_filter and status_filter not in (*STEP_STATUSES, "PERFORMED"):
            raise InvalidInput(f"--status is one of {', '.join(STEP_STATUSES)}, PERFORMED")
        if status_filter == "PERFORMED":  # in the index's SELECT, before its row limit
            filters.update(status=None, performed=True)
        return self.index.orders.steps(**filters)


class _Answered:
    """A worklist match as the Query audit record reads it (its patient and study)."""

    def __init__(self, step: dict[str, Any]) -> None:
        self.values = {
            "PatientID": step["patient_id"],
            "IssuerOfPatientID": step["issuer"],
            "StudyInstanceUID": step["study_uid"],
        }


def _check_performed(attributes: dict[str, Any], state: str) -> None:
    """A performed step as an N-SET leaves it: within MAX_PERFORMED_BYTES, and, when it ends,
    with its end date and time. Raises Refused."""
    if len(json.dumps(attributes)) > MAX_PERFORMED_BYTES:
        raise Refused(status.RESOURCE_LIMITATION, "the step's attributes are too large")
    if state in ("COMPLETED", "DISCONTINUED"):
        for tag, keyword in FINAL_REQUIRED.items():
            if not (attributes.get(tag) or {}).get("Value"):
                raise Refused(status.PROCESSING_FAILURE, f"{state} needs {keyword}")


def _json(dataset: Any) -> dict[str, Any] | None:
    """A dataset's attributes in the DICOM JSON model, or None when they are over
    MAX_PERFORMED_BYTES."""
    value = dataset.to_json_dict(bulk_data_threshold=1024)
    if len(json.dumps(value)) > MAX_PERFORMED_BYTES:
        return None
    return dict(value)
