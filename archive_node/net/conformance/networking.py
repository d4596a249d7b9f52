"""PS3.2 sections 1 to 4: overview, introduction, networking (implementation model, AE
specification, association policies, presentation contexts), network interfaces, configuration."""

from __future__ import annotations

from pynetdicom._globals import DEFAULT_MAX_LENGTH

from ... import __version__
from ...config import SETTINGS
from ...rules.access import (
    REJECT_BUSY,
    REJECT_CALLED_AE,
    REJECT_CALLING_AE,
    REJECT_TRANSIENT,
    SERVICES,
)
from ...rules.commitment import (
    STORAGE_COMMITMENT_CLASS,
)
from ...rules.negotiation import (
    DICOM_APPLICATION_CONTEXT,
    REJECT_APPLICATION_CONTEXT,
    REJECT_NO_REASON,
)
from ...rules.retrieve_plan import CONVERTIBLE, DECOMPRESSIBLE, MAX_CONTEXTS
from ..commitment_scp import REPORT_TRANSFER_SYNTAXES
from .tables import (
    SERVICES_OFFERED,
    Context,
    Sections,
    rejection,
    setting_value,
    shown,
    table,
    uid_name,
)


class Networking(Sections):
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
        w.lines(table(("SOP classes", "User of service (SCU)", "Provider of service (SCP)"), rows))
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
            table(
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
            "and Storage Commitment reports to the requester (section 3.2.1.3). Several "
            f"processes (`node.workers`: {_workers(self.config.node.workers)}) may serve the "
            "same port(s) as one AE; everything they share lives in the index and the store.",
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
        w.lines(table(("SOP class", "UID", "SCU", "SCP"), rows))

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
            f"once (`node.max_associations`), {per_address}, and at most the number an AE "
            "was registered with (`ae add --max-associations`); each of these is counted by "
            f"each worker process apart ({_workers(node.workers)}, `node.workers`), so a "
            "peer may hold that many on each worker. More are "
            f"rejected: {rejection(REJECT_BUSY)}. Connections that have not yet sent their "
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
            table(
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
        w.lines(table(("transfer syntax", "UID"), [(uid_name(u), f"`{u}`") for u in convertible]))
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
            table(
                ("situation", "result / source / reason"),
                [
                    (
                        "called AE title is not `node.ae_title`, or not a valid AE title",
                        rejection(REJECT_CALLED_AE),
                    ),
                    (
                        "calling AE not registered, disabled, not from its registered host, "
                        "or not a valid AE title; or its TLS mode or bound certificate does "
                        "not fit how it came (section 6)",
                        rejection(REJECT_CALLING_AE),
                    ),
                    (
                        f"application context name is not `{DICOM_APPLICATION_CONTEXT}`",
                        rejection(REJECT_APPLICATION_CONTEXT),
                    ),
                    (
                        "no presentation context, or an even or repeated context ID",
                        rejection(REJECT_NO_REASON),
                    ),
                    (
                        "more associations than `node.max_associations`, "
                        "`node.max_associations_per_address` or the AE's own limit",
                        rejection(REJECT_BUSY),
                    ),
                    (
                        "the index cannot be reached (the node fails closed)",
                        rejection(REJECT_TRANSIENT),
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
            table(
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
            table(
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
                table(
                    ("preference", "transfer syntax", "UID"),
                    [(i, uid_name(ts), f"`{ts}`") for i, ts in enumerate(syntaxes, 1)],
                )
            )

    @staticmethod
    def _roles(cx: Context) -> str:
        if cx.scu_role and cx.scp_role:
            return "SCP, SCU by role selection"
        return "SCP"

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
        w.lines(table(("interface", "address:port"), rows))
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
            table(
                ("key", "value", "default", "meaning"),
                [
                    (
                        f"`{s.name}`",
                        shown(setting_value(self.config, s.name)),
                        shown(tuple(s.default) if isinstance(s.default, list) else s.default),
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


def _workers(configured: int) -> str:
    """node.workers in words: the statement describes the configuration, not one machine."""
    return "one worker per core" if configured == 0 else f"{configured} worker(s)"


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
