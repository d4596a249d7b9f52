"""archive-node: a regional DICOM archive node with a per-hospital AE allowlist."""

__version__ = "0.1.0"
