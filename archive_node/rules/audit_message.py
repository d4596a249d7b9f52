"""One audit record as the DICOM audit message of PS3.15 A.5.1 (the XML an Audit Record
Repository receives), with the participants and objects of PS3.15 A.5.3 (pure)."""

from __future__ import annotations

import base64
import ipaddress
import re
import xml.etree.ElementTree as ET
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from .audit import (
    APPLICATION_ACTIVITY,
    DATA_IMPORT,
    EVENT_TYPES,
    INSTANCES_TRANSFERRED,
    QUERY,
    AuditRecord,
    Touched,
)

# ActiveParticipant RoleIDCode, PS3.16 CID 402 (DCM)
APPLICATION = ("110150", "Application")
APPLICATION_LAUNCHER = ("110151", "Application Launcher")
DESTINATION = ("110152", "Destination Role ID")
SOURCE = ("110153", "Source Role ID")

# ParticipantObjectIDTypeCode: PS3.15 A.5.1.2.4 (RFC-3881) and PS3.16 CID 404 (DCM)
PATIENT_NUMBER = ("2", "RFC-3881", "Patient Number")
STUDY_INSTANCE_UID = ("110180", "DCM", "Study Instance UID")
SOP_CLASS_UID = ("110181", "DCM", "SOP Class UID")

# ParticipantObjectTypeCode and ParticipantObjectTypeCodeRole, PS3.15 A.5.1.1 and A.5.2.6
PERSON, SYSTEM_OBJECT = "1", "2"
ROLE_PATIENT, ROLE_REPORT = "1", "3"

# NetworkAccessPointTypeCode, PS3.15 A.5.1.1
MACHINE_NAME, IP_ADDRESS = "1", "2"

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

# What XML 1.0 cannot carry, even as a character reference (2.2 Characters): C0 controls but
# tab, newline and carriage return, surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# HL7 v2 delimiters in a CX component, with their escape sequences (HL7 v2.5 2.7.4)
_HL7_ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}


def audit_message(
    record: AuditRecord,
    *,
    source_id: str,
    node_address: str,
    node_ae_title: str,
    process_id: str = "",
) -> bytes:
    """The PS3.15 A.5.1 audit message of `record`, UTF-8 XML with its declaration.

    The node is one ActiveParticipant (UserID its AE title, else `source_id`; AlternativeUserID
    `process_id` when given), the peer another (its AE title, or the operating system user of a
    local command), and a retrieve's destination a third; each patient and study the record
    touched is a ParticipantObject, and so is a query's SOP Class with its identifier. No
    patient name is written: the record holds none. A query identifier that is not DICOM JSON
    is left out (the trail keeps it); nothing of a record makes this raise."""
    details = record.details
    root = ET.Element("AuditMessage")
    _event(root, record)
    _participants(
        root,
        record,
        node_id=node_ae_title or source_id,
        node_address=node_address,
        process_id=process_id,
    )
    ET.SubElement(root, "AuditSourceIdentification", AuditSourceID=_xml(source_id))
    for patient in _patients(record.touched):
        _patient(root, patient)
    for touched in record.touched:
        if touched.study_uid:
            _study(root, touched)
    if record.event_code == QUERY.code and details.get("sop_class"):
        _query(root, str(details["sop_class"]), details.get("query"))
    text = ET.tostring(root, encoding="unicode", short_empty_elements=True)
    return b'<?xml version="1.0" encoding="UTF-8"?>' + text.encode("utf-8")


# -- EventIdentification ------------------------------------------------------------------------


def _event(root: ET.Element, record: AuditRecord) -> None:
    attributes = {"EventDateTime": record.time, "EventOutcomeIndicator": str(record.outcome)}
    if record.action:
        attributes["EventActionCode"] = record.action
    event = ET.SubElement(root, "EventIdentification", attributes)
    _code(event, "EventID", record.event_code, "DCM", record.event)
    if record.event_type:
        meaning = EVENT_TYPES.get(record.event_type, record.event_type)
        _code(event, "EventTypeCode", record.event_type, "DCM", meaning)
    if record.status:
        ET.SubElement(event, "EventOutcomeDescription").text = _xml(record.status)


