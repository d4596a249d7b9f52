"""Who sent a stored file, recorded in its own file meta (PS3.10 7.1) so a rebuild loses nothing.

At receipt the node writes, into the File Meta Information of each received file:
- (0002,0017) Sending Application Entity Title: the calling AE;
- (0002,0018) Receiving Application Entity Title: the node's own title;
- (0002,0100) Private Information Creator UID: PROVENANCE_UID, and
- (0002,0102) Private Information: a small JSON object with the sending AE's hospital and
  that hospital's Issuer of Patient ID (the issuer the index recorded when the dataset had
  none of its own).

`archive-node reindex` reads them back; nothing here touches the network or the index.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from .structure import LONG_VRS

# archive-node's own UID (2.25 form, ITU-T X.667), naming the format of its Private Information.
PROVENANCE_UID = "2.25.179470812274637735498470532809612272647"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Provenance:
    """What a file cannot tell of itself: who sent it, for which hospital and issuer."""

    calling_ae: str
    hospital: str
    issuer: str


def with_provenance(meta: bytes, provenance: Provenance, receiving_ae: str) -> bytes:
    """The encoded File Meta Information group `meta` (from its (0002,0000) Group Length on)
    with `provenance` recorded in it: its elements in tag order, ours replacing any of the
    same tag, and the Group Length recomputed.

    Encoded by hand, not through pydicom: this runs for every C-STORE received, and parsing
    and writing the group with pydicom cost ~0.6 ms, this ~0.02 ms. The group is always
    Explicit VR Little Endian (PS3.10 7.1).
    """
    payload = {"v": FORMAT_VERSION, "hospital": provenance.hospital, "issuer": provenance.issuer}
    private = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    elements = dict(meta_elements(meta))
    elements[0x00020017] = _element(0x0017, b"AE", provenance.calling_ae.encode(), b" ")
    elements[0x00020018] = _element(0x0018, b"AE", receiving_ae.encode(), b" ")
    elements[0x00020100] = _element(0x0100, b"UI", PROVENANCE_UID.encode(), b"\0")
    elements[0x00020102] = _element(0x0102, b"OB", private, b" ")
    elements.pop(0x00020000, None)
    body = b"".join(elements[tag] for tag in sorted(elements))
    return _element(0x0000, b"UL", struct.pack("<I", len(body)), b"") + body


def file_meta(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    implementation_uid: str,
    implementation_version: str,
) -> bytes:
    """A File Meta Information group (PS3.10 7.1) with the elements pynetdicom writes for a
    received dataset, from its Group Length on: the same bytes pydicom's writer produces, for
    a fraction of its cost."""
    body = b"".join(
        (
            _element(0x0001, b"OB", b"\x00\x01", b""),  # File Meta Information Version
            _element(0x0002, b"UI", sop_class_uid.encode(), b"\0"),
            _element(0x0003, b"UI", sop_instance_uid.encode(), b"\0"),
            _element(0x0010, b"UI", transfer_syntax.encode(), b"\0"),
            _element(0x0012, b"UI", implementation_uid.encode(), b"\0"),
            _element(0x0013, b"SH", implementation_version.encode(), b" "),
        )
    )
    return _element(0x0000, b"UL", struct.pack("<I", len(body)), b"") + body


# PS3.5 7.1.2: these VRs have a 2-byte reserved field and a 4-byte length.


def _element(element: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
    """One group 2 element, Explicit VR Little Endian, its value padded to even length."""
    if len(value) % 2:
        value += pad
    if vr in LONG_VRS:
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def meta_elements(meta: bytes) -> list[tuple[int, bytes]]:
    """(tag, encoded element) of each element of an Explicit VR Little Endian group.
    Raises ValueError when the bytes are not one."""
    found = []
    offset = 0
    while offset < len(meta):
        group, element, vr = struct.unpack_from("<HH2s", meta, offset)
        if vr in LONG_VRS:
            (length,) = struct.unpack_from("<I", meta, offset + 8)
            end = offset + 12 + length
        else:
            (length,) = struct.unpack_from("<H", meta, offset + 6)
            end = offset + 8 + length
        if group != 0x0002 or end > len(meta):
            raise ValueError("not an Explicit VR Little Endian file meta group")
        found.append(((group << 16) | element, meta[offset:end]))
        offset = end
    return found


def from_file_meta(meta: Any) -> Provenance | None:
    """The provenance a file meta records, or None when it records none (a file kept before
    this release, or written by another application)."""
    if meta is None or str(meta.get("PrivateInformationCreatorUID", "")) != PROVENANCE_UID:
        return None
    try:
        payload = json.loads(bytes(meta.PrivateInformation).decode())
        hospital = str(payload["hospital"])
        issuer = str(payload["issuer"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    calling_ae = str(meta.get("SendingApplicationEntityTitle", "")).strip()
    if not hospital or not calling_ae:
        return None
    return Provenance(calling_ae=calling_ae, hospital=hospital, issuer=issuer)
