"""The one error of media probing: why a file cannot become a DICOM instance unchanged."""

from ...errors import InvalidInput


class Refusal(InvalidInput):
    """The file is not what it claims, is damaged, or no DICOM encoding carries it unchanged."""
