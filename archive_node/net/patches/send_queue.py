"""pynetdicom's send queue bounded for one association, where the speed patches are off
(feature).

Wraps the send_pdu of one association's DUL (DULServiceProvider.send_pdu of pynetdicom 3.0.4),
for the associations on which the node sends stored files without the speed patches
(node.fast_paths = false): C-MOVE sub-associations and C-GET requesters.

Why: pynetdicom sends a file's dataset (STORE_SEND_CHUNKED_DATASET) as one queued P-DATA per
PDU, read from the file faster than the socket drains them, into an unbounded queue: a 512 MiB
object peaked at ~413 MB (pynetdicom-facts; no upstream issue found). Here the sending thread
waits while QUEUED_PDUS are queued. With the speed patches the file goes to the DUL as one
primitive (file_sending.py) and this bound is never reached.
"""

from __future__ import annotations

import time

from pynetdicom.association import Association
from pynetdicom.pdu_primitives import P_DATA, _PDUPrimitiveType

from ..association import connected

# P-DATA PDUs a sending association may have queued.
QUEUED_PDUS = 8


def bound_send_queue(assoc: Association, limit: int = QUEUED_PDUS) -> None:
    """Make pynetdicom's send queue of `assoc` hold at most `limit` P-DATA PDUs: the sending
    thread waits for the socket to drain it. Raises ConnectionError from the send when the
    association is lost (what is left of the file is not read), TimeoutError when nothing
    drains for the association's network timeout (the peer stopped reading)."""
    dul = assoc.dul
    if getattr(dul, "_archive_bounded", False):
        return
    unbounded = dul.send_pdu
    patience = assoc.network_timeout or 60.0

    def send_pdu(primitive: _PDUPrimitiveType) -> None:
        if isinstance(primitive, P_DATA):
            deadline = time.monotonic() + patience
            # a lost association never drains the queue: it is noticed while waiting
            while dul.to_provider_queue.qsize() >= limit:
                if not connected(assoc):
                    raise ConnectionError("the association was lost")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the peer read nothing for {patience:.0f} s")
                time.sleep(0.0005)
        unbounded(primitive)

    dul.send_pdu = send_pdu  # type: ignore[method-assign]  # this DUL's own, bounded
    dul._archive_bounded = True  # type: ignore[attr-defined]  # the node's own mark
