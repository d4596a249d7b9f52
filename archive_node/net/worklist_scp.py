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
from ..rules.access import Peer, not_authorised_comment
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
            yield response_status(status.NOT_AUTHORISED, not_authorised_comment("worklist")), None
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
        request = cast(N_CREATE, event.request)
        if str(request.AffectedSOPClassUID) != MPPS_CLASS:
            return status.NO_SUCH_SOP_CLASS, None
        peer, attributes, refusal = self._request(event, "N-CREATE")
        if peer is None or attributes is None:
            return refusal, None
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
        peer, modification, refusal = self._request(event, "N-SET")
        if peer is None or modification is None:
            return refusal, None
        sop_uid = str(cast(N_SET, event.request).RequestedSOPInstanceUID or "")
        outcome = self.service.orders.set_performed(peer, sop_uid, modification)
        if outcome.status != status.SUCCESS:
            answer = response_status(outcome.status, outcome.comment)
            if outcome.error_id is not None:
                answer.ErrorID = outcome.error_id
            return answer, None
        return status.SUCCESS, modification

    def _request(
        self, event: Event, operation: str
    ) -> tuple[Peer | None, Dataset | None, int | Dataset]:
        """(peer, dataset, refusal) of an MPPS request: the AE needs `store`, and its Attribute
        or Modification List must decode (else the refusal to answer, and None for both)."""
        peer = self.peer_of(event.assoc)
        refused = self.service.authorise(peer, "store", self.actor_of(event.assoc), operation)
        if refused or peer is None:
            return (
                None,
                None,
                response_status(status.NOT_AUTHORISED, not_authorised_comment("store")),
            )
        try:
            dataset = event.attribute_list if operation == "N-CREATE" else event.modification_list
        except Exception as exc:
            log.warning("MPPS %s from %s: cannot be decoded: %s", operation, peer.ae_title, exc)
            refusal = response_status(status.INVALID_ATTRIBUTE_VALUE, "cannot be decoded")
            return None, None, refusal
        return peer, dataset, status.SUCCESS
