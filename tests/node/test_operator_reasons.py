"""The reasons the node gives reach the operator (issue 22, finding 6): the Error Comment of a
refused C-STORE in `send`, a comment on every 0x0124, rejections in words, and the node's own
C-ECHO from the loopback without registering its title."""

from __future__ import annotations

import json
import logging

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from archive_node.dicom import status
from archive_node.net.client import client_ae
from archive_node.rules.access import SERVICES
from tests.helpers import dicom_objects
from tests.helpers.cli import cli_run, fails, ok, write_config
from tests.helpers.commitment import request
from tests.helpers.dimse import associate
from tests.helpers.environment import FAST_PATHS
from tests.helpers.identifiers import identifier

SC = dicom_objects.SECONDARY_CAPTURE
CONTEXTS = [
    Verification,
    (SC, [ExplicitVRLittleEndian]),
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StorageCommitmentPushModel,
    ModalityWorklistInformationFind,
    ModalityPerformedProcedureStep,
]


@pytest.fixture
def cli_config(tmp_path, index_url, node):
    """A config file for the CLI that calls the node of the test."""
    return write_config(
        tmp_path, index_url, name="cli.toml", node={"port": node.port, "bind": "127.0.0.1"}
    )


def _association(node, calling: str):
    ae = client_ae(calling, 30, fast_paths=FAST_PATHS)
    for cx in CONTEXTS:
        ae.add_requested_context(*cx) if isinstance(cx, tuple) else ae.add_requested_context(cx)
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    assert assoc.is_established
    return assoc


def _final(responses) -> Dataset:
    final = None
    for rsp, _answer in responses:
        assert rsp, "no response from the node"
        if rsp.Status not in (0xFF00, 0xFF01):
            final = rsp
    assert final is not None
    return final


def _some(keyword: str) -> Dataset:
    """A dataset of one empty element (an empty dataset is no dataset on the wire)."""
    ds = Dataset()
    setattr(ds, keyword, "")
    return ds


def _mismatched_file(tmp_path):
    """A Part 10 file whose File Meta names another SOP Instance UID than its dataset: the
    C-STORE's Affected SOP Instance UID (taken from the meta) differs from the dataset's."""
    ds = dicom_objects.secondary_capture()
    path = dicom_objects.write(ds, tmp_path / "mismatch.dcm")
    uid = str(ds.SOPInstanceUID).encode()
    other = uid[:-1] + (b"1" if uid[-1:] != b"1" else b"2")  # as long: the meta's lengths hold
    raw = path.read_bytes()
    assert raw.index(uid) < raw.index(b"DICM") + 200  # the first is the File Meta's
    path.write_bytes(raw.replace(uid, other, 1))
    return path


# -- 6a: send shows the node's Error Comment -----------------------------------------------------


def test_send_json_and_text_carry_the_nodes_error_comment(node, cli_config, tmp_path):
    path = _mismatched_file(tmp_path)
    result = cli_run("send", "--calling-aet", "UNN_US", "--json", path, "--config", cli_config)
    assert result.exit_code == 1, result.output
    (sent,) = json.loads(result.output)
    assert sent["status"] == status.UID_MISMATCH
    # the node's comment as sent: an LO, cut at 64 characters, the reason first
    assert sent["error"].startswith("SOPInstanceUID differs from the request's: dataset 1.2.")
    assert len(sent["error"]) <= 64

    text = cli_run("send", "--calling-aet", "UNN_US", path, "--config", cli_config).output
    assert text.splitlines()[0].startswith("0xA901  ")
    assert f"  {sent['error']}" in text.splitlines()[0]
    assert node.service.index.instances.count() == 0


def test_send_by_an_ae_without_store_shows_what_right_is_missing(node, cli_config, tmp_path):
    node.service.registry.add_ae("ECHO_ONLY", "UNN", host="127.0.0.1", allow="echo")
    path = dicom_objects.write(dicom_objects.secondary_capture(), tmp_path / "sc.dcm")
    result = cli_run("send", "--calling-aet", "ECHO_ONLY", "--json", path, "--config", cli_config)
    (sent,) = json.loads(result.output)
    assert (sent["status"], sent["error"]) == (status.NOT_AUTHORISED, "AE not allowed store")


# -- 6b: every 0x0124 says which right is missing ------------------------------------------------


