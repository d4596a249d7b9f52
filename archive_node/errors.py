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


class StoreRejected(ArchiveError):
    """A received instance is refused; carries the DIMSE status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AssociationFailed(ArchiveError):
    """An outgoing association was rejected, aborted or could not connect."""
