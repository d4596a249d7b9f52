"""The bundled client: C-ECHO, C-STORE from files (streamed), C-FIND and C-MOVE, for admins and
scripts."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # set in globals() at import
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from ..dicom.association_rejection import rejection_words
from ..errors import AssociationFailed
from . import patches
from .association import set_tcp_nodelay
from .patches.send_queue import bound_send_queue

log = logging.getLogger(__name__)

# An association over TLS: an ssl.SSLContext, or the node's own (tls.OutgoingTls) with its
# check of the peer's certificate; None for plain DICOM.
Tls = Any

MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are odd numbers 1-255


@dataclass(frozen=True)
class EchoResult:
    status: int
    comment: str = ""  # the Error Comment (0000,0902) of the response, if any


@dataclass(frozen=True)
class SendResult:
    path: str
    sop_instance_uid: str
    status: int | None  # None: not sent (unreadable file, or no accepted context)
    error: str = ""  # why not sent, or the Error Comment (0000,0902) of the node's response


def client_ae(calling: str, timeout: float, *, fast_paths: patches.FastPaths = True) -> AE:
    """An AE calling as `calling`, with the node's speed patches when `fast_paths` (its
    event-driven reactor and file sending serve its client too). Raises PatchError."""
    ae = AE(ae_title=calling)
    patches.install_for(ae, fast_paths=fast_paths)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    return ae


def _associate(ae: AE, host: str, port: int, called: str, tls: Tls = None) -> Association:
    assoc = ae.associate(
        host,
        port,
        ae_title=called,
        evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)],
        tls_args=(tls, host) if tls is not None else None,
    )
    if assoc.is_established:
        return assoc
    if assoc.is_rejected:
        rsp = assoc.acceptor.primitive
        assert rsp is not None  # the A-ASSOCIATE-RJ
        said = rejection_words(rsp.result or 0, rsp.result_source or 0, rsp.diagnostic or 0)
        raise AssociationFailed(f"association with {called} at {host}:{port}{_over(tls)} {said}")
    problem = getattr(tls, "problem", None)  # an OutgoingTls that refused the peer
    if problem:
        raise AssociationFailed(f"{called} at {host}:{port} over TLS is not that AE: {problem}")
    raise AssociationFailed(
        f"no association with {called} at {host}:{port}{_over(tls)} (aborted or refused)"
    )


def _over(tls: Tls) -> str:
    return " over TLS" if tls is not None else ""


def echo(
    host: str,
    port: int,
    *,
    calling: str,
    called: str,
    timeout: float = 30.0,
    fast_paths: patches.FastPaths = True,
    tls: Tls = None,
) -> int:
    """Send a C-ECHO; return its status. Raises AssociationFailed."""
    return echo_response(
        host, port, calling=calling, called=called, timeout=timeout, fast_paths=fast_paths, tls=tls
    ).status


def echo_response(
    host: str,
    port: int,
    *,
    calling: str,
    called: str,
    timeout: float = 30.0,
    fast_paths: patches.FastPaths = True,
    tls: Tls = None,
) -> EchoResult:
    """Send a C-ECHO; return its status and Error Comment. Raises AssociationFailed."""
    ae = client_ae(calling, timeout, fast_paths=fast_paths)
    ae.add_requested_context(Verification)
    assoc = _associate(ae, host, port, called, tls)
    try:
        rsp = assoc.send_c_echo()
        if not rsp or "Status" not in rsp:
            raise AssociationFailed(f"no C-ECHO response from {called}")
        return EchoResult(int(rsp.Status), str(rsp.get("ErrorComment", "") or ""))
    finally:
        assoc.release()


def expand(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files as given, and the files under directories, sorted."""
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def send_files(
    paths: Iterable[str | os.PathLike[str]],
    host: str,
    port: int,
    *,
    calling: str,
    called: str,
    timeout: float = 60.0,
    fast_paths: patches.FastPaths = True,
    tls: Tls = None,
) -> list[SendResult]:
    """C-STORE each Part 10 file in its own transfer syntax, streamed from disk.

    Files are grouped so each association proposes at most 128 contexts. Raises
    AssociationFailed when an association cannot be made.
    """
    results: list[SendResult] = []
    batch: list[tuple[Path, str, tuple[str, str]]] = []
    contexts: set[tuple[str, str]] = set()
    for path in expand(paths):
        try:
            meta = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            key = (
                str(meta.file_meta.MediaStorageSOPClassUID),
                str(meta.file_meta.TransferSyntaxUID),
            )
            sop_uid = str(meta.file_meta.MediaStorageSOPInstanceUID)
        except Exception as exc:
            results.append(SendResult(str(path), "", None, f"not a DICOM Part 10 file: {exc}"))
            continue
        if key not in contexts and len(contexts) == MAX_CONTEXTS:
            results += _send_batch(
                batch, contexts, host, port, calling, called, timeout, fast_paths, tls
            )
            batch, contexts = [], set()
        contexts.add(key)
        batch.append((path, sop_uid, key))
    if batch:
        results += _send_batch(
            batch, contexts, host, port, calling, called, timeout, fast_paths, tls
        )
    return results


