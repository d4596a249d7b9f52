"""pynetdicom's two reactor loops, woken by events instead of polled every millisecond (speed).

Replaces DULServiceProvider.run_reactor and send_pdu, Association.__init__ and _run_reactor of
pynetdicom 3.0.4, for the associations of the node's own AEs (scope.py); every other AE keeps
pynetdicom's loops.

Why: pynetdicom runs each association on two threads that poll. The DUL thread sleeps 1 ms
whenever a turn found nothing to do, and the association thread sleeps 1 ms before every look
at its DIMSE queue. A C-STORE waits for both on the way in and for the DUL again on the way
out: ~1.5 ms of idle time per message, more than the node's own work for a small object.
Measured (docs/benchmarks.md, "What each speed patch is worth"): without this patch 10 KB
C-STOREs fall from 291 to 181 a second, C-MOVE of CT slices from 383 to 221. Upstream knows the
polling: pynetdicom issue #650 (storescu ~35x slower than DCMTK's, `_run_loop_delay`) and
pull request #139 (reduce the DUL loop's sleep); 3.0.4 still sleeps.

The loops keep every step pynetdicom's take, in the same order:
- the DUL waits in select() on its socket and on a wake-up pipe that send_pdu() writes to,
  so it reads a PDU the moment one arrives and sends a primitive the moment one is queued;
  other conditions (ARTIM timer, kill) are looked at every TURN seconds, as pynetdicom does
  once per idle turn;
- the association thread waits instead of sleeping 1 ms per turn: an acceptor's on its DIMSE
  queue (a request is served the moment it is decoded), a requestor's until one of the node's
  own send_*() calls asks it to pause (pynetdicom's pause is a cleared Event the caller then
  polls; the reactor reached it only after its 1 ms sleep, once per C-STORE of a C-MOVE).
  Release, abort and timeouts are looked at every TURN seconds.

And two things pynetdicom's loops get wrong, put right on the way (with node.fast_paths =
false the node runs pynetdicom's loops, and these with them):
- pausing: a send_*() right after the reactor resumed could see it paused while it was not,
  and lose its answer to the reactor (_Checkpoint);
- an error in the DUL's state machine (a P-DATA arriving after our A-RELEASE-RQ) killed its
  thread silently, leaving every waiter to its timeout: now it aborts and wakes them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import ssl
import threading
import time
from typing import Any, Literal, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import DimseServiceType
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import A_P_ABORT, _PDUPrimitiveType

from . import guard, scope

log = logging.getLogger(__name__)

NAME = "reactor"
TURN = 0.005  # seconds between looks at timers and flags when no event arrives

_DUL_REACTOR = "pynetdicom.dul.DULServiceProvider.run_reactor"
_SEND_PDU = "pynetdicom.dul.DULServiceProvider.send_pdu"
_ASSOCIATION_INIT = "pynetdicom.association.Association.__init__"
_ASSOCIATION_REACTOR = "pynetdicom.association.Association._run_reactor"

_wakeup_lock = threading.Lock()


def _run_dul_reactor(self: DULServiceProvider) -> None:
    if scope.takes(self.assoc.ae, NAME):
        return _dul_reactor(self)
    return guard.original(_DUL_REACTOR)(self)  # type: ignore[no-any-return]


def _send_pdu(self: DULServiceProvider, primitive: _PDUPrimitiveType) -> None:
    guard.original(_SEND_PDU)(self, primitive)
    if not scope.takes(self.assoc.ae, NAME):
        return
    if self.__dict__.get("_archive_ended"):  # queued after the DUL's last look at its queue
        _release_waiting_senders(self)
    wakeup = _wakeup_of(self)
    if wakeup is not None:
        wakeup.set()


def _association_init(self: Association, *args: Any, **kwargs: Any) -> None:
    guard.original(_ASSOCIATION_INIT)(self, *args, **kwargs)
    if scope.takes(self.ae, NAME):
        checkpoint = _Checkpoint()
        checkpoint.set()  # as pynetdicom's: running
        self._reactor_checkpoint = checkpoint


def _run_association_reactor(self: Association) -> None:
    if scope.takes(self.ae, NAME):
        return _association_reactor(self)
    return guard.original(_ASSOCIATION_REACTOR)(self)  # type: ignore[no-any-return]


PATCH = guard.Patch(
    NAME,
    speed=True,
    replacements=(
        guard.replace(_DUL_REACTOR, _run_dul_reactor),
        guard.replace(_SEND_PDU, _send_pdu),
        guard.replace(_ASSOCIATION_INIT, _association_init),
        guard.replace(_ASSOCIATION_REACTOR, _run_association_reactor),
    ),
)


class _Checkpoint(threading.Event):
    """Association._reactor_checkpoint, made safe to pause on.

    pynetdicom's send_*() clear it, then wait for the reactor's _is_paused, then send and read
    the answer from the DIMSE queue. Its reactor sets _is_paused False only after wait()
    returned, so a send_*() that clears the checkpoint just after it was set again (the next
    C-STORE of a C-MOVE) could see a stale True and send while the reactor goes on to read that
    queue and take the answer ("Received unexpected C-STORE service message", then a 30 s
    wait). Here the reactor leaves its pause point under `lock` and only if the checkpoint is
    still set (resumed), and clear() takes the same lock. clear() also says that a pause was
    asked for, so that an idle reactor goes to its pause point at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.pause_requested = threading.Event()

    def clear(self) -> None:
        with self.lock:
            super().clear()
        self.pause_requested.set()


