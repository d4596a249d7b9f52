"""`verify`: re-read the kept files and compare them with the index, both ways."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as day_start
from typing import Any

from ..dicom.instance_header import read_kept_header
from ..dicom.structure import check_path
from ..dicom.values import is_valid_uid
from ..errors import InvalidInput, NotFound, Refused
from ..index import Index
from ..index.integrity_queries import InstanceScope, KeptRow
from ..progress import NoProgress, Progress
from ..storage import FilesystemStorage, KeptFiles
from . import pairing
from .problems import (
    CORRUPT,
    MALFORMED,
    MISSING,
    ORPHAN,
    OUTSIDE,
    UNREADABLE,
    Problem,
    reason,
    top_directories,
)

log = logging.getLogger(__name__)

PAGE = 500  # instance rows or studies fetched per query


@dataclass(frozen=True)
class Scope:
    """What `verify` covers: everything, or a hospital's instances, a study, days received."""

    hospital: str | None = None
    study_uid: str | None = None
    since: date | None = None  # UTC days, both inclusive
    until: date | None = None

    def instance_scope(self) -> InstanceScope:
        def midnight(day: date) -> datetime:
            return datetime.combine(day, day_start())  # naive UTC, as the index keeps times

        return InstanceScope(
            hospital=self.hospital,
            study_uid=self.study_uid,
            received_from=midnight(self.since) if self.since else None,
            received_before=midnight(self.until + timedelta(days=1)) if self.until else None,
        )


@dataclass
class VerifyReport:
    checked: int = 0
    bytes: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "problems": [dataclasses.asdict(p) for p in self.problems],
            "ok": self.ok,
        }


def verify(
    storage: FilesystemStorage,
    index: Index,
    scope: Scope = Scope(),
    *,
    deep: bool = False,
    progress: Progress | None = None,
) -> VerifyReport:
    """Re-read every kept file in scope and compare it with its index row (pass 1), then look
    for files in the store that no row names (pass 2; with a scope, only in the directories of
    the studies in scope). `deep`: pass 1 also checks each intact file's whole encoding, as
    C-STORE does at receipt (dicom/structure.py), and reports the malformed ones.

    Raises SchemaError (no or another schema), NotAPair (the store is not the index's),
    NotFound (an unknown hospital), InvalidInput (a malformed Study UID, `since` after
    `until`), IndexUnavailable, ConfigError (the store's root cannot be listed).
    """
    progress = progress or NoProgress()
    started = time.monotonic()
    index.check_schema()
    pairing.check(storage, index, writing=False)
    _check_scope(index, scope)
    rows = scope.instance_scope()
    report = VerifyReport()

    count, total = index.integrity.kept_rows_total(rows)
    progress.begin(f"checking {count} files", total)
    after = 0
    while page := index.integrity.kept_rows(rows, after=after, limit=PAGE):
        for row in page:
            problem = _check_row(storage, index, row, report, deep)
            if problem:
                report.problems.append(problem)
            progress.advance(row.size)
        after = page[-1].pk
    progress.end()

    orphans = []
    for group in _groups_in_scope(storage, index, rows, progress):
        orphans.extend(_orphans(storage, index, group))
    report.problems.extend(_settled(storage, index, orphans))

    report.seconds = time.monotonic() - started
    log.info(
        "verify: %d files, %d bytes in %.1f s, %d problem(s)",
        report.checked,
        report.bytes,
        report.seconds,
        len(report.problems),
    )
    return report


def _check_scope(index: Index, scope: Scope) -> None:
    if scope.hospital is not None and index.registry.hospital_issuer(scope.hospital) is None:
        raise NotFound(f"no hospital {scope.hospital}")
    if scope.study_uid is not None and not is_valid_uid(scope.study_uid):
        raise InvalidInput(f"--study {scope.study_uid!r} is not a valid UID")
    if scope.since and scope.until and scope.since > scope.until:
        raise InvalidInput(f"--since {scope.since} is after --until {scope.until}")


