"""The facts of a PDF document that DICOM needs: that it is one, whole, and its version.

A PDF is kept as it is (PS3.3 C.24.2: the document's own bytes), so nothing of it is parsed
beyond its header and the end-of-file marker (ISO 32000-1 7.5.2 and 7.5.5) that tell a
document from something else or from a cut-off copy.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .refusal import Refusal

_HEADER = re.compile(rb"%PDF-(\d\.\d)")
_TAIL = 1024  # readers look for %%EOF within the last 1024 bytes (ISO 32000-1 7.5.5, note)


@dataclass(frozen=True)
class PdfDocument:
    version: str


def read_pdf(path: str | os.PathLike[str]) -> PdfDocument:
    """Raises Refusal when the file is not a PDF, or is truncated (no %%EOF at its end)."""
    with open(path, "rb") as fh:
        header = _HEADER.match(fh.read(16))
        if header is None:
            raise Refusal("not a PDF file (no %PDF- header)")
        size = os.fstat(fh.fileno()).st_size
        fh.seek(max(0, size - _TAIL))
        if b"%%EOF" not in fh.read():
            raise Refusal("a truncated PDF: no %%EOF marker at its end")
    return PdfDocument(version=header.group(1).decode())
