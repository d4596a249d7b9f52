"""Storage Commitment for tests: a modality's N-ACTION request, and the reports it takes."""

from __future__ import annotations

import contextlib
import queue
import threading

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import (
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
    Verification,
)

from archive_node.net.association import set_tcp_nodelay

SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
DEADLINE = 20.0


def request(references, transaction_uid=None) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction_uid or generate_uid()
    items = []
    for sop_class, sop_instance in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


class Modality:
    """A commitment SCU: its requesting associations, and optionally a listener for reports
    the node sends back on an association of its own."""

    def __init__(
        self,
        title: str,
        *,
        answer_on_association: bool = True,
        hold: threading.Event | None = None,
    ) -> None:
        """`answer_on_association` False: a report on the requesting association is answered
        with a failure (pynetdicom's default); `hold`: the answer there waits for that event."""
        self.title = title
        self.reports: queue.Queue[tuple[str, int, Dataset]] = queue.Queue()
        self._unanswered: list[tuple[str, int, Dataset]] = []
        self.answer_on_association = answer_on_association
        self.hold = hold
        self.ae = AE(ae_title=title)
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = 30
        self.ae.add_requested_context(StorageCommitmentPushModel, SYNTAXES)
        self.ae.add_requested_context(Verification)
        self.ae.add_supported_context(
            StorageCommitmentPushModel, SYNTAXES, scu_role=False, scp_role=True
        )
        self._server = None

    def _on_report(self, where: str):
        def handler(event):
            # published once the answer is on the wire (_on_pdu_sent): a test that releases
            # as soon as it has a report must not overtake the answer (pynetdicom then gets
            # the answer's P-DATA after its A-RELEASE-RQ, which its state machine refuses)
            report = (where, event.event_type, event.event_information)
            if where == "association" and self.hold is not None:
                self.reports.put(report)  # the test wants it while the answer is held
                self.hold.wait(DEADLINE)
            else:
                self._unanswered.append(report)
            return 0x0000, None

        return handler

    def _on_pdu_sent(self, event) -> None:
        if isinstance(event.pdu, P_DATA_TF):
            while self._unanswered:
                self.reports.put(self._unanswered.pop(0))

    def listen(self, ssl_context=None) -> int:
        """Listen for reports on a free port (over TLS with `ssl_context`); returns it."""
        self._server = self.ae.start_server(
            ("127.0.0.1", 0),
            block=False,
            ssl_context=ssl_context,
            evt_handlers=[
                (evt.EVT_N_EVENT_REPORT, self._on_report("listener")),
                (evt.EVT_PDU_SENT, self._on_pdu_sent),
            ],
        )
        return self._server.server_address[1]

    def associate(self, node, port: int | None = None, tls=None):
        """An association to `node` (None: the node listening on `port` of 127.0.0.1); with
        `tls` (a client context), to its TLS port."""
        handlers = [(evt.EVT_CONN_OPEN, set_tcp_nodelay), (evt.EVT_PDU_SENT, self._on_pdu_sent)]
        if self.answer_on_association:
            handlers.append((evt.EVT_N_EVENT_REPORT, self._on_report("association")))
        if node is None:
            host, called = "127.0.0.1", "ARCHIVE"
        else:
            host, port, called = node.host, node.tls_port if tls else node.port, node.ae_title
        assoc = self.ae.associate(
            host,
            port,
            ae_title=called,
            evt_handlers=handlers,
            tls_args=(tls, None) if tls else None,
        )
        assert assoc.is_established
        return assoc

    def report(self, timeout: float = DEADLINE) -> tuple[str, int, Dataset]:
        return self.reports.get(timeout=timeout)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None


@contextlib.contextmanager
def modality(title: str, **kwargs):
    m = Modality(title, **kwargs)
    try:
        yield m
    finally:
        m.close()


def n_action(assoc, ds, action_type=1, instance=StorageCommitmentPushModelInstance):
    rsp, _ = assoc.send_n_action(ds, action_type, StorageCommitmentPushModel, instance)
    return rsp


def referenced(ds: Dataset) -> set[str]:
    return {item.ReferencedSOPInstanceUID for item in ds.get("ReferencedSOPSequence", [])}