# -- ActiveParticipant --------------------------------------------------------------------------


def _participants(
    root: ET.Element, record: AuditRecord, *, node_id: str, node_address: str, process_id: str
) -> None:
    """The node, the peer that asked (an AE, or a local command's user) and a retrieve's
    destination, each with the role PS3.15 A.5.3 gives it in the event."""
    application = record.event_code == APPLICATION_ACTIVITY.code
    # A.5.3.1: the node started or stopped; the record's AE title is the node's own, and the
    # one who launched it is the operating system user.
    peer_ae = "" if application else record.ae_title
    peer_id = peer_ae or record.user
    destination = record.destination
    node_role = peer_role = destination_role = None
    if record.event_code in (INSTANCES_TRANSFERRED.code, DATA_IMPORT.code):
        if record.action == "C":  # A.5.3.5, A.5.3.8: the peer sent, the node received
            peer_role, node_role = SOURCE, DESTINATION
        elif record.action == "R":  # the node sent to the destination the peer named
            node_role = SOURCE
            if destination and destination == record.ae_title:  # C-GET: the peer receives
                peer_role, destination = DESTINATION, ""
            elif destination:
                destination_role = DESTINATION
    elif record.event_code == QUERY.code:  # A.5.3.13: the peer queries, the node answers
        peer_role, node_role = SOURCE, DESTINATION
    elif application:
        node_role, peer_role = APPLICATION, APPLICATION_LAUNCHER

    node = _participant(
        root,
        user_id=node_id,
        requestor=not peer_id,
        address=node_address,
        role=node_role,
    )
    node_ae = record.ae_title  # an Application Activity record carries the node's own
    if application and node_ae:  # A.5.3.1: the AE titles of a process that supports DICOM
        node.set("AlternativeUserID", _xml(f"AETITLES={node_ae}"))
    elif process_id:
        node.set("AlternativeUserID", _xml(process_id))
    if peer_id:
        peer = _participant(
            root, user_id=peer_id, requestor=True, address=record.address, role=peer_role
        )
        if peer_ae:  # PS3.15 A.5.2.2: a DICOM application's AE titles
            peer.set("AlternativeUserID", _xml(f"AETITLES={peer_ae}"))
            if record.user:  # the user identity the association asserted
                peer.set("UserName", _xml(record.user))
    if destination:
        _participant(root, user_id=destination, requestor=False, address="", role=destination_role)


def _participant(
    root: ET.Element,
    *,
    user_id: str,
    requestor: bool,
    address: str,
    role: tuple[str, str] | None,
) -> ET.Element:
    attributes = {"UserID": _xml(user_id), "UserIsRequestor": "true" if requestor else "false"}
    if address:
        attributes["NetworkAccessPointID"] = _xml(address)
        attributes["NetworkAccessPointTypeCode"] = (
            IP_ADDRESS if _is_ip_address(address) else MACHINE_NAME
        )
    participant = ET.SubElement(root, "ActiveParticipant", attributes)
    if role is not None:
        _code(participant, "RoleIDCode", role[0], "DCM", role[1])
    return participant


def _is_ip_address(address: str) -> bool:
    try:
        ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return True


# -- ParticipantObjectIdentification ------------------------------------------------------------


def _patients(touched: tuple[Touched, ...]) -> list[tuple[str, str]]:
    """Each patient once, (PatientID, issuer), in the record's order; a patient without an ID
    has nothing to identify them by and is left out (their studies are not)."""
    return list(dict.fromkeys((t.patient_id, t.issuer) for t in touched if t.patient_id))


def patient_object_id(patient_id: str, issuer: str) -> str:
    """The patient as ParticipantObjectID: HL7 v2 CX, 'ID^^^issuer' with an issuer (the
    assigning authority), the ID alone without; HL7 delimiters in either escaped."""
    escaped = "".join(_HL7_ESCAPES.get(c, c) for c in patient_id)
    if not issuer:
        return escaped
    return escaped + "^^^" + "".join(_HL7_ESCAPES.get(c, c) for c in issuer)


