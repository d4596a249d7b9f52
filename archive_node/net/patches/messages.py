"""DIMSE messages sent without pynetdicom's per-message pydicom work (speed).

Replaces DIMSEServiceProvider.send_msg and service_class.encode (pydicom's dataset writer as
pynetdicom's service classes call it) of pynetdicom 3.0.4, for the associations of the node's
own AEs (scope.py); any other AE's messages are sent as pynetdicom sends them.

Why: for each C-FIND match pynetdicom encodes the identifier with pydicom, then builds the
response's command set as a pydicom Dataset, validates and encodes it (~0.85 ms per match
altogether): a query returning 150 studies spent 130 ms there. And a dataset read from a file is
queued as one P_DATA per PDU (file_sending.py). Measured (docs/benchmarks.md): without this
patch the ~150-hit C-FIND takes 101 ms instead of 55, a large result comes at 1,474 responses/s
instead of 3,238, C-MOVE and C-GET run at 0.4-0.5x. Here:
- identifiers that are flat text in one character set are encoded by wire/identifiers.py (the
  same bytes); anything else still by pydicom;
- a pending C-FIND response (0xFF00, 0xFF01) is its command packed by wire/commands.py and
  both queued as P-DATA fragments sized to the peer's maximum PDU, as pynetdicom fragments a
  message (PS3.8 E.2: the command in PDVs with control header 0x01 and a last 0x03, the
  identifier in PDVs 0x00 and a last 0x02);
- a final C-FIND response with a bare status (success, cancel) and a C-STORE response without
  Error Comment or Offending Element (every success) are packed too;
- any other message is sent as pynetdicom's send_msg sends it, but a dataset still in its file
  goes to the DUL as one primitive (file_sending.encode_msg) when the file_sending patch is
  taken too.
Tests compare every packed message with the PDUs pynetdicom queues for the same primitive. Not
an upstream bug: pynetdicom's generic path is right, only slow per message.
"""

from __future__ import annotations

import logging
from typing import cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import evt
from pynetdicom.dimse import _RQ_TO_MESSAGE, _RSP_TO_MESSAGE, DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_FIND, C_STORE, DimsePrimitiveType

from ..wire import commands
from ..wire.identifiers import Packed, encode_flat
from . import file_sending, guard, scope

log = logging.getLogger(__name__)

PENDING_STATUSES = frozenset({0xFF00, 0xFF01})

NAME = "messages"
_SEND_MSG = "pynetdicom.dimse.DIMSEServiceProvider.send_msg"
_ENCODE = "pynetdicom.service_class.encode"


def _encode(
    ds: Dataset, is_implicit_vr: bool, is_little_endian: bool, deflated: bool = False
) -> bytes | None:
    """pynetdicom.dsutils.encode, by identifiers.encode_flat where it applies, in the threads of
    the node's associations; an identifier the node's C-FIND handler packed already (Packed,
    only ever yielded where this patch is taken) as it is."""
    if isinstance(ds, Packed):
        return bytes(ds)
    if is_little_endian and not deflated and scope.thread_takes(NAME):
        try:
            fast = encode_flat(ds, is_implicit_vr)
        except Exception:  # never worse than pydicom: it has the last word
            log.debug("identifier left to pydicom", exc_info=True)
            fast = None
        if fast is not None:
            return fast
    return cast(
        "bytes | None", guard.original(_ENCODE)(ds, is_implicit_vr, is_little_endian, deflated)
    )


