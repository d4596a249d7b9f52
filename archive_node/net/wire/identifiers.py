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

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import IS, PersonName
from pynetdicom.dsutils import encode as pydicom_encode

from ...dicom.charsets import CODECS, choose_character_set
from ...rules.find_answers import AnswerElement

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


_SPECIFIC_CHARACTER_SET = 0x00080005


class Packed(bytes):
    """An identifier already encoded (AnswerPacker): what the node's C-FIND handler yields
    instead of a Dataset on associations whose responses the messages patch sends, which
    passes it on as it is (patches/messages.py)."""


class AnswerPacker:
    """The identifiers of one query's answers (its answer_layout), packed from their values in
    Little Endian, Implicit or Explicit VR: the bytes pydicom writes for the Dataset
    response_identifier builds of the same values (PS3.5 7.1; the character set chosen as
    give_character_set chooses it, PS3.5 6.1.2.3)."""

    def __init__(
        self, layout: list[AnswerElement], requested: tuple[str, ...], implicit_vr: bool
    ) -> None:
        self.requested = requested
        self.implicit_vr = implicit_vr
        # (header packer args, VR, keyword or None, fixed value, text kind or pre-encoded bytes)
        self._fields: list[tuple[int, int, str, str | None, Any, str | bytes]] = []
        self.usable = len(requested) <= 1 and all(
            tag != _SPECIFIC_CHARACTER_SET for tag, *_ in layout
        )
        for tag, vr, keyword, value in layout:
            if vr in _CHARSET_VRS:
                kind: str | bytes = "charset"
            elif vr in _ASCII_VRS:
                kind = "ascii"
            else:  # no value of the index has another VR: such an element is always empty
                if keyword is None and value is not None:
                    self.usable = False
                kind = _empty_element(tag, vr, implicit_vr)
            self._fields.append((tag >> 16, tag & 0xFFFF, vr, keyword, value, kind))

    def pack(self, values: dict[str, Any]) -> bytes | None:
        """One answer's identifier, or None when it is not for this packer (the caller then
        encodes the Dataset)."""
        if not self.usable:
            return None
        texts: list[str | bytes] = []
        for _, _, vr, keyword, fixed, kind in self._fields:
            value = fixed if keyword is None else values.get(keyword)
            if type(kind) is bytes:
                if not (value is None or value == "" or value == []):
                    return None
                texts.append(kind)
                continue
            text = _answer_text(value, vr)
            if text is None:
                return None
            texts.append(text)
        # the pre-encoded (bytes) elements are empty: no text to choose a character set for
        charset = choose_character_set(self.requested, [t for t in texts if type(t) is str])
        codec = "ascii" if charset is None else CODECS.get(charset)
        if codec is None:
            return None
        parts = []
        if charset is not None:
            parts.append(self._element(0x0008, 0x0005, "CS", _even(charset.encode(), "CS")))
        for (group, element, vr, _, _, kind), each in zip(self._fields, texts, strict=True):
            if isinstance(each, bytes):
                parts.append(each)
                continue
            try:
                data = each.encode(codec if kind == "charset" else "ascii")
            except UnicodeEncodeError:
                return None
            if len(data) % 2:
                data += b"\0" if vr == "UI" else b" "  # even length (PS3.5 6.2)
            if not self.implicit_vr and vr not in _LONG_VRS and len(data) > 0xFFFF:
                return None
            parts.append(self._element(group, element, vr, data))
        return b"".join(parts)

    def _element(self, group: int, element: int, vr: str, data: bytes) -> bytes:
        if self.implicit_vr:
            return _IMPLICIT.pack(group, element, len(data)) + data
        if vr in _LONG_VRS:
            return _EXPLICIT_LONG.pack(group, element, vr.encode(), len(data)) + data
        return _EXPLICIT.pack(group, element, vr.encode(), len(data)) + data


def _even(data: bytes, vr: str) -> bytes:
    return data + (b"\0" if vr == "UI" else b" ") if len(data) % 2 else data


def _answer_text(value: Any, vr: str) -> str | None:
    """A value of the index as pydicom writes it once response_identifier made it an element
    of this (text) VR, as one string; None where pydicom would do anything else."""
    if value is None:
        return ""
    kind = type(value)
    if kind is str:
        if vr == "PN" and "=" in value:  # pydicom drops empty trailing component groups
            return None
        if vr == "IS" and value:
            return None
        return value  # type: ignore[no-any-return]
    if kind is int and vr == "IS":
        return str(value)
    if kind is list or kind is tuple:
        if not all(type(v) is str for v in value):
            return None
        if vr == "PN" and any("=" in v for v in value):
            return None
        if vr == "IS" and any(value):
            return None
        return "\\".join(value)
    return None


def _empty_element(tag: int, vr: str, implicit_vr: bool) -> bytes:
    """An empty element of a VR the packer does not write itself, as pydicom encodes it."""
    ds = Dataset()
    ds.add(DataElement(tag, vr, None))
    data = pydicom_encode(ds, implicit_vr, True, False)
    if data is None:
        raise ValueError(f"pydicom cannot encode an empty {vr}")
    return data
