"""`archive-node import`: photos, videos and PDFs made DICOM and kept as a C-STORE keeps them.

Every file is read and checked, and every instance planned, before anything is stored: a bad
file, a missing patient ID or an unknown hospital stores nothing. Storing stops at the first
failure, but for a file refused because one of its UIDs is held for something else (reported
with the reason): the other files go on. Each instance is written
into the store's incoming area with its bulk value copied from the file (memory does not grow
with its size), then handed to ArchiveService.store: the same keep order, index, duplicate
handling and hospital scope as an instance received by C-STORE, the given hospital being the
one that sent it.

UIDs are derived from what they name (PS3.5 9.1, B.2): an instance's from the patient and the
file's SHA-256, a series' from its study and kind, a new study's from the patient and the
files (or the accession number). Importing a file again for the same patient therefore finds it
stored and stores nothing, whatever other files come with it; and the instance written for the
same file and study is the same, byte for byte (nothing in it depends on the time of import).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..auditing import local_actor
from ..dicom import status
from ..dicom.part10_writer import SourceChanged, write_part10
from ..dicom.provenance import Provenance, file_meta, with_provenance
from ..dicom.values import derived_uid, is_valid_uid, parse_date, text_problem
from ..errors import Conflict, InvalidInput, NotFound
from ..index import InstanceRecord, StudyRecord
from ..integrity import pairing
from ..progress import NoProgress, Progress
from ..rules.access import Peer
from ..rules.audit import Actor
from ..service import ArchiveService
from ..storage import open_owner_only
from .media.probe import Media, probe
from .media.refusal import Refusal
from .wrapping import Subject, Wrapped, content_time, da_value, tm_value, wrap

log = logging.getLogger(__name__)

# The calling AE recorded for imported instances (index, file meta, logs).
IMPORTER_AE = "IMPORT"
# archive-node's Implementation Class UID (PS3.7 D.3.3.2), in the files it writes itself.
IMPLEMENTATION_UID = "2.25.243828247669745321920924030631851866672"
IMPLEMENTATION_VERSION = f"ARCHNODE_{__version__}"[:16]
# The name space of the UUIDs behind derived 2.25 UIDs (RFC 4122 name-based, SHA-1).

STORED, ALREADY_STORED, FAILED, NOT_IMPORTED = "stored", "already stored", "failed", "not imported"
# Refusals of one file (its UIDs clash with what the index holds) after which the others go on.
_REFUSED_FOR_UIDS = frozenset({status.UID_CONFLICT, status.SOP_INSTANCE_CONFLICT})


@dataclass(frozen=True)
class ImportRequest:
    """What `archive-node import` was asked, before any check."""

    paths: Sequence[Path]
    hospital: str
    patient_id: str
    issuer: str | None = None
    patient_name: str = ""
    birth_date: str = ""
    sex: str = ""
    study_uid: str | None = None
    accession_number: str | None = None
    study_description: str = ""
    series_description: str = ""
    body_part: str = ""
    operator: str = ""


@dataclass
class ImportedFile:
    """One file's outcome."""

    path: str
    kind: str
    sop_class_uid: str
    transfer_syntax_uid: str
    encoding: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    instance_number: int | None  # in its series, as written or as stored
    file_bytes: int
    stored_bytes: int | None = None
    status: str = NOT_IMPORTED
    detail: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    study_instance_uid: str
    new_study: bool
    hospital: str
    patient_id: str
    issuer: str
    files: list[ImportedFile]

    @property
    def complete(self) -> bool:
        return all(f.status in (STORED, ALREADY_STORED) for f in self.files)


@dataclass(frozen=True)
class _File:
    """A file to import, read: its hash, size and mtime then, and its instance if stored."""

    media: Media
    sha256: str
    stat: tuple[int, int]  # size and mtime when hashed: the file must not change after
    sop_instance_uid: str
    stored: InstanceRecord | None


@dataclass(frozen=True)
class _Planned:
    media: Media
    stat: tuple[int, int]
    wrapped: Wrapped
    result: ImportedFile


