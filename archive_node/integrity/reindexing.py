"""`reindex`: rebuild or repair the index from the store's files alone."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..correcting import Corrections
from ..dicom.instance_header import InstanceHeader, read_kept_header
from ..dicom.provenance import from_file_meta
from ..dicom.values import ae_title_problem, hospital_code_problem
from ..errors import InvalidInput, NotFound, Refused, UIDConflict
from ..index import Index, InstanceRecord, NewInstance
from ..progress import NoProgress, Progress
from ..storage import FileFacts, FilesystemStorage
from . import pairing
from .problems import (
    DUPLICATE,
    REPOINTED,
    UNATTRIBUTED,
    UNREADABLE,
    Problem,
    reason,
    top_directories,
)

log = logging.getLogger(__name__)

# The calling AE recorded for a file without provenance indexed under --default-hospital: the
# sender is unknown, and an empty title is one no registered AE can have (dicom/values.py).
UNKNOWN_SENDER = ""
# A file whose Study or Series Instance UID the index holds for another patient or study: not
# indexed (as a C-STORE of it would be refused), left on disk.
CONFLICT = "conflict"


@dataclass
class ReindexReport:
    files: int = 0
    indexed: int = 0
    already_indexed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    hospitals_created: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # the corrections journal replayed onto the rebuilt rows (correcting.py)
    corrections_replayed: int = 0
    corrections_skipped: list[str] = field(default_factory=list)
    # the store identity index and store share (integrity/pairing.py); whether this run
    # recorded it (the index adopted the store)
    store_identity: str = ""
    adopted_store: bool = False

    @property
    def ok(self) -> bool:
        """False when a file was left out of the index; a repair alone is fine."""
        return all(p.kind == REPOINTED for p in self.problems)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "indexed": self.indexed,
            "already_indexed": self.already_indexed,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "hospitals_created": list(self.hospitals_created),
            "problems": [dataclasses.asdict(p) for p in self.problems],
            "corrections_replayed": self.corrections_replayed,
            "corrections_skipped": list(self.corrections_skipped),
            "store_identity": self.store_identity,
            "adopted_store": self.adopted_store,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class _Sender:
    calling_ae: str
    hospital: str
    issuer: str  # the hospital's Issuer of Patient ID when the file was received


def reindex(
    storage: FilesystemStorage,
    index: Index,
    *,
    default_hospital: str | None = None,
    progress: Progress | None = None,
    corrections: Corrections | None = None,
    adopt_store: bool = False,
) -> ReindexReport:
    """Index every file of the store that no row names yet, oldest first; repoint rows whose
    file went missing to another copy of their instance. Idempotent, and resumable: each file is
    one transaction, and files already indexed at their path are skipped without being read.
    Then the corrections journal beside the store is replayed (`corrections`): every
    correction the index does not hold yet is made again on the rows the files gave.

    An index without a schema is given one first (a new database for a lost index); the
    index adopts the store (pairing.adopt) unless they already share a store identity; a store
    that has an identity the index lacks (another index's) only with `adopt_store`.

    Raises SchemaError (an older schema: run `init`), NotAPair (index and store belong to
    others), NotFound (an unknown --default-hospital),
    IndexUnavailable, ConfigError when the store cannot be listed.
    """
    started = time.monotonic()
    if not index.has_schema():  # a lost index: a new database is rebuilt from the files
        index.init_schema()
    index.check_schema()
    default = None
    if default_hospital is not None:
        issuer = index.registry.hospital_issuer(default_hospital)
        if issuer is None:
            raise NotFound(
                f"no hospital {default_hospital}: register it first (archive-node hospital add)"
            )
        default = _Sender(UNKNOWN_SENDER, default_hospital, issuer)
    identity, adopted = pairing.adopt(storage, index, take_over=adopt_store)
    run = _Reindex(storage, index, default, progress or NoProgress())
    run.report.store_identity, run.report.adopted_store = identity, adopted
    if corrections is not None:
        corrections.flush_journal()  # what the index holds and the journal lacks, first
    run.scan()
    run.index_pending()
    if corrections is not None:
        replayed, skipped = corrections.replay_journal()
        run.report.corrections_replayed, run.report.corrections_skipped = replayed, skipped
    run.report.seconds = time.monotonic() - started
    log.info(
        "reindex: %d files, %d indexed, %d already indexed, %d problem(s)",
        run.report.files,
        run.report.indexed,
        run.report.already_indexed,
        len(run.report.problems),
    )
    return run.report


class _Reindex:
    def __init__(
        self,
        storage: FilesystemStorage,
        index: Index,
        default: _Sender | None,
        progress: Progress,
    ) -> None:
        self.storage = storage
        self.index = index
        self.default = default
        self.progress = progress
        self.report = ReindexReport()
        # (mtime in ns, path, size) of every file not indexed at its path. Held in memory for
        # the whole store, so that they can be indexed oldest first (the only order that gives
        # back each study's hospital and each patient's latest demographics): ~400 bytes a
        # file with paths of 64-character UIDs, so ~400 MB for a rebuild of a million files.
        # A resumed or repeated run holds only what is still missing.
        self.pending: list[tuple[int, str, int]] = []

    def scan(self) -> None:
        """Walk the store a study directory at a time; note what the index lacks."""
        tops = top_directories(self.storage)
        self.progress.begin("looking for files the index lacks", len(tops))
        for top in tops:
            for group in self.storage.kept_files(top):
                for where, why in group.unlistable:
                    self._problem(UNREADABLE, where, detail=f"cannot list: {why}")
                indexed = (
                    self.index.integrity.indexed_paths(group.study_uid)
                    if group.study_uid
                    else set()
                )
                for path in group.files:
                    self.report.files += 1
                    if path in indexed:
                        self.report.already_indexed += 1
                        continue
                    try:
                        stat = self.storage.stat(path)
                    except OSError as exc:
                        self._problem(UNREADABLE, path, detail=reason(exc))
                        continue
                    self.pending.append((stat.st_mtime_ns, path, stat.st_size))
            self.progress.advance(1)
        self.progress.end()

    def index_pending(self) -> None:
        """Index the files noted, in the order they were received (their mtime): the study's
        hospital is then its first instance's, and the patient's demographics the latest
        non-empty ones, as they were when the node received them one by one."""
        self.pending.sort(reverse=True)  # taken from the end, oldest first, freeing as it goes
        self.progress.begin(
            f"indexing {len(self.pending)} files", sum(size for _, _, size in self.pending)
        )
        while self.pending:
            mtime_ns, path, size = self.pending.pop()
            self._index_file(path, mtime_ns)
            self.progress.advance(size)
        self.progress.end()

    def _index_file(self, path: str, mtime_ns: int) -> None:
        try:
            header, meta = read_kept_header(self.storage.absolute(path))
            facts = self.storage.digest(self.storage.absolute(path))
        except FileNotFoundError:  # removed since the scan: nothing left to index
            return
        except (OSError, Refused) as exc:
            self._problem(UNREADABLE, path, detail=f"not indexed: {reason(exc)}")
            return
        self.report.bytes += facts.size
        existing = self.index.instances.find(header.sop_instance_uid)
        if existing is not None:
            self._indexed_elsewhere(path, header, facts, existing)
            return
        sender, why = self._sender(meta)
        if sender is None:
            self._problem(UNATTRIBUTED, path, header, why)
            return
        new = NewInstance.kept(  # as ArchiveService.store records a received file
            header,
            path=path,
            size=facts.size,
            sha256=facts.sha256,
            calling_ae=sender.calling_ae,
            hospital=sender.hospital,
            hospital_issuer=sender.issuer,
        )
        # the mtime of a kept file is the end of its receipt: the store links, never rewrites
        received_at = datetime.fromtimestamp(mtime_ns / 1e9, UTC).replace(tzinfo=None)
        try:
            won, created = self.index.integrity.rebuild_instance(
                new, received_at=received_at, hospital_issuer=sender.issuer
            )
        except UIDConflict as exc:
            self._problem(CONFLICT, path, header, f"not indexed: {exc}")
            return
        if created:
            self.report.hospitals_created.append(sender.hospital)
        if won is not None:  # a serving node indexed the same instance meanwhile
            self._indexed_elsewhere(path, header, facts, won)
        else:
            self.report.indexed += 1

    def _indexed_elsewhere(
        self, path: str, header: InstanceHeader, facts: FileFacts, existing: InstanceRecord
    ) -> None:
        """A file whose SOP Instance the index already holds, perhaps under another path."""
        if existing.path == path:  # filed under another study's directory
            self.report.already_indexed += 1
            return
        same_place = (existing.study_uid, existing.series_uid, existing.sop_class_uid) == (
            header.study_uid,
            header.series_uid,
            header.sop_class_uid,
        )
        if self._exists(existing.path) or not same_place:
            self._problem(
                DUPLICATE,
                path,
                header,
                f"another copy of the instance indexed at {existing.path}: left alone",
            )
            return
        try:
            self.index.integrity.repoint_instance(
                header,
                path=path,
                size=facts.size,
                sha256=facts.sha256,
                displaced=existing.path,
            )
        except NotFound:  # the row changed meanwhile: look again next run
            self._problem(DUPLICATE, path, header, "its index row changed during the run")
            return
        same = facts.sha256 == existing.sha256
        self._problem(
            REPOINTED,
            path,
            header,
            f"the indexed file {existing.path} was missing; "
            + ("same content" if same else "content differs from the SHA-256 recorded before"),
        )

    def _exists(self, path: str) -> bool:
        try:
            return self.storage.exists(path)
        except InvalidInput:  # a path outside the store: as good as missing
            return False

    def _sender(self, meta: object) -> tuple[_Sender | None, str]:
        """Who sent a file, as its file meta records (provenance.py), else --default-hospital;
        or None and why not."""
        provenance = from_file_meta(meta)
        why = "the file does not record its sender"
        if provenance is not None:
            problem = hospital_code_problem(provenance.hospital) or ae_title_problem(
                provenance.calling_ae
            )
            if not problem:
                # a hospital's issuer defaults to its code (registry.py)
                issuer = provenance.issuer.strip() or provenance.hospital
                return _Sender(provenance.calling_ae, provenance.hospital, issuer), ""
            why = f"the sender the file records is unusable: {problem}"
        if self.default is not None:
            return self.default, ""
        return None, f"{why}: give --default-hospital"

    def _problem(
        self, kind: str, path: str, header: InstanceHeader | None = None, detail: str = ""
    ) -> None:
        self.report.problems.append(
            Problem(
                kind,
                path,
                header.sop_instance_uid if header else None,
                header.study_uid if header else None,
                detail,
            )
        )
