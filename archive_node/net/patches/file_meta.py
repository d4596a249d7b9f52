"""A received file's first File Meta Information written without pydicom (speed).

Replaces pynetdicom.dimse_messages' create_file_meta and write_file_meta_info, the two calls
with which pynetdicom 3.0.4's chunked receive (STORE_RECV_CHUNKED_DATASET) begins the file of
each incoming C-STORE, for the node's associations (scope.py).

Why: pynetdicom builds the file meta as a pydicom Dataset and writes it with pydicom's writer,
~0.3 ms per instance for the same dozen bytes every time (PS3.10 7.1: group 0002 from the
command's SOP Class and Instance UIDs and the context's transfer syntax); measured
(docs/benchmarks.md) 10 KB C-STOREs at 254 a second without it, 291 with, within the noise of
one run. Here the values are
kept as a tuple and dicom.provenance.file_meta() writes the same bytes (a test compares them
with pydicom's). Not an upstream bug: the generic path is right, only slow for an archive.
"""

from __future__ import annotations

from typing import IO, NamedTuple, cast

from pydicom.dataset import FileMetaDataset
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from ...dicom.provenance import file_meta as file_meta_bytes
from . import guard, scope

NAME = "file_meta"
_CREATE = "pynetdicom.dimse_messages.create_file_meta"
_WRITE = "pynetdicom.dimse_messages.write_file_meta_info"


class FileMeta(NamedTuple):
    """What pynetdicom's create_file_meta() puts in a received file's meta, kept as values."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    implementation_uid: str = PYNETDICOM_IMPLEMENTATION_UID
    implementation_version: str = PYNETDICOM_IMPLEMENTATION_VERSION


def _create_file_meta(**values: str) -> FileMeta | FileMetaDataset:
    """create_file_meta(sop_class_uid=, sop_instance_uid=, transfer_syntax=), as pynetdicom
    calls it in the DUL thread of the receiving association."""
    if scope.thread_takes(NAME):
        return FileMeta(**values)
    return cast(FileMetaDataset, guard.original(_CREATE)(**values))


def _write_file_meta_info(
    fp: IO[bytes], file_meta: FileMeta | FileMetaDataset, enforce_standard: bool = True
) -> None:
    if not isinstance(file_meta, FileMeta):
        return guard.original(_WRITE)(fp, file_meta, enforce_standard)  # type: ignore[no-any-return]
    fp.write(file_meta_bytes(**file_meta._asdict()))
    return None


PATCH = guard.Patch(
    NAME,
    speed=True,
    replacements=(
        guard.replace(_CREATE, _create_file_meta),
        guard.replace(_WRITE, _write_file_meta_info),
    ),
)