class Importer:
    """Imports media files for one patient into one study."""

    def __init__(self, service: ArchiveService, progress: Progress | None = None) -> None:
        self.service = service
        self.index = service.index
        self.progress = progress or NoProgress()

    def run(self, request: ImportRequest) -> ImportReport:
        """Check and plan everything, then store file by file (stopping at the first
        failure). Raises InvalidInput (Refusal for a file), NotFound (the hospital), Conflict
        (the study belongs to another patient, an accession names several studies, the files
        are stored in several studies already)."""
        _check(request)
        peer = self._importer_peer(request.hospital)
        issuer = request.issuer or peer.issuer
        media = self._probe_all(request.paths)
        root = self.service.config.node.uid_root
        files = []
        for item in media:
            sha256, stat = self._hash(item)
            sop = derived_uid(root, "instance", issuer, request.patient_id, sha256)
            files.append(_File(item, sha256, stat, sop, self.index.instances.find(sop)))
        study, existing = self._study(request, issuer, files)
        subject = _subject(request, issuer, study, existing, media)
        plans = self._plan(subject, files)
        report = ImportReport(
            study_instance_uid=study,
            new_study=existing is None,
            hospital=peer.hospital,
            patient_id=request.patient_id,
            issuer=issuer,
            files=[plan.result for plan in plans],
        )
        if any(plan.result.status != ALREADY_STORED for plan in plans):
            self.service.storage.create()  # the incoming area the instances are written into
        # the run's instances are counted per study as a C-STORE's are, and recorded as one
        # Import event (PS3.15 A.5.3.8) by the operating system user who ran it
        actor = dataclasses.replace(local_actor(), ae_title=IMPORTER_AE, hospital=peer.hospital)
        try:
            for plan in plans:
                if plan.result.status == ALREADY_STORED:
                    continue
                refused = self._store(peer, plan, actor)
                if plan.result.status != STORED and not refused:
                    break
        finally:
            self.service.audit.seal(actor.session)
        return report

    # -- checks -------------------------------------------------------------------------------

    def _importer_peer(self, code: str) -> Peer:
        """The hospital the files come from, as the sender C-STORE would know."""
        self.index.check_schema()
        pairing.check(self.service.storage, self.index, writing=True)
        issuer = self.index.registry.hospital_issuer(code)
        if issuer is None:
            raise NotFound(f"no hospital {code!r} (see: archive-node hospital list)")
        return Peer(
            ae_title=IMPORTER_AE,
            hospital=code,
            issuer=issuer,
            host="",
            port=None,
            allow=frozenset({"store"}),
            scope="hospital",
        )

    def _probe_all(self, paths: Sequence[Path]) -> list[Media]:
        """Every file read and checked; one Refusal naming every bad file."""
        if not paths:
            raise InvalidInput("no file to import")
        found, problems = [], []
        for path in paths:
            try:
                found.append(probe(path))
            except Refusal as exc:
                problems.append(str(exc))
        if problems:
            raise Refusal("; ".join(problems))
        return found

    def _hash(self, media: Media) -> tuple[str, tuple[int, int]]:
        """SHA-256 of the file, and its size and mtime before reading (to notice a change)."""
        self.progress.begin(f"reading {media.path.name}", media.size)
        try:
            before = os.stat(media.path)
            facts = self.service.storage.digest(media.path, progress=self.progress.advance)
        except OSError as exc:
            raise Refusal(f"{media.path}: cannot read it: {exc.strerror or exc}") from None
        finally:
            self.progress.end()
        if before.st_size != media.size or facts.size != media.size:
            raise Refusal(f"{media.path}: it changed while it was read")
        return facts.sha256, (before.st_size, before.st_mtime_ns)

    # -- the study ----------------------------------------------------------------------------

    def _study(
        self, request: ImportRequest, issuer: str, files: list[_File]
    ) -> tuple[str, StudyRecord | None]:
        """The Study Instance UID the files go to, and the study if it is indexed already:
        the one given, the patient's of the accession number, the one the files already
        stored are in, or a new one derived from the patient and the files."""
        if request.study_uid:
            existing = self.index.imports.study(request.study_uid)
            if existing is not None and (existing.patient_id, existing.issuer) != (
                request.patient_id,
                issuer,
            ):
                raise Conflict(
                    f"study {request.study_uid} belongs to another patient: check the patient "
                    "ID and issuer"
                )
            return request.study_uid, existing
        root = self.service.config.node.uid_root
        if request.accession_number:
            found = self.index.imports.studies_with_accession(
                request.accession_number, request.patient_id, issuer
            )
            if len(found) > 1:
                raise Conflict(
                    f"accession {request.accession_number} names {len(found)} studies of this "
                    "patient: give --study-uid"
                )
            if found:
                return found[0].study_uid, found[0]
            parts = ("study", issuer, request.patient_id, "accession", request.accession_number)
            study = derived_uid(root, *parts)
            return study, self.index.imports.study(study)
        earlier = sorted({f.stored.study_uid for f in files if f.stored is not None})
        if len(earlier) > 1:
            raise Conflict(
                f"some of these files are stored already, in {len(earlier)} studies: give "
                "--study-uid for the others"
            )
        if earlier:
            return earlier[0], self.index.imports.study(earlier[0])
        hashes = sorted({f.sha256 for f in files})
        study = derived_uid(root, "study", issuer, request.patient_id, *hashes)
        return study, self.index.imports.study(study)

    # -- planning -----------------------------------------------------------------------------

    def _plan(self, subject: Subject, files: list[_File]) -> list[_Planned]:
        """Each file's instance, or why none is written: the file came earlier in this call,
        or was imported before (its stored file is there; a missing one is written again, as
        a C-STORE resend restores it)."""
        root = self.service.config.node.uid_root
        plans: list[_Planned] = []
        numbers: dict[str, int] = {}
        first: dict[str, str] = {}  # SOP Instance UID: the path that brought it in this call
        for file in files:
            item, sop, stored = file.media, file.sop_instance_uid, file.stored
            series = derived_uid(root, "series", subject.study_uid, item.kind)
            if stored is not None:  # it keeps its place, number and bytes
                series, study = stored.series_uid, stored.study_uid
                number = self.index.imports.instance_number(sop)
            else:
                study = subject.study_uid
                if series not in numbers:
                    numbers[series] = self.index.imports.last_instance_number(series)
                number = None
            write = sop not in first and (
                stored is None or not self.service.storage.exists(stored.path)
            )
            if write and stored is None:
                numbers[series] += 1
                number = numbers[series]
            wrapped = wrap(
                item,
                dataclasses.replace(subject, study_uid=study),
                series_uid=series,
                sop_instance_uid=sop,
                instance_number=number or 0,
            )
            result = ImportedFile(
                path=str(item.path),
                kind=item.kind,
                sop_class_uid=wrapped.sop_class_uid,
                transfer_syntax_uid=wrapped.transfer_syntax_uid,
                encoding=wrapped.note,
                study_instance_uid=study,
                series_instance_uid=series,
                sop_instance_uid=sop,
                instance_number=number,
                file_bytes=item.size,
                warnings=_warnings(item),
            )
            if sop in first:
                result.status = ALREADY_STORED
                result.detail = f"the same file as {first[sop]}"
            elif not write:
                assert stored is not None
                result.status, result.stored_bytes = ALREADY_STORED, stored.size
                result.detail = "imported before" + (
                    f", into study {study}" if study != subject.study_uid else ""
                )
            first.setdefault(sop, str(item.path))
            plans.append(_Planned(item, file.stat, wrapped, result))
        return plans

    # -- storing ------------------------------------------------------------------------------

    def _store(self, peer: Peer, plan: _Planned, actor: Actor) -> bool:
        """Write the instance into the incoming area and keep it as C-STORE would. True when it
        was refused for a UID the index holds for something else (a study of another patient,
        a series of another study, another object): that file only, the others may go on."""
        result = plan.result
        temporary = self.service.storage.incoming / f"import-{uuid.uuid4().hex}.dcm"
        try:
            self._write(peer, plan, temporary)
            outcome = self.service.store(
                peer,
                temporary,
                sop_class_uid=result.sop_class_uid,
                sop_instance_uid=result.sop_instance_uid,
                actor=actor,
                kind="import",
            )
            if outcome.status == status.SUCCESS and outcome.message == "stored":
                result.status = STORED
                result.stored_bytes = temporary.stat().st_size  # the kept file is its link
            elif outcome.status == status.SUCCESS:  # a duplicate: what is kept now?
                self._duplicate(result, outcome.message)
            else:
                result.status = FAILED
                result.detail = f"0x{outcome.status:04X} {outcome.message}"
                return outcome.status in _REFUSED_FOR_UIDS
        except (OSError, SourceChanged) as exc:
            result.status = FAILED
            # no path in the log: a file's name may be a patient's
            result.detail = (
                str(exc) if isinstance(exc, SourceChanged) else f"write failed: {exc.strerror}"
            )
            log.error("import of %s failed: %s", result.sop_instance_uid, result.detail)
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()
        return False

    def _duplicate(self, result: ImportedFile, message: str) -> None:
        """The outcome of an instance the index already had: restored (its file had gone
        missing), or kept as it was (another import or C-STORE of it came first)."""
        kept = self.index.instances.find(result.sop_instance_uid)
        if kept is None or not self.service.storage.exists(kept.path):
            result.status, result.detail = FAILED, f"{message}, but no file is kept: see verify"
            return
        result.stored_bytes = kept.size
        if message == "duplicate, restored":
            result.status, result.detail = STORED, "restored"
        else:
            result.status, result.detail = ALREADY_STORED, message

    def _write(self, peer: Peer, plan: _Planned, temporary: Path) -> None:
        wrapped = plan.wrapped
        meta = with_provenance(
            file_meta(
                sop_class_uid=wrapped.sop_class_uid,
                sop_instance_uid=plan.result.sop_instance_uid,
                transfer_syntax=wrapped.transfer_syntax_uid,
                implementation_uid=IMPLEMENTATION_UID,
                implementation_version=IMPLEMENTATION_VERSION,
            ),
            Provenance(calling_ae=peer.ae_title, hospital=peer.hospital, issuer=peer.issuer),
            self.service.config.node.ae_title,
        )
        self.progress.begin(f"writing {plan.media.path.name}", wrapped.bulk.length)
        try:
            with open_owner_only(temporary) as target:
                write_part10(target, meta, wrapped.dataset, wrapped.bulk, self.progress.advance)
        finally:
            self.progress.end()
        after = os.stat(plan.media.path)
        if (after.st_size, after.st_mtime_ns) != plan.stat:
            raise SourceChanged("the file changed while it was imported")


