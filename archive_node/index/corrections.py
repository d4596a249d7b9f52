"""Corrections in the index: patient updates and merges, study moves, issuer changes, IOCM
rejections and restores, deletions; each in one transaction with its Correction row and its
audit record, or, with dry_run, computed and rolled back.

A correction never touches a stored file (the service removes the files a deletion leaves
behind, after the commit). What leaves the node follows the rows: a study marked `corrected`
is sent with its patient's attributes from the index (dicom/patient_rewrite.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from peewee import fn

from ..dicom import status
from ..errors import InvalidInput, NotFound, StoreRejected
from ..rules.audit import AuditEvent, Touched, timestamp
from ..rules.corrections import (
    Change,
    Demographics,
    Identity,
    Named,
    due_for_deletion,
    prior_ids,
    with_prior,
    without,
)
from ..rules.matching import date_key, name_key
from ..rules.rejection import Reference, RejectionNote
from .audit_rows import AuditRows
from .clock import utcnow
from .session import Role, Session
from .tables import (
    Acknowledgement,
    Correction,
    Hospital,
    Instance,
    Patient,
    PatientAlias,
    Series,
    Study,
)

# What the audit trail records of a change: the events, built by the layer above (auditing).
Recorder = Callable[[Change], Sequence[AuditEvent]]
LIFECYCLE_BATCH = 500  # instances deleted per lifecycle transaction


@dataclass(frozen=True)
class Frame:
    """Who makes a correction and why, how it is recorded, and whether it is only shown
    (dry_run) or replayed from the journal (`replayed`: the entry's uid and time)."""

    reason: str
    user: str
    dry_run: bool = False
    record: tuple[str, Recorder] | None = None  # (audit node, events of a change)
    replayed: dict[str, str] | None = None


class _DryRun(Exception):
    def __init__(self, change: Change) -> None:
        self.change = change


class CorrectionRows(Role):
    """Every correction, done under one write transaction that also writes its record."""

    def __init__(self, session: Session, audit: AuditRows) -> None:
        super().__init__(session)
        self.audit = audit

    # -- the frame of every correction ---------------------------------------------------------

    def _apply(
        self,
        work: Callable[[], Change],
        operation: dict[str, Any],
        frame: Frame,
    ) -> Change:
        """Run `work` in a write transaction, then its Correction row (with `operation`, what
        replays it: Journal) and audit record in the same one; with dry_run, roll it all back.
        Raises what `work` raises (nothing written), IndexUnavailable."""
        try:
            with self.session(write=True):
                change = work()
                if frame.dry_run:
                    raise _DryRun(change)
                self._record(change, operation, frame)
                return change
        except _DryRun as rolled_back:
            return rolled_back.change

    def _record(
        self,
        change: Change,
        operation: dict[str, Any],
        frame: Frame,
    ) -> None:
        replayed, reason = frame.replayed, frame.reason
        Correction.insert(
            uid=replayed["uid"] if replayed else str(uuid.uuid4()),
            time=replayed["time"] if replayed else timestamp(),
            kind=change.kind,
            user_name=frame.user,
            reason=reason,
            detail=json.dumps({**change.detail(reason), "operation": operation}, sort_keys=True),
            journaled=bool(replayed),
        ).execute()
        if frame.record is not None:
            node, events = frame.record
            self.audit._append(node, events(change))

    # -- patients ------------------------------------------------------------------------------

    def update_patient(
        self,
        patient: Named,
        *,
        name: str | None,
        birth_date: str | None,
        sex: str | None,
        frame: Frame,
    ) -> Change:
        """New demographics for a patient and every study of theirs. Raises NotFound,
        InvalidInput (ambiguous, nothing to change)."""

        def work() -> Change:
            row = _patient(*patient)
            before = Demographics(row.patient_name, row.birth_date, row.sex)
            after = before.changed(name, birth_date, sex)
            if after == before:
                raise InvalidInput("the patient already has these values: nothing to change")
            Patient.update(**_demographics(after), corrected=True).where(
                Patient.id == row.id
            ).execute()
            studies = _study_uids(row.id)
            Study.update(**_demographics(after), corrected=True).where(
                Study.patient == row.id
            ).execute()
            identity = (row.patient_id, row.issuer)
            return Change(
                "patient update",
                f"patient {_label(identity)}: {len(studies)} studies",
                before=before.as_dict(),
                after=after.as_dict(),
                touched=_touched(identity, studies),
            )

        return self._apply(
            work,
            {
                "op": "update_patient",
                "patient": list(patient),
                "name": name,
                "birth_date": birth_date,
                "sex": sex,
            },
            frame,
        )

    def merge_patients(
        self,
        source: Named,
        target: Named,
        *,
        frame: Frame,
        create_target: Demographics | None = None,
    ) -> Change:
        """Two records of one person become one: `source`'s studies go to `target`, its
        identifier becomes an alias of `target`'s, and its row goes. With `create_target`
        (an HL7 merge, whose surviving identifier the node may not have yet), a missing
        target is made with these demographics. Raises NotFound, InvalidInput (ambiguous, the
        same patient, an unidentified one)."""

        def work() -> Change:
            src = _patient(*source)
            try:
                dst = _patient(*target)
            except NotFound:
                if create_target is None or target[1] is None:
                    raise
                dst = _new_patient((target[0], target[1]), create_target)
            if src.id == dst.id:
                raise InvalidInput("a patient cannot be merged into itself")
            for row in (src, dst):
                if row.anonymous_study:
                    raise InvalidInput(
                        "an unidentified patient's study is filed with `study move`, not merged"
                    )
            src_id, dst_id = (src.patient_id, src.issuer), (dst.patient_id, dst.issuer)
            studies = _study_uids(src.id)
            _refile(src.id, dst, prior=src_id)
            PatientAlias.update(target=dst.id).where(PatientAlias.target == src.id).execute()
            PatientAlias.delete().where(
                (PatientAlias.patient_id == dst.patient_id) & (PatientAlias.issuer == dst.issuer)
            ).execute()
            PatientAlias.insert(
                patient_id=src.patient_id, issuer=src.issuer, target=dst.id
            ).execute()
            Patient.delete().where(Patient.id == src.id).execute()
            _refresh_patients([dst.id])
            return Change(
                "patient merge",
                f"patient {_label(src_id)} merged into {_label(dst_id)}: {len(studies)} studies",
                before={"patient": list(src_id)},
                after={"patient": list(dst_id)},
                touched=_touched(src_id, studies) + _touched(dst_id, studies),
            )

        operation: dict[str, Any] = {
            "op": "merge_patients",
            "source": list(source),
            "target": list(target),
        }
        if create_target is not None:
            operation["create_target"] = create_target.as_dict()
        return self._apply(work, operation, frame)

    def change_issuer(
        self,
        code: str,
        issuer: str,
        *,
        merge: bool,
        frame: Frame,
    ) -> Change:
        """A hospital's Issuer of Patient ID corrected: its patients (those under the old
        issuer) are relabelled, the old identifiers kept as aliases. A patient whose identifier
        under the new issuer exists already is merged into it with `merge`; without, nothing
        changes (InvalidInput). Raises NotFound."""

        def work() -> Change:
            hospital = Hospital.get_or_none(Hospital.code == code)
            if hospital is None:
                raise NotFound(f"no hospital {code}")
            old = hospital.issuer
            if old == issuer:
                raise InvalidInput(f"hospital {code} has issuer {issuer} already")
            rows = list(Patient.select().where(Patient.issuer == old).order_by(Patient.id))
            clashes = {
                row.id: existing
                for row in rows
                if (
                    existing := Patient.get_or_none(
                        (Patient.patient_id == row.patient_id)
                        & (Patient.issuer == issuer)
                        & (Patient.anonymous_study == row.anonymous_study)
                    )
                )
                is not None
            }
            if clashes and not merge:
                raise InvalidInput(
                    f"{len(clashes)} patient(s) of issuer {old} exist under {issuer} already: "
                    "add --merge to merge each into that patient"
                )
            touched: list[Touched] = []
            for row in rows:
                identity = (row.patient_id, row.issuer)
                studies = _study_uids(row.id)
                touched += _touched(identity, studies)
                known = not row.anonymous_study
                if row.id in clashes:
                    _refile(row.id, clashes[row.id], prior=identity)
                    PatientAlias.update(target=clashes[row.id].id).where(
                        PatientAlias.target == row.id
                    ).execute()
                    Patient.delete().where(Patient.id == row.id).execute()
                    target_id = clashes[row.id].id
                else:
                    Patient.update(issuer=issuer).where(Patient.id == row.id).execute()
                    for study in Study.select(Study.id, Study.prior_ids).where(
                        Study.patient == row.id
                    ):
                        prior = with_prior(study.prior_ids, identity) if known else study.prior_ids
                        Study.update(corrected=True, prior_ids=prior).where(
                            Study.id == study.id
                        ).execute()
                    target_id = row.id
                if known:
                    _alias(row.patient_id, old, target_id)
            Hospital.update(issuer=issuer).where(Hospital.id == hospital.id).execute()
            return Change(
                "issuer change",
                f"hospital {code}: issuer {old} -> {issuer}, {len(rows)} patient(s) relabelled"
                + (f", {len(clashes)} merged" if clashes else ""),
                before={"issuer": old},
                after={"issuer": issuer, "merged": len(clashes)},
                touched=tuple(touched),
            )

        return self._apply(
            work, {"op": "change_issuer", "code": code, "issuer": issuer, "merge": merge}, frame
        )

    # -- studies -------------------------------------------------------------------------------

    def move_study(
        self,
        study_uid: str,
        target: Named,
        *,
        create: Demographics | None,
        frame: Frame,
    ) -> Change:
        """File a study under another patient (created with `create`'s demographics when
        unknown and an issuer is given). Raises NotFound, InvalidInput."""

        def work() -> Change:
            study = Study.get_or_none(Study.study_uid == study_uid)
            if study is None:
                raise NotFound(f"no study {study_uid}")
            src = Patient.get_by_id(study.patient)
            try:
                dst = _patient(*target)
            except NotFound:
                if create is None or target[1] is None:
                    raise NotFound(
                        f"no patient {_label(target)}: to create one, give --issuer and --name "
                        "(--birth-date, --sex)"
                    ) from None
                dst = _new_patient((target[0], target[1]), create)
            if dst.id == src.id:
                raise InvalidInput("the study is filed under that patient already")
            if dst.anonymous_study:
                raise InvalidInput("a study cannot be moved to an unidentified patient")
            src_id, dst_id = (src.patient_id, src.issuer), (dst.patient_id, dst.issuer)
            before = {
                "patient": list(src_id),
                **Demographics(study.patient_name, study.birth_date, study.sex).as_dict(),
            }
            prior = None if src.anonymous_study else src_id
            _refile(src.id, dst, prior=prior, study=study.id)
            _drop_if_unused(src.id)
            return Change(
                "study move",
                f"study {study_uid}: patient {_label(src_id)} -> {_label(dst_id)}",
                before=before,
                after={"patient": list(dst_id), **_as_demographics(dst).as_dict()},
                touched=_touched(src_id, [study_uid]) + _touched(dst_id, [study_uid]),
                instances=_count_instances([study.id]),
            )

        return self._apply(
            work,
            {
                "op": "move_study",
                "study_uid": study_uid,
                "target": list(target),
                "create": create.as_dict() if create else None,
            },
            frame,
        )

    # -- rejection and restore (IHE IOCM) -----------------------------------------------------

    def reject(
        self,
        uids: Sequence[str],
        code: str,
        *,
        delete_after_days: int,
        frame: Frame,
    ) -> Change:
        """Reject the instances `uids` name (SOP Instance, Series or Study Instance UIDs): hidden
        from every query, retrieve and commitment; due for deletion for 113038 and 113039.
        Raises NotFound (an unknown UID), InvalidInput (nothing left to reject)."""

        def work() -> Change:
            return self.reject_in_transaction(
                _resolve(uids, lenient=frame.replayed is not None),
                code,
                delete_after_days=delete_after_days,
                note="",
            )

        return self._apply(
            work,
            {
                "op": "reject",
                "uids": list(uids),
                "code": code,
                "delete_after_days": delete_after_days,
            },
            frame,
        )

    def reject_in_transaction(
        self, rows: list[Any], code: str, *, delete_after_days: int, note: str
    ) -> Change:
        """In the caller's transaction: reject instance `rows` (from _resolve or
        referenced_instances). Raises InvalidInput when every one is rejected already."""
        fresh = [row for row in rows if not row.rejection]
        if not fresh:
            raise InvalidInput("every instance named is rejected already")
        now = utcnow()
        due = due_for_deletion(code, now, delete_after_days)
        ids = [row.id for row in fresh]
        for chunk in _chunks(ids):
            Instance.update(rejection=code, rejected_at=now, delete_after=due).where(
                Instance.id.in_(chunk)
            ).execute()
        _refresh_series({row.series_id for row in fresh})
        return Change(
            "reject",
            f"{len(fresh)} instance(s) rejected ({code})"
            + (f", {len(rows) - len(fresh)} rejected already" if len(fresh) < len(rows) else "")
            + (f", due for deletion {due:%Y-%m-%d %H:%M} UTC" if due else ""),
            before={"rejection": ""},
            after={
                "rejection": code,
                "delete_after": due.isoformat() if due else None,
                "note": note,
            },
            touched=_touched_instances(ids),
            instances=len(fresh),
        )

    def apply_note_in_transaction(
        self, note: RejectionNote, *, hospital: str | None, delete_after_days: int, frame: Frame
    ) -> Change | str:
        """In the caller's transaction (the one indexing the note itself): reject what a
        rejection note references and record it. Returns the Change, or why nothing was
        rejected while the note is kept as an ordinary KOS (it references another patient's
        instances, or only rejected ones).

        Raises StoreRejected (REJECTION_FAILED; the caller's transaction, note included, is
        undone) when a reference names an instance not stored, not in the study and series
        it says, or not visible to the sending AE (`hospital`: its scope hospital's only):
        the same answer for each, so that no AE learns what another hospital holds."""
        rows, unknown = self.referenced_instances(note.references)
        hidden = [row for row in rows if hospital is not None and row.hospital_code != hospital]
        if unknown or hidden:
            raise StoreRejected(
                status.REJECTION_FAILED,
                f"{len(unknown) + len(hidden)} referenced instance(s) unknown or not visible: "
                "none rejected",
            )
        own = (note.patient_id, note.issuer)
        if any(not _same_patient(own, row) for row in rows):
            return "it references another patient's instances"
        try:
            change = self.reject_in_transaction(
                rows, note.code, delete_after_days=delete_after_days, note=note.sop_uid
            )
        except InvalidInput:
            return "every instance it references is rejected already"
        operation = {
            "op": "reject",
            "uids": [row.sop_uid for row in rows],
            "code": note.code,
            "delete_after_days": delete_after_days,
        }
        self._record(change, operation, frame)
        return change

    def referenced_instances(
        self, references: Sequence[Reference]
    ) -> tuple[list[Any], list[Reference]]:
        """In the caller's session: the instance rows a rejection note references (with their
        hospital code, patient identifier and study's prior identifiers), and the references
        that name no such instance in that study and series."""
        found: dict[str, Any] = {}
        for chunk in _chunks([r.sop_uid for r in references]):
            for row in _instance_rows().where(Instance.sop_uid.in_(chunk)):
                found[row.sop_uid] = row
        rows, unknown = [], []
        for reference in references:
            row = found.get(reference.sop_uid)
            if row is None or (row.study_uid, row.series_uid, row.sop_class_uid) != (
                reference.study_uid,
                reference.series_uid,
                reference.sop_class_uid,
            ):
                unknown.append(reference)
            else:
                rows.append(row)
        return rows, unknown

    def restore(
        self,
        uids: Sequence[str],
        *,
        frame: Frame,
    ) -> Change:
        """Undo the rejection of the instances `uids` name. Raises NotFound, InvalidInput (none
        rejected, or some deleted already: nothing restored)."""

        def work() -> Change:
            rows = [
                row for row in _resolve(uids, lenient=frame.replayed is not None) if row.rejection
            ]
            if not rows:
                raise InvalidInput("no instance named is rejected: nothing to restore")
            deleted = [row for row in rows if row.deleted]
            if deleted:
                raise InvalidInput(
                    f"{len(deleted)} of the rejected instances are deleted already and cannot "
                    "be restored: nothing restored"
                )
            ids = [row.id for row in rows]
            for chunk in _chunks(ids):
                Instance.update(rejection="", rejected_at=None, delete_after=None).where(
                    Instance.id.in_(chunk)
                ).execute()
            _refresh_series({row.series_id for row in rows})
            return Change(
                "restore",
                f"{len(rows)} instance(s) restored",
                before={"rejection": sorted({row.rejection for row in rows})},
                after={"rejection": ""},
                touched=_touched_instances(ids),
                instances=len(rows),
            )

        return self._apply(work, {"op": "restore", "uids": list(uids)}, frame)

    # -- deletion ------------------------------------------------------------------------------

    def delete(
        self,
        level: str,
        uid: str,
        *,
        frame: Frame,
    ) -> Change:
        """Remove a study, series or instance's rows (`level`: study, series, instance), and
        what that leaves empty; Change.paths are the files to remove after the commit.
        Raises NotFound."""

        def work() -> Change:
            rows = _rows_of(level, uid)
            if not rows:
                raise NotFound(f"no {level} {uid}")
            touched = _touched_instances([row.id for row in rows])
            _delete_rows(rows)
            return Change(
                f"{level} delete",
                f"{level} {uid}: {len(rows)} instance(s) deleted",
                before={"instances": len(rows)},
                after={"instances": 0},
                touched=touched,
                instances=len(rows),
                paths=tuple(row.path for row in rows if not row.deleted),
            )

        return self._apply(work, {"op": "delete", "level": level, "uid": uid}, frame)

    def delete_due(self, *, now: datetime, frame: Frame) -> Change | None:
        """Mark the rejected instances due for deletion as deleted (at most LIFECYCLE_BATCH):
        their rows stay, without a file, so that a resend stays refused. None when none is
        due; Change.paths are the files to remove after the commit."""

        def work() -> Change:
            due = (
                _instance_rows()
                .where(
                    (Instance.rejection != "")
                    & (Instance.deleted == False)  # noqa: E712  (SQL)
                    & (Instance.delete_after <= now)
                )
                .order_by(Instance.id)
                .limit(LIFECYCLE_BATCH)
            )
            if self.db.for_update:  # PostgreSQL: another node's run takes the rows it locked
                due = due.for_update("FOR UPDATE OF t1 SKIP LOCKED")  # t1: the instance row
            rows = list(due)
            if not rows:
                raise _DryRun(Change("none", ""))
            ids = [row.id for row in rows]
            for chunk in _chunks(ids):
                Instance.update(deleted=True).where(Instance.id.in_(chunk)).execute()
            operation["uids"] = [row.sop_uid for row in rows]
            return Change(
                "lifecycle delete",
                f"{len(rows)} rejected instance(s) deleted (due)",
                before={"rejection": sorted({row.rejection for row in rows})},
                after={"deleted": True},
                touched=_touched_instances(ids),
                instances=len(rows),
                paths=tuple(row.path for row in rows),
            )

        operation: dict[str, Any] = {"op": "delete_due"}
        change = self._apply(work, operation, frame)
        return None if change.kind == "none" else change

    def due(self, now: datetime) -> int:
        """How many rejected instances are due for deletion."""
        with self.session():
            return (
                Instance.select()
                .where(
                    (Instance.rejection != "")
                    & (Instance.deleted == False)  # noqa: E712  (SQL)
                    & (Instance.delete_after <= now)
                )
                .count()
            )

    # -- what a retrieve sends --------------------------------------------------------------

    def corrected_patients(self, study_uids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """For the corrected studies among `study_uids`: the patient attributes their instances
        leave with (PatientID, issuer, name, birth date, sex, prior identifiers)."""
        found: dict[str, dict[str, Any]] = {}
        with self.session():
            for chunk in _chunks(sorted(set(study_uids))):
                query = (
                    Study.select(
                        Study.study_uid,
                        Patient.patient_id,
                        Patient.issuer,
                        Study.patient_name,
                        Study.birth_date,
                        Study.sex,
                        Study.prior_ids,
                    )
                    .join(Patient, on=(Study.patient == Patient.id))
                    .where(Study.study_uid.in_(chunk) & (Study.corrected == True))  # noqa: E712
                )
                for uid, pid, issuer, name, birth, sex, prior in _tuples(query):
                    found[uid] = {
                        "patient_id": pid,
                        "issuer": issuer,
                        "name": name,
                        "birth_date": birth,
                        "sex": sex,
                        "prior_ids": prior,
                    }
        return found

    def unjournaled(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Corrections not yet in the store's journal, oldest first."""
        with self.session():
            rows = (
                Correction.select()
                .where(Correction.journaled == False)  # noqa: E712  (SQL)
                .order_by(Correction.id)
                .limit(limit)
            )
            return [_journal_entry(row) for row in rows]

    def mark_journaled(self, uids: Sequence[str]) -> None:
        with self.session(write=True):
            for chunk in _chunks(list(uids)):
                Correction.update(journaled=True).where(Correction.uid.in_(chunk)).execute()

    def known(self, uids: Iterable[str]) -> set[str]:
        """Which of these correction uids the index holds."""
        found: set[str] = set()
        with self.session():
            for chunk in _chunks(list(uids)):
                query = Correction.select(Correction.uid).where(Correction.uid.in_(chunk))
                found |= {row[0] for row in _tuples(query)}
        return found


# -- helpers, in the caller's transaction --------------------------------------------------------


def _alias(patient_id: str, issuer: str, target: int) -> None:
    PatientAlias.delete().where(
        (PatientAlias.patient_id == patient_id) & (PatientAlias.issuer == issuer)
    ).execute()
    PatientAlias.insert(patient_id=patient_id, issuer=issuer, target=target).execute()


def _same_patient(note: tuple[str, str], row: Any) -> bool:
    """Whether a rejection note's patient is the referenced instance's (its identifier now, or
    one its study was filed under before a correction); a note without an issuer matches any."""
    patient_id, issuer = note
    candidates = [(row.patient_identifier, row.patient_issuer), *prior_ids(row.prior_ids)]
    return any(patient_id == pid and (not issuer or issuer == iss) for pid, iss in candidates)


def _label(identity: tuple[str, str | None]) -> str:
    patient_id, issuer = identity
    return f"{patient_id} ({issuer})" if issuer else patient_id


def _patient(patient_id: str, issuer: str | None) -> Any:
    """The identified patient with this PatientID (and issuer): NotFound, or InvalidInput when
    the PatientID alone names several."""
    query = Patient.select().where(Patient.patient_id == patient_id)
    if issuer is not None:
        query = query.where(Patient.issuer == issuer)
    rows = list(query.order_by(Patient.id).limit(20))
    if not rows:
        raise NotFound(f"no patient {_label((patient_id, issuer))}")
    if len(rows) > 1:
        issuers = sorted({row.issuer for row in rows})
        if len(issuers) > 1:
            raise InvalidInput(
                f"patient ID {patient_id} is used by several issuers ({', '.join(issuers)}): "
                "give --issuer"
            )
        raise InvalidInput(
            f"patient ID {patient_id} names several unidentified patients: correct their "
            "studies with `study move`"
        )
    return rows[0]


def _new_patient(identity: Identity, demographics: Demographics) -> Any:
    pk = Patient.insert(
        patient_id=identity[0],
        issuer=identity[1],
        anonymous_study="",
        corrected=True,
        **_demographics(demographics),
    ).execute()
    return Patient.get_by_id(pk)


def _demographics(values: Demographics) -> dict[str, str]:
    return {
        "patient_name": values.name,
        "name_key": name_key(values.name),
        "birth_date": values.birth_date,
        "birth_key": date_key(values.birth_date),
        "sex": values.sex,
    }


def _as_demographics(patient: Any) -> Demographics:
    return Demographics(patient.patient_name, patient.birth_date, patient.sex)


def _refile(source: int, target: Any, *, prior: Identity | None, study: int | None = None) -> None:
    """Move `source`'s studies (or only `study`) to patient row `target`: their demographics
    become the target's, they are corrected, and `prior` joins their prior identifiers (the
    target's own leaves them: a study moved back is no longer under another's)."""
    query = Study.select(Study.id, Study.prior_ids).where(Study.patient == source)
    if study is not None:
        query = query.where(Study.id == study)
    own = (target.patient_id, target.issuer)
    for row in list(query):
        priors = without(with_prior(row.prior_ids, *([prior] if prior else [])), own)
        Study.update(
            patient=target.id,
            corrected=True,
            prior_ids=priors,
            **_demographics(_as_demographics(target)),
        ).where(Study.id == row.id).execute()
    _refresh_patients([source, target.id])


def _drop_if_unused(patient: int) -> None:
    """Remove a patient row no study and no alias names any more."""
    used = Study.select().where(Study.patient == patient).exists() or (
        PatientAlias.select().where(PatientAlias.target == patient).exists()
    )
    if not used:
        Patient.delete().where(Patient.id == patient).execute()


def _study_uids(patient: int) -> list[str]:
    query = Study.select(Study.study_uid).where(Study.patient == patient).order_by(Study.id)
    return [row[0] for row in _tuples(query)]


def _count_instances(studies: list[int]) -> int:
    return (
        Instance.select()
        .join(Series, on=(Instance.series == Series.id))
        .where(Series.study.in_(studies))
        .count()
    )


def _touched(identity: tuple[str, str | None], studies: Iterable[str]) -> tuple[Touched, ...]:
    return tuple(Touched(identity[0], identity[1] or "", uid) for uid in studies)


def _instance_rows() -> Any:
    """Instance rows with their study and series UIDs, hospital code and patient identifier."""
    return (
        Instance.select(
            Instance.id,
            Instance.sop_uid,
            Instance.sop_class_uid,
            Instance.series,
            Instance.path,
            Instance.rejection,
            Instance.deleted,
            Series.series_uid.alias("series_uid"),
            Study.study_uid.alias("study_uid"),
            Study.prior_ids.alias("prior_ids"),
            Hospital.code.alias("hospital_code"),
            Patient.patient_id.alias("patient_identifier"),
            Patient.issuer.alias("patient_issuer"),
        )
        .join(Series, on=(Instance.series == Series.id))
        .join(Study, on=(Series.study == Study.id))
        .join(Patient, on=(Study.patient == Patient.id))
        .switch(Instance)
        .join(Hospital, on=(Instance.hospital == Hospital.id))
        .objects()
    )


def _rows_of(level: str, uid: str) -> list[Any]:
    column = {"instance": Instance.sop_uid, "series": Series.series_uid, "study": Study.study_uid}
    return list(_instance_rows().where(column[level] == uid).order_by(Instance.id))


def _resolve(uids: Sequence[str], *, lenient: bool = False) -> list[Any]:
    """The instance rows SOP Instance, Series or Study Instance UIDs name, each once. Raises
    NotFound naming the first UID that is none of these (unless `lenient`: a journal replayed
    onto a rebuilt index, where deleted instances have no rows)."""
    rows: dict[int, Any] = {}
    for uid in uids:
        found = next(
            (r for level in ("instance", "series", "study") if (r := _rows_of(level, uid))), []
        )
        if not found and not lenient:
            raise NotFound(f"no instance, series or study {uid}")
        rows.update((row.id, row) for row in found)
    return [rows[pk] for pk in sorted(rows)]


def _touched_instances(ids: list[int]) -> tuple[Touched, ...]:
    """Each patient and study these instances belong to, with how many of them."""
    counts: dict[tuple[str, str, str], int] = {}
    for chunk in _chunks(ids):
        query = (
            Instance.select(
                Patient.patient_id, Patient.issuer, Study.study_uid, fn.COUNT(Instance.id)
            )
            .join(Series, on=(Instance.series == Series.id))
            .join(Study, on=(Series.study == Study.id))
            .join(Patient, on=(Study.patient == Patient.id))
            .where(Instance.id.in_(chunk))
            .group_by(Patient.patient_id, Patient.issuer, Study.study_uid)
            .tuples()
        )
        for pid, issuer, study, count in cast(Iterable[tuple[str, str, str, int]], query):
            counts[(pid, issuer, study)] = counts.get((pid, issuer, study), 0) + count
    return tuple(Touched(*key, count) for key, count in sorted(counts.items()))


def _delete_rows(rows: list[Any]) -> None:
    """Remove instance rows, their acknowledgements, and the series, studies and patients
    they leave empty."""
    ids = [row.id for row in rows]
    series = {row.series_id for row in rows}
    for chunk in _chunks([row.sop_uid for row in rows]):
        Acknowledgement.delete().where(Acknowledgement.sop_uid.in_(chunk)).execute()
    for chunk in _chunks(ids):
        Instance.delete().where(Instance.id.in_(chunk)).execute()
    studies = {
        row[0]
        for chunk in _chunks(sorted(series))
        for row in _tuples(Series.select(Series.study).where(Series.id.in_(chunk)))
    }
    empty_series = [
        pk for pk in series if not Instance.select().where(Instance.series == pk).exists()
    ]
    for chunk in _chunks(empty_series):
        Series.delete().where(Series.id.in_(chunk)).execute()
    _refresh_series(set(series) - set(empty_series))
    patients = {
        row[0]
        for chunk in _chunks(sorted(studies))
        for row in _tuples(Study.select(Study.patient).where(Study.id.in_(chunk)))
    }
    for study in studies:
        if not Series.select().where(Series.study == study).exists():
            Study.delete().where(Study.id == study).execute()
    _refresh_studies(studies)
    for patient in patients:
        _drop_if_unused(patient)


def _refresh_series(series: Iterable[int]) -> None:
    """A series is hidden when no instance of it is shown; then its study and patient."""
    studies = set()
    for pk in series:
        shown = (
            Instance.select().where((Instance.series == pk) & (Instance.rejection == "")).exists()
        )
        Series.update(hidden=not shown).where(Series.id == pk).execute()
        study = Series.select(Series.study).where(Series.id == pk).scalar()
        if study is not None:
            studies.add(study)
    _refresh_studies(studies)


def _refresh_studies(studies: Iterable[int]) -> None:
    patients = set()
    for pk in studies:
        shown = (
            Series.select().where((Series.study == pk) & (Series.hidden == False)).exists()  # noqa: E712
        )
        Study.update(hidden=not shown).where(Study.id == pk).execute()
        patient = Study.select(Study.patient).where(Study.id == pk).scalar()
        if patient is not None:
            patients.add(patient)
    _refresh_patients(patients)


def _refresh_patients(patients: Iterable[int]) -> None:
    for pk in patients:
        shown = (
            Study.select().where((Study.patient == pk) & (Study.hidden == False)).exists()  # noqa: E712
        )
        Patient.update(hidden=not shown).where(Patient.id == pk).execute()


def _tuples(query: Any) -> list[tuple[Any, ...]]:
    return list(query.tuples())


def _chunks(values: list[Any], size: int = 500) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _journal_entry(row: Any) -> dict[str, Any]:
    return {
        "uid": row.uid,
        "time": row.time,
        "kind": row.kind,
        "user": row.user_name,
        "reason": row.reason,
        "detail": json.loads(row.detail),
    }
