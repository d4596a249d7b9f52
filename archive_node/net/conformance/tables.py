"""The statement's building blocks: the services and contexts the AE offers, their names, and
the markdown writer."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # set in globals() at import
    _STORAGE_CLASSES,
    Verification,
)

from ...config import Config
from ...rules.commitment import (
    STORAGE_COMMITMENT_CLASS,
)
from ...rules.query import FIND_SOP_CLASSES, GET_SOP_CLASSES, MOVE_SOP_CLASSES
from ...rules.worklist import WORKLIST_FIND
from ..server import STORAGE_SOP_CLASSES, build_ae
from ..worklist_scp import MPPS_CLASS


class StatementError(RuntimeError):
    """The AE offers a presentation context this statement does not describe."""


# The services of the node's AE, in the order the statement lists them: each SOP class of the
# AE's supported contexts must fall into exactly one (a new context without a section here
# stops the statement from being written, so it cannot leave one out).
@dataclass(frozen=True)
class Service:
    key: str
    title: str
    sop_classes: frozenset[str]


SERVICES_OFFERED: tuple[Service, ...] = (
    Service("verification", "Verification", frozenset({str(Verification)})),
    Service("storage", "Storage", frozenset(STORAGE_SOP_CLASSES)),
    Service("find", "Query/Retrieve - FIND", frozenset(FIND_SOP_CLASSES)),
    Service("move", "Query/Retrieve - MOVE", frozenset(MOVE_SOP_CLASSES)),
    Service("get", "Query/Retrieve - GET", frozenset(GET_SOP_CLASSES)),
    Service("commitment", "Storage Commitment Push Model", frozenset({STORAGE_COMMITMENT_CLASS})),
    Service("worklist", "Modality Worklist", frozenset({WORKLIST_FIND})),
    Service("mpps", "Modality Performed Procedure Step", frozenset({MPPS_CLASS})),
)

# The storage SOP classes pydicom has no name for: pynetdicom's keyword, in words.
_KEYWORDS = {str(uid): keyword for keyword, uid in _STORAGE_CLASSES.items()}


@dataclass(frozen=True)
class Context:
    """One presentation context the node accepts: its abstract syntax, the transfer syntaxes
    in the node's order of preference, and the roles it takes by role selection."""

    sop_class: str
    transfer_syntaxes: tuple[str, ...]
    scu_role: bool  # the node accepts the SCU role for itself (a requestor's SCP role)
    scp_role: bool


def statement_ae(config: Config) -> AE:
    """The AE `serve` would build for `config` (server.build_ae), made without an index."""
    return build_ae(config)


def accepted_contexts(ae: AE) -> list[Context]:
    """The AE's supported contexts, by SOP class UID."""
    return [
        Context(
            str(cx.abstract_syntax),
            tuple(str(ts) for ts in cx.transfer_syntax),
            bool(cx.scu_role),
            bool(cx.scp_role),
        )
        for cx in sorted(ae.supported_contexts, key=lambda cx: str(cx.abstract_syntax))
    ]


def by_service(contexts: Iterable[Context]) -> dict[str, list[Context]]:
    """The contexts of each service, in the statement's order. Raises StatementError for a
    context of no service the statement describes."""
    grouped: dict[str, list[Context]] = {service.key: [] for service in SERVICES_OFFERED}
    for cx in contexts:
        owners = [s.key for s in SERVICES_OFFERED if cx.sop_class in s.sop_classes]
        if len(owners) != 1:
            raise StatementError(
                f"the AE accepts {cx.sop_class} ({uid_name(cx.sop_class)}), which the "
                "conformance statement does not describe"
            )
        grouped[owners[0]].append(cx)
    return grouped


def uid_name(uid: str) -> str:
    """A UID's name in the standard (pydicom's), else pynetdicom's keyword in words."""
    name = UID(uid).name
    if name and name != uid:
        return name
    keyword = _KEYWORDS.get(uid)
    if keyword:
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", keyword)
    return uid


def hex_code(code: int) -> str:
    return f"0x{code:04X}"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def setting_value(config: Config, name: str) -> Any:
    section, key = name.split(".", 1)
    return getattr(getattr(config, section), key)


def shown(value: Any) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f'`"{value}"`' if value == "" else f"`{value}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    return f"`{value}`"


def rejection(triple: tuple[int, int, int]) -> str:
    result = {1: "rejected-permanent", 2: "rejected-transient"}[triple[0]]
    source = {
        1: "service-user",
        2: "service-provider (ACSE)",
        3: "service-provider (presentation)",
    }
    reasons = {
        (1, 1): "no-reason-given",
        (1, 2): "application-context-name-not-supported",
        (1, 3): "calling-AE-title-not-recognized",
        (1, 7): "called-AE-title-not-recognized",
        (3, 2): "local-limit-exceeded",
    }
    reason = reasons[(triple[1], triple[2])]
    numbers = ", ".join(str(n) for n in triple)
    return f"{result} / {source[triple[1]]} / {reason} ({numbers})"


class Writer:
    """The statement's text, with numbered sections and a table of contents."""

    def __init__(self) -> None:
        self.body: list[str] = []
        self.toc: list[tuple[int, str]] = []
        self.numbers = [0, 0, 0, 0]

    def heading(self, level: int, title: str) -> None:
        """A numbered heading: level 1 is '## 1 ...', level 4 is '##### 1.2.3.4 ...'."""
        self.numbers[level - 1] += 1
        for i in range(level, len(self.numbers)):
            self.numbers[i] = 0
        number = ".".join(str(n) for n in self.numbers[:level])
        text = f"{number} {title}"
        self.toc.append((level, text))
        self.body += [f"{'#' * (level + 1)} {text}", ""]

    def para(self, *lines: str) -> None:
        self.body += [*lines, ""]

    def lines(self, lines: Iterable[str]) -> None:
        self.body += list(lines)


class Sections:
    """What every part of the statement writes with: the config, the AE's contexts by service,
    the writer, and what is on (set by statement._Statement)."""

    config: Config
    ae: AE
    contexts: dict[str, list[Context]]
    w: Writer
    syntax_lists: dict[tuple[str, ...], str]
    title: str
    plain: bool
    tls_port: bool
    tls_out: bool
    hl7: bool

    def sop_specific(self) -> None:
        """PS3.2 4.2.1.4: each service's conformance, written by services.Services."""
        raise NotImplementedError
