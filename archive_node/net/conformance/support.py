"""PS3.2 sections 5 to 7 and the annexes: media, character sets, security, the HL7 v2 interface."""

from __future__ import annotations

from pydicom.charset import python_encoding

from ...dicom.charsets import CODECS, UTF8
from ...rules import hl7_messages
from ...rules.audit import EVENT_TYPES, EVENTS
from ..tls import BCP195_CIPHERS
from .tables import Sections, table


class Support(Sections):
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
            table(
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
                table(
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
            table(
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
            table(
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
