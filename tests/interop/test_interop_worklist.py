"""Orders end to end with clients nobody here wrote: an ORM sent by python-hl7's `mllp_send`
appears in DCMTK `findscu -W` at its station with its patient, issuer, accession and Study
Instance UID; a study DCMTK `storescu` stores with those values marks the order performed; an
ADT^A08 sent afterwards changes the name C-FIND returns. SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.helpers import dicom_objects
from tests.helpers.dcmtk import TIMEOUT, output, run
from tests.helpers.hl7 import TODAY, adt, orm, pid
from tests.helpers.serving import serving

pytestmark = [
    pytest.mark.dcmtk,
    pytest.mark.skipif(shutil.which("findscu") is None, reason="DCMTK findscu not installed"),
]

MLLP_SEND = Path(sys.executable).parent / "mllp_send"


@pytest.fixture
def hl7_node(service, registry):
    registry.update_ae("UNN_US", allow="echo,store,worklist")
    service.orders.add_sender("UNN_RIS", "UNN", "127.0.0.1")
    with serving(service, hl7=True) as running:
        yield running


def mllp_send(node, tmp_path: Path, message: str) -> str:
    """Send one message with python-hl7's command-line client; its printed ACK."""
    path = tmp_path / "message.hl7"
    path.write_bytes(message.replace("\r", "\n").encode("utf-8"))
    proc = subprocess.run(
        [str(MLLP_SEND), "--port", str(node.hl7_port), "--loose", "--file", str(path), node.host],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode("utf-8", "replace")


def findscu_worklist(node, tmp_path: Path, station: str) -> list:
    out = tmp_path / "worklist"
    out.mkdir(exist_ok=True)
    proc = run(
        "findscu",
        "-W",
        "-aet",
        "UNN_US",
        "-aec",
        node.ae_title,
        "-k",
        "SpecificCharacterSet=ISO_IR 192",
        "-k",
        f"ScheduledProcedureStepSequence[0].ScheduledStationAETitle={station}",
        "-k",
        f"ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate={TODAY}",
        "-k",
        "ScheduledProcedureStepSequence[0].Modality",
        "-k",
        "PatientName",
        "-k",
        "PatientID",
        "-k",
        "IssuerOfPatientID",
        "-k",
        "AccessionNumber",
        "-k",
        "StudyInstanceUID",
        "-X",
        "-od",
        str(out),
        node.host,
        str(node.port),
    )
    assert proc.returncode == 0, output(proc)
    return [dcmread(path) for path in sorted(out.iterdir())]


def test_an_hl7_order_reaches_findscu_and_a_stored_study_performs_it(hl7_node, tmp_path):
    study_uid = generate_uid()
    ack = mllp_send(hl7_node, tmp_path, orm("ORM-1", study_uid=study_uid, station="UNN_US"))
    assert "MSA|AA|ORM-1" in ack
    (answer,) = findscu_worklist(hl7_node, tmp_path, "UNN_US")
    assert answer.PatientID == "PAT-1"
    assert answer.IssuerOfPatientID == "UNN"
    assert str(answer.PatientName) == "ØDEGÅRD^ÅSE^M"
    assert answer.AccessionNumber == "ACC-1"
    assert answer.StudyInstanceUID == study_uid
    assert answer.ScheduledProcedureStepSequence[0].Modality == "US"
    # another station's worklist is empty
    (tmp_path / "other").mkdir()
    assert findscu_worklist(hl7_node, tmp_path / "other", "UNN_CAM") == []

    # the device stores what the worklist gave it, with DCMTK's storescu
    ds = dicom_objects.secondary_capture(
        patient_id=answer.PatientID,
        issuer=answer.IssuerOfPatientID,
        patient_name="ODEGARD^ASE",
        study_uid=answer.StudyInstanceUID,
    )
    ds.AccessionNumber = answer.AccessionNumber
    path = dicom_objects.write(ds, tmp_path / "us.dcm")
    proc = run(
        "storescu",
        "-aet",
        "UNN_US",
        "-aec",
        hl7_node.ae_title,
        hl7_node.host,
        str(hl7_node.port),
        str(path),
    )
    assert proc.returncode == 0, output(proc)
    (step,) = hl7_node.service.orders.steps()
    assert step.performed

    # an ADT^A08 from the hospital's record changes the name C-FIND returns
    ack = mllp_send(hl7_node, tmp_path, adt("A08", "ADT-1", patient=pid(name="NORDMANN^KARI")))
    assert "MSA|AA|ADT-1" in ack
    out = tmp_path / "find"
    out.mkdir()
    proc = run(
        "findscu",
        "-S",
        "-aet",
        "UNN_WS",
        "-aec",
        hl7_node.ae_title,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study_uid}",
        "-k",
        "PatientName",
        "-X",
        "-od",
        str(out),
        hl7_node.host,
        str(hl7_node.port),
    )
    assert proc.returncode == 0, output(proc)
    (found,) = [dcmread(p) for p in out.iterdir()]
    assert str(found.PatientName) == "NORDMANN^KARI"


def test_bad_hl7_from_mllp_send_is_answered_and_nothing_changes(hl7_node, tmp_path):
    ack = mllp_send(hl7_node, tmp_path, orm("BAD-1", patient="PID|1||||DOE^JOHN"))
    assert "MSA|AE|BAD-1" in ack
    assert "|PID^1^3|101^Required field missing^HL70357|E|" in ack
    assert findscu_worklist(hl7_node, tmp_path, "UNN_US") == []