def _check(request: ImportRequest) -> None:
    """Refuse values no DICOM attribute can hold, naming the option."""
    if not request.patient_id.strip():
        raise InvalidInput("--patient-id: a patient ID is required")
    checks = [
        ("--patient-id", request.patient_id, "LO"),
        ("--issuer", request.issuer or "", "LO"),
        ("--patient-name", request.patient_name, "PN"),
        ("--accession", request.accession_number or "", "SH"),
        ("--study-description", request.study_description, "LO"),
        ("--series-description", request.series_description, "LO"),
        ("--body-part", request.body_part, "CS"),
        ("--operator", request.operator, "PN"),
    ]
    for option, value, vr in checks:
        problem = text_problem(value, vr)
        if problem:
            raise InvalidInput(f"{option}: {value!r} {problem}")
    if request.birth_date:
        try:
            parse_date(request.birth_date)
        except ValueError as exc:
            raise InvalidInput(f"--birth-date: {exc}") from None
    if request.sex not in ("", "M", "F", "O"):
        raise InvalidInput(f"--sex: {request.sex!r} is not M, F or O")
    if request.study_uid and not is_valid_uid(request.study_uid):
        raise InvalidInput(f"--study-uid: {request.study_uid!r} is not a valid UID")
    if request.study_uid and request.accession_number:
        raise InvalidInput("give --study-uid or --accession, not both")


