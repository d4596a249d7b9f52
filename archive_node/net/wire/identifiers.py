"""C-FIND response identifiers encoded without pydicom's writer (PS3.5 7.1, 6.2, 6.1.2.3).

pydicom writes a dataset element by element through its generic machinery, ~20 us per element;
a C-FIND answer of a dozen keys per match made it the largest cost of a query. What
rules/find_answers.py builds is nearly always flat text in one character set with a plain codec
(dicom/charsets.CODECS): encode_flat() writes exactly the bytes pydicom would for such a
dataset, in Little Endian, and returns None for anything else (a sequence, binary or numeric
values, several character sets), which the caller then leaves to pydicom.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import IS, PersonName

from ...dicom.charsets import CODECS

# Text VRs whose values may use the dataset's character set (PS3.5 6.1.2.3); the other text
# VRs hold the default repertoire only.
_CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "IS", "TM", "UI", "UR"})
# Explicit VR with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2)
_LONG_VRS = frozenset({"UC", "UR", "UT"})
_IMPLICIT = struct.Struct("<HHI")
_EXPLICIT = struct.Struct("<HH2sH")
_EXPLICIT_LONG = struct.Struct("<HH2s2xI")


def encode_flat(ds: Dataset, implicit_vr: bool) -> bytes | None:
    """`ds` as pydicom would encode it in Little Endian, or None when it is not flat text in
    a single-codec character set."""
    codec = _codec(ds)
    if codec is None:
        return None
    parts = []
    for element in ds.elements():
        vr = element.VR
        if vr in _CHARSET_VRS:
            encoding = codec
        elif vr in _ASCII_VRS:
            encoding = "ascii"
        else:
            return None
        value = _text(element.value)
        if value is None:
            return None
        try:
            data = value.encode(encoding)
        except UnicodeEncodeError:
            return None
        if len(data) % 2:
            data += b"\0" if vr == "UI" else b" "  # even length (PS3.5 6.2)
        tag = element.tag
        if implicit_vr:
            parts.append(_IMPLICIT.pack(tag >> 16, tag & 0xFFFF, len(data)))
        elif vr in _LONG_VRS:
            parts.append(_EXPLICIT_LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(data)))
        elif len(data) > 0xFFFF:
            return None
        else:
            parts.append(_EXPLICIT.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(data)))
        parts.append(data)
    return b"".join(parts)


def _codec(ds: Dataset) -> str | None:
    value = ds.get("SpecificCharacterSet")  # the value, not the element
    if value is None:
        return "ascii"
    if not isinstance(value, str):  # several character sets (ISO 2022 code extensions)
        return None
    return CODECS.get(value)


def _text(value: Any) -> str | None:
    """The value as pydicom would write it, as one string (multiple values joined by
    backslashes); None for a value it writes otherwise (left to pydicom)."""
    if value is None or value == "":
        return ""
    kind = type(value)
    if isinstance(value, str):  # str, and pydicom's UID
        return str(value)
    if kind is PersonName:
        # written from its components unless it still holds the bytes it was read from
        return "=".join(value.components) if value.original_string is None else None
    if kind is IS:
        return getattr(value, "original_string", None) or str(value)
    if kind is MultiValue or kind is list or kind is tuple:
        texts = [_text(v) for v in value]
        return None if None in texts else "\\".join(texts)  # type: ignore[arg-type]
    return None