def _send_batch(
    batch: list[tuple[Path, str, tuple[str, str]]],
    contexts: set[tuple[str, str]],
    host: str,
    port: int,
    calling: str,
    called: str,
    timeout: float,
    fast_paths: patches.FastPaths,
    tls: Tls,
) -> list[SendResult]:
    ae = client_ae(calling, timeout, fast_paths=fast_paths)
    ae.requested_contexts = [build_context(sop, [ts]) for sop, ts in sorted(contexts)]
    assoc = _associate(ae, host, port, called, tls)
    accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
    if not patches.sends_files_whole(ae):  # then pynetdicom queues every PDU of a file
        bound_send_queue(assoc)
    results = []
    try:
        for path, sop_uid, key in batch:
            if key not in accepted:
                results.append(
                    SendResult(
                        str(path),
                        sop_uid,
                        None,
                        f"{called} accepted no context for {key[0]} in {key[1]}",
                    )
                )
                continue
            if not assoc.is_established:
                results.append(SendResult(str(path), sop_uid, None, "association lost"))
                continue
            rsp = assoc.send_c_store(path)
            code = int(rsp.Status) if rsp and "Status" in rsp else None
            said = str(rsp.get("ErrorComment", "") or "") if code is not None else "no response"
            results.append(SendResult(str(path), sop_uid, code, said))
    finally:
        if assoc.is_established:
            assoc.release()
    return results


def _identifier(level: str, keys: dict[str, str], character_set: str | None = None) -> Dataset:
    """A Query/Retrieve identifier; raises ValueError naming a key pydicom does not know."""
    identifier = Dataset()
    if character_set:
        identifier.SpecificCharacterSet = character_set
    identifier.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    return identifier


@dataclass(frozen=True)
class FindResult:
    status: int | None  # the final status; None when the association ended early
    matches: list[Dataset]
    comment: str = ""
    undecodable: int = 0  # pending responses whose identifier could not be decoded


def collect_find(responses: Iterable[tuple[Dataset, Dataset | None]]) -> FindResult:
    """The answers of one C-FIND as pynetdicom's send_c_find yields them. A pending response
    whose identifier pynetdicom could not decode comes with None (pynetdicom logs why): it is
    counted, not taken for a match."""
    matches: list[Dataset] = []
    final: int | None = None
    comment = ""
    undecodable = 0
    for rsp, answer in responses:
        if not rsp or "Status" not in rsp:
            break
        if rsp.Status in (0xFF00, 0xFF01):
            if answer is None:
                undecodable += 1
            else:
                matches.append(answer)
        else:
            final, comment = int(rsp.Status), str(rsp.get("ErrorComment", ""))
    return FindResult(final, matches, comment, undecodable)


FIND_MODELS = {
    "study": StudyRootQueryRetrieveInformationModelFind,
    "patient": PatientRootQueryRetrieveInformationModelFind,
}


def find(
    host: str,
    port: int,
    *,
    calling: str,
    called: str,
    level: str,
    keys: dict[str, str],
    model: str = "study",
    character_set: str | None = None,
    timeout: float = 30.0,
    fast_paths: patches.FastPaths = True,
    tls: Tls = None,
) -> FindResult:
    """Send one C-FIND with these keys (empty value: return the key) and collect the answers.

    Raises AssociationFailed, or ValueError naming a key pydicom does not know.
    """
    identifier = _identifier(level, keys, character_set)
    ae = client_ae(calling, timeout, fast_paths=fast_paths)
    ae.add_requested_context(FIND_MODELS[model])
    assoc = _associate(ae, host, port, called, tls)
    try:
        return collect_find(assoc.send_c_find(identifier, FIND_MODELS[model]))
    finally:
        if assoc.is_established:
            assoc.release()


@dataclass(frozen=True)
class MoveResult:
    status: int | None  # the final status; None when the association ended early
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: tuple[str, ...] = ()
    comment: str = ""


MOVE_MODELS = {
    "study": StudyRootQueryRetrieveInformationModelMove,
    "patient": PatientRootQueryRetrieveInformationModelMove,
}


def move(
    host: str,
    port: int,
    *,
    calling: str,
    called: str,
    destination: str,
    level: str,
    keys: dict[str, str],
    model: str = "study",
    timeout: float = 60.0,
    fast_paths: patches.FastPaths = True,
    tls: Tls = None,
) -> MoveResult:
    """Ask for one C-MOVE of what `keys` name (unique keys) to the AE titled `destination`.

    Raises AssociationFailed, or ValueError naming a key pydicom does not know.
    """
    identifier = _identifier(level, keys)
    ae = client_ae(calling, timeout, fast_paths=fast_paths)
    ae.add_requested_context(MOVE_MODELS[model])
    assoc = _associate(ae, host, port, called, tls)
    result = MoveResult(None)
    try:
        for rsp, answer in assoc.send_c_move(identifier, destination, MOVE_MODELS[model]):
            if not rsp or "Status" not in rsp:
                break
            if rsp.Status == 0xFF00:
                continue
            failed = answer.get("FailedSOPInstanceUIDList", []) if answer else []
            result = MoveResult(
                int(rsp.Status),
                int(rsp.get("NumberOfCompletedSuboperations", 0) or 0),
                int(rsp.get("NumberOfFailedSuboperations", 0) or 0),
                int(rsp.get("NumberOfWarningSuboperations", 0) or 0),
                tuple([failed] if isinstance(failed, str) else failed),
                str(rsp.get("ErrorComment", "")),
            )
    finally:
        if assoc.is_established:
            assoc.release()
    return result