def _ask(node, assoc, right: str) -> Dataset:
    """The response to one request that needs `right`."""
    if right == "echo":
        return assoc.send_c_echo()
    if right == "store":
        return assoc.send_c_store(dicom_objects.secondary_capture())
    query = identifier("STUDY", StudyInstanceUID="1.2.3")
    if right == "find":
        return _final(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    if right == "move":
        return _final(
            assoc.send_c_move(query, "UNN_WS", StudyRootQueryRetrieveInformationModelMove)
        )
    if right == "get":
        return _final(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
    if right == "worklist":
        return _final(assoc.send_c_find(_some("PatientID"), ModalityWorklistInformationFind))
    raise AssertionError(right)


@pytest.mark.parametrize("right", SERVICES)
def test_every_0124_names_the_missing_right(node, right):
    others = ",".join(s for s in SERVICES if s != right)
    node.service.registry.add_ae("LACKS_ONE", "UNN", host="127.0.0.1", allow=others)
    assoc = _association(node, "LACKS_ONE")
    try:
        rsp = _ask(node, assoc, right)
        assert rsp.Status == status.NOT_AUTHORISED
        assert rsp.ErrorComment == f"AE not allowed {right}"
        assert len(rsp.ErrorComment) <= 64
        # and the association goes on
        if right != "echo":
            assert assoc.send_c_echo().Status == status.SUCCESS
    finally:
        assoc.release()


def test_storage_commitment_and_mpps_0124_name_the_store_right(node):
    node.service.registry.add_ae("VIEWER", "UNN", host="127.0.0.1", allow="echo,find,worklist")
    assoc = _association(node, "VIEWER")
    try:
        refs = [(SC, generate_uid())]
        answers = [
            assoc.send_n_action(
                request(refs), 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
            )[0],
            assoc.send_n_create(
                _some("PerformedProcedureStepStatus"),
                ModalityPerformedProcedureStep,
                generate_uid(),
            )[0],
            assoc.send_n_set(
                _some("PerformedProcedureStepStatus"),
                ModalityPerformedProcedureStep,
                generate_uid(),
            )[0],
        ]
    finally:
        assoc.release()
    for rsp in answers:
        assert rsp.Status == status.NOT_AUTHORISED
        assert rsp.ErrorComment == "AE not allowed store"
    assert node.service.index.commitments.listing() == []


def test_0124_in_the_cli_output(node, cli_config):
    """`find` prints the final status with its comment."""
    result = cli_run(
        "find", "--calling-aet", "UNN_US", "-k", "PatientID=P1", "--config", cli_config
    )
    assert result.exit_code == 1
    assert "status 0x0124 AE not allowed find" in result.output


# -- 6c: rejections in words ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("calling", "called", "words"),
    [
        (
            "STRANGER",
            None,
            "rejected (permanent) by the service user: calling AE title not recognized",
        ),
        (
            "UNN_US",
            "NOT_ARCHIVE",
            "rejected (permanent) by the service user: called AE title not recognized",
        ),
    ],
)
def test_a_rejected_echo_is_said_in_words(node, cli_config, calling, called, words):
    args = ["echo", called or "ARCHIVE", "--calling-aet", calling, "--config", cli_config]
    if called:
        args += ["--host", "127.0.0.1", "--port", str(node.port)]
        node.service.registry.add_ae(called, "UNN", host="127.0.0.1", port=node.port)
    line = fails(*args)
    assert words in line
    assert "result 1" not in line and "reason" not in line


# -- 6d: the node's own C-ECHO from the loopback -------------------------------------------------


def test_echo_of_the_node_itself_needs_no_registration(node, cli_config, caplog):
    assert node.service.registry.peer("ARCHIVE") is None
    with caplog.at_level(logging.INFO, logger="archive_node"):
        result = ok("echo", "ARCHIVE", "--config", cli_config)
    assert f"C-ECHO ARCHIVE at 127.0.0.1:{node.port}: status 0x0000" in result.output
    assert "calling ARCHIVE (-) from 127.0.0.1: the node's own title" in caplog.text


@pytest.mark.parametrize("right", [s for s in SERVICES if s != "echo"])
def test_the_nodes_own_title_may_do_nothing_but_echo(node, right):
    assoc = _association(node, "ARCHIVE")
    try:
        rsp = _ask(node, assoc, right)
        assert rsp.Status == status.NOT_AUTHORISED
        assert rsp.ErrorComment == f"AE not allowed {right}"
        assert assoc.send_c_echo().Status == status.SUCCESS
    finally:
        assoc.release()
    assert node.service.index.instances.count() == 0


def test_the_nodes_own_title_cannot_commit_or_report_steps(node):
    assoc = _association(node, "ARCHIVE")
    try:
        rsp, _ = assoc.send_n_action(
            request([(SC, generate_uid())]),
            1,
            StorageCommitmentPushModel,
            StorageCommitmentPushModelInstance,
        )
        created, _ = assoc.send_n_create(
            _some("PerformedProcedureStepStatus"), ModalityPerformedProcedureStep, generate_uid()
        )
    finally:
        assoc.release()
    assert (rsp.Status, created.Status) == (status.NOT_AUTHORISED, status.NOT_AUTHORISED)


def test_a_registered_ae_of_the_nodes_title_keeps_its_registration(node):
    """Registered, the registry decides for the node's title as for any AE: here an address
    that is not the loopback's, so the loopback is refused."""
    node.service.registry.add_ae("ARCHIVE", "UNN", host="10.255.255.9")
    assoc = associate(node, "ARCHIVE")
    assert assoc.is_rejected
    node.service.registry.update_ae("ARCHIVE", host="127.0.0.1", allow="echo,store")
    assoc = associate(node, "ARCHIVE", [(SC, [ExplicitVRLittleEndian])])
    try:
        assert assoc.send_c_store(dicom_objects.secondary_capture()).Status == status.SUCCESS
    finally:
        assoc.release()


def test_another_called_title_is_still_rejected(node):
    assoc = associate(node, "ARCHIVE", called="NOT_ARCHIVE")
    assert assoc.is_rejected
    assert assoc.acceptor.primitive.diagnostic == 7
