"""Peewee models of the index: the registry (hospitals, AEs) and the patient-to-instance tree."""

from __future__ import annotations

from typing import Any

from peewee import (
    SQL,
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from .clock import utcnow
from .database import database

# SQL defaults of the columns schema 8 added, which the hand-written INSERTs of the hot path
# (instance_insert.py) do not name.
_FALSE = SQL("DEFAULT false")
_EMPTY = SQL("DEFAULT ''")


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class SchemaInfo(BaseModel):
    """Key/value facts about the schema itself (its version)."""

    key = CharField(primary_key=True, max_length=64)
    value = TextField()


class Hospital(BaseModel):
    """A health enterprise; its issuer is the Issuer of Patient ID of its patient identifiers."""

    id: AutoField[int]  # peewee's implicit primary key
    code = CharField(max_length=16, unique=True)
    name = TextField()
    issuer = TextField()
    created_at = DateTimeField(default=utcnow)
    # PatientIDs its departments give patients they cannot identify ('UNKNOWN', '000000'),
    # backslash-separated (schema 5): such an instance's patient is anonymous, as without one.
    placeholder_ids = TextField(default="")


class ApplicationEntity(BaseModel):
    """A registered AE of a hospital's department: the allowlist entry."""

    id: AutoField[int]  # peewee's implicit primary key
    ae_title = CharField(max_length=16, unique=True)
    hospital = ForeignKeyField(Hospital, backref="application_entities", on_delete="RESTRICT")
    host = TextField(default="")
    port = IntegerField(null=True)
    allow = TextField()
    scope = CharField(max_length=16)
    description = TextField(default="")
    enabled = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    # associations at once for this AE; None: no limit of its own (schema 4)
    max_associations = IntegerField(null=True)
    # DICOM TLS both ways: required, optional or off (rules/tls.py; schema 6)
    tls = CharField(max_length=16, default="optional")


class AECertificate(BaseModel):
    """A client certificate bound to an AE by its SHA-256 fingerprint (schema 6): unique, so
    a certificate opens exactly one AE title."""

    fingerprint = CharField(primary_key=True, max_length=64)  # lowercase hex
    ae = ForeignKeyField(ApplicationEntity, backref="certificates", on_delete="CASCADE")
    created_at = DateTimeField(default=utcnow)


class Patient(BaseModel):
    """A patient in one identifier domain: (PatientID, IssuerOfPatientID) is the identity.

    Not so for an anonymous patient (an empty PatientID, or one of the sending hospital's
    placeholder IDs): nothing says two such studies are one person, so each study has a patient
    of its own, told apart by `anonymous_study` (its Study Instance UID; '' for every other
    patient). Its PatientID stays as received, for C-FIND answers (schema 5)."""

    id: AutoField[int]  # peewee's implicit primary key
    patient_id = TextField()
    issuer = TextField()
    patient_name = TextField(default="")
    name_key = TextField(default="")  # values.name_key(patient_name), for PN matching
    birth_date = TextField(default="")
    sex = TextField(default="")
    birth_key = TextField(default="")  # values.date_key(birth_date), for DA matching (schema 2)
    anonymous_study = TextField(default="")
    # Corrections (schema 8, rules/corrections.py): hidden when every study is (rejected
    # instances only); corrected when an admin fixed its demographics, which instances
    # received later no longer overwrite.
    hidden = BooleanField(default=False, constraints=[_FALSE])
    corrected = BooleanField(default=False, constraints=[_FALSE])

    class Meta:
        indexes = ((("patient_id", "issuer", "anonymous_study"), True),)


class PatientAlias(BaseModel):
    """An identifier a patient was known by before a merge or an issuer change (schema 8): a
    C-FIND or retrieve naming it finds the patient it became, and an instance received under it
    joins that patient."""

    id: AutoField[int]  # peewee's implicit primary key
    patient_id = TextField()
    issuer = TextField()
    target = ForeignKeyField(Patient, backref="aliases", on_delete="CASCADE", index=True)

    class Meta:
        table_name = "patient_alias"
        indexes = ((("patient_id", "issuer"), True),)


class Study(BaseModel):
    """A study; its hospital is the one whose AE sent its first instance (scope hospital looks
    further, at each instance's hospital: index/find_sql.py)."""

    id: AutoField[int]  # peewee's implicit primary key
    study_uid = CharField(max_length=64, unique=True)
    patient = ForeignKeyField(Patient, backref="studies", on_delete="RESTRICT", index=True)
    hospital = ForeignKeyField(Hospital, backref="studies", on_delete="RESTRICT", index=True)
    study_date = TextField(default="", index=True)
    study_time = TextField(default="")
    accession_number = TextField(default="", index=True)
    study_id = TextField(default="")
    description = TextField(default="")
    referring_physician = TextField(default="")
    created_at = DateTimeField(default=utcnow)
    # Matching keys (schema 2), so that range and case-insensitive matching run in SQL on an
    # index: the span a stored time and date-time cover (values.time_span, datetime_span) and
    # the referring physician's values.name_key.
    time_key = TextField(default="")
    time_end_key = TextField(default="")
    datetime_key = TextField(default="", index=True)
    datetime_end_key = TextField(default="")
    referring_key = TextField(default="")
    # The patient's name, birth date and sex as the study's instances gave them (the latest
    # non-empty; schema 5), with their matching keys as the patient's: C-FIND answers a study,
    # its series and instances with these, the patient record's where the study has none.
    patient_name = TextField(default="")
    name_key = TextField(default="")
    birth_date = TextField(default="")
    birth_key = TextField(default="")
    sex = TextField(default="")
    # Corrections (schema 8): hidden when every series is; corrected when it was moved to
    # another patient or its patient corrected, so that its instances leave the node with the
    # index's patient attributes, and `prior_ids` (JSON [[PatientID, issuer], ...]) the
    # identifiers it was filed under before (OtherPatientIDsSequence; late instances under them
    # still join it).
    hidden = BooleanField(default=False, constraints=[_FALSE])
    corrected = BooleanField(default=False, constraints=[_FALSE])
    prior_ids = TextField(default="", constraints=[_EMPTY])


class Series(BaseModel):
    id: AutoField[int]  # peewee's implicit primary key
    series_uid = CharField(max_length=64, unique=True)
    study = ForeignKeyField(Study, backref="series", on_delete="RESTRICT", index=True)
    modality = TextField(default="", index=True)
    series_number = IntegerField(null=True)
    description = TextField(default="")
    body_part = TextField(default="")
    hidden = BooleanField(
        default=False, constraints=[_FALSE]
    )  # every instance rejected (schema 8)


class Instance(BaseModel):
    id: AutoField[int]  # peewee's implicit primary key
    sop_uid = CharField(max_length=64, unique=True)
    series = ForeignKeyField(Series, backref="instances", on_delete="RESTRICT", index=True)
    sop_class_uid = CharField(max_length=64)
    transfer_syntax_uid = CharField(max_length=64)
    instance_number = IntegerField(null=True)
    number_of_frames = IntegerField(null=True)
    path = TextField()
    size = BigIntegerField()
    sha256 = CharField(max_length=64)
    received_at = DateTimeField(default=utcnow, index=True)  # indexed from schema 3 (verify)
    calling_ae = CharField(max_length=16)
    hospital = ForeignKeyField(Hospital, backref="instances", on_delete="RESTRICT", index=True)
    # IHE IOCM rejection (schema 8): the rejection title, PS3.16 CID 7010 ('' = not rejected),
    # when, and when its file is due for deletion (113038, 113039); a deleted one keeps its row
    # without a file, so that a resend stays refused.
    rejection = CharField(max_length=16, default="", constraints=[_EMPTY])
    rejected_at = DateTimeField(null=True)
    delete_after = DateTimeField(null=True)  # a partial index: instance_delete_after, below
    deleted = BooleanField(default=False, constraints=[_FALSE])

    @staticmethod
    def file_columns(header: Any, *, path: str, size: int, sha256: str) -> dict[str, Any]:
        """The columns that follow an instance's kept file: where it is, its size and hash,
        and what its header says (a replacement or a repair changes these together)."""
        return {
            "transfer_syntax_uid": header.transfer_syntax_uid,
            "instance_number": header.instance_number,
            "number_of_frames": header.number_of_frames,
            "path": path,
            "size": size,
            "sha256": sha256,
        }


# Only rejected instances have a deletion date: a partial index keeps the C-STORE hot path from
# maintaining an entry for every instance (schema 8).
Instance.add_index(
    Instance.index(Instance.delete_after, name="instance_delete_after").where(
        Instance.delete_after.is_null(False)
    )
)
# The rejected instances by series, for C-FIND's counts (find_sql._instance_counts): as few
# entries as there are rejected instances.
Instance.add_index(
    Instance.index(Instance.series, name="instance_rejected").where(
        Instance.rejection != SQL("''")
    )
)


class Acknowledgement(BaseModel):
    """A C-STORE acknowledged (0x0000) to an AE other than the one the instance row names, and
    for what content (schema 4): an identical resend from another AE, or the copy a
    replacement displaced. With the instance row's own (calling_ae, hospital, sha256), these
    say what each AE was told is stored: Storage Commitment commits only that."""

    id: AutoField[int]  # peewee's implicit primary key
    sop_uid = CharField(max_length=64)
    calling_ae = CharField(max_length=16)
    hospital = CharField(max_length=16)  # the code of the AE's hospital then
    sha256 = CharField(max_length=64)
    acknowledged_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("sop_uid", "calling_ae", "sha256"), True),)


