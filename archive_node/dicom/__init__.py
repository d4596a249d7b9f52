"""DICOM data: value rules, status codes, character sets, instance headers, the sender's
provenance in the file meta, Part 10 writing and re-encoding. No network, no database."""
