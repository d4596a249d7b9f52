"""The index: peewee models, database opening, schema versions and the repository."""

from .find_sql import Match
from .import_lookups import StudyRecord
from .records import (
    AERecord,
    CommitmentRecord,
    HospitalRecord,
    InstanceRecord,
    NewInstance,
    StudySummary,
)
from .repository import Index
from .schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "AERecord",
    "CommitmentRecord",
    "HospitalRecord",
    "Index",
    "InstanceRecord",
    "Match",
    "NewInstance",
    "StudyRecord",
    "StudySummary",
]
