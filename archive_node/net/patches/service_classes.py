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
"""

from __future__ import annotations

import weakref
from typing import Protocol

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_GET, C_MOVE, N_ACTION, N_EVENT_REPORT
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import QueryRetrieveServiceClass, ServiceClass
from pynetdicom.service_class_n import StorageCommitmentServiceClass

from ...rules.commitment import STORAGE_COMMITMENT_CLASS
from ...rules.query import GET_SOP_CLASSES, MOVE_SOP_CLASSES
from . import guard

_UID_TO_SERVICE_CLASS = "pynetdicom.association.uid_to_service_class"


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


PATCH = guard.Patch(
    "service_classes",
    speed=False,
    replacements=(guard.replace(_UID_TO_SERVICE_CLASS, _service_class),),
    relies_on=(
        "pynetdicom.service_class.QueryRetrieveServiceClass._move_scp",
        "pynetdicom.service_class.QueryRetrieveServiceClass._get_scp",
        "pynetdicom.service_class_n.StorageCommitmentServiceClass.SCP",
    ),
)
