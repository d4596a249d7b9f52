"""C-MOVE and C-GET sub-operations without the network: what to propose, which syntax to send
each instance in, how the sub-operations are counted and which final status they earn
(PS3.4 C.4.2 and C.4.3)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from ..dicom import status
from ..dicom.patient_rewrite import PatientAttributes
from .corrections import prior_ids

EXPLICIT_LE = str(ExplicitVRLittleEndian)
IMPLICIT_LE = str(ImplicitVRLittleEndian)
DEFLATED_LE = str(DeflatedExplicitVRLittleEndian)
BIG_ENDIAN = str(ExplicitVRBigEndian)
# A stored object in one of these may be re-encoded into Explicit or Implicit VR Little Endian
# without changing a pixel value: only the element headers change, and Big Endian's multi-byte
# values are byte-swapped (dicom/reencode.py).
CONVERTIBLE = frozenset({EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE, BIG_ENDIAN})
# A stored object in one of these may be decompressed into Explicit or Implicit VR Little
# Endian, frame by frame, by pydicom's decoders (dicom/decompress.py): never compressed again,
# so nothing is lost that the stored pixels still had. Not the video syntaxes (MPEG-2, MPEG-4,
# HEVC), JPIP or JPEG XL: pydicom has no decoder for them, and such an object fails its
# sub-operation where the peer does not take its own syntax.
DECOMPRESSIBLE = frozenset(
    str(ts)
    for ts in (
        JPEGBaseline8Bit,
        JPEGExtended12Bit,
        JPEGLossless,
        JPEGLosslessSV1,
        JPEGLSLossless,
        JPEGLSNearLossless,
        JPEG2000Lossless,
        JPEG2000,
        HTJ2KLossless,
        HTJ2KLosslessRPCL,
        HTJ2K,
        RLELossless,
    )
)

MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are the odd numbers 1-255
MAX_SUB_OPERATIONS = 65535  # the Number of ... Sub-operations are US (PS3.7 9.1.3, 9.1.4)


@dataclass(frozen=True)
class Outgoing:
    """One stored instance to send as a C-STORE sub-operation."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    path: Path | None  # None: the index row's path is not in the store
    study_uid: str = ""  # whose it is, for the audit trail
    patient_id: str = ""
    issuer: str = ""
    # a corrected study's instance: the patient attributes it leaves with (schema 8)
    patient: PatientAttributes | None = None


def corrected_attributes(corrected: dict[str, Any] | None) -> PatientAttributes | None:
    """The patient attributes of a corrected study (index corrections.corrected_patients) as
    its instances leave with them: the index's identifier and demographics, and the
    identifiers it was filed under before in OtherPatientIDsSequence."""
    if corrected is None:
        return None
    return PatientAttributes(
        patient_id=corrected["patient_id"],
        issuer=corrected["issuer"],
        name=corrected["name"],
        birth_date=corrected["birth_date"],
        sex=corrected["sex"],
        other_ids=prior_ids(corrected["prior_ids"]),
    )


def fallback_syntaxes(stored: str) -> tuple[str, ...]:
    """The syntaxes an instance may be converted into when its own is not accepted, best
    first: Explicit VR Little Endian keeps the VRs of private elements, Implicit does not."""
    if stored not in CONVERTIBLE and stored not in DECOMPRESSIBLE:
        return ()
    return tuple(ts for ts in (EXPLICIT_LE, IMPLICIT_LE) if ts != stored)


@dataclass(frozen=True)
class Batch:
    """The instances sent over one sub-association, and the contexts it proposes."""

    contexts: tuple[tuple[str, tuple[str, ...]], ...]
    items: tuple[Outgoing, ...]


def contexts_for(items: Iterable[Outgoing]) -> list[tuple[str, tuple[str, ...]]]:
    """The presentation contexts to propose for these instances: one per stored (SOP class,
    syntax) holding only that syntax, so that an acceptor that can take it is not offered a
    choice it might prefer; then, per SOP class with a convertible or decompressible syntax,
    one offering Explicit and Implicit VR Little Endian."""
    exact: dict[tuple[str, str], None] = {}
    fallback: dict[str, dict[str, None]] = {}
    for item in items:
        exact[(item.sop_class_uid, item.transfer_syntax_uid)] = None
        for ts in fallback_syntaxes(item.transfer_syntax_uid):
            fallback.setdefault(item.sop_class_uid, {})[ts] = None
    contexts: list[tuple[str, tuple[str, ...]]] = [(sop_class, (ts,)) for sop_class, ts in exact]
    contexts += [(sop_class, tuple(syntaxes)) for sop_class, syntaxes in fallback.items()]
    return contexts


def batches(items: list[Outgoing], limit: int | None = None) -> list[Batch]:
    """Split the instances so that no sub-association proposes more than `limit` contexts
    (default MAX_CONTEXTS); instances of one SOP class stay together and keep their order
    within it. One batch (the usual case) keeps the order of `items`."""
    limit = limit or MAX_CONTEXTS
    if len(contexts_for(items)) <= limit:
        return [Batch(tuple(contexts_for(items)), tuple(items))] if items else []
    by_class: dict[str, list[Outgoing]] = {}
    for item in items:
        by_class.setdefault(item.sop_class_uid, []).append(item)
    result: list[Batch] = []
    current: list[Outgoing] = []
    for group in by_class.values():
        if current and len(contexts_for(current + group)) > limit:
            result.append(Batch(tuple(contexts_for(current)), tuple(current)))
            current = []
        current += group
    if current:
        result.append(Batch(tuple(contexts_for(current)), tuple(current)))
    return result


