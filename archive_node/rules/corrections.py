"""Corrections as pure decisions: what an admin may change, the identifiers a corrected study
had, and the checks on a correction's inputs (patient demographics, reasons, delays)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..dicom.values import parse_date, text_problem
from ..errors import InvalidInput
from .audit import Touched
from .rejection import DELETING_CODES

# PS3.3 C.7.1.1 Patient Module: the attributes a correction owns, by keyword.
PATIENT_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
)
SEXES = ("M", "F", "O")  # PS3.3 C.7.1.1: PatientSex is M, F, O or empty
MAX_REASON = 1024

Identity = tuple[str, str]  # (PatientID, IssuerOfPatientID)
Named = tuple[str, str | None]  # a patient as an operator names one: the issuer may be left out


@dataclass(frozen=True)
class Demographics:
    """A patient's name, birth date and sex, as the index answers them."""

    name: str = ""
    birth_date: str = ""
    sex: str = ""

    def changed(self, name: str | None, birth_date: str | None, sex: str | None) -> Demographics:
        return Demographics(
            self.name if name is None else name,
            self.birth_date if birth_date is None else birth_date,
            self.sex if sex is None else sex,
        )

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "birth_date": self.birth_date, "sex": self.sex}


@dataclass(frozen=True)
class Change:
    """What one correction changed (or, with --dry-run, would change): a kind ('study move'),
    the rows it touched, and before/after values for the record and the operator."""

    kind: str
    summary: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    touched: tuple[Touched, ...] = ()  # the patients and studies it touched (both sides)
    instances: int = 0  # instances touched
    paths: tuple[str, ...] = ()  # files to remove once committed (deletion)

    def detail(self, reason: str) -> dict[str, Any]:
        """The audit record's and journal's detail."""
        return {
            "reason": reason,
            "summary": self.summary,
            "before": self.before,
            "after": self.after,
            "instances": self.instances,
        }


def prior_ids(stored: str) -> tuple[Identity, ...]:
    """A study's prior_ids column (JSON [[PatientID, issuer], ...]) as pairs."""
    if not stored:
        return ()
    return tuple((str(pid), str(issuer)) for pid, issuer in json.loads(stored))


def with_prior(stored: str, *identities: Identity) -> str:
    """The prior_ids column with `identities` added (each once, in order), minus `current`."""
    known = list(prior_ids(stored))
    for identity in identities:
        if identity[0] and identity not in known:
            known.append(identity)
    return json.dumps([list(i) for i in known]) if known else ""


def without(stored: str, identity: Identity) -> str:
    """The prior_ids column without `identity` (a study moved back where it came from)."""
    kept = [i for i in prior_ids(stored) if i != identity]
    return json.dumps([list(i) for i in kept]) if kept else ""


def check_reason(reason: str) -> str:
    """A correction's reason: required, one line, bounded. Raises InvalidInput."""
    reason = reason.strip()
    if not reason:
        raise InvalidInput("--reason is required: say why, for the audit trail")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"--reason is longer than {MAX_REASON} characters")
    if any(ord(c) < 32 for c in reason):
        raise InvalidInput("--reason must be one line of text")
    return reason


def check_patient_id(value: str, what: str = "patient ID") -> str:
    """A PatientID or issuer given on the command line (LO: 64 characters, no backslash or
    control characters). Raises InvalidInput."""
    if not value.strip():
        raise InvalidInput(f"{what} is empty")
    problem = text_problem(value, "LO")
    if problem:
        raise InvalidInput(f"{what} {problem}")
    return value.strip()


def check_demographics(
    name: str | None, birth_date: str | None, sex: str | None
) -> tuple[str | None, str | None, str | None]:
    """Validate new demographics (None: unchanged). Raises InvalidInput."""
    problem = text_problem(name, "PN") if name else None
    if problem:
        raise InvalidInput(f"--name {problem}")
    if birth_date:
        try:
            parse_date(birth_date)
        except ValueError as exc:
            raise InvalidInput(f"--birth-date: {exc}") from None
    if sex not in (None, "", *SEXES):
        raise InvalidInput("--sex must be M, F or O (or '' for unknown)")
    return name, birth_date, sex


def due_for_deletion(code: str, rejected_at: datetime, days: int) -> datetime | None:
    """When a rejected instance's file is due for deletion: 113038 and 113039 after `days`
    (lifecycle.delete_rejected_after; 0: at once), never for the others (an admin decides)."""
    return rejected_at + timedelta(days=days) if code in DELETING_CODES else None
