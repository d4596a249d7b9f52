"""The node's own C-MOVE, C-GET and Storage Commitment SCPs, where pynetdicom's would serve
(feature).

Replaces association.uid_to_service_class of pynetdicom 3.0.4 (how Association._serve_request
picks the service class of a request by its SOP class UID) for the Query/Retrieve MOVE and GET
models and Storage Commitment Push Model, and overrides the private _move_scp and _get_scp of
its QueryRetrieveServiceClass and the SCP() of its StorageCommitmentServiceClass. On the
associations of an AE given to serve_retrieve() or serve_commitment() those requests go to the
node's RetrieveSCP and CommitmentSCP; for any other AE these classes do what pynetdicom's own
do (a test pins it).

Why: pynetdicom's C-MOVE/C-GET SCP sends only decoded datasets (a whole video in memory),
names the archive itself as Move Originator (PS3.7 9.1.3.1 wants
the requester), answers 0xA801 when a destination accepts none of the contexts (the outcome is
failed sub-operations, 0xA702) and cannot re-encode a stored object for a peer that does not
take its syntax. Its Storage Commitment SCP leaves the N-EVENT-REPORT to the user, who could
only send it from another thread than the association's once the N-ACTION is answered (PS3.4
J.3.3 allows it on the same association; one association used from two threads is what
pynetdicom's docs warn against). No upstream issue covers these.

Two more, for the node's retrieves (PS3.4 C.4.2.3.1, C.4.3.3.1: a C-CANCEL may come at any
time and interrupts the C-STORE sub-operations):
- waiting_for_answer() makes the wait of pynetdicom's send_c_store for its C-STORE response
  (DIMSEServiceProvider.get_msg(block=True), the whole DIMSE timeout in one call) a wait in
  slices that ends when a C-CANCEL or the requester's end says so (it raises Interrupted), and
  that passes over a late response to an earlier, interrupted C-STORE. It is set on one
  association's DIMSE provider for one send, and only by the node's RetrieveSCP.
- DIMSEMessage.message_to_primitive is wrapped for a C-MOVE-RQ whose Move Destination
  pynetdicom's C_MOVE refuses (empty, all spaces, over 16 characters, control characters):
  its ValueError, raised in the DUL thread, aborted the association, where PS3.4 C.4.2.1.4.1
  and Table C.4-2 want 0xA801 (Move Destination unknown). The primitive then carries the
  value as received, for RetrieveSCP to refuse; any other message is decoded as pynetdicom
  decodes it. (A decoder does not know its AE: another AE of the process that serves C-MOVE
  gets such a request too, instead of an abort; pynetdicom's own C-MOVE SCP hands the title
  to its handler, which finds no such destination: 0xA801.)
"""

from __future__ import annotations

import logging
import queue
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dimse_primitives import (
    C_GET,
    C_MOVE,
    C_STORE,
    N_ACTION,
    N_EVENT_REPORT,
    DimsePrimitiveType,
)
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import QueryRetrieveServiceClass, ServiceClass
from pynetdicom.service_class_n import StorageCommitmentServiceClass

from ...rules.commitment import STORAGE_COMMITMENT_CLASS
from ...rules.query import GET_SOP_CLASSES, MOVE_SOP_CLASSES
from . import guard

log = logging.getLogger(__name__)

_UID_TO_SERVICE_CLASS = "pynetdicom.association.uid_to_service_class"
_MESSAGE_TO_PRIMITIVE = "pynetdicom.dimse_messages.DIMSEMessage.message_to_primitive"


class Retrieving(Protocol):
    def move(
        self, provider: QueryRetrieveServiceClass, req: C_MOVE, context: PresentationContext
    ) -> None: ...

    def get(
        self, provider: QueryRetrieveServiceClass, req: C_GET, context: PresentationContext
    ) -> None: ...


class Committing(Protocol):
    def report_after_answer(self, assoc: Association) -> None: ...


_retrieving: weakref.WeakKeyDictionary[AE, Retrieving] = weakref.WeakKeyDictionary()
_committing: weakref.WeakKeyDictionary[AE, Committing] = weakref.WeakKeyDictionary()


def serve_retrieve(ae: AE, scp: Retrieving) -> None:
    """Let `scp` answer the C-MOVE and C-GET requests of `ae`'s associations."""
    _retrieving[ae] = scp


def serve_commitment(ae: AE, scp: Committing) -> None:
    """Let `scp` report on the Storage Commitment requests `ae`'s associations answer."""
    _committing[ae] = scp


class RetrieveServiceClass(QueryRetrieveServiceClass):
    """pynetdicom's Query/Retrieve service class, with C-MOVE and C-GET done by the node's
    RetrieveSCP for associations of a node's AE."""

    def _move_scp(self, req: C_MOVE, context: PresentationContext) -> None:
        scp = _retrieving.get(self.assoc.ae)
        if scp is None:
            return super()._move_scp(req, context)
        scp.move(self, req, context)
        return None

    def _get_scp(self, req: C_GET, context: PresentationContext) -> None:
        scp = _retrieving.get(self.assoc.ae)
        if scp is None:
            return super()._get_scp(req, context)
        scp.get(self, req, context)
        return None


