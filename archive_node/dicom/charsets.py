"""The character sets an answer may be given in (PS3.3 C.12.1.1.2, PS3.5 6.1.2.3): their Python
codecs, and the one that carries a set of values."""

from __future__ import annotations

from collections.abc import Iterable

UTF8 = "ISO_IR 192"

# Single-byte and Unicode character sets an answer may be given in (PS3.3 C.12.1.1.2), with
# their Python codecs. ISO_IR 6 is ASCII: pydicom's own table maps it to Latin-1, which would
# label Latin-1 bytes as ASCII. ISO 2022 code extensions are answered in UTF-8 instead.
CODECS = {
    "ISO_IR 6": "ascii",
    "ISO_IR 100": "latin_1",
    "ISO_IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4",
    "ISO_IR 144": "iso8859_5",
    "ISO_IR 127": "iso8859_6",
    "ISO_IR 126": "iso8859_7",
    "ISO_IR 138": "iso8859_8",
    "ISO_IR 148": "iso8859_9",
    "ISO_IR 203": "iso8859_15",
    "ISO_IR 166": "tis_620",
    "ISO_IR 192": "utf_8",
    "GB18030": "gb18030",
    "GBK": "gbk",
}


def choose_character_set(requested: tuple[str, ...], texts: Iterable[str]) -> str | None:
    """The request's own character set when it can encode every value, else UTF-8; None when
    everything is ASCII and the request named no character set (the default repertoire)."""
    texts = list(texts)
    if all(text.isascii() for text in texts):
        return "\\".join(requested) if requested else None
    codec = CODECS.get(requested[0]) if len(requested) == 1 else None
    if codec is None:
        return UTF8
    try:
        for text in texts:
            text.encode(codec)
    except UnicodeEncodeError:
        return UTF8
    return requested[0]