def _subject(
    request: ImportRequest,
    issuer: str,
    study: str,
    existing: StudyRecord | None,
    media: list[Media],
) -> Subject:
    """The patient and study attributes of the instances: as given, else as indexed; a new
    study's date is that of its earliest photo or video (wrapping.content_time)."""
    if existing is not None:
        date, time = existing.study_date, existing.study_time
    else:
        first = min(content_time(m) for m in media)
        date, time = da_value(first), tm_value(first)
    return Subject(
        patient_id=request.patient_id,
        issuer=issuer,
        patient_name=request.patient_name or (existing.patient_name if existing else ""),
        birth_date=request.birth_date or (existing.birth_date if existing else ""),
        sex=request.sex or (existing.sex if existing else ""),
        study_uid=study,
        study_date=date,
        study_time=time,
        accession_number=request.accession_number
        or (existing.accession_number if existing else ""),
        study_id=existing.study_id if existing else "",
        study_description=request.study_description or (existing.description if existing else ""),
        referring_physician=existing.referring_physician if existing else "",
        series_description=request.series_description,
        body_part=request.body_part,
        operator=request.operator,
    )


def _warnings(media: Media) -> list[str]:
    """What the admin should know about a file DICOM carries as it is."""
    facts = media.facts
    warnings = []
    rotation = getattr(facts, "rotation", 0)
    orientation = getattr(facts, "orientation", 1)
    if rotation or orientation != 1:
        asks = f"a turn of {rotation} degrees" if rotation else f"EXIF orientation {orientation}"
        warnings.append(
            f"its players are asked for {asks}; DICOM has no such instruction, so viewers show "
            "the picture as it is stored"
        )
    if trailing := getattr(facts, "trailing", 0):
        warnings.append(
            f"{trailing} bytes after the JPEG's end-of-image marker (a motion photo's video, "
            "an editor's data) are not part of the photo and are not kept"
        )
    return warnings
