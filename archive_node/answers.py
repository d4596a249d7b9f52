"""C-FIND response identifiers: the requested keys of one match and nothing else, in a character
set that can carry them (PS3.4 C.4.1.1.3.2 and C.6, PS3.5 6.1.2.3)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from .query import Query

log = logging.getLogger(__name__)

UTF8 = "ISO_IR 192"


def response_identifier(
    query: Query,
    values: dict[str, Any],
    *,
    retrieve_ae_title: str,
    header: Dataset | None = None,
) -> Dataset:
    """One pending response's identifier.

    `values` holds the index's values by keyword; keys it lacks are taken from `header` (the
    stored file, at IMAGE level) or answered empty. IssuerOfPatientID goes with PatientID.
    """
    answer = Dataset()
    answer.QueryRetrieveLevel = query.level
    answer.RetrieveAETitle = retrieve_ae_title
    answer.InstanceAvailability = "ONLINE"  # PS3.4 C.4.1.1.3.2: everything is on disk
    keywords = list(query.requested) + list(query.unknown)
    if "PatientID" in keywords and "IssuerOfPatientID" not in keywords:
        keywords.append("IssuerOfPatientID")
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:
            continue
        if keyword in values:
            answer.add_new(tag, _vr(tag), _value(values[keyword]))
        elif header is not None and tag in header:
            try:
                answer.add(header[tag])
            except Exception:  # an unreadable value in the file is answered empty
                log.debug("unreadable %s in a stored header, answered empty", keyword)
                answer.add_new(tag, _vr(tag), None)
        else:
            answer.add_new(tag, _vr(tag), None)
    charset = choose_character_set(query.character_set, _texts(answer))
    if charset:
        answer.SpecificCharacterSet = charset
    return answer


def choose_character_set(requested: tuple[str, ...], texts: Iterable[str]) -> str | None:
    """The request's own character set when it can encode every value, else UTF-8; None when
    everything is ASCII and the request named no character set (the default repertoire)."""
    texts = list(texts)
    if all(text.isascii() for text in texts):
        return "\\".join(requested) if requested else None
    if len(requested) == 1 and requested[0] in python_encoding:
        codec = python_encoding[requested[0]]
        try:
            for text in texts:
                text.encode(codec)
        except UnicodeEncodeError:
            return UTF8
        return requested[0]
    return UTF8


def _vr(tag: int) -> str:
    vr = dictionary_VR(tag)
    return vr.split(" or ")[0]


def _value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [str(v) for v in value] or None
    return value


def _texts(dataset: Dataset) -> Iterable[str]:
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                yield from _texts(item)
            continue
        value = element.value
        if isinstance(value, MultiValue | list):
            yield from (str(v) for v in value)
        elif isinstance(value, str) or element.VR == "PN":
            yield str(value)
