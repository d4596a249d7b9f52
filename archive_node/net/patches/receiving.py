"""pynetdicom's chunked C-STORE receive, extended: the sender in the file meta, a full disk.

Wraps DIMSEMessage.decode_msg of pynetdicom 3.0.4 (feature), for the associations of the AEs
given to serve_receiving(); any other AE's are left as pynetdicom decodes them.

Why: with STORE_RECV_CHUNKED_DATASET pynetdicom writes each incoming dataset to a file whose
File Meta Information it builds from the command alone. Right after that, before any of the
dataset's own bytes follow:
- the file meta just written is replaced by one that also records the calling AE, its
  hospital and issuer (dicom/provenance.py), so that `reindex` can rebuild the index from the
  files alone;
- the file is guarded: when free space is below the reserve as the dataset begins or at a later
  look (every ROOM_CHECK_EVERY bytes), or a write fails (the disk is full), nothing more is
  written, what was written is freed, the rest of the dataset is read off the network and
  dropped, and receive_failure() tells the C-STORE handler, which answers 0xA700. pynetdicom
  itself would write a whole video onto an almost full disk, and on a full one let the
  exception end the association, leaving the partial file to fill the disk until the next
  restart (its decode_msg writes without a guard; no upstream issue names it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import weakref
from collections.abc import Callable
from typing import IO

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.pdu_primitives import P_DATA

from ...dicom.provenance import Provenance, with_provenance
from . import guard

log = logging.getLogger(__name__)

Lookup = Callable[[Association], Provenance | None]
RoomProblem = Callable[[], str | None]

_DECODE_MSG = "pynetdicom.dimse_messages.DIMSEMessage.decode_msg"

_receivers: weakref.WeakKeyDictionary[AE, tuple[Lookup, RoomProblem]] = weakref.WeakKeyDictionary()

# Free space is looked at again every this many bytes of one dataset (a statvfs: ~1 us)
ROOM_CHECK_EVERY = 64 << 20
_PREAMBLE = 128 + 4  # preamble and "DICM" (PS3.10 7.1)
_GROUP_LENGTH_ELEMENT = 12  # (0002,0000) UL, explicit VR: tag 4, VR 2, length 2, value 4


def serve_receiving(ae: AE, *, provenance_of: Lookup, room_problem: RoomProblem) -> None:
    """For every C-STORE `ae` receives: record in the file meta the provenance
    `provenance_of` returns for the association (None: leave pynetdicom's file meta as it is),
    and write nothing when `room_problem` says why there is no room (None: there is)."""
    _receivers[ae] = (provenance_of, room_problem)


def _decode_msg(self: DIMSEMessage, primitive: P_DATA, assoc: Association | None = None) -> bool:
    had_file = getattr(self, "_data_set_file", None) is not None
    done: bool = guard.original(_DECODE_MSG)(self, primitive, assoc)
    stream = getattr(self, "_data_set_file", None)
    if had_file or stream is None or assoc is None:
        return done
    receiver = _receivers.get(assoc.ae)
    if receiver is None:
        return done
    provenance_of, room_problem = receiver
    guarded = _GuardedFile(stream, room_problem)
    self._data_set_file = guarded  # type: ignore[assignment]  # stands in for pynetdicom's file
    try:  # nothing may escape into pynetdicom's DUL thread: it would end the association
        problem = room_problem()
        if problem:
            guarded.refuse(problem)
            return done
        provenance = provenance_of(assoc)
        if provenance is not None:
            _rewrite_file_meta(stream, provenance, assoc.ae.ae_title)
    except OSError as exc:  # the disk, full or failing: refused with 0xA700
        guarded.refuse(exc.strerror or str(exc))
    except Exception as exc:  # a half-rewritten file must not be kept
        log.exception("could not record the sender in %s", self._data_set_path)
        guarded.refuse(f"file meta not written: {type(exc).__name__}")
    return done


def receive_failure(path: str | os.PathLike[str]) -> str | None:
    """Why the dataset received into `path` could not be written (None: it was)."""
    guarded = _guarded.get(str(path))
    return guarded.failure if guarded is not None else None


# The guarded file of each dataset being received, by path; an entry goes with its file object
# (after the C-STORE, or with the association when it aborts mid-transfer).
_guarded: weakref.WeakValueDictionary[str, _GuardedFile] = weakref.WeakValueDictionary()


class _GuardedFile:
    """Stands in for the temporary file a dataset is received into (pynetdicom calls write(),
    file.flush() and, after the handler, close()). After a failed write it frees the space the
    file took and drops the rest of the dataset."""

    def __init__(self, stream: IO[bytes], room_problem: RoomProblem) -> None:
        self._stream = stream
        self._room_problem = room_problem
        self._unchecked = 0  # bytes written since free space was last looked at
        self.name = stream.name
        self.file = self  # pynetdicom flushes through .file
        self.failure: str | None = None
        _guarded[str(self.name)] = self

    def write(self, data: bytes) -> int:
        if self.failure is None:
            try:
                written = self._stream.write(data)
            except OSError as exc:
                self.refuse(exc.strerror or str(exc))
                return len(data)
            self._unchecked += written
            if self._unchecked >= ROOM_CHECK_EVERY:
                # one large transfer may not eat the reserve the check at its start saw
                self._unchecked = 0
                problem = self._room_problem()
                if problem:
                    self.refuse(problem)
            return written
        return len(data)

    def flush(self) -> None:
        if self.failure is None:
            try:
                self._stream.flush()
            except OSError as exc:
                self.refuse(exc.strerror or str(exc))

    def close(self) -> None:
        # what was still buffered may not fit: the file is removed after the handler anyway
        with contextlib.suppress(OSError):
            self._stream.close()

    def refuse(self, reason: str) -> None:
        """Write no more of this dataset, free what was written, and keep `reason`."""
        self.failure = reason
        try:
            os.ftruncate(self._stream.fileno(), 0)
        except OSError:
            log.exception("could not free the partial file %s", self.name)


def _rewrite_file_meta(stream: IO[bytes], provenance: Provenance, our_title: str) -> None:
    """Replace the file meta at the start of a file being received, keeping any dataset bytes
    already written after it; the open stream goes on appending after them."""
    stream.flush()
    fd = stream.fileno()
    written = stream.tell()
    head = os.pread(fd, _PREAMBLE + _GROUP_LENGTH_ELEMENT, 0)
    (group_length,) = struct.unpack("<I", head[-4:])
    meta_end = _PREAMBLE + _GROUP_LENGTH_ELEMENT + group_length
    meta = os.pread(fd, meta_end - _PREAMBLE, _PREAMBLE)
    already = os.pread(fd, written - meta_end, meta_end) if written > meta_end else b""
    replaced = with_provenance(meta, provenance, our_title) + already
    stream.seek(_PREAMBLE)
    stream.write(replaced)  # `already`: at most what one P-DATA carried beyond the command
    if _PREAMBLE + len(replaced) < written:  # never, as elements are only added
        stream.truncate()
    stream.flush()


PATCH = guard.Patch(
    "receiving",
    speed=False,
    replacements=(guard.replace(_DECODE_MSG, _decode_msg),),
)