def _send_msg(self: DIMSEServiceProvider, primitive: DimsePrimitiveType, context_id: int) -> None:
    """DIMSEServiceProvider.send_msg: on the node's associations a pending C-FIND response and
    a plain C-STORE response packed and queued directly, anything else as pynetdicom sends it
    with a file's dataset as one primitive."""
    if not scope.takes(self.assoc.ae, NAME):
        return guard.original(_SEND_MSG)(self, primitive, context_id)  # type: ignore[no-any-return]
    if type(primitive) is C_STORE and primitive.MessageIDBeingRespondedTo is not None:
        return _send_store_response(self, primitive, context_id)
    identifier = getattr(primitive, "Identifier", None)
    if type(primitive) is not C_FIND or primitive.MessageIDBeingRespondedTo is None:
        return _send_message(self, primitive, context_id)
    if primitive.Status not in PENDING_STATUSES or identifier is None:
        return _send_find_final(self, primitive, context_id)
    command = commands.find_pending_response(
        cast(UID, primitive.AffectedSOPClassUID),
        primitive.MessageIDBeingRespondedTo,
        primitive.Status,
    )
    commands.queue(self.dul, context_id, command, self.maximum_pdu_size)
    data = identifier.getvalue()
    for control, fragment in commands.fragments(data, self.maximum_pdu_size, more=0x00, last=0x02):
        self.dul.send_pdu(commands.p_data(context_id, control, fragment))
    return None


def _send_find_final(self: DIMSEServiceProvider, primitive: C_FIND, context_id: int) -> None:
    """A final C-FIND-RSP with nothing but its status (success, cancel) packed; a failure, with
    its comment or offending element, through pynetdicom."""
    if (
        getattr(primitive, "Identifier", None) is not None
        or primitive.Status in PENDING_STATUSES
        or primitive.ErrorComment is not None
        or primitive.OffendingElement is not None
    ):
        return _send_message(self, primitive, context_id)
    command = commands.find_final_response(
        cast(UID, primitive.AffectedSOPClassUID),
        cast(int, primitive.MessageIDBeingRespondedTo),
        cast(int, primitive.Status),
    )
    commands.queue(self.dul, context_id, command, self.maximum_pdu_size)
    return None


def _send_store_response(self: DIMSEServiceProvider, primitive: C_STORE, context_id: int) -> None:
    """A C-STORE-RSP with neither Error Comment nor Offending Element (every success) packed;
    anything else through pynetdicom."""
    if (
        primitive.MessageIDBeingRespondedTo is None
        or primitive.ErrorComment is not None
        or primitive.OffendingElement is not None
        or primitive.AffectedSOPInstanceUID is None
    ):
        return _send_message(self, primitive, context_id)
    command = commands.store_response(
        cast(UID, primitive.AffectedSOPClassUID),
        primitive.MessageIDBeingRespondedTo,
        cast(int, primitive.Status),
        primitive.AffectedSOPInstanceUID,
    )
    commands.queue(self.dul, context_id, command, self.maximum_pdu_size)
    return None


def _send_message(
    self: DIMSEServiceProvider, primitive: DimsePrimitiveType, context_id: int
) -> None:
    """pynetdicom 3.0.4's send_msg, with file_sending.encode_msg for dimse_msg.encode_msg where
    the association takes that patch too."""
    if primitive.MessageIDBeingRespondedTo is None:
        dimse_msg = _RQ_TO_MESSAGE[primitive.__class__]()  # type: ignore[index]  # as pynetdicom's
    else:
        dimse_msg = _RSP_TO_MESSAGE[primitive.__class__]()
    dimse_msg.primitive_to_message(primitive)
    dimse_msg.context_id = context_id
    evt.trigger(self.assoc, evt.EVT_DIMSE_SENT, {"message": dimse_msg})
    if scope.takes(self.assoc.ae, file_sending.NAME):
        fragments = file_sending.encode_msg(dimse_msg, context_id, self.maximum_pdu_size)
    else:
        fragments = dimse_msg.encode_msg(context_id, self.maximum_pdu_size)
    for pdata in fragments:
        self.dul.send_pdu(pdata)


PATCH = guard.Patch(
    NAME,
    speed=True,
    replacements=(guard.replace(_SEND_MSG, _send_msg), guard.replace(_ENCODE, _encode)),
)