def _patient(root: ET.Element, patient: tuple[str, str]) -> None:
    element = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        ParticipantObjectID=_xml(patient_object_id(*patient)),
        ParticipantObjectTypeCode=PERSON,
        ParticipantObjectTypeCodeRole=ROLE_PATIENT,
    )
    _code(element, "ParticipantObjectIDTypeCode", *PATIENT_NUMBER)


def _study(root: ET.Element, touched: Touched) -> None:
    element = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        ParticipantObjectID=_xml(touched.study_uid),
        ParticipantObjectTypeCode=SYSTEM_OBJECT,
        ParticipantObjectTypeCodeRole=ROLE_REPORT,
    )
    _code(element, "ParticipantObjectIDTypeCode", *STUDY_INSTANCE_UID)
    if touched.instances > 0:
        description = ET.SubElement(element, "ParticipantObjectDescription")
        ET.SubElement(description, "SOPClass", NumberOfInstances=str(touched.instances))


def _query(root: ET.Element, sop_class: str, identifier: Any) -> None:
    """PS3.15 A.5.3.13: the SOP Class queried, and the identifier as it would travel, in
    Explicit VR Little Endian (named by ParticipantObjectDetail TransferSyntax)."""
    element = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        ParticipantObjectID=_xml(sop_class),
        ParticipantObjectTypeCode=SYSTEM_OBJECT,
        ParticipantObjectTypeCodeRole=ROLE_REPORT,
    )
    _code(element, "ParticipantObjectIDTypeCode", *SOP_CLASS_UID)
    if identifier is None:
        return
    try:
        encoded = query_bytes(identifier)
    except ValueError:
        return  # the record keeps the keys; the message names the SOP Class alone
    ET.SubElement(element, "ParticipantObjectQuery").text = _base64(encoded)
    ET.SubElement(
        element,
        "ParticipantObjectDetail",
        type="TransferSyntax",
        value=_base64(EXPLICIT_VR_LITTLE_ENDIAN.encode("ascii")),
    )


def query_bytes(identifier: Any) -> bytes:
    """A query identifier in the DICOM JSON model (pydicom's to_json_dict()) as its Explicit
    VR Little Endian bytes. Raises ValueError when it is not DICOM JSON."""
    if not isinstance(identifier, dict):
        raise ValueError("the query identifier is not a DICOM JSON object")
    try:
        dataset = Dataset.from_json(identifier)
    except Exception as exc:  # pydicom raises what its element and VR parsers raise
        raise ValueError(f"the query identifier is not DICOM JSON ({exc})") from None
    if "SpecificCharacterSet" not in dataset and _has_non_ascii(dataset):
        dataset.SpecificCharacterSet = "ISO_IR 192"  # JSON is Unicode; UTF-8 holds it all
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    try:
        write_dataset(fp, dataset)
    except Exception as exc:  # a value its VR cannot encode
        raise ValueError(f"the query identifier cannot be encoded ({exc})") from None
    return fp.getvalue()


def _has_non_ascii(dataset: Dataset) -> bool:
    for element in dataset.iterall():
        if element.VR == "SQ":
            continue
        values = element.value if isinstance(element.value, list | tuple) else [element.value]
        if any(not str(v).isascii() for v in values if v is not None):
            return True
    return False


# -- helpers ------------------------------------------------------------------------------------


def _code(parent: ET.Element, tag: str, code: str, system: str, meaning: str) -> ET.Element:
    """A CodedValueType element of PS3.15 A.5.1.1: csd-code, codeSystemName, originalText."""
    return ET.SubElement(
        parent,
        tag,
        {"csd-code": _xml(code), "codeSystemName": system, "originalText": _xml(meaning)},
    )


def _xml(text: str) -> str:
    """`text` with what XML 1.0 cannot hold (most control characters) as U+FFFD; ElementTree
    escapes the rest (<, &, >, quotes, and tab and newlines in attributes)."""
    return _NOT_XML.sub("\ufffd", text)


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
