"""The node's DICOM Conformance Statement (PS3.2), written from the AE that `serve` builds and
the node's own tables, for one configuration."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.charset import python_encoding
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom._globals import DEFAULT_MAX_LENGTH
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # set in globals() at import
    _STORAGE_CLASSES,
    Verification,
)

from .. import __version__
from ..config import SETTINGS, Config
from ..dicom import status
from ..dicom.charsets import CODECS, UTF8
from ..rules import hl7_messages
from ..rules.access import (
    REJECT_BUSY,
    REJECT_CALLED_AE,
    REJECT_CALLING_AE,
    REJECT_TRANSIENT,
    SERVICES,
)
from ..rules.audit import EVENT_TYPES, EVENTS
from ..rules.commitment import (
    EVENT_ALL_COMMITTED,
    EVENT_FAILURES_EXIST,
    FAILURE_CLASS_CONFLICT,
    FAILURE_NO_SUCH_INSTANCE,
    FAILURE_PROCESSING,
    MAX_REFERENCES,
    STORAGE_COMMITMENT_CLASS,
    STORAGE_COMMITMENT_INSTANCE,
)
from ..rules.negotiation import (
    DICOM_APPLICATION_CONTEXT,
    REJECT_APPLICATION_CONTEXT,
    REJECT_NO_REASON,
)
from ..rules.query import FIND_SOP_CLASSES, GET_SOP_CLASSES, MOVE_SOP_CLASSES
from ..rules.rejection import KOS_SOP_CLASS, REJECTION_CODES
from ..rules.retrieve_plan import CONVERTIBLE, DECOMPRESSIBLE, MAX_CONTEXTS, MAX_SUB_OPERATIONS
from ..rules.worklist import WORKLIST_FIND
from .commitment_scp import REPORT_TRANSFER_SYNTAXES
from .server import STORAGE_SOP_CLASSES, build_ae
from .tls import BCP195_CIPHERS
from .worklist_scp import MPPS_CLASS


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


def _hex(code: int) -> str:
    return f"0x{code:04X}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _setting_value(config: Config, name: str) -> Any:
    section, key = name.split(".", 1)
    return getattr(getattr(config, section), key)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f'`"{value}"`' if value == "" else f"`{value}`"
    if isinstance(value, tuple):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    return f"`{value}`"


def _reject(triple: tuple[int, int, int]) -> str:
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


class _Writer:
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


def conformance_statement(config: Config) -> str:
    """The DICOM Conformance Statement (markdown, PS3.2 structure) of a node run with `config`.
    Raises PatchError when pynetdicom is not the release the node's patches were taken from
    (as `serve` does), StatementError when the AE offers a context not described here."""
    ae = statement_ae(config)
    return _Statement(config, ae).text()


class _Statement:
    def __init__(self, config: Config, ae: AE) -> None:
        self.config = config
        self.ae = ae
        self.contexts = by_service(accepted_contexts(ae))
        self.w = _Writer()
        self.syntax_lists: dict[tuple[str, ...], str] = {}
        for service in SERVICES_OFFERED:
            for cx in self.contexts[service.key]:
                if cx.transfer_syntaxes not in self.syntax_lists:
                    number = len(self.syntax_lists) + 1
                    self.syntax_lists[cx.transfer_syntaxes] = f"TS-{number}"
        node, tls, hl7 = config.node, config.tls, config.hl7
        self.title = node.ae_title
        self.plain = node.port != 0
        self.tls_port = tls.port != 0
        self.tls_out = tls.configured  # the node can call --tls required AEs over TLS
        self.hl7 = hl7.port != 0

    # -- the whole -------------------------------------------------------------------------

    def text(self) -> str:
        self.overview()
        self.introduction()
        self.networking()
        self.media()
        self.character_sets()
        self.security()
        if self.hl7:
            self.hl7_interface()
        head = [
            f"# DICOM Conformance Statement: archive-node {__version__}",
            "",
            "Generated by `archive-node conformance` from the node's own presentation contexts "
            "and tables, for the configuration given"
            + (
                " (here: the built-in defaults)."
                if self.config.source == "built-in defaults"
                else "."
            )
            + " Regenerate it for your own configuration with "
            "`archive-node --config FILE conformance --output FILE`: a service that is off "
            "there is not listed.",
            "",
            "## Table of Contents",
            "",
        ]
        for level, text in self.w.toc:
            if level <= 4:
                anchor = re.sub(r"[^a-z0-9 -]", "", text.lower()).replace(" ", "-")
                head.append(f"{'  ' * (level - 1)}- [{text}](#{anchor})")
        lines = [*head, "", *self.w.body]
        while lines and lines[-1] == "":
            lines.pop()
        return "\n".join(lines) + "\n"

    # -- 1 Overview -------------------------------------------------------------------------

    def overview(self) -> None:
        w = self.w
        w.heading(1, "Overview")
        w.para(
            "archive-node is a regional DICOM archive: the hospitals of a health region push "
            "images and multimedia into it by C-STORE; it keeps every object byte for byte in "
            "a filesystem store, indexes it in SQLite or PostgreSQL, and answers queries and "
            "retrieves. Every peer is a registered AE of a registered hospital, allowed from "
            "its registered address and for the services it was given (`echo`, `store`, "
            "`find`, `move`, `get`, `worklist`). It implements one Application Entity, "
            f"`{self.title}` (`node.ae_title`). It takes no DICOM media.",
        )
        rows = []
        for service in SERVICES_OFFERED:
            contexts = self.contexts[service.key]
            if not contexts:
                continue
            if service.key == "storage":
                rows.append(
                    (
                        f"Storage ({len(contexts)} SOP classes, Table 3-3)",
                        "Yes (C-MOVE and C-GET sub-operations)",
                        "Yes",
                    )
                )
                continue
            names = " and ".join(uid_name(cx.sop_class) for cx in contexts)
            rows.append((names, "No", "Yes"))
        w.para("Table 1-1: Network services")
        w.lines(
            _table(("SOP classes", "User of service (SCU)", "Provider of service (SCP)"), rows)
        )
        ports = []
        if self.plain:
            ports.append(f"plain DICOM on TCP port {self.config.node.port}")
        if self.tls_port:
            ports.append(f"DICOM TLS on TCP port {self.config.tls.port}")
        w.para(
            "The node listens for "
            + " and ".join(ports)
            + (
                ". It has no plain (unencrypted) DICOM port (`node.port` is 0)."
                if not self.plain
                else "."
            )
            + (
                " DICOM TLS is not offered on a port of its own (`tls.port` is 0)."
                if not self.tls_port
                else ""
            ),
        )
        if self.hl7:
            w.para(
                f"It also takes HL7 v2 orders and patient updates over MLLP on TCP port "
                f"{self.config.hl7.port} (section 7), which feed the Modality Worklist."
            )

    # -- 2 Introduction ---------------------------------------------------------------------

    def introduction(self) -> None:
        w = self.w
        w.heading(1, "Introduction")
        w.heading(2, "Revision history")
        w.lines(
            _table(
                ("document version", "product version", "note"),
                [(__version__, f"archive-node {__version__}", "generated from the product")],
            )
        )
        w.heading(2, "Audience and remarks")
        w.para(
            "For those who connect modalities, workstations and order systems to the archive, "
            "and for those who run it. Each status and rule below is one the node's code "
            "returns or applies; the README explains the same behaviour at more length "
            "(sections Pushing, Querying, Retrieving, Storage Commitment, Correcting mistakes, "
            "Orders, DICOM TLS, Limits and Audit trail).",
        )
        w.heading(2, "Terms and references")
        w.para(
            "AE: Application Entity; SCU/SCP: Service Class User/Provider; PDU: Protocol Data "
            "Unit; IOCM: IHE Imaging Object Change Management; ATNA: IHE Audit Trail and Node "
            "Authentication. References are to the DICOM Standard: PS3.2 (conformance), PS3.4 "
            "(service classes), PS3.5 (data structures and encoding), PS3.7 (message exchange), "
            "PS3.8 (network communication), PS3.15 (security profiles), PS3.16 (content "
            "mapping).",
        )

    # -- 3 Networking -----------------------------------------------------------------------

    def networking(self) -> None:
        self.w.heading(1, "Networking")
        self.implementation_model()
        self.ae_specification()
        self.network_interfaces()
        self.configuration()

    def implementation_model(self) -> None:
        w = self.w
        w.heading(2, "Implementation model")
        w.heading(3, "Application data flow")
        w.para(
            f"The one AE, `{self.title}`, is a server application (`archive-node serve`). "
            "Remote AEs drive every activity:",
            "",
            "- a modality or workstation sends instances (C-STORE): they are checked, written "
            "to the store, fsynced and indexed before the success status is answered;",
            "- it asks the node to commit to keeping them (Storage Commitment N-ACTION): the "
            "node answers, checks each instance against its stored hash and reports "
            "(N-EVENT-REPORT) on the same association or, if that has closed, on one it opens "
            "to the AE's registered address;",
            "- a workstation queries (C-FIND) and retrieves (C-MOVE to a registered "
            "destination the node calls, or C-GET over the workstation's own association);",
            "- a modality asks for its scheduled procedure steps (Modality Worklist C-FIND) "
            "and reports the performed step (MPPS N-CREATE, N-SET);",
            "- a modality or workstation rejects instances with a rejection note (a Key Object "
            "Selection Document, IHE IOCM), stored as any instance.",
        )
        w.heading(3, "Functional definition of AEs")
        w.para(
            f"`{self.title}` accepts associations from registered AEs only (section "
            "3.2.1.4), and each request only if the AE was given that service; it opens "
            "associations only to send C-MOVE sub-operations to a registered Move Destination "
            "and Storage Commitment reports to the requester (section 3.2.1.3). With "
            f"`node.workers` > 1 ({self.config.node.workers} here) several processes serve "
            "the same port(s) as one AE; everything they share lives in the index and the "
            "store.",
        )
        w.heading(3, "Sequencing of real-world activities")
        orders = (
            "from HL7 v2 orders (section 7) or `archive-node orders add`"
            if self.hl7
            else "with `archive-node orders add` (the HL7 v2 listener is off: `hl7.port` is 0)"
        )
        w.para(
            f"Scheduled procedure steps are entered {orders}. A modality then typically: "
            "queries the Modality Worklist; starts the step (MPPS N-CREATE, IN PROGRESS); "
            "stores its instances (C-STORE); ends the step (MPPS N-SET, COMPLETED or "
            "DISCONTINUED), which takes it off the worklist; and asks for Storage Commitment. "
            "Instances are found by C-FIND as soon as their C-STORE was answered with success; "
            "an instance named by a rejection note disappears from C-FIND, C-MOVE, C-GET and "
            "Storage Commitment in the same commit that stores the note.",
        )

    # -- 3.2 AE specification ---------------------------------------------------------------

    def ae_specification(self) -> None:
        w = self.w
        w.heading(2, "AE specifications")
        w.heading(3, f"{self.title} AE")
        self.sop_classes()
        self.association_policies()
        self.initiation_policy()
        self.acceptance_policy()
        self.presentation_contexts()
        self.sop_specific()

    def sop_classes(self) -> None:
        w = self.w
        w.heading(4, "SOP classes")
        w.para(
            "Table 3-1 lists every SOP class the AE accepts a presentation context for, with "
            "its role; no other SOP class is accepted (a context proposing one is answered "
            "abstract-syntax-not-supported, also for a storage SOP class not listed: the "
            "node does not take unknown or private storage SOP classes). The storage SOP "
            "classes are listed in Table 3-3.",
        )
        rows = []
        for service in SERVICES_OFFERED:
            if service.key == "storage":
                count = len(self.contexts["storage"])
                rows.append(
                    (
                        f"{count} storage SOP classes (Table 3-3)",
                        "",
                        "Yes (C-MOVE, C-GET)",
                        "Yes",
                    )
                )
                continue
            for cx in self.contexts[service.key]:
                rows.append((uid_name(cx.sop_class), f"`{cx.sop_class}`", "No", "Yes"))
        w.para("Table 3-1: SOP classes of the AE")
        w.lines(_table(("SOP class", "UID", "SCU", "SCP"), rows))

    def association_policies(self) -> None:
        w = self.w
        node = self.config.node
        w.heading(4, "Association policies")
        w.para(
            f"**General.** The only application context is DICOM's "
            f"(`{DICOM_APPLICATION_CONTEXT}`). The AE title is `{self.title}` "
            f"(`node.ae_title`). The maximum PDU length the node receives is "
            f"{self.ae.maximum_pdu_size} bytes (`node.max_pdu`); a P-DATA-TF declaring more "
            "is answered with an A-ABORT before its body is read. An A-ASSOCIATE-RQ over "
            "256 KiB is aborted the same way.",
        )
        per_address = (
            f"at most {node.max_associations_per_address} from one peer IP address "
            "(`node.max_associations_per_address`)"
            if node.max_associations_per_address
            else "no limit per peer IP address (`node.max_associations_per_address` is 0)"
        )
        w.para(
            f"**Number of associations.** At most {node.max_associations} associations at "
            f"once (`node.max_associations`, counted per worker process; "
            f"{node.workers} worker(s), `node.workers`), {per_address}, and at most the "
            "number an AE was registered with (`ae add --max-associations`). More are "
            f"rejected: {_reject(REJECT_BUSY)}. Connections that have not yet sent their "
            f"A-ASSOCIATE-RQ take no association slot; at most "
            f"{node.max_pending_connections} of them are held "
            "(`node.max_pending_connections`), the oldest closed past that. The node opens "
            "one association per C-MOVE sub-operation batch (more than "
            f"{MAX_CONTEXTS} presentation contexts are spread over several, one after the "
            "other) and one per Storage Commitment report it cannot send on the requesting "
            "association.",
        )
        w.para(
            "**Asynchronous nature.** Not supported: a proposed Asynchronous Operations Window "
            "goes unanswered, which leaves one outstanding operation at a time (PS3.7 "
            "D.3.3.3). Each association is served by its own thread. A C-FIND, C-MOVE or "
            "C-GET may be cancelled with C-CANCEL.",
        )
        w.para(
            "**Implementation identifying information.** The node announces pynetdicom's "
            "implementation identity, as its AE is pynetdicom's:",
        )
        w.lines(
            _table(
                ("item", "value"),
                [
                    ("Implementation Class UID", f"`{self.ae.implementation_class_uid}`"),
                    (
                        "Implementation Version Name",
                        f"`{self.ae.implementation_version_name or ''}`",
                    ),
                ],
            )
        )

    def initiation_policy(self) -> None:
        w = self.w
        node = self.config.node
        w.heading(4, "Association initiation policy")
        w.para(
            f"The node initiates associations only for the two activities below, always as "
            f"`{self.title}`, to the address and port registered for the called AE (never one "
            "a request names), with TCP_NODELAY set, proposing the DICOM application context "
            f"and a maximum PDU length of {DEFAULT_MAX_LENGTH} bytes (pynetdicom's default for "
            "the associations it requests; `node.max_pdu` is for those it accepts). A TCP "
            "connection it "
            f"cannot make within {node.connect_timeout:g} s (`node.connect_timeout`) fails. "
            "An AE registered `--tls required` is called over TLS"
            + (
                " (section 6)."
                if self.tls_out
                else "; this configuration has no TLS certificate (`tls.*`), so such an AE "
                "cannot be called: its sub-operations fail and its reports wait."
            ),
        )
        convertible = sorted(CONVERTIBLE | DECOMPRESSIBLE, key=uid_name)
        w.para(
            "**C-MOVE sub-operations (Storage SCU).** To the Move Destination, a registered "
            "AE with a host and a port. The node proposes, for each SOP class to send, one "
            "presentation context per stored transfer syntax holding only that syntax, and, "
            "for a SOP class with an object stored in a syntax it can convert losslessly, one "
            "context offering Explicit VR Little Endian and Implicit VR Little Endian (the "
            "stored one left out). It sends each instance in its stored syntax when the "
            "destination accepted it, else converted into Explicit (else Implicit) VR Little "
            "Endian: re-encoded from the uncompressed and deflated syntaxes, decompressed "
            "frame by frame from the lossless and lossy compressed ones below (never "
            "compressed again; a lossy source keeps Lossy Image Compression 01). Video "
            "(MPEG-2, H.264, HEVC) and other syntaxes are never converted: such an instance "
            "fails its sub-operation when its own syntax was not accepted. Each C-STORE names "
            "the requesting AE and its Message ID as Move Originator (PS3.4 C.4.2.2). At most "
            f"{MAX_CONTEXTS} contexts go in one association; more are spread over several. "
            "Syntaxes the node converts from:",
        )
        w.lines(_table(("transfer syntax", "UID"), [(uid_name(u), f"`{u}`") for u in convertible]))
        w.para(
            "**Storage Commitment reports (N-EVENT-REPORT).** The report goes on the "
            "requesting association when it is still open; otherwise the node opens an "
            "association to the requesting AE's registered host and port, proposing Storage "
            f"Commitment Push Model (`{STORAGE_COMMITMENT_CLASS}`) in "
            f"{' and '.join(uid_name(u) for u in REPORT_TRANSFER_SYNTAXES)} (in that order) "
            "with SCP/SCU Role Selection giving the node the SCP role (PS3.4 "
            "J.3.3, PS3.7 D.3.3.4), sends the report and releases the association. An AE "
            "registered without a port gets its report only on an open association. A report "
            "not delivered is tried again after "
            f"{self.config.commitment.retry_interval:g} s (`commitment.retry_interval`), "
            "doubling per failure up to an hour, until "
            f"{self.config.commitment.give_up_after:g} hours after the request "
            "(`commitment.give_up_after`); after a restart it may arrive twice, never not at "
            "all.",
        )

    def acceptance_policy(self) -> None:
        w = self.w
        w.heading(4, "Association acceptance policy")
        w.para(
            "An association is accepted only from a registered, enabled AE (`archive-node ae "
            "add`), calling from the address registered for it (an IP address, a name "
            "resolved at each association, or an address range in CIDR notation, IPv4 or "
            f"IPv6; none registered: any address), calling `{self.title}`, over a transport "
            "its TLS mode allows (section 6). The registry is read for each association, so "
            "a change takes effect for the next one. Each request on it is then checked "
            f"against the services the AE was given ({', '.join(SERVICES)}): one outside them "
            "is answered 0x0124 (Refused: Not Authorised, with an Error Comment naming the "
            "missing right) and the association goes on. The node's own AE title, calling "
            "from the loopback (127.0.0.0/8, ::1) and not registered as an AE, is accepted "
            "for C-ECHO only (the node checking itself): any other request on that "
            "association is answered 0x0124. Rejections (PS3.8 7.1.1.9), each logged with "
            "calling AE, address and reason:",
        )
        w.lines(
            _table(
                ("situation", "result / source / reason"),
                [
                    (
                        "called AE title is not `node.ae_title`, or not a valid AE title",
                        _reject(REJECT_CALLED_AE),
                    ),
                    (
                        "calling AE not registered, disabled, not from its registered host, "
                        "or not a valid AE title; or its TLS mode or bound certificate does "
                        "not fit how it came (section 6)",
                        _reject(REJECT_CALLING_AE),
                    ),
                    (
                        f"application context name is not `{DICOM_APPLICATION_CONTEXT}`",
                        _reject(REJECT_APPLICATION_CONTEXT),
                    ),
                    (
                        "no presentation context, or an even or repeated context ID",
                        _reject(REJECT_NO_REASON),
                    ),
                    (
                        "more associations than `node.max_associations`, "
                        "`node.max_associations_per_address` or the AE's own limit",
                        _reject(REJECT_BUSY),
                    ),
                    (
                        "the index cannot be reached (the node fails closed)",
                        _reject(REJECT_TRANSIENT),
                    ),
                ],
            )
        )
        w.para(
            "A presentation context proposed without a transfer syntax is answered "
            "transfer-syntaxes-not-supported; items of unknown type in the A-ASSOCIATE-RQ are "
            "ignored (PS3.8 9.3.1). An association with no A-ASSOCIATE-RQ complete within "
            f"{self.config.node.acse_timeout:g} s of connecting (`node.acse_timeout`, the "
            "ARTIM timer) is aborted.",
        )

    def presentation_contexts(self) -> None:
        w = self.w
        w.heading(4, "Presentation contexts")
        w.para(
            "For each proposed presentation context the node accepts the first transfer "
            "syntax of its own list (Tables 3-4 and on) that the context offers, whatever "
            "order the requestor proposed them in; one context carries one syntax. The "
            "storage list puts the native syntaxes first, then the lossless compressed ones, "
            "then the others (lossy, video) in pynetdicom's order, so that no sender is asked "
            "to compress lossily for the node; what arrives is "
            "kept byte for byte in the syntax it came in. The exception is a storage SOP "
            "class for which a C-GET SCU proposes the SCP role alone (it only receives): "
            "there the node accepts, over all of that class's contexts together, the stored "
            "syntax wherever a context offers it and one every image can be converted into, "
            "which may not be the first of the list. Transfer syntaxes not listed are not "
            "accepted for any SOP class: not the JPIP Referenced syntaxes (the pixel data is "
            "only a URL to another server) nor the SMPTE ST 2110 streams.",
        )
        w.para("Table 3-2: Accepted presentation contexts other than storage")
        rows = []
        for service in SERVICES_OFFERED:
            if service.key == "storage":
                continue
            extended = (
                "SOP Class Extended Negotiation: relational queries and combined date-time "
                "matching accepted, the other fields declined"
                if service.key == "find"
                else "none"
            )
            for cx in self.contexts[service.key]:
                rows.append(
                    (
                        uid_name(cx.sop_class),
                        f"`{cx.sop_class}`",
                        self._roles(cx),
                        self.syntax_lists[cx.transfer_syntaxes],
                        extended,
                    )
                )
        w.lines(
            _table(
                ("abstract syntax", "UID", "role", "transfer syntaxes", "extended negotiation"),
                rows,
            )
        )
        storage = sorted(
            self.contexts["storage"], key=lambda cx: (uid_name(cx.sop_class), cx.sop_class)
        )
        w.para(
            "Table 3-3: Accepted storage SOP classes. Role SCP; the SCU role too, by SCP/SCU "
            "Role Selection (PS3.7 D.3.3.4), for a C-GET SCU that proposes the SCP role for "
            "itself. No extended negotiation.",
        )
        w.lines(
            _table(
                ("abstract syntax", "UID", "role", "transfer syntaxes"),
                [
                    (
                        uid_name(cx.sop_class),
                        f"`{cx.sop_class}`",
                        self._roles(cx),
                        self.syntax_lists[cx.transfer_syntaxes],
                    )
                    for cx in storage
                ],
            )
        )
        for number, (syntaxes, name) in enumerate(self.syntax_lists.items(), 4):
            w.para(
                f"Table 3-{number}: Transfer syntax list {name}, in the node's order of preference"
            )
            w.lines(
                _table(
                    ("preference", "transfer syntax", "UID"),
                    [(i, uid_name(ts), f"`{ts}`") for i, ts in enumerate(syntaxes, 1)],
                )
            )

    @staticmethod
    def _roles(cx: Context) -> str:
        if cx.scu_role and cx.scp_role:
            return "SCP, SCU by role selection"
        return "SCP"

    # -- SOP specific conformance -----------------------------------------------------------

    def sop_specific(self) -> None:
        w = self.w
        config = self.config
        w.heading(4, "SOP specific conformance")
        w.para(
            "Every failure status carries an Error Comment (and, where one attribute is at "
            "fault, its tag as Offending Element) that never repeats the value at fault; the "
            "association goes on after every status below. Any request whose Affected or "
            "Requested SOP Class UID is not the abstract syntax of the presentation context "
            f"it came on is answered {_hex(status.DATASET_MISMATCH)} (C-STORE) or "
            "0x0122 (SOP Class Not Supported, the others). A C-FIND, C-MOVE or C-GET "
            f"identifier, or an N-ACTION, N-CREATE or N-SET dataset, over "
            f"{config.query.max_identifier_bytes} bytes (`query.max_identifier_bytes`) is "
            f"read, dropped and answered {_hex(status.OUT_OF_RESOURCES)} (C-FIND), "
            f"{_hex(status.TOO_MANY_MATCHES)} (C-MOVE, C-GET) or "
            f"{_hex(status.RESOURCE_LIMITATION)} (N-ACTION, N-CREATE, N-SET).",
        )
        self._verification()
        self._storage()
        self._find()
        self._retrieve()
        self._commitment()
        self._worklist()
        self._mpps()

    def _statuses(self, rows: Sequence[tuple[int, str]]) -> None:
        self.w.lines(_table(("status", "meaning"), [(_hex(code), text) for code, text in rows]))

    def _verification(self) -> None:
        self.w.para("**Verification (C-ECHO SCP).**")
        self._statuses(
            [
                (status.SUCCESS, "success"),
                (status.NOT_AUTHORISED, "the AE lacks `echo`"),
            ]
        )

    def _storage(self) -> None:
        w = self.w
        storage = self.config.storage
        duplicate = (
            "refused"
            if storage.on_duplicate == "keep"
            else "stored in place of the kept copy when it comes from the same hospital, "
            "study, series and SOP class, and refused otherwise"
        )
        w.para(
            "**Storage (C-STORE SCP), PS3.4 Annex B.** Level 2 (Full) storage: the dataset "
            "of every instance is kept byte for byte as received, in the syntax it came in, "
            "no element coerced or removed; its File Meta Information records besides the "
            "sending AE its hospital and issuer. Before the status is "
            "answered the whole encoding is checked in one streaming pass (PS3.5 7.1, 7.5, "
            "A.4, A.5), the file and its directory are fsynced and the index rows committed. "
            "Digital signatures are not checked. The instances of a study "
            "stay online for good, except those rejected (below) or deleted by an "
            "administrator. An instance without IssuerOfPatientID is recorded under the "
            "issuer of the sending AE's hospital, unless it joins a study whose patient has "
            "its PatientID. A SOP Instance UID received again with the same dataset is a "
            f"success that stores nothing; with different content it is {duplicate} "
            f"(`storage.on_duplicate` = `{storage.on_duplicate}`).",
        )
        self._statuses(
            [
                (status.SUCCESS, "stored; or a duplicate as above"),
                (status.NOT_AUTHORISED, "the AE lacks `store`"),
                (
                    status.OUT_OF_RESOURCES,
                    f"free space below `storage.min_free_mb` ({storage.min_free_mb} MiB), the "
                    "disk filled while receiving, or the audit record could not be written; "
                    "nothing kept",
                ),
                (
                    status.INDEX_UNAVAILABLE,
                    "the index could not take the row; nothing kept, send again",
                ),
                (
                    status.DATASET_MISMATCH,
                    "the dataset's SOP Class UID differs from the request's, or the request's "
                    "is not its presentation context's",
                ),
                (
                    status.UID_MISMATCH,
                    "the dataset's SOP Instance UID differs from the request's",
                ),
                (status.MISSING_UID, "Study, Series or SOP Instance UID missing"),
                (
                    status.MALFORMED_UID,
                    "a UID that is not digits and dots or is longer than 64 characters",
                ),
                (
                    status.PROCESSING_FAILURE,
                    "an unexpected internal error; nothing kept",
                ),
                (
                    status.CANNOT_UNDERSTAND,
                    "the dataset's encoding is malformed (the Error Comment names the "
                    "problem and its byte offset) or its header cannot be parsed",
                ),
                (
                    status.UID_CONFLICT,
                    "the Study Instance UID is recorded for another patient, or the Series "
                    "Instance UID for another study",
                ),
                (
                    status.SOP_INSTANCE_CONFLICT,
                    "the SOP Instance UID already holds a different object, which is kept",
                ),
                (
                    status.REJECTED_INSTANCE,
                    "a resend of an instance rejected by a rejection note (IHE IOCM)",
                ),
                (
                    status.REJECTION_FAILED,
                    "a rejection note references instances not stored or not visible to the "
                    "AE: neither the note nor any rejection is kept",
                ),
            ]
        )
        codes = sorted(REJECTION_CODES.items())
        w.para(
            "**Rejection notes (IHE IOCM).** A Key Object Selection Document "
            f"(`{KOS_SOP_CLASS}`) whose Concept Name is one of the rejection titles of PS3.16 "
            "CID 7010 (DCM) rejects the instances its Current Requested Procedure Evidence "
            "Sequence lists, in the commit that stores it. Rejected instances disappear from "
            "C-FIND, C-MOVE, C-GET and Storage Commitment, and a resend of one is refused "
            f"({_hex(status.REJECTED_INSTANCE)}). A KOS that is not a valid rejection note is "
            "stored as an ordinary KOS and rejects nothing.",
        )
        lifecycle = self.config.lifecycle.delete_rejected_after
        w.lines(
            _table(
                ("code", "meaning", "afterwards"),
                [
                    (
                        code,
                        meaning,
                        f"deleted after {lifecycle} day(s) (`lifecycle.delete_rejected_after`)"
                        if code in ("113038", "113039")
                        else "hidden until an administrator restores or deletes them",
                    )
                    for code, meaning in codes
                ],
            )
        )

    def _find(self) -> None:
        query = self.config.query
        self.w.para(
            "**Query/Retrieve - FIND (C-FIND SCP), PS3.4 Annex C.** Patient Root "
            "(PATIENT, STUDY, SERIES, IMAGE levels) and Study Root (STUDY, SERIES, IMAGE). "
            "Hierarchical and relational queries are both answered; matching follows PS3.4 "
            "C.2.2.2 (single value, universal, wildcard on text VRs, ranges on DA and TM, "
            "lists of UIDs; person names case-insensitive, by component group). One answer "
            "per matching entity at the query's level, with every requested key (empty when "
            "unknown) plus QueryRetrieveLevel, RetrieveAETitle "
            f"(`{self.title}`) and InstanceAvailability (ONLINE). An AE registered with "
            "`--scope hospital` finds only what its own hospital's AEs sent.",
        )
        self._statuses(
            [
                (status.PENDING, "one per match"),
                (status.SUCCESS, "all matches sent"),
                (status.CANCELLED, "the SCU sent C-CANCEL"),
                (status.NOT_AUTHORISED, "the AE lacks `find`"),
                (
                    status.OUT_OF_RESOURCES,
                    f"more than `query.max_results` ({query.max_results}) matches: that many "
                    "were sent, then this; or the identifier is too large",
                ),
                (
                    status.IDENTIFIER_MISMATCH,
                    "no or unknown QueryRetrieveLevel, or a level the model lacks",
                ),
                (
                    status.UNABLE_TO_PROCESS,
                    "a malformed value, or an identifier that cannot be decoded",
                ),
                (
                    status.QUERY_FAILED,
                    "the index could not answer, or the audit record could not be written",
                ),
            ]
        )

    def _retrieve(self) -> None:
        self.w.para(
            "**Query/Retrieve - MOVE and GET (C-MOVE and C-GET SCP), PS3.4 C.4.2, C.4.3.** "
            "Patient Root and Study Root, at every level of the model; hierarchical retrieval "
            "only, by unique keys. A C-MOVE sends to a registered Move Destination "
            "(section 3.2.1.3); a C-GET sends over the requesting association, in the storage "
            "contexts it proposed with the SCP role for itself. Instances go as stored, or "
            "converted losslessly as in section 3.2.1.3. A pending response follows each "
            "sub-operation but the last; C-CANCEL is honoured between sub-operations. At most "
            f"{MAX_SUB_OPERATIONS} sub-operations per request.",
        )
        self._statuses(
            [
                (status.PENDING, "after each sub-operation, with the counts"),
                (
                    status.SUCCESS,
                    "every sub-operation succeeded (also: nothing matched, zero sub-operations)",
                ),
                (
                    status.SUB_OPERATIONS_WARNING,
                    "some sub-operations failed or warned; the failed instances are listed",
                ),
                (
                    status.SUB_OPERATIONS_FAILED,
                    "every sub-operation failed (the destination accepted no context, could "
                    "not be reached, or refused each instance)",
                ),
                (status.CANCELLED, "the SCU sent C-CANCEL"),
                (
                    status.MOVE_DESTINATION_UNKNOWN,
                    "C-MOVE only: the Move Destination is not a registered, enabled AE with "
                    "a host and port the AE may send to, or is no AE title",
                ),
                (status.NOT_AUTHORISED, "the AE lacks `move` or `get`"),
                (
                    status.TOO_MANY_MATCHES,
                    f"more than {MAX_SUB_OPERATIONS} instances, or the identifier is too large",
                ),
                (
                    status.IDENTIFIER_MISMATCH,
                    "no or unknown QueryRetrieveLevel, a level the model lacks, a missing, "
                    "universal or wildcard unique key",
                ),
                (
                    status.UNABLE_TO_PROCESS,
                    "a malformed UID, a PatientID of several issuers without "
                    "IssuerOfPatientID, an identifier that cannot be decoded",
                ),
                (
                    status.QUERY_FAILED,
                    "the index could not answer, or the audit record could not be written",
                ),
            ]
        )

    def _commitment(self) -> None:
        commitment = self.config.commitment
        self.w.para(
            "**Storage Commitment Push Model (SCP), PS3.4 Annex J.** For AEs with `store`. "
            "The N-ACTION (Action Type 1, on the well-known SOP Instance "
            f"`{STORAGE_COMMITMENT_INSTANCE}`) is recorded durably and answered at once. An "
            "instance is committed when it is in the index (for an AE of scope `hospital` or "
            "without `find`: sent by its hospital), is what the AE was acknowledged under that "
            "UID, under the SOP Class named, and its file is on disk with the SHA-256 "
            "recorded at receipt; the file is then fsynced. At most "
            f"{commitment.max_verify_bytes} bytes of files are re-read per request "
            f"(`commitment.max_verify_bytes`); references past it fail with "
            f"{_hex(FAILURE_PROCESSING)}. At most {MAX_REFERENCES} references per request. "
            "The commitment lasts: the instances stay stored (unless rejected or deleted as "
            "in the storage section).",
        )
        self.w.para("N-ACTION statuses:")
        self._statuses(
            [
                (status.SUCCESS, "request recorded; the report follows"),
                (status.NOT_AUTHORISED, "the AE lacks `store`"),
                (status.NO_SUCH_ACTION, "an Action Type ID other than 1"),
                (
                    status.NO_SUCH_SOP_INSTANCE,
                    f"a Requested SOP Instance other than `{STORAGE_COMMITMENT_INSTANCE}`",
                ),
                (
                    status.INVALID_ARGUMENT_VALUE,
                    "no valid Transaction UID; a Referenced SOP Sequence missing, empty or "
                    "with an item without both UIDs; Action Information that cannot be decoded",
                ),
                (
                    status.RESOURCE_LIMITATION,
                    f"more than {MAX_REFERENCES} references, or a request over "
                    "`query.max_identifier_bytes`",
                ),
                (status.PROCESSING_FAILURE, "the index is unavailable"),
            ]
        )
        self.w.para(
            f"The N-EVENT-REPORT has Event Type ID {EVENT_ALL_COMMITTED} when every instance "
            f"is committed and {EVENT_FAILURES_EXIST} with a Failed SOP Sequence otherwise; "
            f"it carries the Transaction UID and `{self.title}` as Retrieve AE Title. Failure "
            "Reasons:",
        )
        self._statuses(
            [
                (
                    FAILURE_NO_SUCH_INSTANCE,
                    "no such object instance: not held, not visible to the AE, or its file "
                    "has gone missing",
                ),
                (FAILURE_CLASS_CONFLICT, "class/instance conflict: held under another SOP Class"),
                (
                    FAILURE_PROCESSING,
                    "processing failure: the file no longer matches its hash or cannot be "
                    "read, or past `commitment.max_verify_bytes`",
                ),
            ]
        )
        self.w.para(
            "A report the requester answers with a failure status is sent again on a new "
            "association (section 3.2.1.3). An N-EVENT-REPORT sent to the node is answered "
            f"{_hex(status.UNRECOGNIZED_OPERATION)}: it sends reports and takes none.",
        )

    def _worklist(self) -> None:
        self.w.para(
            "**Modality Worklist (C-FIND SCP), PS3.4 Annex K.** For AEs with `worklist`, "
            "which see the open (scheduled or started) steps of their own hospital only. "
            "Matching keys: ScheduledStationAETitle, ScheduledProcedureStepStartDate and "
            "StartTime (value, range), Modality, ScheduledProcedureStepID, PatientName, "
            "PatientID with IssuerOfPatientID, PatientBirthDate, PatientSex, AccessionNumber, "
            "RequestedProcedureID, StudyInstanceUID; a value in "
            "ScheduledPerformingPhysicianName matches no step. Answers carry every key asked "
            "for.",
        )
        self._statuses(
            [
                (status.PENDING, "one per matching step"),
                (status.SUCCESS, "all matches sent"),
                (status.CANCELLED, "the SCU sent C-CANCEL"),
                (status.NOT_AUTHORISED, "the AE lacks `worklist`"),
                (
                    status.OUT_OF_RESOURCES,
                    f"more than `query.max_results` ({self.config.query.max_results}) "
                    "matches: that many were sent, then this; or the identifier is too large",
                ),
                (
                    status.IDENTIFIER_MISMATCH,
                    "a Scheduled Procedure Step Sequence with more than one item",
                ),
                (
                    status.UNABLE_TO_PROCESS,
                    "a malformed value, or an identifier that cannot be decoded",
                ),
                (
                    status.QUERY_FAILED,
                    "the index could not answer, or the audit record could not be written",
                ),
            ]
        )

    def _mpps(self) -> None:
        self.w.para(
            "**Modality Performed Procedure Step (N-CREATE and N-SET SCP), PS3.4 F.7.** For "
            "AEs with `store`. A step is created IN PROGRESS and linked to the scheduled step "
            "its Scheduled Step Attributes Sequence names (in the AE's hospital), which then "
            "shows as started; N-SET to COMPLETED or DISCONTINUED ends the scheduled step, "
            "which leaves the worklist, and makes the performed step final.",
        )
        self.w.para("N-CREATE statuses:")
        self._statuses(
            [
                (status.SUCCESS, "created"),
                (status.NOT_AUTHORISED, "the AE lacks `store`"),
                (
                    status.INVALID_ATTRIBUTE_VALUE,
                    "a status other than IN PROGRESS, a SOP Instance or Study Instance UID "
                    "that is no UID, or a dataset that cannot be decoded",
                ),
                (status.MISSING_ATTRIBUTE, "a Type 1 attribute of PS3.4 Table F.7.2-1 missing"),
                (status.DUPLICATE_SOP_INSTANCE, "the SOP Instance UID exists"),
                (status.NO_SUCH_SOP_CLASS, "an N-CREATE of another SOP class"),
                (
                    status.RESOURCE_LIMITATION,
                    "the step's attributes are too large, or the request is over "
                    "`query.max_identifier_bytes`",
                ),
                (status.PROCESSING_FAILURE, "the index is unavailable"),
            ]
        )
        self.w.para("N-SET statuses:")
        self._statuses(
            [
                (status.SUCCESS, "updated"),
                (status.NOT_AUTHORISED, "the AE lacks `store`"),
                (
                    status.INVALID_ATTRIBUTE_VALUE,
                    "an unknown Performed Procedure Step Status, or a dataset that cannot be "
                    "decoded",
                ),
                (status.NO_SUCH_SOP_INSTANCE, "no such step of the AE's hospital"),
                (
                    status.PROCESSING_FAILURE,
                    "the step is final (Error ID A710, PS3.4 F.7.2.2.4); COMPLETED or "
                    "DISCONTINUED without the end date and time; the index is unavailable",
                ),
                (
                    status.RESOURCE_LIMITATION,
                    "the step's attributes are too large, or the request is over "
                    "`query.max_identifier_bytes`",
                ),
            ]
        )

    # -- 3.3, 3.4 ---------------------------------------------------------------------------

    def network_interfaces(self) -> None:
        w = self.w
        node, tls = self.config.node, self.config.tls
        w.heading(2, "Network interfaces")
        rows = []
        if self.plain:
            rows.append(("DICOM (unencrypted), PS3.8 TCP/IP", f"{node.bind}:{node.port}"))
        if self.tls_port:
            rows.append(("DICOM over TLS, PS3.15 B.9 (section 6)", f"{node.bind}:{tls.port}"))
        if self.hl7:
            rows.append(
                ("HL7 v2 over MLLP (section 7)", f"{self.config.hl7.bind}:{self.config.hl7.port}")
            )
        w.para(
            "TCP/IP (PS3.8), on the address `node.bind` (all of the host's IPv4 addresses for "
            "0.0.0.0), over whatever physical network the host has. The node listens on:",
        )
        w.lines(_table(("interface", "address:port"), rows))
        if not self.plain:
            w.para("No plain (unencrypted) DICOM port: `node.port` is 0.")
        if not self.tls_port:
            w.para("DICOM TLS is not offered on a port of its own: `tls.port` is 0.")

    def configuration(self) -> None:
        w = self.w
        w.heading(2, "Configuration")
        w.para(
            "The node's TOML configuration (`--config FILE` or `ARCHIVE_NODE_CONFIG`); the "
            "registry of hospitals and AEs (titles, addresses, ports, services, scope, TLS "
            "mode and certificates) is administered with `archive-node hospital` and "
            "`archive-node ae`. The keys that shape what peers see, with the values this "
            "statement was generated for:",
        )
        w.lines(
            _table(
                ("key", "value", "default", "meaning"),
                [
                    (
                        f"`{s.name}`",
                        _shown(_setting_value(self.config, s.name)),
                        _shown(tuple(s.default) if isinstance(s.default, list) else s.default),
                        s.help.replace("|", "/"),
                    )
                    for s in SETTINGS
                    if self._shows(s.name)
                ],
            )
        )

    def _shows(self, name: str) -> bool:
        section, key = name.split(".", 1)
        if name in _CONFIG_KEYS:
            return True
        if section == "tls" and key in ("require_client_certificate", "handshake_timeout"):
            return self.tls_port
        if section == "hl7":
            return self.hl7 and key != "bind"
        return False

    # -- 4, 5, 6, 7 -------------------------------------------------------------------------

    def media(self) -> None:
        self.w.heading(1, "Media interchange")
        self.w.para(
            "Not supported: the node reads and writes no DICOM media (PS3.10 File-sets). "
            "(`archive-node import` wraps photos, videos and PDFs from files into DICOM "
            "instances; it is not a media application profile.)",
        )

    def character_sets(self) -> None:
        w = self.w
        w.heading(1, "Support of character sets")
        w.para(
            "**Storage.** Instances are kept byte for byte whatever their Specific Character "
            "Set; the values the index holds (patient names, descriptions) are decoded with "
            "pydicom by the instance's Specific Character Set (PS3.5 6.1).",
        )
        w.para(
            "**Queries.** C-FIND and Modality Worklist identifiers are decoded by their "
            "Specific Character Set with pydicom, which decodes these values of it:",
            "",
            ", ".join(f"`{term}`" for term in sorted(python_encoding) if term),
        )
        w.para(
            "Answers are given in the query's own character set when it is one of the "
            "following and can carry every value of the answer; otherwise in UTF-8 "
            f"(`{UTF8}`); with no Specific Character Set when every value is ASCII and the "
            "query named none. A query in a character set with ISO 2022 code extensions is "
            "answered in UTF-8 when an answer is not ASCII. `ISO_IR 6` is ASCII.",
        )
        w.lines(
            _table(
                ("Specific Character Set", "answered in it"), [(f"`{t}`", "yes") for t in CODECS]
            )
        )
        w.para(
            "Person names match case-insensitively and accent-sensitively, by component "
            "group (alphabetic, ideographic, phonetic).",
        )

    def security(self) -> None:
        w = self.w
        config = self.config
        w.heading(1, "Security")
        w.heading(2, "Access control")
        w.para(
            "Access is by the registry: calling AE title, registered address and the services "
            "the AE was given, checked when the association opens and on each request "
            "(section 3.2.1.4). Error comments sent to peers never name another patient, "
            "another hospital's AE titles or codes. A User Identity sub-item (PS3.7 D.3.3.7) "
            "is not authenticated; its username (never a passcode) is recorded in the audit "
            "trail.",
        )
        w.heading(2, "DICOM TLS")
        if self.tls_port:
            w.para(
                f"The TLS port {config.tls.port} (`tls.port`) implements the BCP 195 TLS "
                "Secure Transport Connection Profile (PS3.15 B.9): TLS 1.2 or 1.3 only; for "
                "TLS 1.2 the suites below (TLS 1.3 uses OpenSSL's defaults, all AEAD); no "
                "compression, no renegotiation. The node presents `tls.certificate` and asks "
                "for a client certificate, which must chain to `tls.ca_certificates`; a "
                "certificate bound to an AE (`ae add --certificate`) opens that AE title and "
                "no other, and an AE with a bound certificate is rejected without it. "
                + (
                    "A TLS association without a client certificate is rejected "
                    "(`tls.require_client_certificate` = true)."
                    if config.tls.require_client_certificate
                    else "A TLS association without a client certificate is accepted for AEs "
                    "with no bound certificate (`tls.require_client_certificate` = false)."
                )
                + f" The handshake must end within {config.tls.handshake_timeout:g} s "
                "(`tls.handshake_timeout`). An AE's TLS mode: `required` (TLS only, both "
                "ways), `optional` (either; called over plain DICOM), `off` (plain DICOM "
                "only). Cipher suites for TLS 1.2:",
            )
            w.lines(
                _table(
                    ("cipher suite (OpenSSL name)", "note"),
                    [
                        (
                            f"`{c}`",
                            "not negotiated: the node loads no DH parameters"
                            if c.startswith("DHE-")
                            else "",
                        )
                        for c in BCP195_CIPHERS.split(":")
                    ],
                )
            )
        else:
            outgoing = (
                "The node has a TLS certificate (`tls.*`) and calls AEs registered "
                "`--tls required` over TLS 1.2 or 1.3 (BCP 195, PS3.15 B.9) as C-MOVE "
                "destinations and for Storage Commitment reports, checking their certificates "
                "against `tls.ca_certificates`."
                if self.tls_out
                else "No TLS certificate is configured either (`tls.certificate`, "
                "`tls.private_key`, `tls.ca_certificates`): the node neither accepts nor "
                "opens TLS connections."
            )
            w.para(f"DICOM TLS is not offered on a port of its own: `tls.port` is 0. {outgoing}")
        w.heading(2, "Audit trail")
        if not config.audit.enabled:
            w.para(
                "The audit trail is off (`audit.enabled` = false): nothing is accounted for. "
                "This setting is meant for benchmarks only.",
            )
            return
        w.para(
            "Every access to patient data is recorded in the index before it takes effect, "
            "one record per event of PS3.15 A.5.3, with its time (UTC), outcome, node, "
            "calling AE, hospital, peer address, asserted user, and the patients and studies "
            "it touched; fail closed: a request whose record cannot be written fails "
            "(section 3.2.1.6). Records form a SHA-256 hash chain per node "
            "(`archive-node audit verify`). Events recorded (EventID, DCM):",
        )
        w.lines(
            _table(
                ("event", "EventID"),
                [(kind.name, kind.code) for kind in EVENTS.values()],
            )
        )
        w.para(
            "Event type codes used (DCM): "
            + ", ".join(f"{name} ({code})" for code, name in EVENT_TYPES.items())
            + ". Security Alerts for rejected associations and refused requests are kept at "
            f"most {config.audit.max_alerts_per_minute} per peer address and minute "
            "(`audit.max_alerts_per_minute`), the rest counted into the next one.",
        )
        repository = config.audit.repository
        if repository:
            transport = repository.split("://", 1)[0]
            framing = {
                "tls": "over TLS (RFC 5425)",
                "tcp": "over TCP, octet-counted",
                "udp": "over UDP, one datagram per message",
            }[transport]
            w.para(
                "IHE ATNA: each record is also sent to the Audit Record Repository "
                "(`audit.repository`) as a DICOM audit message (PS3.15 A.5.1 XML) in an "
                f"RFC 5424 syslog message {framing}, in order and at least once.",
            )
        else:
            w.para(
                "IHE ATNA export: no Audit Record Repository is configured "
                "(`audit.repository` is empty); the trail stays in the index.",
            )

    def hl7_interface(self) -> None:
        w = self.w
        hl7 = self.config.hl7
        w.heading(1, "HL7 v2 interface")
        w.para(
            f"Not DICOM, for vendors who ask. An MLLP listener on TCP port {hl7.port} "
            "(`hl7.port`) takes messages from registered senders (`archive-node hl7 "
            "add-sender`, by MSH-4 and address) and answers each in HL7 original mode: AA "
            "once it is applied and committed, AE for a missing or malformed field (ERR names "
            "it), AR for a sender not registered, a message type, event, processing ID or "
            "character set not taken, or a message over "
            f"{hl7.max_message_bytes} bytes (`hl7.max_message_bytes`). A message control ID "
            f"seen within {hl7.remember_days} day(s) is acknowledged and not applied again. "
            "Messages taken:",
        )
        orders = ", ".join(f"{kind}^{event}" for kind, event in sorted(hl7_messages.ORDER_TYPES))
        updates = ", ".join(f"ADT^{e}" for e in sorted(hl7_messages.UPDATE_EVENTS))
        controls = ", ".join(sorted(hl7_messages.ORDER_CONTROLS))
        w.lines(
            _table(
                ("message", "what it does"),
                [
                    (
                        orders,
                        "schedules, changes, cancels or discontinues the order's procedure "
                        f"steps (ORC-1 {controls}), which the Modality Worklist offers",
                    ),
                    (updates, "updates the patient's name, birth date and sex"),
                    (
                        f"ADT^{hl7_messages.MERGE_EVENT}",
                        "merges the patient of MRG-1 into PID-3's",
                    ),
                ],
            )
        )
        w.para(
            "Character sets (MSH-18, HL7 table 0211): "
            + ", ".join(f"`{c}`" for c in hl7_messages.CHARSETS if c)
            + " or none (ASCII). Only production messages (MSH-11 `P`) are taken.",
        )


# The configuration keys every statement shows (others depend on the services that are on).
_CONFIG_KEYS = frozenset(
    {
        "node.ae_title",
        "node.bind",
        "node.port",
        "node.max_associations",
        "node.max_associations_per_address",
        "node.max_pending_connections",
        "node.max_pdu",
        "node.acse_timeout",
        "node.connect_timeout",
        "node.dimse_timeout",
        "node.network_timeout",
        "node.workers",
        "storage.min_free_mb",
        "storage.on_duplicate",
        "query.max_results",
        "query.max_identifier_bytes",
        "tls.port",
        "commitment.retry_interval",
        "commitment.give_up_after",
        "commitment.max_verify_bytes",
        "audit.enabled",
        "audit.max_alerts_per_minute",
        "lifecycle.delete_rejected_after",
    }
)
