"""The archive service: what the network's requests do to the store and the index together
(admission, the keep order of C-STORE, C-FIND, what a retrieve sends; Storage Commitment's
verdict is committing.py's, reached as `service.commitments`). The other users of both are
commands of their own: importing/ keeps each media file through store() like a C-STORE,
integrity/ checks and rebuilds, and the Storage Commitment SCP (net/commitment_scp.py) keeps
its report rows through index.commitments."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import socket
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from .auditing import AuditTrail, QueryRecord, new_session
from .committing import Commitments
from .config import Config
from .correcting import Corrections
from .dicom import status
from .dicom.decompress import decompress
from .dicom.instance_header import InstanceHeader, read_header, read_stored_header
from .dicom.patient_rewrite import rewrite_patient
from .dicom.reencode import recode
from .dicom.structure import check_path
from .errors import (
    AuditUnavailable,
    IndexUnavailable,
    InvalidInput,
    StoreRejected,
)
from .index import Index, InstanceRecord, Match, NewInstance
from .logs import request_fields
from .ordering import Orders
from .registry import Registry
from .rules.access import (
    REJECT_CALLING_AE,
    REJECT_TRANSIENT,
    AssociationDecision,
    Peer,
    Resolver,
    decide_association,
    host_network,
    may_request,
    move_refusal,
    visible_hospital,
)
from .rules.audit import (
    NODE_AUTHENTICATION,
    RESTRICTED_FUNCTION,
    Actor,
)
from .rules.commitment import Acknowledged
from .rules.find_answers import FindAnswer
from .rules.query import InvalidQuery, Query, parse_query, parse_retrieve
from .rules.retrieve_plan import (
    DECOMPRESSIBLE,
    MAX_SUB_OPERATIONS,
    Outgoing,
    corrected_attributes,
)
from .rules.tls import PLAIN, Transport, transport_refusal
from .storage import FileFacts, FilesystemStorage

log = logging.getLogger(__name__)


def resolve_host(host: str) -> frozenset[str]:
    """The addresses a registered host stands for (an IP literal, or a name via the resolver)."""
    if not host or host_network(host) is not None:  # a range is matched as such, not resolved
        return frozenset()
    try:
        return frozenset({str(ipaddress.ip_address(host))})
    except ValueError:
        pass
    try:
        return frozenset(cast(str, info[4][0]) for info in socket.getaddrinfo(host, None))
    except OSError as exc:
        log.warning("registered host %s does not resolve: %s", host, exc)
        return frozenset()


@dataclass(frozen=True)
class StoreOutcome:
    status: int
    message: str


@dataclass(frozen=True)
class FindResponse:
    """One C-FIND response: a pending match with its answer, or the final status with a
    comment (and the offending attribute's keyword) for the SCU and the log."""

    status: int
    answer: FindAnswer | None = None  # the network layer may pack it without a Dataset
    comment: str = ""
    keyword: str | None = None

    @property
    def identifier(self) -> Any:
        """The pending response's identifier as a Dataset (built when asked)."""
        return None if self.answer is None else self.answer.dataset()


# A file at an instance's place that no row names, unchanged for this long, is a crash's leftover.
LEFTOVER_AGE = 300.0

# Matches are answered in pages: computed keys are fetched a page at a time, and no database
# cursor stays open while the SCU reads responses.
FIND_PAGE = 200


class ArchiveService:
    """Decides associations and keeps received instances: file first, index second."""

    def __init__(
        self,
        config: Config,
        index: Index,
        storage: FilesystemStorage,
        resolver: Resolver = resolve_host,
    ) -> None:
        self.config = config
        self.index = index
        self.storage = storage
        self.registry = Registry(index)
        self.resolver = resolver
        self.commitments = Commitments(config, index, storage)
        self.audit = AuditTrail(config, index)
        self.corrections = Corrections(config, index, storage, self.audit)
        self.orders = Orders(
            config, index, self.audit, self.corrections, lambda host: self.resolver(host)
        )

    @property
    def _stale_after(self) -> float:
        """Seconds after which a file no row names is no other association's store in
        progress: longer than any wait for the index lock."""
        return max(LEFTOVER_AGE, 3 * self.config.index.busy_timeout)

    @classmethod
    def from_config(cls, config: Config, *, create_index: bool = True) -> ArchiveService:
        """The service of `config`. Without `create_index`, a SQLite index that does not exist
        is a SchemaError naming it (the CLI's read-only commands). Raises ConfigError."""
        index = Index.open(
            config.index.url, busy_timeout=config.index.busy_timeout, create=create_index
        )
        storage = FilesystemStorage(
            config.storage.path,
            fsync=config.storage.fsync,
            min_free_bytes=config.storage.min_free_mb * 1024 * 1024,
        )
        return cls(config, index, storage)

    # -- associations -------------------------------------------------------------------------

    def open_association(
        self,
        called_title: str,
        calling_title: str,
        address: str,
        transport: Transport = PLAIN,
        user: str = "",
    ) -> tuple[AssociationDecision, Peer | None]:
        """Look the caller up in the registry and decide, by its title, address and transport
        (TLS, and the client certificate it presented); fail closed if the index is down. A
        rejection is a Security Alert in the audit trail (`user`: the identity it asserted)."""
        try:
            peer = self.registry.peer(calling_title)
            owner = (
                self.registry.certificate_owner(transport.fingerprint)
                if transport.fingerprint
                else None
            )
        except IndexUnavailable as exc:
            log.error("association from %s refused: %s", calling_title.strip(), exc)
            return AssociationDecision(False, "index unavailable", REJECT_TRANSIENT), None
        addresses = self.resolver(peer.host) if peer and peer.host else frozenset()
        decision = decide_association(
            self.config.node.ae_title, called_title, peer, address, addresses
        )
        if decision.accepted and peer is not None:
            refusal = transport_refusal(
                ae_title=peer.ae_title,
                tls_mode=peer.tls,
                bound=peer.certificates,
                transport=transport,
                owner=owner,
                require_client_certificate=self.config.tls.require_client_certificate,
            )
            if refusal:
                decision = AssociationDecision(False, refusal, REJECT_CALLING_AE)
        if not decision.accepted:
            actor = Actor(
                new_session(),
                ae_title=calling_title,
                hospital=peer.hospital if peer else "",
                address=address,
                user=user,
            )
            self.audit.alert(
                actor,
                "association",
                decision.reason,
                event_type=NODE_AUTHENTICATION,
                status="rejected",
            )
        return decision, peer

    def authorise(
        self, peer: Peer | None, service: str, actor: Actor | None = None, operation: str = ""
    ) -> int:
        """SUCCESS, or NOT_AUTHORISED (0x0124) when the AE lacks the right (or there is no
        registered peer: admission broke): a Security Alert (Use of Restricted Function)."""
        if peer is not None and may_request(peer, service):
            return status.SUCCESS
        if peer is not None:
            log.warning("%s (%s) is not allowed %s", peer.ae_title, peer.hospital, service)
        if actor is not None:
            self.audit.alert(
                actor,
                operation or service,
                f"not allowed {service}",
                event_type=RESTRICTED_FUNCTION,
                status="0x0124",
            )
        return status.NOT_AUTHORISED

    # -- C-STORE ------------------------------------------------------------------------------

    def store(
        self,
        peer: Peer,
        received: Path,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        actor: Actor | None = None,
        kind: str = "transfer",
    ) -> StoreOutcome:
        """Keep a received Part 10 file: check, fsync, link into place, commit the index row,
        counted in the audit tally of `actor`'s association (or import run, `kind`) for its
        study in the same commit.

        Only when the row is committed is SUCCESS returned; on any failure nothing is left in
        the store or the index. `received` stays where it is for its owner to remove.
        """
        attempt = _Attempt(actor, kind)
        try:
            outcome = self._store(peer, received, sop_class_uid, sop_instance_uid, attempt)
        except AuditUnavailable as exc:
            outcome = StoreOutcome(status.OUT_OF_RESOURCES, str(exc))
        except StoreRejected as exc:
            outcome = StoreOutcome(exc.status, str(exc))
        except IndexUnavailable as exc:
            outcome = StoreOutcome(status.INDEX_UNAVAILABLE, str(exc))
        except OSError as exc:
            outcome = StoreOutcome(status.OUT_OF_RESOURCES, f"store write failed: {exc}")
        except Exception as exc:  # never a traceback to pynetdicom: a clear failure instead
            log.exception("storing %s failed unexpectedly", sop_instance_uid.strip())
            outcome = StoreOutcome(status.PROCESSING_FAILURE, f"{type(exc).__name__}: {exc}")
        if outcome.status != status.SUCCESS:
            if attempt.tally is None:  # refused before its study was known
                self._tally(attempt, "", "", "")
            self.audit.count(
                attempt.tally, stored=0, status=f"0x{outcome.status:04X} {outcome.message}"
            )
            log.warning(
                "refused instance %s from %s (%s): 0x%04X %s",
                sop_instance_uid.strip(),
                peer.ae_title,
                peer.hospital,
                outcome.status,
                outcome.message,
                extra=request_fields(outcome.status, attempt.started),
            )
        return outcome

    def ready_problem(self) -> str | None:
        """Why the node cannot take instances now (/readyz): the store taken over by another
        index, or free space below the reserve; None when it can."""
        return self.storage.identity_problem() or self.room_problem()

    def room_problem(self) -> str | None:
        """Why nothing may be stored now (free space below storage.min_free_mb), or None."""
        if self.storage.has_room():
            return None
        return f"free space below the reserve of {self.config.storage.min_free_mb} MiB"

    def _tally(self, attempt: _Attempt, study_uid: str, patient_id: str, issuer: str) -> None:
        attempt.tally = self.audit.tally(
            attempt.actor, study_uid, patient_id, issuer, attempt.kind
        )

    def _store(
        self,
        peer: Peer,
        received: Path,
        sop_class_uid: str,
        sop_instance_uid: str,
        attempt: _Attempt,
    ) -> StoreOutcome:
        # the store taken over by another index since this node started: asked once per
        # instance, here, before anything is kept (not with each room check of a transfer)
        problem = self.storage.identity_problem() or self.room_problem()
        if problem:
            return StoreOutcome(status.OUT_OF_RESOURCES, problem)
        # The whole encoding, before pydicom reads the header (it would inflate a deflated
        # dataset whole into memory): what DCMTK or Orthanc would refuse is never acknowledged.
        malformed = check_path(received)
        if malformed:
            raise StoreRejected(status.CANNOT_UNDERSTAND, malformed.in_dataset())
        header = read_header(
            received, expected_sop_class=sop_class_uid, expected_sop_instance=sop_instance_uid
        )
        try:
            layout = self.storage.layout(
                header.study_uid, header.series_uid, header.sop_instance_uid
            )
        except InvalidInput as exc:
            raise StoreRejected(status.MALFORMED_UID, str(exc)) from None
        facts = self.storage.inspect(received)
        new = NewInstance.kept(
            header,
            path=layout,
            size=facts.size,
            sha256=facts.sha256,
            calling_ae=peer.ae_title,
            hospital=peer.hospital,
            hospital_issuer=peer.issuer,
        )
        self._tally(attempt, header.study_uid, header.patient_id, new.issuer)
        existing = self.index.instances.find(header.sop_instance_uid)
        if existing is not None:
            return self._counted(attempt, self._duplicate(existing, new, received))
        # A rejection note (IHE IOCM) rejects what it references in the commit that indexes it.
        note = self.corrections.pending_note(header, received, facts.size, peer, attempt.actor)

        # No row names this instance, so a file at its place that has not changed for a while
        # is a leftover of a crash between keeping and indexing: replaced, not kept beside.
        kept = self.storage.keep(received, layout, stale_after=self._stale_after)
        new = dataclasses.replace(new, path=kept)
        try:
            existing = self.index.instances.record(
                new, attempt.tally, then=note.apply if note else None
            )
        except BaseException:
            self._discard_unless_indexed(kept, header.sop_instance_uid)
            raise
        if existing is not None:  # another association indexed the same instance first
            self.storage.remove(kept)
            return self._counted(attempt, self._duplicate(existing, new, received))
        self._log_stored(peer, header, facts.size, "stored", attempt.started)
        if note:
            note.applied()
        return StoreOutcome(status.SUCCESS, "stored")

    def _counted(self, attempt: _Attempt, outcome: StoreOutcome) -> StoreOutcome:
        """A duplicate's success is counted in its tally before it is acknowledged (its index
        rows were written apart). Raises AuditUnavailable."""
        if outcome.status == status.SUCCESS:
            self.audit.count(attempt.tally)
        return outcome

    def _duplicate(
        self, existing: InstanceRecord, new: NewInstance, received: Path
    ) -> StoreOutcome:
        """PS3.4 B.2.3 leaves duplicates to the SCP. Identical bytes store nothing and are a
        success (a resend: the sender is recorded as told so, for Storage Commitment). Other
        bytes replace the kept copy where storage.on_duplicate allows (a success), and are
        otherwise refused: a success would tell the sender an object is kept that is not."""
        header = new.header
        uid = header.sop_instance_uid
        if existing.rejection:  # a modality retrying from its queue must not resurrect it
            raise StoreRejected(
                status.REJECTED_INSTANCE,
                "instance was rejected (IOCM); a resend is not stored",
            )
        # The file meta records the sender (dicom/provenance.py): the same object from another
        # AE is another file, but the same dataset.
        if existing.sha256 == new.sha256 or self._same_dataset(existing, received):
            if not self.storage.exists(existing.path):
                log.error(
                    "indexed file of %s was missing: restored from %s's resend",
                    uid,
                    new.calling_ae,
                )
                return self._replace(new, received, "restored")
            # The resend is the recorded bytes: the kept file must be too. Its size is a stat;
            # only when that matches is it read (in chunks) for its hash.
            recorded = FileFacts(size=existing.size, sha256=existing.sha256)
            if existing.sha256 == new.sha256 and not self.storage.matches(existing.path, recorded):
                log.warning(
                    "repaired %s of %s: the kept file no longer had the recorded size and "
                    "SHA-256; restored from %s's identical resend",
                    existing.path,
                    uid,
                    new.calling_ae,
                )
                # as a replacement is made: kept beside, the row repointed while it still
                # records that hash, the bad file removed (never written over in place)
                return self._replace(new, received, "repaired", expect_sha256=existing.sha256)
            log.info("duplicate of %s from %s, identical: nothing new stored", uid, new.calling_ae)
            if (existing.calling_ae, existing.hospital) != (new.calling_ae, new.hospital):
                self.index.instances.acknowledge(
                    uid, Acknowledged(new.calling_ae, new.hospital, existing.sha256)
                )
            return StoreOutcome(status.SUCCESS, "duplicate, identical")
        reason = self._why_not_replace(existing, header, new)
        if reason:
            log.warning(
                "duplicate of %s from %s (%s) with different content (sha256 %s, kept %s): "
                "refused, original kept: %s",
                uid,
                new.calling_ae,
                new.hospital,
                new.sha256[:12],
                existing.sha256[:12],
                reason,
            )
            return StoreOutcome(
                status.SOP_INSTANCE_CONFLICT, "SOP Instance UID already holds a different object"
            )
        log.warning(
            "duplicate of %s from %s with different content: original replaced",
            uid,
            new.calling_ae,
        )
        return self._replace(new, received, "replaced")

    def _same_dataset(self, existing: InstanceRecord, received: Path) -> bool:
        """True when the kept file of `existing` and `received` hold the same bytes after their
        File Meta Information (PS3.10 7.1); False when they differ or cannot be read."""
        try:
            kept = self.storage.absolute(existing.path)
            with open(kept, "rb") as a, open(received, "rb") as b:
                start_a, start_b = _dataset_start(a), _dataset_start(b)
                if start_a is None or start_b is None:
                    return False
                size_a, size_b = os.fstat(a.fileno()).st_size, os.fstat(b.fileno()).st_size
                if size_a - start_a != size_b - start_b:
                    return False
                a.seek(start_a)
                b.seek(start_b)
                while True:
                    chunk = a.read(_COMPARE_CHUNK)
                    if chunk != b.read(_COMPARE_CHUNK):
                        return False
                    if not chunk:
                        return True
        except (OSError, InvalidInput):
            return False

    def _why_not_replace(
        self, existing: InstanceRecord, header: InstanceHeader, new: NewInstance
    ) -> str | None:
        """Why a different copy must not replace the kept one, or None when it may."""
        if self.config.storage.on_duplicate == "keep":
            return "storage.on_duplicate is keep"
        if existing.hospital != new.hospital:
            return f"it belongs to hospital {existing.hospital}"
        if (existing.study_uid, existing.series_uid, existing.sop_class_uid) != (
            header.study_uid,
            header.series_uid,
            header.sop_class_uid,
        ):
            return "its study, series or SOP class differs"
        return None

    def _replace(
        self, new: NewInstance, received: Path, what: str, *, expect_sha256: str | None = None
    ) -> StoreOutcome:
        """Keep the received file and point the row at it; remove the file it displaced. With
        `expect_sha256`, only while the row records that hash (else the kept copy goes)."""
        kept = self.storage.keep(received, new.path)
        try:
            displaced = self.index.instances.replace(
                dataclasses.replace(new, path=kept),
                take_over=what == "replaced",
                expect_sha256=expect_sha256,
            )
        except BaseException:
            self._discard_unless_indexed(kept, new.header.sop_instance_uid)
            raise
        if displaced is None:  # replaced by another store meanwhile: that one stands
            self.storage.remove(kept)
            return StoreOutcome(status.SUCCESS, "duplicate, identical")
        if displaced != kept:
            self.storage.remove(displaced)
        return StoreOutcome(status.SUCCESS, f"duplicate, {what}")

    def _discard_unless_indexed(self, kept: str, sop_uid: str) -> None:
        """After an index error, remove the file unless the commit did land after all.

        A commit can succeed while its acknowledgement is lost (a connection reset): then the
        row names `kept`, which must stay. If the index cannot even say, the file stays too: a
        file without a row is recoverable, a row without a file is a lost image.
        """
        try:
            record = self.index.instances.find(sop_uid)
        except IndexUnavailable:
            log.error("cannot tell whether %s was indexed: leaving %s in the store", sop_uid, kept)
            return
        if record is None or record.path != kept:
            self.storage.remove(kept)

    @staticmethod
    def _log_stored(
        peer: Peer, header: InstanceHeader, size: int, what: str, started: float
    ) -> None:
        log.info(
            "%s instance %s series %s study %s (%s, %d bytes) from %s (%s)",
            what,
            header.sop_instance_uid,
            header.series_uid,
            header.study_uid,
            header.modality or "-",
            size,
            peer.ae_title,
            peer.hospital,
            extra=request_fields(status.SUCCESS, started),
        )

    # -- C-FIND -------------------------------------------------------------------------------

    def find(
        self,
        peer: Peer,
        identifier: Any,
        model: str,
        actor: Actor | None = None,
        sop_class: str = "",
    ) -> Iterator[FindResponse]:
        """Answer a C-FIND: a PENDING response per matching entity at the query level, then
        the final status. Invalid identifiers, an unreachable index, an audit record that
        cannot be written and more than query.max_results matches end in a failure status
        with a comment. The Query audit record (the keys as sent, the patients and studies
        answered) is written before the first answer."""
        audited = QueryRecord(self.audit, actor, identifier, model, sop_class)
        try:
            query = parse_query(identifier, model)
        except InvalidQuery as exc:
            log.warning("C-FIND from %s refused: 0x%04X %s", peer.ae_title, exc.status, exc)
            audited.refused(exc.status, str(exc))
            yield FindResponse(exc.status, comment=str(exc), keyword=exc.keyword)
            return
        hospital = visible_hospital(peer)
        limit = self.config.query.max_results
        try:
            matches = self.index.find.matches(
                audited.widened(query), hospital=hospital, limit=limit + 1
            )
            overflow = len(matches) > limit
            del matches[limit:]
            log.info(
                "C-FIND %s level%s from %s (%s, scope %s): %s%d match(es)",
                query.level,
                " (relational)" if query.relational else "",
                peer.ae_title,
                peer.hospital,
                peer.scope,
                "more than " if overflow else "",
                len(matches),
            )
            audited.answered(query.level, matches, overflow, limit)
            for start in range(0, len(matches), FIND_PAGE):
                page = matches[start : start + FIND_PAGE]
                computed = self.index.find.computed_keys(query, page, hospital=hospital)
                for match in page:
                    yield FindResponse(status.PENDING, self._answer(query, match, computed))
        except AuditUnavailable as exc:
            yield FindResponse(status.QUERY_FAILED, comment=str(exc))
            return
        except IndexUnavailable as exc:
            log.error("C-FIND from %s failed: %s", peer.ae_title, exc)
            yield FindResponse(status.QUERY_FAILED, comment="index unavailable")
            return
        except Exception as exc:  # never a traceback to pynetdicom: a clear failure instead
            log.exception("C-FIND from %s failed unexpectedly", peer.ae_title)
            yield FindResponse(
                status.QUERY_FAILED, comment=f"internal error: {type(exc).__name__}"
            )
            return
        if overflow:
            comment = f"more than {limit} matches, {limit} sent: narrow the query"
            log.warning("C-FIND from %s: %s (query.max_results)", peer.ae_title, comment)
            yield FindResponse(status.OUT_OF_RESOURCES, comment=comment)
            return
        yield FindResponse(status.SUCCESS)

    def _answer(
        self, query: Query, match: Match, computed: dict[int, dict[str, Any]]
    ) -> FindAnswer:
        values = {**match.values, **computed.get(match.pk, {})}
        header = None
        if query.unknown and match.path:
            try:
                header = read_stored_header(self.storage.absolute(match.path))
            except Exception as exc:  # answered empty rather than failing the whole query
                log.error("cannot read the header of %s: %s", match.path, exc)
        return FindAnswer(query, values, self.config.node.ae_title, header)

    # -- C-MOVE and C-GET ---------------------------------------------------------------------

    def plan_retrieve(self, peer: Peer, identifier: Any, model: str) -> list[Outgoing]:
        """The stored instances a C-MOVE or C-GET names, in the order they were stored, as this
        AE may see them (scope hospital: only what its hospital sent, as C-FIND at IMAGE level).

        Raises InvalidQuery (the failure status and comment) for a bad identifier, more than
        65535 instances (0xA701), a PatientID that names patients of several issuers with
        no IssuerOfPatientID to tell them apart, or several anonymous patients (a placeholder
        ID) (0xC000); IndexUnavailable.
        """
        query = parse_retrieve(identifier, model)
        instances = dataclasses.replace(
            query,
            level="IMAGE",
            requested=(*_RETRIEVED_KEYS, "IssuerOfPatientID", "PatientID", "StudyInstanceUID"),
        )
        matches = self.index.find.matches(
            instances, hospital=visible_hospital(peer), limit=MAX_SUB_OPERATIONS + 1
        )
        if len(matches) > MAX_SUB_OPERATIONS:
            raise InvalidQuery(
                status.TOO_MANY_MATCHES,
                f"more than {MAX_SUB_OPERATIONS} instances: retrieve studies or series",
            )
        patients = {match.patient_pk for match in matches}
        # only a PatientID can name two patients by mistake (Study Root studies of several
        # patients are a legitimate retrieve, PS3.4 C.6.2.1): the same ID in two issuers, or a
        # placeholder ID ('UNKNOWN') that each anonymous study's patient has
        if len(patients) > 1 and query.condition("PatientID"):
            if len({match.values["IssuerOfPatientID"] for match in matches}) > 1:
                raise InvalidQuery(
                    status.UNABLE_TO_PROCESS,
                    "PatientID is used by several issuers: add IssuerOfPatientID",
                    "IssuerOfPatientID",
                )
            raise InvalidQuery(
                status.UNABLE_TO_PROCESS,
                "PatientID names several unidentified patients: retrieve their studies",
                "PatientID",
            )
        # a corrected study's instances leave with the index's patient attributes
        corrected = self.index.corrections.corrected_patients(
            match.values["StudyInstanceUID"] for match in matches
        )
        return [
            Outgoing(
                sop_class_uid=match.values["SOPClassUID"],
                sop_instance_uid=match.values["SOPInstanceUID"],
                transfer_syntax_uid=match.values["AvailableTransferSyntaxUID"],
                path=self._stored_path(match),
                study_uid=match.values["StudyInstanceUID"],
                patient_id=match.values["PatientID"],
                issuer=match.values["IssuerOfPatientID"],
                patient=corrected_attributes(corrected.get(match.values["StudyInstanceUID"])),
            )
            for match in matches
        ]

    def _stored_path(self, match: Match) -> Path | None:
        """Where an instance's file is; None (a failed sub-operation) for an index row whose
        path leads out of the store."""
        try:
            return self.storage.absolute(match.path or "")
        except InvalidInput as exc:
            log.error("instance %s: %s", match.values.get("SOPInstanceUID"), exc)
            return None

    def move_destination(self, peer: Peer, title: str) -> tuple[Peer | None, str | None]:
        """The registered AE a C-MOVE sends to, or None with the reason it may not
        (0xA801). Raises IndexUnavailable."""
        destination = self.registry.peer(title)
        refusal = move_refusal(peer, destination, title)
        if refusal:
            log.warning("C-MOVE from %s refused: %s", peer.ae_title, refusal)
            return None, refusal
        return destination, None

    def corrected_copy(self, item: Outgoing, source: Path) -> Path:
        """A temporary copy of `source` (the stored file of `item`, or a converted copy of it)
        with `item`'s corrected patient attributes, in the store's incoming area, for the caller
        to send and remove: streamed, every other byte as stored (dicom/patient_rewrite.py).
        Raises Unrewritable, OSError."""
        assert item.patient is not None
        handle, name = tempfile.mkstemp(
            prefix="corrected-", suffix=".dcm", dir=self.storage.incoming
        )
        os.close(handle)
        try:
            rewrite_patient(source, Path(name), item.patient)
        except BaseException:
            os.unlink(name)
            raise
        return Path(name)

    def converted_copy(self, item: Outgoing, transfer_syntax: str) -> Path:
        """A temporary copy of `item` in `transfer_syntax` (Explicit or Implicit VR Little
        Endian), in the store's incoming area, for the caller to send and remove: re-encoded
        from a syntax retrieve_plan.CONVERTIBLE names, its pixel data copied in chunks
        (dicom/reencode.py), or decompressed frame by frame from one DECOMPRESSIBLE names
        (dicom/decompress.py). The stored file is only read. Raises OSError, ValueError
        (decompress.Undecodable among them), or pydicom's errors."""
        assert item.path is not None  # a stored file: retrieve_scp sends no other
        handle, name = tempfile.mkstemp(
            prefix="outgoing-", suffix=".dcm", dir=self.storage.incoming
        )
        os.close(handle)
        try:
            if item.transfer_syntax_uid in DECOMPRESSIBLE:
                decompress(item.path, Path(name), transfer_syntax)
            else:
                recode(item.path, Path(name), transfer_syntax)
        except BaseException:
            os.unlink(name)
            raise
        return Path(name)


_COMPARE_CHUNK = 1 << 20


@dataclass
class _Attempt:
    """One C-STORE (or imported file) on its way: who sends it, and its audit tally once its
    study is known."""

    actor: Actor | None
    kind: str
    tally: Any = None
    started: float = dataclasses.field(default_factory=time.monotonic)


def _dataset_start(fh: BinaryIO) -> int | None:
    """Where a Part 10 file's dataset starts: after the preamble, DICM and the File Meta
    Information, whose (0002,0000) Group Length (explicit VR UL) says how long it is."""
    fh.seek(128)
    head = fh.read(16)
    if len(head) < 16 or head[:4] != b"DICM" or head[4:10] != b"\x02\x00\x00\x00UL":
        return None
    return 144 + struct.unpack("<I", head[12:16])[0]


# What a retrieve needs of each instance: a C-FIND at IMAGE level answering these keys.
_RETRIEVED_KEYS = ("SOPInstanceUID", "SOPClassUID", "AvailableTransferSyntaxUID")
