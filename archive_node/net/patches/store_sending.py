"""A stored file's C-STORE sub-operation sent without pynetdicom's send_c_store (speed, part of
the file_sending patch).

Does what Association.send_c_store of pynetdicom 3.0.4 does for a file path with
STORE_SEND_CHUNKED_DATASET (the node's C-MOVE and C-GET sub-operations), for the associations
of the node's AEs that take the file_sending patch; with node.fast_paths = false the node calls
send_c_store itself.

Why: per sub-operation send_c_store reads the file meta with pydicom (split_dataset), builds
the C-STORE-RQ as a pydicom Dataset and encodes it, pauses the association's reactor (a
cleared Event the reactor thread must wake up to see, polled every 0.1 ms), and the C-STORE-RSP
is decoded through pydicom into a primitive on the DUL thread. For a 1,000-slice CT study that
was ~1.5 ms of the ~3.5 ms of CPU each instance cost (py-spy, notes in the commit), and
C-MOVE ran at ~0.4x Orthanc's instances/s. Here:
- the file meta is read by wire/store_request.read_file_meta (pynetdicom's split_dataset for
  one it does not recognise);
- the C-STORE-RQ's command set is packed by wire/store_request.store_request and written by
  the DUL thread in the same write as the dataset's first PDU (file_sending.FileDataset);
- the response, when it is a plain C-STORE-RSP, is read by the DUL's DT-2 action without
  pydicom (file_sending._dt_2, wire/store_request.parse_store_response), anything else is
  decoded by pynetdicom and taken here as send_c_store takes it;
- the reactor is not paused per C-STORE: a C-MOVE sub-association's reactor is paused once
  for all its C-STOREs (pause_reactor), a C-GET's runs in the thread that sends.
The DIMSE notification events (EVT_DIMSE_SENT, EVT_DIMSE_RECV) are not triggered for these
messages: takes() says no for an association with handlers bound to them other than
pynetdicom's debug logging. Tests compare the bytes sent with pynetdicom's for the same file
and the responses read with pydicom's decoding. Not an upstream bug: pynetdicom's generic path
is right, only slow per message.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from pynetdicom import evt
from pynetdicom._handlers import standard_dimse_recv_handler, standard_dimse_sent_handler
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import split_dataset
from pynetdicom.presentation import PresentationContext

from ..wire.store_request import (
    FileMeta,
    StoreResponse,
    command_pdus,
    read_file_meta,
    store_request,
)
from . import file_sending, scope
from .service_classes import POLL, Interrupted

log = logging.getLogger(__name__)

_STANDARD = {standard_dimse_recv_handler, standard_dimse_sent_handler}


def takes(assoc: Association) -> bool:
    """Whether the node's stored files go over `assoc` this way: its AE takes file_sending and
    nothing but pynetdicom's logging listens to its DIMSE messages."""
    if not scope.takes(assoc.ae, file_sending.NAME):
        return False
    for event in (evt.EVT_DIMSE_SENT, evt.EVT_DIMSE_RECV):
        for handler in assoc.get_handlers(event):
            function = handler[0] if isinstance(handler, tuple) else handler
            if function not in _STANDARD:
                return False
    return True


def pause_reactor(assoc: Association) -> None:
    """Pause the reactor of a requestor association (a C-MOVE sub-association) for as long as
    the node sends on it, as send_c_store pauses it for each C-STORE (its reactor would take
    the responses off the DIMSE queue); resume_reactor() ends the pause."""
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused and assoc.is_alive():
        time.sleep(0.0001)


def resume_reactor(assoc: Association) -> None:
    assoc._reactor_checkpoint.set()


