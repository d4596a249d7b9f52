"""What every association of the node shares: no Nagle delay, a wait for a response that ends
when the peer goes, whether it can still carry messages, a response's status dataset, and the
C-FIND responses of a handler with their C-CANCEL checks."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.events import Event, EventHandlerType

from ..dicom.status import CANCELLED, PENDING
from ..rules.find_answers import FindAnswer, answer_layout
from .wire.identifiers import AnswerPacker, Packed

log = logging.getLogger(__name__)


def response_status(code: int, comment: str = "", keyword: str | None = None) -> Dataset:
    """A status with its Error Comment (LO, at most 64 characters) and Offending Element."""
    answer = Dataset()
    answer.Status = code
    if comment:
        answer.ErrorComment = comment.replace("\\", "/")[:64]  # a backslash would split the LO
    if keyword and (tag := tag_for_keyword(keyword)) is not None:
        answer.OffendingElement = [tag]
    return answer


def peer_label(assoc: Association) -> str:
    """Who is at the other end, for the log: its AE title once known, and its address (the
    log escapes what a peer put in either, logs.py)."""
    remote = assoc.requestor if assoc.is_acceptor else assoc.acceptor
    address = getattr(remote, "address", "") or "?"
    title: str | bytes = remote.ae_title
    if assoc.is_acceptor:  # its title is set in negotiation; the request's comes first
        request = assoc.requestor.primitive
        if request is None:
            return f"connection from {address}"
        title = request.calling_ae_title
    if isinstance(title, bytes):
        title = title.decode("ascii", "replace")
    return f"{str(title).strip(' ')} at {address}"


def on_connection_closed(event: Event) -> None:
    """On a closed connection, end at once what would otherwise wait for a timeout: a send that
    waits for its DIMSE response, and an acceptor still waiting for its A-ASSOCIATE-RQ."""
    wake_waiting_sender(event.assoc)
    release_waiting_acceptor(event.assoc)


def wake_waiting_sender(assoc: Association) -> None:
    """End a wait for a DIMSE response: pynetdicom's send_c_store pauses the reactor that would
    notice the close, and would otherwise wait the full DIMSE timeout. (None, None) is what its
    get_msg returns on a timeout."""
    assoc.dimse.msg_queue.put((None, None))


def release_waiting_acceptor(assoc: Association) -> None:
    """An acceptor whose connection ended (or whose DUL was stopped) before its A-ASSOCIATE-RQ
    came (a load balancer's TCP check, a port scan) would wait node.acse_timeout for it,
    holding an association slot and a stopping node: give it the end of its wait at once
    (None, what pynetdicom's receive_pdu returns on its timeout)."""
    waiting = assoc.is_acceptor and assoc.requestor.primitive is None
    if waiting and not assoc.is_established and assoc.dul.to_user_queue.empty():
        assoc.dul.to_user_queue.put(None)  # type: ignore[arg-type]  # as receive_pdu's timeout


def set_tcp_nodelay(event: Event) -> None:
    """Nagle plus delayed ACK costs a small C-STORE ~40 ms: send segments at once."""
    transport = event.assoc.dul.socket
    assert transport is not None  # the connection has just opened
    sock = transport.socket
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connected(assoc: Association) -> bool:
    """Whether the association can still carry messages. `is_established` alone is updated
    by the association's own reactor, which is paused while a handler or a C-STORE runs on
    it: an abort or a dropped connection shows first in the ACSE queue and the DUL thread."""
    return bool(assoc.is_established and assoc.dul.is_alive() and not assoc.acse.is_aborted())


# The handlers of every association the node opens (C-MOVE sub-associations, commitment
# call-backs): no Nagle delay, and a wait for a response that ends when the peer goes.
OUTGOING_HANDLERS: list[EventHandlerType] = [
    (evt.EVT_CONN_OPEN, set_tcp_nodelay),
    (evt.EVT_CONN_CLOSE, on_connection_closed),
]

# The DUL's reactor (pynetdicom's, and the node's in patches/reactor.py alike) reads the socket
# only when it has nothing queued to send, and its send queue is unbounded: a query answering
# faster than the socket drains would neither see a C-CANCEL nor bound its memory. Every this
# many responses the handler lets the queue empty.
CANCEL_CHECK_EVERY = 64


def find_responses(
    event: Event, responses: Iterable[Any], who: str
) -> Iterator[tuple[int | Dataset, Any]]:
    """What a C-FIND handler yields for the service's responses (each with status, identifier,
    comment and keyword): a pending response per match, the final status with its Error
    Comment; a C-CANCEL is checked before each one (PS3.4 C.4.1.2.3).

    Where the association's messages are sent by the messages patch, an answer the node built
    (a FindAnswer) is packed straight from its values (AnswerPacker), without a Dataset."""
    packing = Packing(event)
    for count, response in enumerate(responses):
        if cancelled(event, count):
            log.info("%s cancelled by the SCU", who)
            yield CANCELLED, None
            return
        if response.status == PENDING:
            answer = getattr(response, "answer", None)
            packed = packing.pack(answer) if answer is not None else None
            yield PENDING, packed if packed is not None else response.identifier
        elif response.comment:
            yield response_status(response.status, response.comment, response.keyword), None
        else:
            yield response.status, None


class Packing:
    """The packer of the answers of one C-FIND on an association whose responses the messages
    patch sends in Little Endian (none otherwise): made for the query of the first answer."""

    def __init__(self, event: Event) -> None:
        self.implicit_vr: bool | None = None
        self.packer: AnswerPacker | None = None
        self.query: Any = None
        from . import patches  # here: patches/ imports this module

        syntax = event.context.transfer_syntax
        if (
            patches.packs_responses(event.assoc.ae)
            and syntax.is_little_endian
            and not syntax.is_deflated
        ):
            self.implicit_vr = bool(syntax.is_implicit_VR)

    def pack(self, answer: Any) -> Packed | None:
        """The answer's identifier, packed; None to leave it to its Dataset."""
        if self.implicit_vr is None or type(answer) is not FindAnswer or answer.header:
            return None
        if self.packer is None or answer.query is not self.query:
            self.query = answer.query
            layout = answer_layout(answer.query, answer.retrieve_ae_title)
            self.packer = AnswerPacker(layout, answer.query.character_set, self.implicit_vr)
        data = self.packer.pack(answer.values)
        return None if data is None else Packed(data)


def cancelled(event: Event, count: int) -> bool:
    """Whether the SCU sent a C-CANCEL, before the `count`th response (pynetdicom reports it
    once; every CANCEL_CHECK_EVERY responses the reactor is let read it first)."""
    if count and count % CANCEL_CHECK_EVERY == 0:
        let_the_reactor_read(event.assoc)
    return bool(event.is_cancelled)


def let_the_reactor_read(assoc: Association, timeout: float = 30.0) -> None:
    """Wait until the DUL has sent what is queued, then for one more idle turn of its reactor, in
    which it reads an arrived C-CANCEL (pynetdicom's turns every 1 ms when idle; the node's
    reads as soon as the socket has data)."""
    dul = assoc.dul
    deadline = time.monotonic() + timeout
    while dul.to_provider_queue.qsize() and assoc.is_established:
        if time.monotonic() > deadline:
            return
        time.sleep(0.0005)
    time.sleep(0.002)
