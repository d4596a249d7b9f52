"""`conformance`: the node's DICOM Conformance Statement (PS3.2), for the configuration given."""

from __future__ import annotations
