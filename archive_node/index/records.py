"""Plain records the index hands to the layers above, so they never touch peewee models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..dicom.instance_header import InstanceHeader


@dataclass(frozen=True)
class HospitalRecord:
    code: str
    name: str
    issuer: str
    ae_count: int = 0
    study_count: int = 0
    # PatientIDs its departments give unidentified patients: each such study is its own patient
    placeholder_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class AERecord:
    ae_title: str
    hospital: str
    issuer: str
    host: str
    port: int | None
    allow: str
    scope: str
    description: str
    enabled: bool
    max_associations: int | None = None
    tls: str = "optional"
    certificates: tuple[str, ...] = ()  # bound client certificates' SHA-256, lowercase hex


@dataclass(frozen=True)
class InstanceRecord:
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    study_uid: str
    series_uid: str
    path: str
    size: int
    sha256: str
    calling_ae: str
    hospital: str
    received_at: datetime
    rejection: str = ""  # the IOCM rejection code ('' = not rejected; schema 8)
    deleted: bool = False  # rejected and its file deleted: the row stays to refuse a resend


def instance_record(row: Any) -> InstanceRecord:
    """An InstanceRecord from an Instance row selected with its series, study and hospital."""
    return InstanceRecord(
        sop_uid=row.sop_uid,
        sop_class_uid=row.sop_class_uid,
        transfer_syntax_uid=row.transfer_syntax_uid,
        study_uid=row.series.study.study_uid,
        series_uid=row.series.series_uid,
        path=row.path,
        size=row.size,
        sha256=row.sha256,
        calling_ae=row.calling_ae,
        hospital=row.hospital.code,
        received_at=row.received_at,
        rejection=row.rejection,
        deleted=bool(row.deleted),
    )


@dataclass(frozen=True)
class StudySummary:
    study_uid: str
    patient_id: str
    issuer: str
    study_date: str
    description: str
    hospital: str
    modalities: str
    series_count: int
    instance_count: int
    total_size: int


@dataclass(frozen=True)
class NewInstance:
    """What the service asks the index to record for a kept file."""

    header: InstanceHeader
    path: str
    size: int
    sha256: str
    calling_ae: str
    hospital: str
    issuer: str  # IssuerOfPatientID to record: the dataset's, else the hospital's

    @classmethod
    def kept(
        cls,
        header: InstanceHeader,
        *,
        path: str,
        size: int,
        sha256: str,
        calling_ae: str,
        hospital: str,
        hospital_issuer: str,
    ) -> NewInstance:
        """A kept file's instance, its patient identified in the dataset's own Issuer of
        Patient ID or, without one, in that of the hospital that sent it."""
        return cls(
            header=header,
            path=path,
            size=size,
            sha256=sha256,
            calling_ae=calling_ae,
            hospital=hospital,
            issuer=header.issuer_of_patient_id or hospital_issuer,
        )


@dataclass(frozen=True)
class CommitmentRecord:
    """A Storage Commitment request as kept until its report is delivered; `references` and
    `result` are commitment.py's JSON."""

    id: int
    requester: str
    transaction_uid: str
    references: str
    result: str | None
    state: str
    generation: int
    attempts: int
    last_error: str
    created_at: datetime
    delivered_at: datetime | None = None
