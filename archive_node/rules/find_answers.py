"""C-FIND response identifiers: the requested keys of one match and nothing else, in a character
set that can carry them (PS3.4 C.4.1.1.3.2 and C.6, PS3.5 6.1.2.3)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ..dicom.charsets import choose_character_set
from .query import Query

log = logging.getLogger(__name__)


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
            answer.add_new(tag, vr_of(tag), _value(values[keyword]))
        elif header is not None and tag in header:
            answer.add(_from_header(header, tag, query.sequence_keys.get(keyword)))
        else:
            answer.add_new(tag, vr_of(tag), None)
    give_character_set(answer, query.character_set)
    return answer


@dataclass(frozen=True)
class FindAnswer:
    """One match's answer before it is a Dataset: what response_identifier makes it from.
    The network layer may encode it straight from these values (net/wire/identifiers.py),
    which gives the same bytes; dataset() is the answer as a pydicom Dataset."""

    query: Query
    values: dict[str, Any]
    retrieve_ae_title: str
    header: Dataset | None = None

    def dataset(self) -> Dataset:
        return response_identifier(
            self.query, self.values, retrieve_ae_title=self.retrieve_ae_title, header=self.header
        )


# (tag, VR, the keyword whose value it takes or None, its fixed value otherwise)
AnswerElement = tuple[int, str, str | None, Any]


def answer_layout(query: Query, retrieve_ae_title: str) -> list[AnswerElement]:
    """The elements response_identifier gives every answer to `query`, in tag order, without
    Specific Character Set (chosen per answer) and without values read from a stored header:
    the same keys, VRs and fixed values, in the same order of overriding."""
    elements: dict[int, AnswerElement] = {}
    for tag, vr, value in (
        (0x00080052, "CS", query.level),  # QueryRetrieveLevel
        (0x00080054, "AE", retrieve_ae_title),  # RetrieveAETitle
        (0x00080056, "CS", "ONLINE"),  # InstanceAvailability
    ):
        elements[tag] = (tag, vr, None, value)
    keywords = list(query.requested) + list(query.unknown)
    if "PatientID" in keywords and "IssuerOfPatientID" not in keywords:
        keywords.append("IssuerOfPatientID")
    for keyword in keywords:
        found = tag_for_keyword(keyword)
        if found is None:
            continue
        elements[found] = (found, vr_of(found), keyword, None)
    return [elements[tag] for tag in sorted(elements)]


def give_character_set(answer: Dataset, requested: tuple[str, ...]) -> None:
    """Set the answer's Specific Character Set: the request's when it can carry the answer's
    texts, else one that can (dicom/charsets.py); none for ASCII."""
    charset = choose_character_set(requested, _texts(answer))
    if charset:
        answer.SpecificCharacterSet = charset


# Other data elements than text are answered empty when read from a file: C-FIND carries
# attributes, not bulk data (an encapsulated document, a waveform, an icon).
_BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_MAX_VALUE = 64 * 1024  # longest text value read from a file into an answer


def _from_header(dataset: Dataset, tag: int, wanted: tuple[str, ...] | None) -> DataElement:
    """A requested attribute as stored in a file, bounded: bulk data and oversized values are
    answered empty, and a sequence carries only the item keys the request named (all of its
    non-bulk attributes when the request's sequence was empty, PS3.4 C.2.2.2.6)."""
    try:
        element = dataset[tag]
        vr = element.VR
        if vr == "SQ":
            items = []
            for item in element.value:
                copy = Dataset()
                for sub in item:
                    if sub.tag.is_private or (wanted and sub.keyword not in wanted):
                        continue
                    copy.add(_from_header(item, sub.tag, None))
                items.append(copy)
            return DataElement(tag, "SQ", items)
        value = element.value
        too_long = isinstance(value, str | bytes) and len(value) > _MAX_VALUE
        if vr in _BULK_VRS or too_long:
            return DataElement(tag, vr, None)
        return element
    except Exception:  # an unreadable value in the file is answered empty
        log.debug(
            "unreadable %04X,%04X in a stored header, answered empty", tag >> 16, tag & 0xFFFF
        )
        return DataElement(tag, vr_of(tag), None)


def vr_of(tag: int) -> str:
    """The dictionary's VR of a tag (the first of several; UN when unknown)."""
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


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