class CommitmentServiceClass(StorageCommitmentServiceClass):
    """pynetdicom's Storage Commitment service class; on a node's associations the report
    follows the N-ACTION's answer, in the same thread."""

    def SCP(self, req: N_EVENT_REPORT | N_ACTION, context: PresentationContext) -> None:
        super().SCP(req, context)
        scp = _committing.get(self.assoc.ae)
        if scp is not None and isinstance(req, N_ACTION):
            scp.report_after_answer(self.assoc)


_ROUTES: dict[str, type[ServiceClass]] = {
    **dict.fromkeys(MOVE_SOP_CLASSES, RetrieveServiceClass),
    **dict.fromkeys(GET_SOP_CLASSES, RetrieveServiceClass),
    STORAGE_COMMITMENT_CLASS: CommitmentServiceClass,
}


def _service_class(uid: str) -> type[ServiceClass]:
    return _ROUTES.get(str(uid)) or guard.original(_UID_TO_SERVICE_CLASS)(uid)


# -- a C-MOVE-RQ with a Move Destination pynetdicom refuses ------------------------------------


def _message_to_primitive(self: DIMSEMessage) -> DimsePrimitiveType:
    original = guard.original(_MESSAGE_TO_PRIMITIVE)
    if type(self).__name__ != "C_MOVE_RQ" or "MoveDestination" not in self.command_set:
        return original(self)  # type: ignore[no-any-return]
    try:
        return original(self)  # type: ignore[no-any-return]
    except ValueError:
        pass
    try:
        raw = self.command_set["MoveDestination"].value
    except Exception:  # a value pydicom cannot read at all: refused as empty
        raw = ""
    del self.command_set["MoveDestination"]
    primitive = original(self)  # anything else wrong with it raises as pynetdicom's would
    # as received, past C_MOVE's validation: RetrieveSCP answers 0xA801
    primitive._move_destination = raw if isinstance(raw, str) else str(raw)
    return primitive  # type: ignore[no-any-return]


# -- a C-STORE sub-operation's response, or a C-CANCEL ----------------------------------------

POLL = 0.05  # seconds between looks at stop() while a C-STORE response is awaited


class Interrupted(Exception):  # not an error: a C-CANCEL, or the requester gone
    """The wait for a C-STORE response was given up because stop() said so."""


@contextmanager
def waiting_for_answer(
    dimse: DIMSEServiceProvider, message_id: int, stop: Callable[[], bool]
) -> Iterator[None]:
    """Within the block, a blocking get_msg() of `dimse` (what send_c_store waits in) waits
    for the response to the C-STORE `message_id` in slices of POLL seconds, at most the DIMSE
    timeout as pynetdicom's does, and raises Interrupted once stop() is True. A C-STORE
    response to another Message ID (one interrupted before: its late answer) is passed over.
    """

    def get_msg(block: bool = False) -> Any:
        if not block:
            return DIMSEServiceProvider.get_msg(dimse, False)
        timeout = dimse.dimse_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = POLL if deadline is None else min(POLL, deadline - time.monotonic())
            if wait <= 0:
                return None, None  # as pynetdicom's get_msg on its timeout
            try:
                item = dimse.msg_queue.get(timeout=wait)
            except queue.Empty:
                if stop():  # looked at once nothing came: an answer that came is taken
                    raise Interrupted from None
                continue
            message = item[1]
            answered = getattr(message, "MessageIDBeingRespondedTo", None)
            if isinstance(message, C_STORE) and answered not in (None, message_id):
                log.debug("a late C-STORE response (to %s) passed over", answered)
                continue
            return item

    dimse.get_msg = get_msg  # type: ignore[method-assign]  # this provider, this send only
    try:
        yield
    finally:
        del dimse.get_msg


PATCH = guard.Patch(
    "service_classes",
    speed=False,
    replacements=(
        guard.replace(_UID_TO_SERVICE_CLASS, _service_class),
        guard.replace(_MESSAGE_TO_PRIMITIVE, _message_to_primitive),
    ),
    relies_on=(
        "pynetdicom.service_class.QueryRetrieveServiceClass._move_scp",
        "pynetdicom.service_class.QueryRetrieveServiceClass._get_scp",
        "pynetdicom.service_class_n.StorageCommitmentServiceClass.SCP",
        # waiting_for_answer(): send_c_store waits in dimse.get_msg(block=True)
        "pynetdicom.association.Association.send_c_store",
        "pynetdicom.dimse.DIMSEServiceProvider.get_msg",
    ),
)
