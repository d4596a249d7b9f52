"""pynetdicom's chunked C-STORE receive, extended: the sender in the file meta, a full disk.

With STORE_RECV_CHUNKED_DATASET pynetdicom writes each incoming dataset to a file whose File
Meta Information it builds from the command alone. The node wraps that step once per process,
for associations of an AE registered with extend_receiving() (other AEs are left alone):
- the file meta just written is replaced by one that also records the calling AE, its
  hospital and issuer (provenance.py), before any of the dataset's own bytes follow it;
- the file is guarded: when free space is already below the reserve as the dataset begins,
  or a write fails (the disk is full), nothing more is written, what was written is freed, the
  rest of the dataset is read off the network and dropped, and receive_failure() tells the
  C-STORE handler, which answers 0xA700. pynetdicom itself would write a whole video onto an
  almost full disk, and on a full one let the exception end the association, leaving the
  partial file to fill the disk until the next restart.
For every AE of the process, pynetdicom's own first file meta is written by
provenance.file_meta(): the same bytes, without a pydicom Dataset built and written each time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

from pynetdicom import (
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
    dimse_messages,
)
from pynetdicom.dimse_messages import DIMSEMessage

from ...dicom.provenance import Provenance, with_provenance
from ...dicom.provenance import file_meta as file_meta_bytes

log = logging.getLogger(__name__)

Lookup = Callable[[Any], Provenance | None]
RoomProblem = Callable[[], str | None]

_receivers: weakref.WeakKeyDictionary[Any, tuple[Lookup, RoomProblem]] = (
    weakref.WeakKeyDictionary()
)
_install_lock = threading.Lock()
_original_decode_msg: Any = None
_original_write_file_meta_info: Any = None

_PREAMBLE = 128 + 4  # preamble and "DICM" (PS3.10 7.1)
_GROUP_LENGTH_ELEMENT = 12  # (0002,0000) UL, explicit VR: tag 4, VR 2, length 2, value 4


def extend_receiving(ae: Any, *, provenance_of: Lookup, room_problem: RoomProblem) -> None:
    """For every C-STORE `ae` receives: record in the file meta the provenance
    `provenance_of` returns for the association (None: leave pynetdicom's file meta as it is),
    and write nothing when `room_problem` says why there is no room (None: there is)."""
    global _original_decode_msg, _original_write_file_meta_info
    with _install_lock:
        if _original_decode_msg is None:
            _original_decode_msg = DIMSEMessage.decode_msg
            DIMSEMessage.decode_msg = _decode_msg  # type: ignore[method-assign]
            _original_write_file_meta_info = dimse_messages.write_file_meta_info
            dimse_messages.create_file_meta = _FileMeta
            dimse_messages.write_file_meta_info = _write_file_meta_info
        _receivers[ae] = (provenance_of, room_problem)


class _FileMeta(NamedTuple):
    """What pynetdicom's create_file_meta() puts in a received file's meta, kept as values:
    provenance.file_meta() writes them (pydicom's Dataset and writer cost ~0.3 ms each time)."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    implementation_uid: str = PYNETDICOM_IMPLEMENTATION_UID
    implementation_version: str = PYNETDICOM_IMPLEMENTATION_VERSION


def _write_file_meta_info(fp: Any, file_meta: Any, enforce_standard: bool = True) -> None:
    if not isinstance(file_meta, _FileMeta):
        return _original_write_file_meta_info(fp, file_meta, enforce_standard)
    fp.write(file_meta_bytes(**file_meta._asdict()))
    return None


def _decode_msg(self: Any, primitive: Any, assoc: Any = None) -> bool:
    had_file = getattr(self, "_data_set_file", None) is not None
    done = _original_decode_msg(self, primitive, assoc)
    stream = getattr(self, "_data_set_file", None)
    if had_file or stream is None or assoc is None:
        return done
    receiver = _receivers.get(assoc.ae)
    if receiver is None:
        return done
    provenance_of, room_problem = receiver
    guarded = _GuardedFile(stream)
    self._data_set_file = guarded
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


def receive_failure(path: Any) -> str | None:
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

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.name = stream.name
        self.file = self  # pynetdicom flushes through .file
        self.failure: str | None = None
        _guarded[str(self.name)] = self

    def write(self, data: bytes) -> int:
        if self.failure is None:
            try:
                return self._stream.write(data)
            except OSError as exc:
                self.refuse(exc.strerror or str(exc))
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


def _rewrite_file_meta(stream: Any, provenance: Provenance, our_title: str) -> None:
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
