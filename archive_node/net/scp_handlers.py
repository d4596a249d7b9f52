"""The node's pynetdicom event handlers: admit an association, then C-ECHO, C-STORE and C-FIND;
each unpacks the event, asks the archive service and answers."""

from __future__ import annotations

import logging
import ssl
import weakref
from collections.abc import Callable, Iterator
from typing import Any, cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event, EventHandlerType

from ..auditing import new_session
from ..dicom import status
from ..dicom.provenance import Provenance
from ..errors import IndexUnavailable
from ..rules.access import (
    REJECT_BUSY,
    REJECT_TRANSIENT,
    AssociationDecision,
    Peer,
    not_authorised_comment,
    self_check_peer,
)
from ..rules.audit import Actor, asserted_user
from ..rules.negotiation import ProposedContext, empty_contexts
from ..rules.query import FIND_SOP_CLASSES, extended_negotiation_answer
from ..rules.retrieve_plan import receiving_syntaxes
from ..rules.tls import PLAIN, Transport
from ..rules.worklist import WORKLIST_FIND
from ..service import ArchiveService
from .admission import Admission, SlotLimits
from .association import (
    find_responses,
    on_connection_closed,
    peer_label,
    response_status,
    set_tcp_nodelay,
)
from .patches.limits import discard_partial_file
from .patches.receiving import receive_failure
from .tls import peer_fingerprint
from .worklist_scp import OrderSCP

log = logging.getLogger(__name__)

SELF_CHECK = "the node's own title from the loopback: C-ECHO only"


def transport_of(assoc: Association) -> Transport:
    """How the association came: over TLS (and with which verified client certificate) or
    over plain DICOM."""
    sock = getattr(assoc, "_archive_socket", None)  # admission.on_open
    if isinstance(sock, ssl.SSLSocket):
        return Transport(secure=True, fingerprint=peer_fingerprint(sock))
    return PLAIN


