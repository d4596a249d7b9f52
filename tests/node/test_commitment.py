"""Storage Commitment Push Model SCP (PS3.4 J.3) over real associations, on both backends.

A pynetdicom AE plays the modality: it stores, asks for commitment with an N-ACTION, and takes
the N-EVENT-REPORT on the same association or, with its own listening AE, on one the node
opens back to it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from datetime import timedelta

import pytest
from peewee import SqliteDatabase
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import (
    CTImageStorage,
    SecondaryCaptureImageStorage,
)

from archive_node.dicom import status
from archive_node.index import SCHEMA_VERSION
from archive_node.index.clock import utcnow
from archive_node.index.commitment_rows import ABANDONED, DELIVERED, PENDING
from archive_node.index.tables import CommitmentRequest, SchemaInfo
from archive_node.rules.commitment import (
    EVENT_ALL_COMMITTED,
    EVENT_FAILURES_EXIST,
    Acknowledged,
)
from tests.helpers import dicom_objects
from tests.helpers.cli import cli_run, write_config
from tests.helpers.commitment import (
    DEADLINE,
    SYNTAXES,
    modality,
    n_action,
    referenced,
    request,
)
from tests.helpers.dimse import store, store_response
from tests.helpers.serving import node_with


@pytest.fixture
def cnode(tmp_path, index_url, registry):
    """A node that retries undelivered reports after 50 ms. It binds the index models to its
    own database: change the registry through cnode.service.registry, not the fixture's."""
    with node_with(tmp_path, index_url, commitment={"retry_interval": 0.05}) as node:
        yield node


def stored(node, *datasets, calling="UNN_US"):
    for ds in datasets:
        assert store(node, ds, calling) == status.SUCCESS
    return [(ds.SOPClassUID, ds.SOPInstanceUID) for ds in datasets]


def failures(ds: Dataset) -> dict[str, int]:
    return {
        item.ReferencedSOPInstanceUID: item.FailureReason
        for item in ds.get("FailedSOPSequence", [])
    }


def commitment_state(node, transaction_uid: str):
    rows = [
        r for r in node.service.index.commitments.listing() if r.transaction_uid == transaction_uid
    ]
    assert len(rows) == 1
    return rows[0]