class StoreSender:
    """C-STOREs of stored files over one association whose reactor does not read its DIMSE
    queue meanwhile (paused, or the thread calling send)."""

    def __init__(
        self, assoc: Association, originator_aet: str | None, originator_id: int | None
    ) -> None:
        self.assoc = assoc
        if originator_aet is not None:
            # as pynetdicom's C_STORE primitive keeps it (its setter checks and trims)
            primitive = C_STORE()
            primitive.MoveOriginatorApplicationEntityTitle = originator_aet
            originator_aet = primitive.MoveOriginatorApplicationEntityTitle
        self.originator_aet = originator_aet
        self.originator_id = originator_id
        self._contexts: dict[tuple[str, str], PresentationContext] = {}
        self._prefetched: tuple[str, Any, FileMeta] | None = None

    def prefetch(self, path: str | Path) -> None:
        """Open the file the next send() will send and read its meta now (while a response is
        awaited); one that cannot be is left to send()."""
        self.drop_prefetched()
        try:
            fh = open(path, "rb", buffering=0)  # noqa: SIM115  # kept open for send()
        except OSError:
            return
        try:
            meta = read_file_meta(cast(Any, fh))
        except OSError:
            meta = None
        if meta is None:
            fh.close()
            return
        self._prefetched = (str(path), fh, meta)

    def drop_prefetched(self) -> None:
        if self._prefetched is not None:
            self._prefetched[1].close()
            self._prefetched = None

    def _open(self, path: str | Path) -> tuple[Any, FileMeta | None]:
        """The file at `path`, open at its dataset when its meta was read (else at 0)."""
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is not None:
            if prefetched[0] == str(path):
                return prefetched[1], prefetched[2]
            prefetched[1].close()
        fh = open(path, "rb", buffering=0)  # noqa: SIM115  # closed by send()
        try:
            return fh, read_file_meta(cast(Any, fh))
        except BaseException:
            fh.close()
            raise

    def send(
        self,
        path: str | Path,
        message_id: int,
        stop: Callable[[], bool],
        after_queued: Callable[[], None] | None = None,
    ) -> int | None:
        """Send the file as a C-STORE-RQ; the status of the response, or None when none came
        (the DIMSE timeout, the association gone: as send_c_store, an association still up
        is then aborted). Raises Interrupted once stop() says so while the response is
        awaited, RuntimeError when the association is not established, OSError for a file
        that cannot be read and TimeoutError for a peer that stopped reading."""
        assoc = self.assoc
        if not assoc.is_established:
            raise RuntimeError(
                "The association with a peer SCP must be established before sending a "
                "C-STORE request"
            )
        fh, meta = self._open(path)
        with fh:
            if meta is None:
                offset, sop_class, sop_instance, syntax = _split(path)
            else:
                offset, sop_class, sop_instance, syntax = (
                    meta.offset,
                    meta.sop_class_uid,
                    meta.sop_instance_uid,
                    meta.transfer_syntax_uid,
                )
            context = self._context(sop_class, syntax)
            context_id = cast(int, context.context_id)
            max_pdu = assoc.dimse.maximum_pdu_size
            command = store_request(
                message_id,
                sop_class,
                sop_instance,
                originator_aet=self.originator_aet,
                originator_id=self.originator_id,
            )
            size = fh.seek(0, 2) - fh.seek(offset)
            dataset = file_sending.FileDataset(fh, size, context_id, max_pdu)
            dataset.prefix = command_pdus(command, context_id, max_pdu)
            dimse = assoc.dimse
            dimse._archive_store_waiting = True  # type: ignore[attr-defined]  # the node's own
            try:
                assoc.dul.send_pdu(dataset)
                try:
                    if after_queued is not None:  # the caller's work while the peer works
                        after_queued()
                    response = self._response(message_id, stop, dataset)
                finally:
                    # answered (or given up): a further response is the reactor's to ignore
                    dimse._archive_store_waiting = False  # type: ignore[attr-defined]
                    # the file stays open until the DUL thread is done with it, or is gone
                    if not dataset.done.is_set() and not dataset.abandoned:
                        file_sending._wait_until_written(
                            dataset, gone=lambda: not assoc.dul.is_alive()
                        )
            finally:
                dimse._archive_store_waiting = False  # type: ignore[attr-defined]
        if response is None:
            assoc._handle_no_response()
            return None
        return response

    def _context(self, sop_class: str, syntax: str) -> PresentationContext:
        key = (sop_class, syntax)
        context = self._contexts.get(key)
        if context is None:  # ValueError when none: as send_c_store
            context = self.assoc._get_valid_context(
                sop_class, syntax, "scu", allow_conversion=False
            )
            self._contexts[key] = context
        return context

    def _response(
        self, message_id: int, stop: Callable[[], bool], dataset: file_sending.FileDataset
    ) -> int | None:
        """The status of the response to `message_id`, None on the DIMSE timeout or when the
        association ends (EVT_CONN_CLOSE queues (None, None)); a C-STORE response to another
        Message ID (an earlier, interrupted C-STORE's) is passed over.

        One wait, on the DIMSE queue, from the moment the file is queued: the DUL thread wakes
        this thread once, with the response, not also when it has written the file. While it
        writes, the wait is file_sending's (TimeoutError when the peer reads nothing for
        PATIENCE seconds) and stop() is not asked (a C-STORE is not cut part way); once it
        has written, the DIMSE timeout runs, as pynetdicom's from the last fragment queued."""
        dimse = self.assoc.dimse
        timeout = dimse.dimse_timeout
        deadline: float | None = None
        progress, since = -1, time.monotonic()
        while True:
            written = dataset.done.is_set()
            wait = POLL
            if written and timeout is not None:
                if deadline is None:
                    deadline = time.monotonic() + timeout
                wait = min(POLL, deadline - time.monotonic())
                if wait <= 0:
                    return None
            try:
                _, message = dimse.msg_queue.get(timeout=wait)
            except queue.Empty:
                if not written:
                    if dataset.progress != progress:
                        progress, since = dataset.progress, time.monotonic()
                    elif time.monotonic() - since > file_sending.PATIENCE:
                        file_sending.abandon(dataset)
                    continue
                if stop():  # looked at once nothing came: an answer that came is taken
                    raise Interrupted from None
                continue
            if message is None:
                return None
            if isinstance(message, StoreResponse):
                if message.message_id_being_responded_to != message_id:
                    log.debug("a late C-STORE response passed over")
                    continue
                return message.status
            answered = getattr(message, "MessageIDBeingRespondedTo", None)
            if isinstance(message, C_STORE) and answered not in (None, message_id):
                log.debug("a late C-STORE response (to %s) passed over", answered)
                continue
            # as send_c_store's _check_received_status
            if not message.is_valid_response:
                name = type(message).__name__.replace("_", "-")
                log.error("Received an invalid %s response from the peer", name)
                self.assoc.abort()
                return None
            return int(cast(int, message.Status))


def _split(path: str | Path) -> tuple[int, str, str, str]:
    """What send_c_store takes from a file pynetdicom's split_dataset reads."""
    file_meta, offset = split_dataset(Path(path))
    missing = [
        kw
        for kw in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
        if kw not in file_meta
    ]
    if missing:
        raise AttributeError(
            f"Unable to send the dataset from the file at {path} as one or more required "
            f"file meta information elements are missing: {', '.join(missing)}"
        )
    return (
        offset,
        str(file_meta.MediaStorageSOPClassUID),
        str(file_meta.MediaStorageSOPInstanceUID),
        str(file_meta.TransferSyntaxUID),
    )
