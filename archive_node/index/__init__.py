"""The index: peewee models, database opening, schema versions and the repository."""

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
from .search import Match
from .studies import StudyRecord

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