def wait_for_state(node, transaction_uid: str, state: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while commitment_state(node, transaction_uid).state != state:
        assert time.monotonic() < deadline, f"report never became {state}"
        time.sleep(0.02)


def wait_for_log(caplog, text: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while text not in caplog.text:
        assert time.monotonic() < deadline, f"never logged: {text}"
        time.sleep(0.02)


# -- the report on the requesting association ---------------------------------------------------


def test_all_committed_report_arrives_on_the_same_association(node):
    refs = stored(node, dicom_objects.secondary_capture(), dicom_objects.ct(patient_id="P1"))
    with modality("UNN_US") as scu:
        assoc = scu.associate(node)
        ds = request(refs)
        assert n_action(assoc, ds).Status == status.SUCCESS
        where, event_type, info = scu.report()
        assoc.release()
    assert (where, event_type) == ("association", EVENT_ALL_COMMITTED)
    assert info.TransactionUID == ds.TransactionUID
    assert referenced(info) == {uid for _, uid in refs}
    assert "FailedSOPSequence" not in info
    assert info.RetrieveAETitle == node.ae_title
    assert commitment_state(node, ds.TransactionUID).state == DELIVERED


def test_failures_carry_the_standard_reasons(node):
    good, corrupt, gone, other_class = (dicom_objects.secondary_capture() for _ in range(4))
    stored(node, good, corrupt, gone, other_class)
    storage, index = node.service.storage, node.service.index
    corrupt_path = storage.absolute(index.instances.find(corrupt.SOPInstanceUID).path)
    raw = bytearray(corrupt_path.read_bytes())
    raw[-1] ^= 0xFF  # one bit of pixel data flipped
    corrupt_path.write_bytes(bytes(raw))
    storage.absolute(index.instances.find(gone.SOPInstanceUID).path).unlink()
    unknown = generate_uid()
    refs = [
        (good.SOPClassUID, good.SOPInstanceUID),
        (corrupt.SOPClassUID, corrupt.SOPInstanceUID),
        (gone.SOPClassUID, gone.SOPInstanceUID),
        (CTImageStorage, other_class.SOPInstanceUID),
        (SecondaryCaptureImageStorage, unknown),
        (SecondaryCaptureImageStorage, "not a uid"),
    ]
    with modality("UNN_US") as scu:
        assoc = scu.associate(node)
        assert n_action(assoc, request(refs)).Status == status.SUCCESS
        where, event_type, info = scu.report()
        assoc.release()
    assert (where, event_type) == ("association", EVENT_FAILURES_EXIST)
    assert referenced(info) == {good.SOPInstanceUID}
    assert failures(info) == {
        corrupt.SOPInstanceUID: 0x0110,  # processing failure: no longer what was received
        gone.SOPInstanceUID: 0x0112,  # no such object instance: its file is missing
        other_class.SOPInstanceUID: 0x0119,  # class/instance conflict
        unknown: 0x0112,
        "not a uid": 0x0112,
    }
    failed_items = {i.ReferencedSOPInstanceUID: i for i in info.FailedSOPSequence}
    assert failed_items[other_class.SOPInstanceUID].ReferencedSOPClassUID == CTImageStorage


def test_only_failures_report_has_no_committed_sequence(node):
    with modality("UNN_US") as scu:
        assoc = scu.associate(node)
        assert n_action(assoc, request([(CTImageStorage, generate_uid())])).Status == 0
        _, event_type, info = scu.report()
        assoc.release()
    assert event_type == EVENT_FAILURES_EXIST
    assert "ReferencedSOPSequence" not in info and len(info.FailedSOPSequence) == 1


def test_hospital_scope_commits_only_its_own_hospitals_instances(node, registry):
    registry.update_ae("UNN_US", scope="hospital")
    own, foreign = dicom_objects.secondary_capture(), dicom_objects.secondary_capture()
    stored(node, own, calling="UNN_US")
    stored(node, foreign, calling="NLSH_CAM")
    refs = [(own.SOPClassUID, own.SOPInstanceUID), (foreign.SOPClassUID, foreign.SOPInstanceUID)]
    with modality("UNN_US") as scu:
        assoc = scu.associate(node)
        assert n_action(assoc, request(refs)).Status == 0
        _, _, info = scu.report()
        assoc.release()
    assert referenced(info) == {own.SOPInstanceUID}
    assert failures(info) == {foreign.SOPInstanceUID: 0x0112}


def commit(node, title, refs):
    """(committed SOP Instance UIDs, {failed UID: reason}) of one request by `title`."""
    with modality(title) as scu:
        assoc = scu.associate(node)
        assert n_action(assoc, request(refs)).Status == status.SUCCESS
        _, _, info = scu.report()
        assoc.release()
    return referenced(info), failures(info)


def test_another_object_under_a_kept_uid_is_refused_and_never_committed(node, registry):
    """NLSH stores X under U; UNN's modality then sends its real image Y under U: the C-STORE
    fails, and UNN's commitment of U fails (Y is kept nowhere); NLSH's commits X."""
    x = dicom_objects.secondary_capture(patient_id="NLSH-1")
    assert store_response(node, x, "NLSH_CAM").Status == status.SUCCESS
    y = dicom_objects.secondary_capture(patient_id="UNN-1", sop_uid=x.SOPInstanceUID)
    rsp = store_response(node, y, "UNN_US")
    assert rsp.Status == status.SOP_INSTANCE_CONFLICT
    assert rsp.ErrorComment == "SOP Instance UID already holds a different object"
    refs = [(x.SOPClassUID, x.SOPInstanceUID)]
    assert commit(node, "UNN_US", refs) == (set(), {x.SOPInstanceUID: 0x0112})
    assert commit(node, "NLSH_CAM", refs) == ({x.SOPInstanceUID}, {})
    # a region AE with find asks about what others sent, as before
    assert commit(node, "UNN_WS", refs) == ({x.SOPInstanceUID}, {})


def test_an_identical_resend_by_another_hospital_is_committed_to_it(node, registry):
    registry.add_ae("NLSH_SCOPED", "NLSH", host="127.0.0.1", scope="hospital")
    ds = dicom_objects.secondary_capture()
    refs = stored(node, ds, calling="UNN_US")
    assert commit(node, "NLSH_CAM", refs) == (set(), {ds.SOPInstanceUID: 0x0112})
    assert store_response(node, ds, "NLSH_CAM").Status == status.SUCCESS  # identical: acknowledged
    assert commit(node, "NLSH_CAM", refs) == ({ds.SOPInstanceUID}, {})
    assert commit(node, "NLSH_SCOPED", refs) == ({ds.SOPInstanceUID}, {})  # its hospital's
    assert commit(node, "UNN_US", refs) == ({ds.SOPInstanceUID}, {})
    # the kept copy is still UNN's: C-FIND scope and the row are unchanged
    assert node.service.index.instances.find(ds.SOPInstanceUID).calling_ae == "UNN_US"


def test_a_replaced_copys_sender_is_not_told_it_is_committed(tmp_path, index_url, registry):
    registry.add_ae("UNN_CR", "UNN", host="127.0.0.1")
    with node_with(tmp_path, index_url, storage={"on_duplicate": "replace"}) as node:
        first = dicom_objects.secondary_capture()
        refs = stored(node, first, calling="UNN_US")
        first.PixelData = bytes(len(first.PixelData))  # the same UID, other content
        assert store_response(node, first, "UNN_CR").Status == status.SUCCESS  # replaced
        assert commit(node, "UNN_US", refs) == (set(), {first.SOPInstanceUID: 0x0110})
        assert commit(node, "UNN_CR", refs) == ({first.SOPInstanceUID}, {})
        # UNN_CR's identical resend changes nothing for UNN_US
        assert store_response(node, first, "UNN_CR").Status == status.SUCCESS
        assert commit(node, "UNN_US", refs) == (set(), {first.SOPInstanceUID: 0x0110})


def test_a_store_only_modality_cannot_probe_the_region(node, registry):
    """An AE without find (scope region) is answered only about its hospital's instances: an
    instance of another hospital is 0x0112 like an unknown UID, whatever class it names."""
    theirs = dicom_objects.secondary_capture()
    stored(node, theirs, calling="UNN_US")
    unknown = generate_uid()
    refs = [
        (theirs.SOPClassUID, theirs.SOPInstanceUID),
        (CTImageStorage, theirs.SOPInstanceUID),
        (theirs.SOPClassUID, unknown),
    ]
    committed, failed = commit(node, "NLSH_CAM", refs)
    assert committed == set()
    assert failed == {theirs.SOPInstanceUID: 0x0112, unknown: 0x0112}
    with modality("NLSH_CAM") as scu:
        assoc = scu.associate(node)
        assert n_action(assoc, request(refs)).Status == status.SUCCESS
        _, _, info = scu.report()
        assoc.release()
    assert [i.FailureReason for i in info.FailedSOPSequence] == [0x0112] * 3
    # with find and scope region, the same request learns what is held
    committed, failed = commit(node, "UNN_WS", refs)
    assert committed == {theirs.SOPInstanceUID}
    assert failed == {theirs.SOPInstanceUID: 0x0119, unknown: 0x0112}


def test_a_repeated_transaction_uid_is_decided_and_reported_again(node):
    ds_a, ds_b = dicom_objects.secondary_capture(), dicom_objects.secondary_capture()
    stored(node, ds_a)
    transaction = generate_uid()
    with modality("UNN_US") as scu:
        assoc = scu.associate(node)
        refs = [(ds_a.SOPClassUID, ds_a.SOPInstanceUID), (ds_b.SOPClassUID, ds_b.SOPInstanceUID)]
        assert n_action(assoc, request(refs, transaction)).Status == 0
        assert scu.report()[1] == EVENT_FAILURES_EXIST
        stored(node, ds_b)
        assert n_action(assoc, request(refs, transaction)).Status == 0
        _, event_type, info = scu.report()
        assoc.release()
    assert event_type == EVENT_ALL_COMMITTED and len(referenced(info)) == 2


def test_requests_sent_while_the_report_is_outstanding_are_served(cnode):
    """PS3.7 D.3.3.3: the modality may go on asking while the node's report is outstanding;
    the node serves those requests and still takes the report's answer on that association."""
    first, second = dicom_objects.secondary_capture(), dicom_objects.secondary_capture()
    refs = stored(cnode, first)
    with modality("UNN_US") as scu:
        scu.ae.add_requested_context(first.SOPClassUID, SYNTAXES)
        cnode.service.registry.update_ae("UNN_US", port=scu.listen())
        assoc = scu.associate(cnode)
        ds = request(refs)
        assert n_action(assoc, ds).Status == 0
        assert [assoc.send_c_echo().Status for _ in range(3)] == [0, 0, 0]
        assert assoc.send_c_store(second).Status == 0
        where, event_type, _ = scu.report()
        wait_for_state(cnode, ds.TransactionUID, DELIVERED)
        assoc.release()
        with pytest.raises(queue.Empty):
            scu.report(timeout=0.5)  # not called back as well
    assert (where, event_type) == ("association", EVENT_ALL_COMMITTED)
    assert cnode.service.index.instances.find(second.SOPInstanceUID) is not None


def test_a_second_request_while_the_first_report_waits_for_its_answer(cnode):
    """The modality asks again before answering the first report: the node serves the second
    N-ACTION inside the first report's wait, and each report still gets its own answer."""
    first, second = dicom_objects.secondary_capture(), dicom_objects.secondary_capture()
    refs = stored(cnode, first, second)
    hold = threading.Event()
    with modality("UNN_US", hold=hold) as scu:
        cnode.service.registry.update_ae("UNN_US", port=scu.listen())
        assoc = scu.associate(cnode)
        one, two = request(refs[:1]), request(refs[1:])
        assert n_action(assoc, one).Status == 0
        assert scu.report()[0] == "association"  # the first report, held unanswered
        assert n_action(assoc, two).Status == 0  # asked again meanwhile
        hold.set()
        assert scu.report()[0] == "association"
        wait_for_state(cnode, one.TransactionUID, DELIVERED)
        wait_for_state(cnode, two.TransactionUID, DELIVERED)
        assoc.release()
        with pytest.raises(queue.Empty):
            scu.report(timeout=0.5)  # neither was called back


# -- claims and generations (several workers and nodes on one index) ---------------------------


def test_a_replaced_request_fences_off_its_earlier_generation(service, registry):
    index = service.index
    soon = utcnow() + timedelta(minutes=5)
    old = index.commitments.add("UNN_US", "1.2.3", "[]", claimant="a:1", claimed_until=soon)
    new = index.commitments.add(
        "UNN_US", "1.2.3", '[["1.2", "1.3"]]', claimant="a:1", claimed_until=soon
    )
    assert (new.id, new.generation) == (old.id, old.generation + 1)
    assert not index.commitments.save_result(old, '{"committed":[],"failed":[]}')
    assert not index.commitments.delivered(old)
    assert not index.commitments.not_delivered(old, "late", None)
    [row] = index.commitments.listing()
    assert (row.state, row.result) == (PENDING, None)
    assert index.commitments.delivered(new)
    assert [row.state for row in index.commitments.listing()] == [DELIVERED]


def test_a_claim_is_taken_once_and_fences_off_the_worker_whose_claim_ran_out(service, registry):
    index = service.index
    record = index.commitments.add("UNN_US", "1.2.3", "[]", claimant="a:1", claimed_until=utcnow())
    first = index.commitments.claim(record.id, "a:1", utcnow() + timedelta(minutes=5))
    assert first is not None
    assert index.commitments.claim(record.id, "b:2", utcnow() + timedelta(minutes=5)) is None
    with index.session(write=True):  # a's claim runs out
        CommitmentRequest.update(next_attempt_at=utcnow() - timedelta(seconds=1)).execute()
    second = index.commitments.claim(record.id, "b:2", utcnow() + timedelta(minutes=5))
    assert second is not None and second.generation > first.generation
    assert not index.commitments.delivered(first)
    assert index.commitments.delivered(second)


def test_start_up_releases_its_own_and_unheld_claims_not_another_nodes(service, registry):
    index = service.index
    later = utcnow() + timedelta(hours=1)
    mine = index.commitments.add("UNN_US", "1.1", "[]", claimant="a:1", claimed_until=later)
    theirs = index.commitments.add("UNN_US", "1.2", "[]", claimant="b:2", claimed_until=later)
    waiting = index.commitments.add("UNN_US", "1.3", "[]", claimant="", claimed_until=later)
    index.commitments.release_claims("a:1")
    assert {i for i, _ in index.commitments.due()} == {mine.id, waiting.id}
    assert theirs.id not in {i for i, _ in index.commitments.due()}


def test_a_failed_call_back_postpones_the_requesters_other_reports(service, registry):
    index = service.index
    now = utcnow()
    one = index.commitments.add("UNN_US", "1.1", "[]", claimant="", claimed_until=now)
    two = index.commitments.add("UNN_US", "1.2", "[]", claimant="", claimed_until=now)
    other = index.commitments.add("NLSH_CAM", "1.3", "[]", claimant="", claimed_until=now)
    index.commitments.postpone("UNN_US", now + timedelta(hours=1))
    assert [i for i, _ in index.commitments.due()] == [other.id]
    assert {one.id, two.id}.isdisjoint(i for i, _ in index.commitments.due())


# -- the report on a new association ------------------------------------------------------------


def test_report_goes_to_the_registered_port_when_the_association_is_gone(cnode):
    refs = stored(cnode, dicom_objects.secondary_capture())
    with modality("UNN_US", answer_on_association=False) as scu:
        cnode.service.registry.update_ae("UNN_US", port=scu.listen())
        assoc = scu.associate(cnode)
        ds = request(refs)
        assert n_action(assoc, ds).Status == 0
        assoc.abort()
        where, event_type, info = scu.report()
        assert (where, event_type) == ("listener", EVENT_ALL_COMMITTED)
        assert info.TransactionUID == ds.TransactionUID
        wait_for_state(cnode, ds.TransactionUID, DELIVERED)
        with pytest.raises(queue.Empty):
            scu.report(timeout=0.3)  # exactly once


def test_requester_refusing_on_its_association_gets_it_on_a_new_one(cnode):
    """A modality that takes reports only on associations the archive opens (many do) answers
    the report on its own association with a failure: the node calls it back."""
    refs = stored(cnode, dicom_objects.secondary_capture())
    with modality("UNN_US", answer_on_association=False) as scu:
        cnode.service.registry.update_ae("UNN_US", port=scu.listen())
        assoc = scu.associate(cnode)
        assert n_action(assoc, request(refs)).Status == 0
        where, event_type, _ = scu.report()
        assoc.release()
    assert (where, event_type) == ("listener", EVENT_ALL_COMMITTED)


def test_no_port_means_the_report_waits_and_the_log_says_why(cnode, caplog):
    refs = stored(cnode, dicom_objects.secondary_capture())
    caplog.set_level(logging.WARNING, logger="archive_node")
    with modality("UNN_US", answer_on_association=False) as scu:
        assoc = scu.associate(cnode)
        ds = request(refs)
        assert n_action(assoc, ds).Status == 0
        assoc.release()
        wait_for_log(caplog, "no registered host and port")
        assert commitment_state(cnode, ds.TransactionUID).state == PENDING
        cnode.service.registry.update_ae("UNN_US", port=scu.listen())  # now the retry delivers
        assert scu.report()[:2] == ("listener", EVENT_ALL_COMMITTED)
    wait_for_state(cnode, ds.TransactionUID, DELIVERED)


def test_a_disabled_requester_is_not_called_back_until_enabled(cnode, caplog):
    refs = stored(cnode, dicom_objects.secondary_capture())
    caplog.set_level(logging.WARNING, logger="archive_node")
    with modality("UNN_US", answer_on_association=False) as scu:
        cnode.service.registry.update_ae("UNN_US", port=scu.listen())
        assoc = scu.associate(cnode)
        cnode.service.registry.update_ae("UNN_US", enabled=False)  # its open association goes on
        ds = request(refs)
        assert n_action(assoc, ds).Status == 0
        assoc.release()
        wait_for_log(caplog, "the requester is disabled")
        with pytest.raises(queue.Empty):
            scu.report(timeout=0.2)
        cnode.service.registry.update_ae("UNN_US", enabled=True)
        assert scu.report()[:2] == ("listener", EVENT_ALL_COMMITTED)


def test_pending_report_survives_a_restart(tmp_path, index_url, registry):
    with node_with(tmp_path, index_url, commitment={"retry_interval": 3600.0}) as first:
        refs = stored(first, dicom_objects.secondary_capture())
        with modality("UNN_US", answer_on_association=False) as scu:
            assoc = scu.associate(first)
            ds = request(refs)
            assert n_action(assoc, ds).Status == 0
            assoc.release()
            deadline = time.monotonic() + DEADLINE
            while commitment_state(first, ds.TransactionUID).last_error == "":
                assert time.monotonic() < deadline
                time.sleep(0.02)
    # stopped with the report undelivered (no port, next try in an hour); now it has a port
    with modality("UNN_US", answer_on_association=False) as scu:
        first.service.registry.update_ae("UNN_US", port=scu.listen())
        with node_with(tmp_path, index_url, commitment={"retry_interval": 3600.0}) as second:
            where, event_type, info = scu.report()
            assert (where, event_type) == ("listener", EVENT_ALL_COMMITTED)
            assert referenced(info) == {uid for _, uid in refs}
            wait_for_state(second, ds.TransactionUID, DELIVERED)


def test_undeliverable_report_is_abandoned_after_the_configured_time(
    tmp_path, index_url, registry, caplog
):
    caplog.set_level(logging.ERROR, logger="archive_node")
    with modality("UNN_US", answer_on_association=False) as scu:
        port = scu.listen()
        scu.close()  # nobody listens there any more
        registry.update_ae("UNN_US", port=port)
        with node_with(tmp_path, index_url, commitment={"give_up_after": 0.0}) as node:
            assoc = scu.associate(node)
            ds = request([(SecondaryCaptureImageStorage, generate_uid())])
            assert n_action(assoc, ds).Status == 0
            assoc.release()
            wait_for_state(node, ds.TransactionUID, ABANDONED)
            wait_for_log(caplog, "abandoned after 1 attempt(s)")  # logged just after the row


# -- refusals -----------------------------------------------------------------------------------

REFUSALS = [
    pytest.param({"action_type": 2}, None, status.NO_SUCH_ACTION, id="action-type-2"),
    pytest.param({"instance": "1.2.3.4"}, None, status.NO_SUCH_SOP_INSTANCE, id="other-instance"),
    pytest.param({}, "TransactionUID", status.INVALID_ARGUMENT_VALUE, id="no-transaction-uid"),
    pytest.param({}, "bad-transaction", status.INVALID_ARGUMENT_VALUE, id="bad-transaction-uid"),
    pytest.param({}, "ReferencedSOPSequence", status.INVALID_ARGUMENT_VALUE, id="no-sequence"),
    pytest.param({}, "empty-sequence", status.INVALID_ARGUMENT_VALUE, id="empty-sequence"),
    pytest.param({}, "item-without-class", status.INVALID_ARGUMENT_VALUE, id="item-no-class"),
]


@pytest.mark.parametrize(("kwargs", "damage", "expected"), REFUSALS)
def test_bad_requests_are_refused_and_the_association_serves_on(node, kwargs, damage, expected):
    ds = request([(SecondaryCaptureImageStorage, generate_uid())])
    if damage == "TransactionUID":
        del ds.TransactionUID
    elif damage == "bad-transaction":
        ds.TransactionUID = "1.2.abc"
    elif damage == "ReferencedSOPSequence":
        del ds.ReferencedSOPSequence
    elif damage == "empty-sequence":
        ds.ReferencedSOPSequence = []
    elif damage == "item-without-class":
        del ds.ReferencedSOPSequence[0].ReferencedSOPClassUID
    with modality("UNN_US") as scu:
        assoc = scu.associate(node)
        rsp = n_action(assoc, ds, **kwargs)
        assert rsp.Status == expected
        assert rsp.ErrorComment
        assert assoc.send_c_echo().Status == 0
        with pytest.raises(queue.Empty):
            scu.report(timeout=0.2)
        assoc.release()
    assert node.service.index.commitments.listing() == []


def test_an_ae_without_the_store_right_is_not_authorised(node, registry):
    registry.add_ae("UNN_VIEW", "UNN", host="127.0.0.1", allow="echo,find")
    with modality("UNN_VIEW") as scu:
        assoc = scu.associate(node)
        rsp = n_action(assoc, request([(SecondaryCaptureImageStorage, generate_uid())]))
        assert rsp.Status == status.NOT_AUTHORISED
        assoc.release()
    assert node.service.index.commitments.listing() == []


def test_no_patient_data_in_info_logs(node, caplog):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="archive_node")  # CLI tests may have raised it
    ds = dicom_objects.secondary_capture(patient_id="SECRETPID", patient_name="SECRET^NAME")
    refs = stored(node, ds)
    with modality("UNN_US") as scu:
        assoc = scu.associate(node)
        assert n_action(assoc, request(refs)).Status == 0
        scu.report()
        assoc.release()
    assert "storage commitment" in caplog.text
    assert "SECRET" not in caplog.text


def test_schema_2_index_gains_the_commitment_table(service, registry):
    db = service.index.db
    with service.index.session(write=True):
        db.execute_sql('DROP TABLE "commitment_request"')
        db.execute_sql('DROP INDEX "instance_received_at"')
        SchemaInfo.update(value="2").where(SchemaInfo.key == "version").execute()
    assert service.index.init_schema() == (2, SCHEMA_VERSION)
    with service.index.session():
        assert "instance_received_at" in {i.name for i in db.get_indexes("instance")}
    record = service.index.commitments.add(
        "UNN_US", "1.2.3", "[]", claimant="here:1", claimed_until=utcnow()
    )
    assert [r.id for r in service.index.commitments.listing(state=PENDING)] == [record.id]
    assert {a.ae_title for a in registry.list_aes()} >= {"UNN_US", "UNN_WS"}


def test_schema_3_index_gains_acknowledgements_and_ae_limits(service, registry):
    db = service.index.db
    sqlite = isinstance(db, SqliteDatabase)
    with service.index.session():  # make it look like a schema 3 index
        if sqlite:  # SQLite's DROP COLUMN rechecks foreign keys; outside a transaction only
            db.execute_sql("PRAGMA foreign_keys = OFF")
        db.execute_sql('DROP TABLE "acknowledgement"')
        db.execute_sql('ALTER TABLE "application_entity" DROP COLUMN "max_associations"')
        if sqlite:
            db.execute_sql("PRAGMA foreign_keys = ON")
    with service.index.session(write=True):
        SchemaInfo.update(value="3").where(SchemaInfo.key == "version").execute()
    assert service.index.init_schema() == (3, SCHEMA_VERSION)
    service.index.check_schema()
    assert registry.peer("UNN_US").max_associations is None  # registered AEs: no limit
    registry.update_ae("UNN_US", max_associations=2)
    assert registry.peer("UNN_US").max_associations == 2
    seen = Acknowledged("NLSH_CAM", "NLSH", "a" * 64)
    service.index.instances.acknowledge("1.2.3", seen)
    service.index.instances.acknowledge("1.2.3", seen)  # once
    assert service.index.instances.acknowledgements(["1.2.3", "1.2.4"]) == {"1.2.3": [seen]}


def test_commitments_command_lists_requests_and_their_state(node, tmp_path, index_url):
    refs = stored(node, dicom_objects.secondary_capture())
    with modality("UNN_US") as scu:
        assoc = scu.associate(node)
        ds = request(refs)
        assert n_action(assoc, ds).Status == 0
        scu.report()
        assoc.release()
    wait_for_state(node, ds.TransactionUID, DELIVERED)
    config = write_config(tmp_path, index_url)
    result = cli_run("--config", config, "commitments")
    assert result.exit_code == 0, result.output
    assert ds.TransactionUID in result.output and "delivered" in result.output
    result = cli_run("--config", config, "commitments", "--json")
    [row] = json.loads(result.output)
    assert (row["requester"], row["instances"], row["state"]) == ("UNN_US", 1, DELIVERED)
    result = cli_run("--config", config, "commitments", "--state", "pending")
    assert result.exit_code == 0 and "(none)" in result.output
