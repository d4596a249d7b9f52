"""The Query/Retrieve identifier of a C-FIND, C-MOVE or C-GET request, from keyword=value pairs."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset


@dataclass(frozen=True)
class VR:
    """An element with an explicit VR (possibly not the dictionary's)."""

    vr: str
    value: object


def identifier(level: str | None = None, /, **keys: object) -> Dataset:
    """An identifier at QueryRetrieveLevel `level` (None: without one) with `keys`, built as a
    peer may send it, without pydicom's value validation:

    - SpecificCharacterSet=None (or empty) leaves the element out;
    - a VR(...) value is added with that VR;
    - a value pydicom refuses to build (an IS of 'abc') is set raw, as it can arrive over the
      network; a value pydicom would warn about (a UID with letters) is set as it is.
    """
    ds = Dataset()
    with config.disable_value_validation():
        charset = keys.pop("SpecificCharacterSet", None)
        if charset:
            ds.SpecificCharacterSet = charset
        if level is not None:
            ds.QueryRetrieveLevel = level
        for keyword, value in keys.items():
            if isinstance(value, VR):
                ds.add_new(tag_for_keyword(keyword), value.vr, value.value)
                continue
            try:
                setattr(ds, keyword, value)
            except ValueError:
                tag = tag_for_keyword(keyword)
                ds.add_new(tag, dictionary_VR(tag), "1")
                ds[tag]._value = value
    return ds
