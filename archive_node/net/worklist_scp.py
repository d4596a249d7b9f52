"""The Modality Worklist SCP (C-FIND, PS3.4 K) and the Modality Performed Procedure Step SCP
(N-CREATE and N-SET, PS3.4 F.7): each handler unpacks the event, asks the orders service and
answers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import cast

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import N_CREATE, N_SET
from pynetdicom.events import Event

from ..dicom import status
from ..rules.access import Peer
from ..rules.audit import Actor
from ..service import ArchiveService
from .association import find_responses, response_status

log = logging.getLogger(__name__)

MPPS_CLASS = "1.2.840.10008.3.1.2.3.3"  # Modality Performed Procedure Step SOP Class


class OrderSCP:
    """The worklist and MPPS handlers, over the node's registered peers."""

    def __init__(
        self,
        service: ArchiveService,
        peer_of: Callable[[Association], Peer | None],
        actor_of: Callable[[Association], Actor | None],
    ) -> None:
        self.service = service
        self.peer_of = peer_of
        self.actor_of = actor_of

    def on_worklist_find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """C-FIND on the Modality Worklist Information Model (PS3.4 K.4.1), for AEs with the
        `worklist` right."""
        peer, actor = self.peer_of(event.assoc), self.actor_of(event.assoc)
        refused = self.service.authorise(peer, "worklist", actor, "C-FIND worklist")
        if refused or peer is None:
            yield refused or status.NOT_AUTHORISED, None
            return
        try:
            identifier = event.identifier
        except Exception as exc:
            log.warning(
                "worklist C-FIND from %s: identifier cannot be decoded: %s", peer.ae_title, exc
            )
            yield response_status(status.UNABLE_TO_PROCESS, "identifier cannot be decoded"), None
            return
        answers = self.service.orders.worklist(peer, identifier, actor)
        yield from find_responses(event, answers, f"worklist C-FIND from {peer.ae_title}")

    def on_n_create(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        """N-CREATE of a Modality Performed Procedure Step (PS3.4 F.7.2.1), for AEs with the
        `store` right: the step starts IN PROGRESS."""
        peer = self.peer_of(event.assoc)
        if str(cast(N_CREATE, event.request).AffectedSOPClassUID) != MPPS_CLASS:
            return status.NO_SUCH_SOP_CLASS, None
        refused = self.service.authorise(peer, "store", self.actor_of(event.assoc), "N-CREATE")
        if refused or peer is None:
            return refused or status.NOT_AUTHORISED, None
        try:
            attributes = event.attribute_list
        except Exception as exc:
            log.warning("MPPS N-CREATE from %s: cannot be decoded: %s", peer.ae_title, exc)
            return response_status(status.INVALID_ATTRIBUTE_VALUE, "cannot be decoded"), None
        request = cast(N_CREATE, event.request)
        requested = request.AffectedSOPInstanceUID
        sop_uid = str(requested) if requested else generate_uid()
        outcome = self.service.orders.create_performed(peer, sop_uid, attributes)
        if outcome.status != status.SUCCESS:
            return response_status(outcome.status, outcome.comment), None
        if not requested:  # PS3.7 10.1.5.1.4: the SCP's UID goes back in the response
            attributes.AffectedSOPInstanceUID = sop_uid
        return status.SUCCESS, attributes

    def on_n_set(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        """N-SET of a Modality Performed Procedure Step (PS3.4 F.7.2.2): of the AE's own
        hospital's steps, until it is COMPLETED or DISCONTINUED."""
        peer = self.peer_of(event.assoc)
        refused = self.service.authorise(peer, "store", self.actor_of(event.assoc), "N-SET")
        if refused or peer is None:
            return refused or status.NOT_AUTHORISED, None
        try:
            modification = event.modification_list
        except Exception as exc:
            log.warning("MPPS N-SET from %s: cannot be decoded: %s", peer.ae_title, exc)
            return response_status(status.INVALID_ATTRIBUTE_VALUE, "cannot be decoded"), None
        sop_uid = str(cast(N_SET, event.request).RequestedSOPInstanceUID or "")
        outcome = self.service.orders.set_performed(peer, sop_uid, modification)
        if outcome.status != status.SUCCESS:
            answer = response_status(outcome.status, outcome.comment)
            if outcome.error_id is not None:
                answer.ErrorID = outcome.error_id
            return answer, None
        return status.SUCCESS, modification