class Handlers:
    """The node's handlers, holding the registered peer of each accepted association."""

    def __init__(self, service: ArchiveService) -> None:
        self.service = service
        self._peers: weakref.WeakKeyDictionary[Association, Peer] = weakref.WeakKeyDictionary()
        self._actors: weakref.WeakKeyDictionary[Association, Actor] = weakref.WeakKeyDictionary()
        self._storing: set[str] = set()  # sessions with a C-STORE: their tallies to seal
        # told of each association request decided: accepted, the peer if registered, and
        # the A-ASSOCIATE-RJ triple of a rejection (the metrics count them)
        self.on_decided: Callable[[bool, Peer | None, tuple[int, int, int] | None], None] | None
        self.on_decided = None
        node = service.config.node
        self.orders = OrderSCP(service, self.peer_of, self.actor_of)
        self.admission = Admission(
            node.max_pending_connections,
            SlotLimits(node.max_associations, node.max_associations_per_address),
        )

    def bindings(self) -> list[EventHandlerType]:
        return [
            (evt.EVT_CONN_OPEN, set_tcp_nodelay),
            (evt.EVT_CONN_OPEN, self.admission.on_open),
            (evt.EVT_CONN_CLOSE, on_connection_closed),
            (evt.EVT_CONN_CLOSE, self.on_end),
            (evt.EVT_ABORTED, self.on_end),
            (evt.EVT_RELEASED, self.on_end),
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_SOP_EXTENDED, on_sop_extended),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_N_EVENT_REPORT, self.on_event_report),
            (evt.EVT_N_CREATE, self.orders.on_n_create),
            (evt.EVT_N_SET, self.orders.on_n_set),
        ]

    def on_requested(self, event: Event) -> None:
        """Check the A-ASSOCIATE-RQ against the registry before negotiation (PS3.8 7.1.1).

        pynetdicom logs an exception from this handler and goes on negotiating, so anything
        that goes wrong here must end the association itself: it aborts.
        """
        try:
            self._admit(event.assoc)
        except Exception:
            log.exception("association request failed: aborted")
            event.assoc.abort()

    def on_end(self, event: Event) -> None:
        """The connection ended (closed, aborted, released): free its slot, and remove the
        file of a C-STORE it cut off part way (pynetdicom would leave it in .incoming)."""
        self.admission.on_end(event)
        actor = self._actors.pop(event.assoc, None)
        if actor is not None and actor.session in self._storing:
            self._storing.discard(actor.session)
            self.service.audit.seal(actor.session)  # one record per study it stored
        if discard_partial_file(event.assoc.dimse.message):
            log.warning(
                "%s: removed the partial file of a cut-off C-STORE", peer_label(event.assoc)
            )

    def _admit(self, assoc: Association) -> None:
        self.admission.requested(assoc)
        request = assoc.requestor.primitive
        assert request is not None  # the A-ASSOCIATE-RQ (EVT_REQUESTED)
        called = _title(request.called_ae_title)
        calling = _title(request.calling_ae_title)
        address = assoc.requestor.address
        proposed = [
            ProposedContext(
                int(cx.context_id or 0),
                str(cx.abstract_syntax or ""),
                tuple(str(ts) for ts in cx.transfer_syntax),
            )
            for cx in request.presentation_context_definition_list
        ]
        # The request's structure (titles, application context, context IDs) was checked as
        # it was read (patches/limits.py, rules/negotiation.py).
        transport = transport_of(assoc)
        user = asserted_identity(assoc)
        try:
            decision, peer = self._self_check(called, calling, address) or (
                self.service.open_association(called, calling, address, transport, user)
            )
        except Exception:  # fail closed: never let an error fall through to negotiation
            log.exception("association from %s at %s: internal error", calling, address)
            decision, peer = AssociationDecision(False, "internal error", REJECT_TRANSIENT), None
        if decision.accepted and peer is not None:
            busy = self.admission.slots.take(assoc, address, peer)
            if busy:
                decision = AssociationDecision(False, busy, REJECT_BUSY)
        hospital = peer.hospital if peer else "-"
        if decision.accepted:
            self._peers[assoc] = peer  # type: ignore[assignment]
            self._actors[assoc] = Actor(
                new_session(),
                ae_title=calling,
                hospital=hospital,
                address=address,
                user=user,
            )
            refuse_empty_contexts(assoc, empty_contexts(proposed))
            prefer_receivers_syntaxes(assoc)
            log.info(
                "association accepted: calling %s (%s) from %s%s%s",
                calling,
                hospital,
                address,
                " over TLS" if transport.secure else "",
                f": {decision.reason}" if decision.reason == SELF_CHECK else "",
            )
            if self.on_decided is not None:
                self.on_decided(True, peer, None)
            return
        log.warning(
            "association rejected: calling %s (%s) from %s%s called %s: %s",
            calling,
            hospital,
            address,
            " over TLS" if transport.secure else "",
            called,
            decision.reason,
        )
        assert decision.reject is not None
        if self.on_decided is not None:
            self.on_decided(False, peer, decision.reject)
        assoc.acse.send_reject(*decision.reject)
        # Without kill() the socket closes before the A-ASSOCIATE-RJ leaves (peer sees abort).
        assoc.kill()

    def _self_check(
        self, called: str, calling: str, address: str
    ) -> tuple[AssociationDecision, Peer | None] | None:
        """The node's own title calling from the loopback, unregistered: admitted for its own
        C-ECHO only (rules.access.self_check_peer); None for any other association, and for
        the node's title registered as an AE (the registry decides, as for any AE) or an
        index that cannot say (open_association then fails closed)."""
        own = self_check_peer(self.service.config.node.ae_title, called, calling, address)
        if own is None:
            return None
        try:
            if self.service.registry.peer(calling) is not None:
                return None
        except IndexUnavailable:
            return None
        return AssociationDecision(True, SELF_CHECK), own

    def peer_of(self, assoc: Association) -> Peer | None:
        """The registered peer of an accepted association (None only if admission broke)."""
        return self._peers.get(assoc)

    def actor_of(self, assoc: Association) -> Actor | None:
        """Who acts over an accepted association, for the audit trail."""
        return self._actors.get(assoc)

    def provenance_of(self, assoc: Association) -> Provenance | None:
        """What the files an association sends record of their sender (patches/receiving.py)."""
        peer = self._peers.get(assoc)
        if peer is None:
            return None
        return Provenance(calling_ae=peer.ae_title, hospital=peer.hospital, issuer=peer.issuer)

    def on_echo(self, event: Event) -> int | Dataset:
        assoc = event.assoc
        refused = self.service.authorise(
            self.peer_of(assoc), "echo", self.actor_of(assoc), "C-ECHO"
        )
        return not_authorised("echo") if refused else status.SUCCESS

    def on_store(self, event: Event) -> int | Dataset:
        unwritten = receive_failure(event.dataset_path)  # asked first: it is asked only once
        peer, actor = self.peer_of(event.assoc), self.actor_of(event.assoc)
        refused = self.service.authorise(peer, "store", actor, "C-STORE")
        if refused or peer is None or actor is None:
            return not_authorised("store")
        request = cast(C_STORE, event.request)
        if unwritten:
            log.warning(
                "refused instance %s from %s (%s): 0x%04X not written: %s",
                str(request.AffectedSOPInstanceUID).strip(),
                peer.ae_title,
                peer.hospital,
                status.OUT_OF_RESOURCES,
                unwritten,
            )
            return response_status(status.OUT_OF_RESOURCES, f"not written: {unwritten}")
        self._storing.add(actor.session)
        outcome = self.service.store(
            peer,
            event.dataset_path,
            sop_class_uid=str(request.AffectedSOPClassUID),
            sop_instance_uid=str(request.AffectedSOPInstanceUID),
            actor=actor,
        )
        if outcome.status == status.SUCCESS:
            return outcome.status
        return response_status(outcome.status, outcome.message)

    def on_event_report(self, event: Event) -> tuple[int, None]:
        """An N-EVENT-REPORT sent to the node: it is the Storage Commitment SCP, which sends
        reports and takes none (PS3.4 J.3.3), so the operation is unrecognized (0x0211, a
        general status of PS3.7 Annex C)."""
        log.warning("%s: N-EVENT-REPORT refused: the node takes none", peer_label(event.assoc))
        return status.UNRECOGNIZED_OPERATION, None

    def on_find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """C-FIND (PS3.4 C.4.1): a pending response per match; C-CANCEL is checked before each
        one (pynetdicom reports a cancel only once)."""
        sop_class = str(event.request.AffectedSOPClassUID)
        if sop_class == WORKLIST_FIND:
            yield from self.orders.on_worklist_find(event)
            return
        peer, actor = self.peer_of(event.assoc), self.actor_of(event.assoc)
        refused = self.service.authorise(peer, "find", actor, "C-FIND")
        if refused or peer is None or actor is None:
            yield not_authorised("find"), None
            return
        model = FIND_SOP_CLASSES[sop_class]
        try:
            identifier = event.identifier
        except Exception as exc:
            log.warning("C-FIND from %s: identifier cannot be decoded: %s", peer.ae_title, exc)
            yield response_status(status.UNABLE_TO_PROCESS, "identifier cannot be decoded"), None
            return
        answers = self.service.find(peer, identifier, model, actor, sop_class)
        yield from find_responses(event, answers, f"C-FIND from {peer.ae_title}")


