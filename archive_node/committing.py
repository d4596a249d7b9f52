"""Storage Commitment Push Model decisions (PS3.4 J.3): a request recorded durably before it is
answered, and each reference committed only when what its requester was acknowledged is kept,
intact and durable."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from .config import Config
from .errors import InvalidInput
from .index import CommitmentRecord, Index, InstanceRecord
from .rules.access import Peer
from .rules.commitment import (
    FAILURE_CLASS_CONFLICT,
    FAILURE_NO_SUCH_INSTANCE,
    FAILURE_PROCESSING,
    Acknowledged,
    CommitmentResult,
    Failure,
    Reference,
    acknowledgement_failure,
    failure_lines,
    parse_request,
    references_from_json,
    references_to_json,
)
from .storage import FilesystemStorage

log = logging.getLogger(__name__)


class Commitments:
    """The archive's side of Storage Commitment, over its index and store."""

    def __init__(self, config: Config, index: Index, storage: FilesystemStorage) -> None:
        self.config = config
        self.index = index
        self.storage = storage

    def request(
        self,
        peer: Peer,
        action_type: int | None,
        instance_uid: str,
        info: Any,
        *,
        claimant: str,
        claimed_until: datetime,
    ) -> CommitmentRecord:
        """Record an N-ACTION's request for Storage Commitment durably, before it is answered,
        claimed by `claimant` until `claimed_until`. Raises Refused (commitment.parse_request),
        IndexUnavailable."""
        request = parse_request(action_type, instance_uid, info)
        record = self.index.commitments.add(
            peer.ae_title,
            request.transaction_uid,
            references_to_json(request.references),
            claimant=claimant,
            claimed_until=claimed_until,
        )
        log.info(
            "storage commitment %s requested by %s (%s) for %d instance(s)",
            request.transaction_uid,
            peer.ae_title,
            peer.hospital,
            len(request.references),
        )
        return record

    def result(self, record: CommitmentRecord, peer: Peer | None) -> CommitmentResult:
        """The outcome of a request, decided once and kept with it (a report delivered after a
        restart says what was decided before). Raises IndexUnavailable."""
        if record.result is not None:
            return CommitmentResult.from_json(record.result)
        # once each, also in a request recorded before references were de-duplicated
        references = tuple(dict.fromkeys(references_from_json(record.references)))
        if peer is None:  # the requester was removed from the registry since
            result = CommitmentResult(
                (), tuple(Failure(c, i, FAILURE_PROCESSING) for c, i in references)
            )
        else:
            result = self._decide(record, references, peer)
        self.index.commitments.save_result(record, result.to_json())
        log.info(
            "storage commitment %s for %s: %d committed, %d failed",
            record.transaction_uid,
            record.requester,
            len(result.committed),
            len(result.failed),
        )
        for line in failure_lines(result.failed):
            log.warning(
                "storage commitment %s for %s: %s", record.transaction_uid, record.requester, line
            )
        return result

    def _decide(
        self, record: CommitmentRecord, references: tuple[Reference, ...], peer: Peer
    ) -> CommitmentResult:
        """Each reference committed or failed (PS3.4 J.3.3.1.1). Each distinct file is read
        once, and at most commitment.max_verify_bytes in all: references past that fail
        (0x0110) and may be asked for again in another request."""
        held = self.index.instances.by_uid(uid for _, uid in references)
        acknowledged = self.index.instances.acknowledgements(held)
        budget = self.config.commitment.max_verify_bytes
        checked: dict[str, int | None] = {}  # SOP Instance UID: its file check's outcome
        over_budget = 0
        committed, failed = [], []
        for class_uid, uid in references:
            instance = held.get(uid)
            reason = self._commitment_failure(class_uid, instance, acknowledged.get(uid, []), peer)
            if reason is None:
                assert instance is not None  # _commitment_failure fails an unknown UID
                if uid not in checked:
                    if instance.size > budget:
                        over_budget += 1
                        failed.append(Failure(class_uid, uid, FAILURE_PROCESSING))
                        continue
                    budget -= instance.size
                    checked[uid] = self._verify_kept(instance)
                reason = checked[uid]
            if reason is None:
                committed.append((class_uid, uid))
            else:
                failed.append(Failure(class_uid, uid, reason))
        if over_budget:
            log.warning(
                "storage commitment %s for %s: %d instance(s) past commitment.max_verify_bytes "
                "(%d bytes) not verified: failed (0x0110), to be asked for again",
                record.transaction_uid,
                record.requester,
                over_budget,
                self.config.commitment.max_verify_bytes,
            )
        return CommitmentResult(tuple(committed), tuple(failed))

    @staticmethod
    def _commitment_failure(
        class_uid: str,
        held: InstanceRecord | None,
        acknowledged: list[Acknowledged],
        peer: Peer,
    ) -> int | None:
        """The PS3.4 J.3.3.1.1 Failure Reason owed to `peer` for this reference before its file
        is read, or None: indexed, of the class named, and what `peer` (or, for an AE answered
        only about its hospital's instances, its hospital) was acknowledged is what is kept
        (commitment.acknowledgement_failure). A rejected instance (IHE IOCM) is no longer
        held: no such instance."""
        if held is None or held.rejection:
            return FAILURE_NO_SUCH_INSTANCE
        senders = [Acknowledged(held.calling_ae, held.hospital, held.sha256), *acknowledged]
        reason = acknowledgement_failure(peer, held.sha256, senders)
        if reason is not None:
            return reason
        if held.sop_class_uid != class_uid:
            return FAILURE_CLASS_CONFLICT
        return None

    def _verify_kept(self, held: InstanceRecord) -> int | None:
        """None when the instance's file is on disk with the size and SHA-256 recorded at
        receipt, and made durable; otherwise the Failure Reason."""
        try:
            facts = self.storage.digest(self.storage.absolute(held.path))
            if (facts.size, facts.sha256) != (held.size, held.sha256):
                log.error(
                    "instance %s: %s no longer matches the SHA-256 recorded at receipt: "
                    "not committed (run archive-node verify)",
                    held.sop_uid,
                    held.path,
                )
                return FAILURE_PROCESSING
            self.storage.make_durable(held.path)
        except FileNotFoundError:
            log.error(
                "instance %s is indexed but %s is missing: not committed", held.sop_uid, held.path
            )
            return FAILURE_NO_SUCH_INSTANCE
        except (OSError, InvalidInput) as exc:
            log.error("instance %s cannot be checked: %s: not committed", held.sop_uid, exc)
            return FAILURE_PROCESSING
        return None
