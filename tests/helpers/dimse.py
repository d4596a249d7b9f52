"""A pynetdicom SCU against a node served in the test process: associations, C-STORE, C-FIND."""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind as PATIENT_ROOT,
)
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind as STUDY_ROOT,
)
from pynetdicom.sop_class import Verification

from archive_node.dicom import status
from archive_node.net.association import set_tcp_nodelay
from tests.helpers.serving import Node


def client_ae(calling: str, contexts=()) -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for cx in contexts:
        ae.add_requested_context(*cx) if isinstance(cx, tuple) else ae.add_requested_context(cx)
    if not contexts:
        ae.add_requested_context(Verification)
    return ae


def associate(
    node: Node,
    calling: str,
    contexts=(),
    called: str | None = None,
    tls: ssl.SSLContext | None = None,
):
    """An association to the node's plain port, or with `tls` (a client context) its TLS
    port."""
    ae = client_ae(calling, contexts)
    return ae.associate(
        node.host,
        node.tls_port if tls else node.port,
        ae_title=called or node.ae_title,
        evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)],
        tls_args=(tls, None) if tls else None,
    )


def send_file(assoc, path: Path):
    """C-STORE a Part 10 file as it is on disk (its UIDs come from the file meta)."""
    previous, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    try:
        return assoc.send_c_store(path)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous


def store_response(node, ds, calling="UNN_US"):
    """C-STORE one dataset on its own association, in its own transfer syntax; the whole
    response (status, Error Comment)."""
    assoc = associate(node, calling, [(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])])
    assert assoc.is_established
    try:
        return assoc.send_c_store(ds)
    finally:
        assoc.release()


def store_at_once(node, datasets: dict, contexts) -> dict[str, int]:
    """C-STORE each AE's dataset ({calling AE: dataset}) on its own association, all released
    by one barrier at the same moment; the status each got."""
    associations = {calling: associate(node, calling, contexts) for calling in datasets}
    barrier = threading.Barrier(len(datasets))
    results: dict[str, int] = {}

    def send(calling):
        barrier.wait()
        results[calling] = int(associations[calling].send_c_store(datasets[calling]).Status)

    threads = [threading.Thread(target=send, args=(c,)) for c in datasets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for assoc in associations.values():
        assoc.release()
    return results


def store(node, ds, calling="UNN_US"):
    """C-STORE one dataset on its own association, in its own transfer syntax; the status."""
    assoc = associate(node, calling, [(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])])
    assert assoc.is_established
    try:
        return assoc.send_c_store(ds).Status
    finally:
        assoc.release()


def push(node, calling: str, datasets, tls: ssl.SSLContext | None = None) -> None:
    """C-STORE datasets, in order, on one association of `calling` (over TLS with `tls`);
    each must succeed."""
    contexts = list(
        dict.fromkeys((ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) for ds in datasets)
    )
    assoc = associate(node, calling, [(c, [t]) for c, t in contexts], tls=tls)
    assert assoc.is_established
    try:
        for ds in datasets:
            assert assoc.send_c_store(ds).Status == status.SUCCESS
    finally:
        assoc.release()


def find(node, query: Dataset, model=STUDY_ROOT, calling="UNN_WS"):
    """(final status dataset, [identifiers of the pending responses]) of one C-FIND."""
    assoc = associate(node, calling, [STUDY_ROOT, PATIENT_ROOT])
    assert assoc.is_established
    try:
        return find_results(assoc.send_c_find(query, model))
    finally:
        assoc.release()


def find_results(responses):
    """(final status dataset, [identifiers of the pending responses]) of C-FIND responses."""
    matches, final = [], None
    for rsp_status, answer in responses:
        assert rsp_status, "no response from the node"
        if rsp_status.Status in (0xFF00, 0xFF01):
            matches.append(answer)
        else:
            final = rsp_status
    return final, matches