def not_authorised(right: str) -> Dataset:
    """0x0124 (Refused: Not Authorised) with an Error Comment naming the right the AE lacks."""
    return response_status(status.NOT_AUTHORISED, not_authorised_comment(right))


def asserted_identity(assoc: Association) -> str:
    """The username of the User Identity the requestor sent (PS3.7 D.3.3.7), never its
    passcode; '' without one. The node does not authenticate it: the trail records it."""
    item = assoc.requestor.user_identity
    if item is None:
        return ""
    return asserted_user(item.user_identity_type, item.primary_field)


def on_sop_extended(event: Event) -> dict[str, bytes]:
    """SOP Class Extended Negotiation (PS3.7 D.3.3.5): relational-queries (and combined
    date-time matching) are accepted for the Query/Retrieve FIND classes, PS3.4 C.5.1.1."""
    answer = extended_negotiation_answer(event.app_info)  # type: ignore[attr-defined]
    if answer:
        log.debug("%s: extended negotiation answered %s", peer_label(event.assoc), answer)
    return answer


def prefer_receivers_syntaxes(assoc: Association) -> None:
    """For the storage SOP classes a requestor will only receive (the SCP role alone in its role
    selection, PS3.7 D.3.3.4: a C-GET SCU), accept in each proposed context the syntax
    retrieve_plan.receiving_syntaxes chooses, the contexts of a class together: the stored
    syntax wherever a context offers it, and one every image can be converted into. Classes it
    also pushes keep the node's order.

    pynetdicom accepts by the order of the acceptor's list whatever the proposer prefers, and
    one context carries one syntax: a viewer proposing [JPEG, Explicit, Implicit] in one
    context was given JPEG, and every uncompressed object of that class failed; one proposing
    Implicit first had Explicit objects re-encoded. Runs before negotiation: each such context
    is left proposing only the chosen syntax (what the peer is answered is that syntax, as
    PS3.8 9.3.3.2 has it; the rest of its list is not sent back).
    """
    request = assoc.requestor.primitive
    receiving = {
        str(uid)
        for uid, item in assoc.requestor.role_selection.items()
        if item.scp_role and not item.scu_role
    }
    if not receiving:
        return
    assert request is not None  # the A-ASSOCIATE-RQ (EVT_REQUESTED)
    contexts: dict[str, list[Any]] = {}
    for cx in request.presentation_context_definition_list:
        if str(cx.abstract_syntax) in receiving and cx.transfer_syntax:
            contexts.setdefault(str(cx.abstract_syntax), []).append(cx)
    supported = {
        str(cx.abstract_syntax): {str(ts) for ts in cx.transfer_syntax}
        for cx in assoc.acceptor.supported_contexts
    }
    for sop_class, proposed in contexts.items():
        if sop_class not in supported:
            continue
        chosen = receiving_syntaxes(
            sop_class,
            [[str(ts) for ts in cx.transfer_syntax] for cx in proposed],
            supported[sop_class],
        )
        for cx, syntax in zip(proposed, chosen, strict=True):
            if syntax is not None:
                cx.transfer_syntax = [UID(syntax)]


