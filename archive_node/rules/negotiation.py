"""Pure checks of an A-ASSOCIATE-RQ's structure that pynetdicom lets through (PS3.8 9.3.2,
PS3.7 Annex A.2): the application context, the presentation contexts' IDs and syntaxes, and
the AE titles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..dicom.values import ae_title_problem

# The DICOM Application Context Name, the only one defined (PS3.7 A.2.1)
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

# A-ASSOCIATE-RJ (result, source, reason), PS3.8 9.3.4
REJECT_NO_REASON = (1, 1, 1)  # rejected-permanent, service-user, no-reason-given
REJECT_APPLICATION_CONTEXT = (1, 1, 2)  # ..., application-context-name-not-supported
REJECT_CALLING_TITLE = (1, 1, 3)  # ..., calling-AE-title-not-recognized
REJECT_CALLED_TITLE = (1, 1, 7)  # ..., called-AE-title-not-recognized


@dataclass(frozen=True)
class ProposedContext:
    """One presentation context of an A-ASSOCIATE-RQ, as the requestor sent it."""

    id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class RequestProblem:
    """Why an A-ASSOCIATE-RQ is rejected (for the log) and the A-ASSOCIATE-RJ it gets."""

    reason: str
    reject: tuple[int, int, int]


def request_problem(
    called: str, calling: str, application_context: str, contexts: Sequence[ProposedContext]
) -> RequestProblem | None:
    """What is wrong with the structure of an A-ASSOCIATE-RQ, or None.

    The AE titles must be valid AE values (PS3.5 6.2: printable ASCII, no backslash, at most
    16 characters); the application context the DICOM one; and there must be at least one
    presentation context, each with an odd ID from 1 to 255 used once (PS3.8 9.3.2.2).
    A context without transfer syntaxes is not a reason to reject: it is answered
    transfer-syntaxes-not-supported (see empty_contexts).
    """
    if ae_title_problem(called):
        return RequestProblem("called AE title is not a valid AE title", REJECT_CALLED_TITLE)
    if ae_title_problem(calling):
        return RequestProblem("calling AE title is not a valid AE title", REJECT_CALLING_TITLE)
    if application_context.strip("\0 ") != DICOM_APPLICATION_CONTEXT:
        return RequestProblem(
            "application context name is not the DICOM one (1.2.840.10008.3.1.1.1)",
            REJECT_APPLICATION_CONTEXT,
        )
    if not contexts:
        return RequestProblem("no presentation context proposed", REJECT_NO_REASON)
    ids = [cx.id for cx in contexts]
    if any(i % 2 == 0 or not 1 <= i <= 255 for i in ids):
        return RequestProblem(
            "a presentation context ID is not an odd number from 1 to 255", REJECT_NO_REASON
        )
    if len(set(ids)) != len(ids):
        return RequestProblem("a presentation context ID is used twice", REJECT_NO_REASON)
    return None


def empty_contexts(contexts: Sequence[ProposedContext]) -> list[int]:
    """The IDs of contexts proposed without a transfer syntax: answered
    transfer-syntaxes-not-supported (PS3.8 9.3.3.2, result 4)."""
    return [cx.id for cx in contexts if not cx.transfer_syntaxes]