def _check_row(
    storage: FilesystemStorage, index: Index, row: KeptRow, report: VerifyReport, deep: bool
) -> Problem | None:
    """Pass 1: the file a row names is there, readable, of its size and SHA-256 and, `deep`,
    well-formed."""

    def problem(kind: str, detail: str) -> Problem:
        return Problem(kind, row.path, row.sop_uid, row.study_uid, detail)

    try:
        path = storage.absolute(row.path)
    except InvalidInput:
        return problem(OUTSIDE, "the indexed path leads out of the store")
    try:
        facts = storage.digest(path)
    except (FileNotFoundError, NotADirectoryError):
        # A running node may have replaced the file (a duplicate, or a resend restoring it)
        # since the page was read: only a row that still names the missing file is a problem.
        if index.integrity.kept_path(row.pk) != row.path:
            return None
        return problem(MISSING, "the index names a file that is not in the store")
    except OSError as exc:
        return problem(UNREADABLE, exc.strerror or str(exc))
    report.checked += 1
    report.bytes += facts.size
    if facts.size != row.size:
        return problem(CORRUPT, f"{facts.size} bytes, {row.size} recorded at receipt")
    if facts.sha256 != row.sha256:
        return problem(CORRUPT, "SHA-256 differs from the one recorded at receipt")
    if deep:
        try:
            malformed = check_path(path)
        except OSError as exc:
            return problem(UNREADABLE, reason(exc))
        if malformed:
            # The bytes are those acknowledged at receipt: kept before receipt checked them.
            return problem(MALFORMED, f"{malformed} (as received: kept before receipt checked it)")
    return None


def _groups_in_scope(
    storage: FilesystemStorage, index: Index, rows: InstanceScope, progress: Progress
) -> Iterator[KeptFiles]:
    """Pass 2's directories: the whole store, or the directories of the studies in scope."""
    if rows.everything:
        tops = top_directories(storage)
        progress.begin("looking for files the index lacks", len(tops))
        for top in tops:
            yield from storage.kept_files(top)
            progress.advance(1)
        progress.end()
        return
    progress.begin(
        "looking for files the index lacks", index.integrity.studies_in_scope_total(rows)
    )
    if rows.study_uid is not None and rows == InstanceScope(study_uid=rows.study_uid):
        # a study named alone: its directory, even when the index has no row of it
        yield storage.study_files(rows.study_uid)
    else:
        after = 0
        while page := index.integrity.studies_in_scope(rows, after=after, limit=PAGE):
            for _pk, study_uid in page:
                if is_valid_uid(study_uid):
                    yield storage.study_files(study_uid)
                progress.advance(1)
            after = page[-1][0]
    progress.end()


def _orphans(storage: FilesystemStorage, index: Index, group: KeptFiles) -> list[Problem]:
    """Pass 2 for one directory: its files that no index row names.

    The directory is listed before the index is asked, so a file that a serving node linked
    into place just before committing its row is seen with its row, not as an orphan.
    """
    problems = [
        Problem(UNREADABLE, where, detail=f"cannot list: {why}") for where, why in group.unlistable
    ]
    if not group.files:
        return problems
    indexed = index.integrity.indexed_paths(group.study_uid) if group.study_uid else set()
    for path in group.files:
        if path in indexed:
            continue
        sop_uid, detail = _orphan_detail(storage, index, path)
        if detail is not None:
            problems.append(Problem(ORPHAN, path, sop_uid, group.study_uid, detail))
    return problems


# A serving node links a file into place a few milliseconds before it commits its row: a file
# younger than this is looked up again once it is this old before it is called an orphan.
SETTLE_SECONDS = 2.0


def _settled(storage: FilesystemStorage, index: Index, orphans: list[Problem]) -> list[Problem]:
    """The orphans that are still orphans once the youngest has had SETTLE_SECONDS to get its
    index row (verify beside a serving node)."""
    young = []
    for problem in orphans:
        try:
            age = time.time() - storage.stat(problem.path).st_mtime
        except (OSError, InvalidInput):
            continue
        if age < SETTLE_SECONDS and problem.sop_instance_uid:
            young.append((age, problem))
    if not young:
        return orphans
    time.sleep(SETTLE_SECONDS - min(age for age, _ in young))
    indexed = set()
    for _, problem in young:
        record = index.instances.find(problem.sop_instance_uid or "")
        if record is not None and record.path == problem.path:
            indexed.add(problem.path)
    return [p for p in orphans if p.path not in indexed]


def _orphan_detail(
    storage: FilesystemStorage, index: Index, path: str
) -> tuple[str | None, str | None]:
    """(SOP Instance UID, what the file is) of a file its study's rows do not name; detail None
    when a row does name it after all (filed under another study) or it is gone."""
    try:
        header, _meta = read_kept_header(storage.absolute(path))
    except FileNotFoundError:  # removed since the listing (a serving node replaced it)
        return None, None
    except (OSError, Refused) as exc:
        return None, f"not in the index, and not a DICOM file the node keeps: {reason(exc)}"
    record = index.instances.find(header.sop_instance_uid)
    if record is None:
        return header.sop_instance_uid, "not in the index"
    if record.path == path:
        return header.sop_instance_uid, None
    return header.sop_instance_uid, f"a stray copy of an indexed instance (kept at {record.path})"