class _Wakeup:
    """A pipe one thread writes a byte to so that another's select() returns at once."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._lock = threading.Lock()
        self._closed = False

    def fileno(self) -> int:
        return self._read

    def set(self) -> None:
        with self._lock:  # never a write to a closed (and maybe reused) descriptor
            if self._closed:
                return
            # a full pipe already holds a pending wake-up
            with contextlib.suppress(BlockingIOError):
                os.write(self._write, b"\0")

    def clear(self) -> None:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            os.close(self._read)
            os.close(self._write)


def _wakeup_of(dul: DULServiceProvider) -> _Wakeup | None:
    """The DUL's wake-up pipe, made on first use; None when no descriptor is left (EMFILE):
    that DUL then polls as pynetdicom does."""
    wakeup: _Wakeup | Literal[False] | None = dul.__dict__.get("_archive_wakeup", False)
    if wakeup is False:
        with _wakeup_lock:
            wakeup = dul.__dict__.get("_archive_wakeup", False)
            if wakeup is False:
                try:
                    wakeup = _Wakeup()
                except OSError as exc:
                    log.warning("no wake-up pipe for an association (%s): polling", exc)
                    wakeup = None
                dul._archive_wakeup = wakeup  # type: ignore[attr-defined]  # the node's own
    return wakeup


def _wait_for_work(dul: DULServiceProvider, wakeup: _Wakeup | None) -> None:
    """Block until the peer sent data, a primitive was queued, or TURN has passed."""
    if wakeup is None:
        time.sleep(dul._run_loop_delay)
        return
    waiting: list[Any] = [wakeup]
    transport = dul.socket
    raw = getattr(transport, "socket", None) if transport is not None else None
    if raw is not None and getattr(transport, "_is_connected", False):
        if isinstance(raw, ssl.SSLSocket) and raw.pending():
            return  # decrypted bytes already read off the socket: select() would not see them
        waiting.append(raw)
    # a socket closed under us is noticed by the next turn
    with contextlib.suppress(OSError, ValueError):
        select.select(waiting, [], [], TURN)
    wakeup.clear()


def _dul_reactor(self: DULServiceProvider) -> None:
    """DULServiceProvider.run_reactor of pynetdicom 3.0.4, with _wait_for_work() where it
    slept for _run_loop_delay."""
    self._idle_timer.start()
    wakeup = _wakeup_of(self)
    sleep = False
    try:
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
                sleep = True
            if sleep:
                _wait_for_work(self, wakeup)
            if self._kill_thread:
                break
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                # one primitive encoded and sent, or one PDU received, per turn
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception as exc:
                _abort_on_error(self, exc)
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                sleep = True
                continue
            try:
                self.state_machine.do_action(event)
            except Exception as exc:  # e.g. an event the state allows not (a peer's P-DATA
                _abort_on_error(self, exc)  # after our A-RELEASE-RQ): pynetdicom's thread died
                return
            sleep = False
    finally:
        if wakeup is not None:
            wakeup.close()
        # Marked ended before its queue is looked at: a sender that queues a file after that
        # look sees the mark (_send_pdu) and is released there, not after its patience.
        self._archive_ended = True  # type: ignore[attr-defined]  # the node's own mark
        _release_waiting_senders(self)


def _abort_on_error(dul: DULServiceProvider, exc: Exception) -> None:
    """As pynetdicom's reactor on an error: send an A-ABORT and end; and wake whoever waits
    for this association (a DIMSE answer, a release answer), who would otherwise wait for
    their timeouts."""
    log.error("error in the DUL reactor, aborting the association: %s", exc)
    log.debug("DUL reactor error", exc_info=True)
    abort_pdu = A_ABORT_RQ()
    abort_pdu.source = 0x02
    abort_pdu.reason_diagnostic = 0x00
    with contextlib.suppress(Exception):
        dul.socket.send(abort_pdu.encode())  # type: ignore[union-attr]  # None: suppressed
    assoc = dul.assoc
    assoc.is_aborted = True
    assoc.is_established = False
    assoc._kill = True
    dul._kill_thread = True
    abort = A_P_ABORT()
    abort.provider_reason = 0x00
    dul.to_user_queue.put(abort)
    assoc.dimse.msg_queue.put((None, None))


def _release_waiting_senders(dul: DULServiceProvider) -> None:
    """Primitives still queued when the DUL ends will never be sent: a sender waiting for one
    to be written (sending.FileDataset's `done`) learns it now, not after its patience."""
    for primitive in list(dul.to_provider_queue.queue):
        done = getattr(primitive, "done", None)
        if isinstance(done, threading.Event):
            done.set()


def _association_reactor(self: Association) -> None:
    """Association._run_reactor of pynetdicom 3.0.4, waiting (_next_message) where it slept
    1 ms before every non-blocking look at its DIMSE queue."""
    self._is_paused = False
    try:
        _react(self)
    finally:
        # A reactor that has ended counts as paused for good: a send_*() or release() asked
        # for later must not wait for it forever.
        self._is_paused = True


def _react(self: Association) -> None:
    checkpoint = self._reactor_checkpoint
    while not self._kill:
        if not _leave_pause_point(self, checkpoint) or self._kill:
            continue
        context_id, msg = _next_message(self)
        if msg:
            self._serve_request(msg, cast(int, context_id))
        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            log.info("Association Released")
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return
        if self.acse.is_aborted():
            message = "Association Aborted"
            if self.acse.is_aborted("a-p-abort"):
                message += " (A-P-ABORT)"
            log.info(message)
            self.dul.receive_pdu(wait=False)
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return
        if not self.dul.is_alive():
            self.kill()
            return
        if self.dul.idle_timer_expired():
            log.error("Network timeout reached")
            if self.network_timeout_response == "A-RELEASE":
                self._is_paused = True
                self._reactor_checkpoint.wait()
                self.release()
                self._is_paused = False
            else:
                self.abort()
            self.kill()
            return
        if msg is None and self.is_requestor:
            _wait_for_pause_request(checkpoint)


def _leave_pause_point(assoc: Association, checkpoint: threading.Event) -> bool:
    """Wait while the reactor is paused; True when it may go on (False: paused again)."""
    assoc._is_paused = True
    checkpoint.wait()
    lock = getattr(checkpoint, "lock", None)
    if lock is None:  # an association made before install()
        assoc._is_paused = False
        return True
    with lock:
        if not checkpoint.is_set() or assoc._kill:  # paused again, or killed meanwhile
            return False
        assoc._is_paused = False
        return True


def _next_message(assoc: Association) -> tuple[int | None, DimseServiceType | None]:
    """The next DIMSE request for the reactor to serve, or (None, None). An acceptor waits
    up to TURN for one; a requestor's requests come from the node's own thread, which pauses
    the reactor for each and reads the answers itself: it only looks."""
    if not assoc.is_acceptor:
        return assoc.dimse.get_msg(block=False)
    try:
        return assoc.dimse.msg_queue.get(timeout=TURN)
    except queue.Empty:
        return None, None


def _wait_for_pause_request(checkpoint: threading.Event) -> None:
    """A requestor's idle turn, after its checks for release and abort (as pynetdicom's 1 ms
    sleep was): until the node's thread asks it to pause, at most TURN."""
    pause = getattr(checkpoint, "pause_requested", None)
    if pause is None:  # an association made before install()
        time.sleep(0.001)
        return
    pause.wait(TURN)
    pause.clear()