class CommitmentRequest(BaseModel):
    """A Storage Commitment request (PS3.4 J.3.2) until its report is delivered (schema 3).

    Kept so that a report survives a restart: `result` is the decision, once made, as JSON
    (commitment.py); a report is due when `state` is pending and `next_attempt_at` has come
    (until then it may be claimed by the node delivering it).
    """

    id: AutoField[int]  # peewee's implicit primary key
    requester = CharField(max_length=16)
    transaction_uid = CharField(max_length=64)
    references = TextField()  # JSON [[SOP Class UID, SOP Instance UID], ...]
    result = TextField(null=True)
    state = CharField(max_length=16, default="pending", index=True)
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(default=utcnow)
    # Fencing: every new request under the same Transaction UID and every claim bumps the
    # generation, and a worker writes only while the row still has the generation it got.
    generation = IntegerField(default=1)
    claimed_by = TextField(default="")  # the node (host:port) delivering it, until next_attempt_at
    last_error = TextField(default="")
    created_at = DateTimeField(default=utcnow)
    delivered_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("requester", "transaction_uid"), True),)


class AuditRecordRow(BaseModel):
    """One record of the audit trail (schema 7), append-only: rules/audit.py says what each
    column holds and how `hash` chains it to the record before it in its node's chain."""

    id: AutoField[int]  # peewee's implicit primary key
    node = CharField(max_length=64)
    seq = BigIntegerField()
    time = CharField(max_length=27, index=True)  # UTC ISO 8601: sorts as text, hashes as kept
    event = CharField(max_length=64)
    event_code = CharField(max_length=16)
    event_type = CharField(max_length=16)
    action = CharField(max_length=1)
    operation = CharField(max_length=64)
    outcome = IntegerField()
    status = TextField()
    session = CharField(max_length=64)
    ae_title = CharField(max_length=16, index=True)
    hospital = CharField(max_length=16, index=True)
    address = CharField(max_length=64)
    user_name = CharField(max_length=64)
    destination = CharField(max_length=16)
    detail = TextField()
    prev_hash = CharField(max_length=64)
    hash = CharField(max_length=64)

    class Meta:
        table_name = "audit_record"
        indexes = ((("node", "seq"), True),)


