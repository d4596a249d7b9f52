"""DIMSE bytes packed by hand (PS3.7 annex E, PS3.5 7.1): command sets and C-FIND identifiers
that pynetdicom would otherwise build through pydicom, one response at a time."""
