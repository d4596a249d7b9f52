"""Corrections with peers nobody here wrote, on both index backends: a rejection note (KOS,
113001) sent with DCMTK's storescu hides exactly the instances it references from C-FIND and
C-MOVE and a resend of one is refused; a study sent under the wrong patient by a pynetdicom
"ultrasound machine", moved with `study move`, arrives in DCMTK's storescp with the right
patient's attributes and the original pixel data, and verify stays clean."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from archive_node import integrity
from archive_node.dicom import status
from tests.helpers import dicom_objects
from tests.helpers.dcmtk import final_response, output, run
from tests.helpers.dimse import find, push, store_response
from tests.helpers.identifiers import identifier
from tests.helpers.rejection_notes import rejection_kos, write_kos
from tests.helpers.serving import stored_path
from tests.interop.test_interop_retrieve import movescu

pytestmark = [
    pytest.mark.dcmtk,
    pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK storescu not installed"),
]


def storescu(node, calling: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return run(
        "storescu",
        "-d",
        "-aet",
        calling,
        "-aec",
        node.ae_title,
        node.host,
        str(node.port),
        *map(str, files),
    )


def store_status(proc: subprocess.CompletedProcess[str]) -> int:
    """The DIMSE status of storescu's (one) C-STORE response, from its -d log."""
    found = re.findall(
        r"Message Type\s*: C-STORE RSP.*?DIMSE Status\s*: 0x([0-9a-fA-F]{4})", output(proc), re.S
    )
    assert len(found) == 1, output(proc)
    return int(found[0], 16)


def ultrasound_study(node, patient_id: str, name: str, count: int):
    """A study of `count` US multi-frames pushed by the 'ultrasound machine' (pynetdicom)."""
    study_uid, series_uid = generate_uid(), generate_uid()
    datasets = [
        dicom_objects.us_multiframe(
            patient_id=patient_id, patient_name=name, study_uid=study_uid, series_uid=series_uid
        )
        for _ in range(count)
    ]
    push(node, "UNN_US", datasets)
    return datasets


def images(node, study_uid: str) -> set[str]:
    final, matches = find(
        node,
        identifier("IMAGE", StudyInstanceUID=study_uid, SeriesInstanceUID="", SOPInstanceUID=""),
    )
    assert final.Status == status.SUCCESS
    return {m.SOPInstanceUID for m in matches}


def test_a_kos_from_storescu_hides_what_it_references_and_refuses_resends(
    node,
    storescp,
    tmp_path,
):
    study = ultrasound_study(node, "IOCM-1", "IOCM^ONE", 3)
    rejected, kept = study[:2], study[2:]
    kos = rejection_kos(
        [
            (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPClassUID, ds.SOPInstanceUID)
            for ds in rejected
        ],
        code="113001",
        patient_id="IOCM-1",
        study_uid=study[0].StudyInstanceUID,
    )
    proc = storescu(node, "UNN_WS", write_kos(kos, tmp_path / "kos.dcm"))
    assert proc.returncode == 0, output(proc)
    assert store_status(proc) == status.SUCCESS

    assert images(node, study[0].StudyInstanceUID) == {
        *(ds.SOPInstanceUID for ds in kept),
        kos.SOPInstanceUID,
    }
    proc = movescu(
        node, "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study[0].StudyInstanceUID}"
    )
    assert final_response(proc, "C-MOVE RSP").status == status.SUCCESS, output(proc)
    assert set(storescp.files()) == {*(ds.SOPInstanceUID for ds in kept), kos.SOPInstanceUID}

    # the modality retries one from its queue: refused, with a comment saying why
    rsp = store_response(node, rejected[0])
    assert rsp.Status == status.REJECTED_INSTANCE and "rejected" in rsp.ErrorComment
    resent = dicom_objects.write(rejected[1], tmp_path / "resend.dcm")
    proc = storescu(node, "UNN_US", resent)
    assert store_status(proc) == status.REJECTED_INSTANCE


def test_a_study_moved_to_the_right_patient_reaches_storescp_corrected(
    node,
    storescp,
    tmp_path,
):
    ultrasound_study(node, "RIGHT-US", "RIGHT^PATIENT", 1)
    wrong = ultrasound_study(node, "WRONG-US", "WRONG^PATIENT", 2)
    study_uid = wrong[0].StudyInstanceUID
    corrections = node.service.corrections
    corrections.move_study(
        study_uid, "RIGHT-US", "UNN", frame=corrections.frame("wrong patient picked")
    )
    proc = movescu(node, "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study_uid}")
    assert final_response(proc, "C-MOVE RSP").status == status.SUCCESS, output(proc)
    received = storescp.files()
    assert set(received) == {ds.SOPInstanceUID for ds in wrong}
    for ds in wrong:
        sent = dcmread(received[ds.SOPInstanceUID])
        original = dcmread(stored_path(node, ds.SOPInstanceUID))
        assert (sent.PatientID, sent.IssuerOfPatientID, str(sent.PatientName)) == (
            "RIGHT-US",
            "UNN",
            "RIGHT^PATIENT",
        )
        assert sent.OtherPatientIDsSequence[0].PatientID == "WRONG-US"
        assert original.PatientID == "WRONG-US"  # the stored file is as received
        assert sent.PixelData == original.PixelData
        assert sent.NumberOfFrames == original.NumberOfFrames
    report = integrity.verify(node.service.storage, node.service.index)
    assert report.ok, report.to_json()