class AuditTouched(BaseModel):
    """A patient and study an audit record touched, with its instance count (schema 7): what
    `archive-node audit --patient` and `--study` look up."""

    id: AutoField[int]  # peewee's implicit primary key
    record = ForeignKeyField(AuditRecordRow, on_delete="CASCADE", index=True)
    patient_id = CharField(max_length=64)
    issuer = CharField(max_length=64)
    study_uid = CharField(max_length=64, index=True)
    instances = IntegerField()

    class Meta:
        table_name = "audit_touched"
        indexes = ((("patient_id", "issuer"), False),)


class AuditChain(BaseModel):
    """Each node's chain (schema 7): its head (last record), where pruning left its start,
    and how far the export to the audit record repository has come."""

    node = CharField(max_length=64, primary_key=True)
    seq = BigIntegerField(default=0)
    hash = CharField(max_length=64)
    pruned_seq = BigIntegerField(default=0)
    pruned_hash = CharField(max_length=64)
    sent_seq = BigIntegerField(default=0)

    class Meta:
        table_name = "audit_chain"


class AuditTally(BaseModel):
    """Instances stored over one association (or one import run) per study, counted in the
    transaction that indexes each (schema 7); sealed into one audit record per study when the
    association ends, or at the next start after a crash."""

    id: AutoField[int]  # peewee's implicit primary key
    node = CharField(max_length=64, index=True)
    session = CharField(max_length=64)
    study_uid = CharField(max_length=64)
    patient_id = CharField(max_length=64)
    issuer = CharField(max_length=64)
    kind = CharField(max_length=16)  # 'transfer' (C-STORE) or 'import'
    ae_title = CharField(max_length=16)
    hospital = CharField(max_length=16)
    address = CharField(max_length=64)
    user_name = CharField(max_length=64)
    stored = IntegerField(default=0)
    failed = IntegerField(default=0)
    status = TextField(default="")
    started = CharField(max_length=27)
    process = CharField(max_length=300, default="")  # host:pid that counted: a dead one's go

    class Meta:
        table_name = "audit_tally"
        indexes = ((("session", "study_uid"), True),)


