"""Replacements of pynetdicom internals."""