def choose_syntax(item: Outgoing, accepted: dict[str, set[str]]) -> str | None:
    """The syntax to send `item` in, given the accepted syntaxes per SOP class: its own if
    accepted, else one it can be converted into; None when there is none (a failed
    sub-operation)."""
    syntaxes = accepted.get(item.sop_class_uid, set())
    if item.transfer_syntax_uid in syntaxes:
        return item.transfer_syntax_uid
    return next((ts for ts in fallback_syntaxes(item.transfer_syntax_uid) if ts in syntaxes), None)


def is_warning(code: int) -> bool:
    """PS3.7 C.1: the Warning statuses (0001, Bxxx, 0107, 0116): the instance was kept."""
    return code == 0x0001 or 0xB000 <= code <= 0xBFFF or code in (0x0107, 0x0116)


@dataclass
class SubOperations:
    """The count of C-STORE sub-operations of one C-MOVE or C-GET (PS3.4 C.4.2.1.4.2)."""

    total: int
    completed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)  # by SOP Instance UID

    @property
    def failed(self) -> int:
        return len(self.failed_uids)

    @property
    def remaining(self) -> int:
        return self.total - self.completed - self.warning - self.failed

    def record(self, sop_instance_uid: str, store_status: int | None) -> str:
        """Count one sub-operation by its C-STORE status (None: no response); returns
        'completed', 'warning' or 'failed'."""
        outcome = self._outcome(sop_instance_uid, store_status)
        self.outcomes[sop_instance_uid] = outcome
        return outcome

    def _outcome(self, sop_instance_uid: str, store_status: int | None) -> str:
        if store_status == status.SUCCESS:
            self.completed += 1
            return "completed"
        if store_status is not None and is_warning(store_status):
            self.warning += 1
            return "warning"
        self.failed_uids.append(sop_instance_uid)
        return "failed"

    def final_status(self, cancelled: bool = False) -> int:
        """PS3.4 C.4.2.1.5: Cancel; Success when nothing failed or warned; Failure (0xA702)
        when every sub-operation failed; else Warning (0xB000)."""
        if cancelled:
            return status.CANCELLED
        if not self.failed and not self.warning:
            return status.SUCCESS
        if self.failed == self.total:
            return status.SUB_OPERATIONS_FAILED
        return status.SUB_OPERATIONS_WARNING


# PS3.3 A.32.5-7: the Video IODs, whose objects are stored in an MPEG-2, MPEG-4 or HEVC syntax
# that nothing can be converted into or out of
VIDEO_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # Video Endoscopic Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.2.1",  # Video Microscopic Image Storage
        "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # Video Photographic Image Storage
    }
)
VIDEO_SYNTAXES = frozenset(
    {f"1.2.840.10008.1.2.4.{n}" for n in (100, 101, 102, 103, 104, 105, 106, 107, 108)}
)
UNCOMPRESSED_LE = (EXPLICIT_LE, IMPLICIT_LE)


def receiving_syntaxes(
    sop_class: str, proposed: Sequence[Sequence[str]], supported: Collection[str]
) -> list[str | None]:
    """The syntax to accept in each context a C-GET SCU proposes for a storage class it only
    receives (SCP role, PS3.7 D.3.3.4), in the order proposed; None for a context offering
    nothing the node supports. One context carries one syntax (PS3.8 9.3.3.2), chosen before
    the C-GET says what will be sent, so the contexts of a class are chosen together for the
    most instances to go as stored and the rest by a lossless conversion (choose_syntax):

    1. A context offering one supported syntax takes it.
    2. The syntax everything can be converted into, Explicit VR Little Endian (it keeps the VRs
       of private elements), else Implicit, is taken by one context offering it (the one with
       the fewest other choices); for a video class, the SCU's first video syntax instead: a
       video can be sent in nothing else.
    3. Each other context takes a syntax no context has yet, compressed ones first (what is
       stored in them goes as stored instead of decompressed), then the uncompressed ones, in
       the SCU's order; and with nothing new to take, the one of step 2 if it can.

    So a viewer offering one context of [JPEG, Explicit, Implicit] per class (DCMTK getscu
    +xy) gets every image, the JPEG ones decompressed; one offering a context per syntax gets
    each instance as stored.
    """
    choices = [list(dict.fromkeys(ts for ts in cx if ts in supported)) for cx in proposed]
    chosen: list[str | None] = [c[0] if len(c) == 1 else None for c in choices]
    offered = [ts for c in choices for ts in c]
    video = [ts for ts in offered if ts in VIDEO_SYNTAXES]
    universal = next((ts for ts in UNCOMPRESSED_LE if ts in offered), None)
    if sop_class in VIDEO_SOP_CLASSES and video:
        universal = video[0]
    if universal is not None and universal not in chosen:
        open_ = [n for n, c in enumerate(choices) if chosen[n] is None and universal in c]
        if open_:
            chosen[min(open_, key=lambda n: len(choices[n]))] = universal
    for n, c in enumerate(choices):
        if chosen[n] is not None or not c:
            continue
        new = [ts for ts in c if ts not in chosen]
        ranked = [ts for ts in new if ts not in UNCOMPRESSED_LE] + [
            ts for ts in new if ts in UNCOMPRESSED_LE
        ]
        chosen[n] = ranked[0] if ranked else (universal if universal in c else c[0])
    return chosen