class Correction(BaseModel):
    """A correction made (schema 8): patient update or merge, study move, rejection, restore,
    deletion, an issuer change. What it changed is in `detail` (JSON), the audit trail holds
    the same with its hash chain; `journaled` says it is in the store's corrections journal,
    from which `reindex` replays it onto an index rebuilt from the files."""

    id: AutoField[int]  # peewee's implicit primary key
    uid = CharField(max_length=36, unique=True)
    time = CharField(max_length=27)
    kind = CharField(max_length=32)
    user_name = TextField(default="")
    reason = TextField(default="")
    detail = TextField()
    journaled = BooleanField(default=False, index=True)


class Hl7Sender(BaseModel):
    """A registered HL7 v2 sender (schema 9): its sending facility (MSH-4), the hospital whose
    orders and patients it speaks for, and the address it connects from."""

    id: AutoField[int]  # peewee's implicit primary key
    facility = CharField(max_length=64, unique=True)
    hospital = ForeignKeyField(Hospital, backref="hl7_senders", on_delete="RESTRICT")
    host = TextField()
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "hl7_sender"


class Hl7Message(BaseModel):
    """An HL7 v2 message taken and applied (schema 9), kept before its AA: by (sender,
    MSH-10) a resend is acknowledged and not applied again, until it is pruned
    (hl7.remember_days). A refused message is not kept."""

    id: AutoField[int]  # peewee's implicit primary key
    facility = CharField(max_length=64)
    control_id = CharField(max_length=199)
    message_type = CharField(max_length=16)
    received_at = DateTimeField(default=utcnow, index=True)
    outcome = TextField(default="")  # what applying it did (no patient data)
    text = TextField()  # the message as received, decoded per MSH-18

    class Meta:
        table_name = "hl7_message"
        indexes = ((("facility", "control_id"), True),)


class ProcedureStep(BaseModel):
    """A scheduled procedure step of a hospital's order (schema 9): what the Modality Worklist
    offers (PS3.4 K.6), from an HL7 order or `archive-node orders add`. The patient's
    attributes are the order's (ADT messages update them); `status` is SCHEDULED, IN PROGRESS,
    COMPLETED, DISCONTINUED or CANCELLED (rules/orders.py)."""

    id: AutoField[int]  # peewee's implicit primary key
    hospital = ForeignKeyField(Hospital, backref="procedure_steps", on_delete="RESTRICT")
    order_key = TextField()  # the placer order number (ORC-2), else the filler's, else A#
    patient_id = TextField()
    issuer = TextField()
    patient_name = TextField(default="")
    name_key = TextField(default="")  # matching.name_key(patient_name)
    birth_date = TextField(default="")
    sex = TextField(default="")
    accession_number = TextField(index=True)
    requested_procedure_id = TextField(default="")
    step_id = TextField()
    modality = TextField(default="")
    procedure_code = TextField(default="")  # code^meaning^scheme
    procedure_description = TextField(default="")
    station_ae = TextField(default="", index=True)
    start_date = TextField(index=True)  # YYYYMMDD
    start_time = TextField(default="")  # HHMMSS
    study_uid = CharField(max_length=64, index=True)
    status = CharField(max_length=16, default="SCHEDULED")
    source = TextField(default="")  # hl7 FACILITY control-id, or admin USER
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "procedure_step"
        indexes = ((("hospital", "order_key", "step_id"), True),)


class PerformedStep(BaseModel):
    """A Modality Performed Procedure Step (schema 9, PS3.4 F.7): created and set by a
    modality, linked to the scheduled step it performs where its attributes name one."""

    id: AutoField[int]  # peewee's implicit primary key
    sop_uid = CharField(max_length=64, unique=True)
    hospital = ForeignKeyField(Hospital, backref="performed_steps", on_delete="RESTRICT")
    ae_title = CharField(max_length=16)
    status = CharField(max_length=16)
    step = ForeignKeyField(ProcedureStep, null=True, backref="performed", on_delete="SET NULL")
    step_id: int | None  # peewee's raw value of `step`
    study_uid = CharField(max_length=64, default="")
    accession_number = TextField(default="")
    attributes = TextField()  # the step's attributes as last set, DICOM JSON (PS3.18 F.2)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "performed_step"


ORDER_MODELS = (Hl7Sender, Hl7Message, ProcedureStep, PerformedStep)

CORRECTION_MODELS = (PatientAlias, Correction)

AUDIT_MODELS = (AuditRecordRow, AuditTouched, AuditChain, AuditTally)

MODELS = (
    SchemaInfo,
    Hospital,
    ApplicationEntity,
    AECertificate,
    Patient,
    Study,
    Series,
    Instance,
    Acknowledgement,
    CommitmentRequest,
    *AUDIT_MODELS,
    *CORRECTION_MODELS,
    *ORDER_MODELS,
)
