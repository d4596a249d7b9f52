"""Domain exceptions: each carries a one-line message fit for an admin or a log."""


class ArchiveError(Exception):
    """Base of every error archive-node raises on purpose."""


class ConfigError(ArchiveError):
    """The configuration file or one of its keys is wrong."""


class NotFound(ArchiveError):
    """A hospital, AE or object that was named does not exist."""


class Conflict(ArchiveError):
    """The request clashes with what is already there (duplicate code, still referenced)."""


class InvalidInput(ArchiveError):
    """A value given by an admin or found in a dataset is malformed."""


class IndexUnavailable(ArchiveError):
    """The index database could not be reached or refused the write."""


class SchemaError(ArchiveError):
    """The index schema is missing or newer than this release understands."""


class Refused(ArchiveError):
    """A DIMSE request refused: carries the failure status to answer with and, where one
    attribute is at fault, its keyword (for the Offending Element and the log)."""

    def __init__(self, status: int, message: str, keyword: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.keyword = keyword


class StoreRejected(Refused):
    """A received instance is refused (C-STORE)."""


class UIDConflict(StoreRejected):
    """A received instance clashes with what the index holds under one of its UIDs (a Study
    Instance UID of another patient, a Series Instance UID of another study): nothing of it
    is filed. Its message names no patient and no hospital: it goes back to the sender."""


class AssociationFailed(ArchiveError):
    """An outgoing association was rejected, aborted or could not connect."""


class AuditUnavailable(ArchiveError):
    """An audit record could not be written: the act it records must not happen (fail closed,
    issue 19: no store acknowledged and no patient data returned without its record)."""
