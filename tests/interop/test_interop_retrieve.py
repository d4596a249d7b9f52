"""Interoperability of the node's C-MOVE and C-GET SCP with DCMTK's movescu and getscu, on both
index backends: movescu moves into a DCMTK storescp registered as the Move Destination, getscu
receives over its own association; every object arrives byte for byte.

getscu proposes every storage SOP class with the SCP role, each in one context whose first
syntax is the one its `+x?` option prefers (then the uncompressed ones). With one context per
class, the node accepts Explicit VR Little Endian for an image class (every image can be sent
in it: a JPEG one decompressed, issue 17) and the SCU's first video syntax for a video class
(retrieve_plan.receiving_syntaxes): getscu receives the video as stored with +xn, a JPEG
object only decompressed (test_interop_decompress.py compares its pixels with dcmdjpeg's).

getscu 3.6 does not read the identifier of a C-GET response: after a final response that
carries the Failed SOP Instance UID List, its A-RELEASE meets that P-DATA and it aborts the
association. The tests read statuses from the -d log (the DIMSE messages it dumps), as
test_interop_findscu does, never from the exit code alone.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import Verification

from archive_node.dicom import status
from tests.helpers import dicom_objects
from tests.helpers.dcmtk import (
    MISSING,
    TOOLS,
    counts,
    files_by_uid,
    final_response,
    getscu,
    output,
    responses,
    run,
    stop_process,
)
from tests.helpers.dimse import associate, store
from tests.helpers.environment import REQUIRE_DCMTK
from tests.helpers.ports import free_port
from tests.helpers.serving import stored_path

pytestmark = [
    pytest.mark.dcmtk,
    pytest.mark.skipif(
        bool(MISSING) and not REQUIRE_DCMTK, reason=f"DCMTK {', '.join(MISSING)} not installed"
    ),
]

WORKSTATION = "UNN_WS"  # registered with echo,store,find,move,get
STORESCP = "STORESCP"
LOOPBACK = "127.0.0.1"
STARTUP = 10.0  # seconds for storescp to listen


@pytest.fixture(autouse=True)
def _dcmtk_present() -> None:
    if MISSING:
        pytest.fail(f"DCMTK {', '.join(MISSING)} missing but ARCHIVE_NODE_REQUIRE_DCMTK=1")


# -- what was stored -------------------------------------------------------------------------


@dataclass
class Study:
    """One UNN study of four kinds of object, as stored through the node."""

    uid: str
    patient_id: str
    objects: dict[str, Dataset]  # "us", "photo", "video", "ct"

    def uid_of(self, kind: str) -> str:
        return str(self.objects[kind].SOPInstanceUID)

    def series_of(self, kind: str) -> str:
        return str(self.objects[kind].SeriesInstanceUID)

    @property
    def uids(self) -> set[str]:
        return {str(ds.SOPInstanceUID) for ds in self.objects.values()}


@pytest.fixture
def study(node) -> Study:
    """A US multi-frame, a VL photo (JPEG baseline), an H.264 video and a CT in one study,
    pushed by C-STORE; and a CT of another patient that no retrieve here may send."""
    study_uid, patient_id = generate_uid(), "RETR-1"
    kinds = ("us", "photo", "video", "ct")
    objects = dict(zip(kinds, dicom_objects.four_kinds(study_uid, patient_id), strict=True))
    for ds in [*objects.values(), dicom_objects.ct(patient_id="RETR-OTHER")]:
        assert store(node, ds) == status.SUCCESS
    return Study(study_uid, patient_id, objects)


def assert_kept_byte_for_byte(node, received: dict[str, Path], uids: set[str]) -> None:
    """Exactly `uids` arrived, each with the dataset bytes and transfer syntax stored."""
    assert set(received) == uids
    for uid in uids:
        kept = stored_path(node, uid)
        assert dicom_objects.dataset_bytes(received[uid]) == dicom_objects.dataset_bytes(kept), (
            f"instance {uid} changed on the way"
        )
        arrived = dcmread(received[uid], stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert arrived == dcmread(kept, stop_before_pixels=True).file_meta.TransferSyntaxUID


# -- DCMTK processes -------------------------------------------------------------------------


@dataclass
class StoreSCP:
    """A DCMTK storescp on a loopback port, writing what it receives into `directory`."""

    proc: subprocess.Popen
    port: int
    directory: Path
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def files(self) -> dict[str, Path]:
        return files_by_uid(self.directory)

    def stop(self) -> None:
        stop_process(self.proc)


def listening(proc: subprocess.Popen, port: int) -> bool:
    """Poll until `port` takes a TCP connection (True), or the process has exited (False)."""
    deadline = time.monotonic() + STARTUP
    while proc.poll() is None:
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return True
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"storescp not listening on {port} after {STARTUP} s"
                ) from None
            time.sleep(0.01)
    return False


def start_storescp(directory: Path, log: Path) -> StoreSCP:
    """storescp accepting every storage class in every syntax it knows (+xa), writing files
    named by SOP Instance UID; -d logs each C-STORE request with its Move Originator."""
    directory.mkdir(parents=True)
    for _ in range(3):  # the free port may be taken before storescp binds it
        port = free_port()
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [
                    str(TOOLS["storescp"]),
                    "-d",
                    "+xa",
                    "-aet",
                    STORESCP,
                    "-od",
                    str(directory),
                    str(port),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TCP_NODELAY": "1"},
            )
        try:
            up = listening(proc, port)
        except AssertionError:
            proc.kill()
            proc.wait()
            raise
        if up:
            return StoreSCP(proc, port, directory, log)
    raise AssertionError(f"storescp did not start: {log.read_text(errors='replace')}")


def movescu(
    node, model: str, *keys: str, destination: str = STORESCP, calling: str = WORKSTATION
) -> subprocess.CompletedProcess[str]:
    args = [
        str(TOOLS["movescu"]),
        "-d",
        model,
        "-aet",
        calling,
        "-aec",
        node.ae_title,
        "-aem",
        destination,
    ]
    for key in keys:
        args += ["-k", key]
    return run(*args, node.host, str(node.port))


def store_requests(scp: StoreSCP, expected: int) -> list[str]:
    """The Move Originator AE Titles of the C-STORE requests storescp logged, polled until
    `expected` are there: the log is written by another process."""
    deadline = time.monotonic() + 10
    while True:
        text = scp.text()
        if text.count("Received Store Request") >= expected or time.monotonic() > deadline:
            return re.findall(r"Move Originator AE Title\s*: (\S*)", text)
        time.sleep(0.01)


# -- C-MOVE into storescp --------------------------------------------------------------------


def test_movescu_study_root_moves_the_study_into_storescp(node, study, storescp):
    proc = movescu(node, "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study.uid}")
    assert proc.returncode == 0, output(proc)
    final = final_response(proc, "C-MOVE RSP")
    assert final.status == status.SUCCESS
    assert counts(final) == (4, 0, 0)
    assert [rsp.remaining for rsp in responses(proc, "C-MOVE RSP")[:-1]] == [3, 2, 1]
    assert_kept_byte_for_byte(node, storescp.files(), study.uids)
    # PS3.4 C.4.2.2: each sub-operation names the AE that asked for the move
    assert store_requests(storescp, 4) == [WORKSTATION] * 4, storescp.text()
    assert storescp.text().count("Association Acknowledged") == 1


def test_movescu_patient_root_patient_level_moves_the_patients_objects(node, study, storescp):
    proc = movescu(node, "-P", "QueryRetrieveLevel=PATIENT", f"PatientID={study.patient_id}")
    assert proc.returncode == 0, output(proc)
    final = final_response(proc, "C-MOVE RSP")
    assert final.status == status.SUCCESS
    assert counts(final) == (4, 0, 0)
    # the other patient's CT stays home
    assert_kept_byte_for_byte(node, storescp.files(), study.uids)


def test_movescu_to_unknown_destination_is_refused_and_nothing_is_sent(node, study, storescp):
    identifier = ("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study.uid}")
    # not registered at all; registered without a port (UNN_US): neither has an address, and
    # the requester is told the same for both (issue 16: the log says which)
    for destination, reason in [
        ("NOWHERE", "move destination unknown"),
        ("UNN_US", "move destination unknown"),
    ]:
        proc = movescu(node, "-S", *identifier, destination=destination)
        final = final_response(proc, "C-MOVE RSP")
        assert final.status == status.MOVE_DESTINATION_UNKNOWN, destination
        assert len(responses(proc, "C-MOVE RSP")) == 1  # no pending response before it
        assert re.search(rf"\(0000,0902\) LO \[[^\]]*{reason}", output(proc)), output(proc)
    assert storescp.files() == {}
    assert "Association Acknowledged" not in storescp.text()

    # storescp was there all along: the same move to it succeeds
    proc = movescu(node, "-S", *identifier)
    assert final_response(proc, "C-MOVE RSP").status == status.SUCCESS
    assert set(storescp.files()) == study.uids


# -- C-GET into getscu -----------------------------------------------------------------------


def test_getscu_receives_each_kind_byte_for_byte(node, study, tmp_path):
    # Uncompressed: US and CT by a list of series UIDs, with getscu's default proposal.
    series = f"{study.series_of('us')}\\{study.series_of('ct')}"
    proc, files = getscu(
        node,
        tmp_path,
        "-S",
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={study.uid}",
        f"SeriesInstanceUID={series}",
    )
    assert proc.returncode == 0, output(proc)
    final = final_response(proc, "C-GET RSP")
    assert (final.status, *counts(final)) == (status.SUCCESS, 2, 0, 0)
    assert_kept_byte_for_byte(node, files, {study.uid_of("us"), study.uid_of("ct")})

    # The photo at IMAGE level, JPEG baseline 8 bit preferred: one context [JPEG, uncompressed]
    # is accepted in Explicit VR Little Endian, and the photo arrives decompressed.
    proc, files = getscu(
        node,
        tmp_path,
        "-S",
        "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={study.uid}",
        f"SeriesInstanceUID={study.series_of('photo')}",
        f"SOPInstanceUID={study.uid_of('photo')}",
        prefer="+xy",
    )
    final = final_response(proc, "C-GET RSP")
    assert (final.status, *counts(final)) == (status.SUCCESS, 1, 0, 0)
    assert set(files) == {study.uid_of("photo")}
    photo = dcmread(files[study.uid_of("photo")])
    assert photo.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert (photo.PhotometricInterpretation, photo.LossyImageCompression) == ("RGB", "01")

    # The video at SERIES level, MPEG-4 AVC/H.264 HP Level 4.1 preferred.
    proc, files = getscu(
        node,
        tmp_path,
        "-S",
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={study.uid}",
        f"SeriesInstanceUID={study.series_of('video')}",
        prefer="+xn",
    )
    final = final_response(proc, "C-GET RSP")
    assert (final.status, *counts(final)) == (status.SUCCESS, 1, 0, 0)
    assert_kept_byte_for_byte(node, files, {study.uid_of("video")})


def test_getscu_uncompressed_only_gets_a_warning_for_the_video(node, study, tmp_path):
    proc, files = getscu(
        node, tmp_path, "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study.uid}"
    )
    final = final_response(proc, "C-GET RSP")
    # PS3.4 C.4.3.1.4: some sub-operations failed, not all: Warning
    assert final.status == status.SUB_OPERATIONS_WARNING
    assert counts(final) == (3, 1, 0)
    assert final.remaining is None
    # The CT and the US arrive as stored, the JPEG photo decompressed (issue 17); the video
    # cannot be sent uncompressed.
    uncompressed = {study.uid_of("us"), study.uid_of("ct")}
    assert set(files) == uncompressed | {study.uid_of("photo")}
    assert_kept_byte_for_byte(node, {u: files[u] for u in uncompressed}, uncompressed)
    assert output(proc).count("Received C-STORE Request") == 3
    # getscu left the identifier unread and aborted on release: the node keeps serving.
    assoc = associate(node, WORKSTATION, [Verification])
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == status.SUCCESS
    finally:
        assoc.release()


# -- rights ----------------------------------------------------------------------------------


def test_movescu_without_move_right_gets_not_authorised(node, study, storescp):
    reg = node.service.registry
    reg.add_ae("UNN_VIEW", "UNN", host=LOOPBACK, allow="find")
    reg.add_ae("UNN_GETTER", "UNN", host=LOOPBACK, allow="find,get")  # get is not move
    for calling in ("UNN_VIEW", "UNN_GETTER"):
        proc = movescu(
            node,
            "-S",
            "QueryRetrieveLevel=STUDY",
            f"StudyInstanceUID={study.uid}",
            calling=calling,
        )
        assert "Association Accepted" in output(proc), output(proc)
        final = final_response(proc, "C-MOVE RSP")
        assert final.status == status.NOT_AUTHORISED, calling
        assert len(responses(proc, "C-MOVE RSP")) == 1
    assert storescp.files() == {}
    assert "Association Acknowledged" not in storescp.text()


def test_getscu_without_get_right_gets_not_authorised(node, study, tmp_path):
    reg = node.service.registry
    reg.add_ae("UNN_VIEW", "UNN", host=LOOPBACK, allow="find")
    reg.add_ae("UNN_MOVER", "UNN", host=LOOPBACK, allow="find,move")  # move is not get
    for calling in ("UNN_VIEW", "UNN_MOVER"):
        proc, files = getscu(
            node,
            tmp_path,
            "-S",
            "QueryRetrieveLevel=STUDY",
            f"StudyInstanceUID={study.uid}",
            calling=calling,
        )
        assert "Association Accepted" in output(proc), output(proc)
        final = final_response(proc, "C-GET RSP")
        assert final.status == status.NOT_AUTHORISED, calling
        assert len(responses(proc, "C-GET RSP")) == 1
        assert files == {}
        assert "Received C-STORE Request" not in output(proc)
