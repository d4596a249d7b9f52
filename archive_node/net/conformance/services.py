"""PS3.2 4.2.x SOP specific conformance: each service with the statuses it returns."""

from __future__ import annotations

from collections.abc import Sequence

from ...dicom import status
from ...rules.commitment import (
    EVENT_ALL_COMMITTED,
    EVENT_FAILURES_EXIST,
    FAILURE_CLASS_CONFLICT,
    FAILURE_NO_SUCH_INSTANCE,
    FAILURE_PROCESSING,
    MAX_REFERENCES,
    STORAGE_COMMITMENT_INSTANCE,
)
from ...rules.rejection import KOS_SOP_CLASS, REJECTION_CODES
from ...rules.retrieve_plan import MAX_SUB_OPERATIONS
from .tables import Sections, hex_code, table


class Services(Sections):
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
            f"it came on is answered {hex_code(status.DATASET_MISMATCH)} (C-STORE) or "
            "0x0122 (SOP Class Not Supported, the others). A C-FIND, C-MOVE or C-GET "
            f"identifier, or an N-ACTION, N-CREATE or N-SET dataset, over "
            f"{config.query.max_identifier_bytes} bytes (`query.max_identifier_bytes`) is "
            f"read, dropped and answered {hex_code(status.OUT_OF_RESOURCES)} (C-FIND), "
            f"{hex_code(status.TOO_MANY_MATCHES)} (C-MOVE, C-GET) or "
            f"{hex_code(status.RESOURCE_LIMITATION)} (N-ACTION, N-CREATE, N-SET).",
        )
        self._verification()
        self._storage()
        self._find()
        self._retrieve()
        self._commitment()
        self._worklist()
        self._mpps()

    def _statuses(self, rows: Sequence[tuple[int, str]]) -> None:
        self.w.lines(table(("status", "meaning"), [(hex_code(code), text) for code, text in rows]))

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
            f"({hex_code(status.REJECTED_INSTANCE)}). A KOS that is not a valid rejection note is "
            "stored as an ordinary KOS and rejects nothing.",
        )
        lifecycle = self.config.lifecycle.delete_rejected_after
        w.lines(
            table(
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
            f"{hex_code(FAILURE_PROCESSING)}. At most {MAX_REFERENCES} references per request. "
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
            f"{hex_code(status.UNRECOGNIZED_OPERATION)}: it sends reports and takes none.",
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