def _title(value: str | bytes) -> str:
    """An AE title as sent, without its padding: spaces are not significant (PS3.5 6.2), a
    control character is (and makes the title invalid)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip(" ")


# Given to a context proposed without a transfer syntax, so that pynetdicom answers it
# transfer-syntaxes-not-supported (its negotiation reads the first proposed syntax, and an
# empty list killed the association's thread). JPIP Referenced: the node accepts it for no
# SOP class (server._REFUSED; a test keeps it so); PS3.8 9.3.3.2 says the syntax answered with
# a rejected context is not significant.
NEVER_ACCEPTED_SYNTAX = "1.2.840.10008.1.2.4.94"


def refuse_empty_contexts(assoc: Association, ids: list[int]) -> None:
    """Have the contexts `ids` (proposed without a transfer syntax) answered
    transfer-syntaxes-not-supported, the others negotiated as usual."""
    if not ids:
        return
    request = assoc.requestor.primitive
    assert request is not None  # the A-ASSOCIATE-RQ (EVT_REQUESTED)
    for cx in request.presentation_context_definition_list:
        if cx.context_id in ids:
            cx.transfer_syntax = [NEVER_ACCEPTED_SYNTAX]
    log.warning(
        "%s: presentation context(s) %s proposed without a transfer syntax: "
        "answered transfer-syntaxes-not-supported",
        peer_label(assoc),
        ", ".join(map(str, ids)),
    )
