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
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import FileMetaDataset

# archive-node's own UID (2.25 form, ITU-T X.667), naming the format of its Private Information.
PROVENANCE_UID = "2.25.179470812274637735498470532809612272647"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Provenance:
    """What a file cannot tell of itself: who sent it, for which hospital and issuer."""

    calling_ae: str
    hospital: str
    issuer: str


def add_to_file_meta(meta: FileMetaDataset, provenance: Provenance, receiving_ae: str) -> None:
    """Record `provenance` in a file meta about to be written (in place)."""
    meta.SendingApplicationEntityTitle = provenance.calling_ae
    meta.ReceivingApplicationEntityTitle = receiving_ae
    meta.PrivateInformationCreatorUID = PROVENANCE_UID
    payload = {"v": FORMAT_VERSION, "hospital": provenance.hospital, "issuer": provenance.issuer}
    encoded = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    meta.PrivateInformation = encoded + b" " * (len(encoded) % 2)  # OB: even length


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
