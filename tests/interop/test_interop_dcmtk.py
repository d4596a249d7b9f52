"""Interoperability with DCMTK's echoscu and storescu against a running node, on both backends.

storescu proposes, by default, only uncompressed transfer syntaxes and transcodes every file to
what was accepted; it cannot turn a JPEG or H.264 file into Explicit VR Little Endian and fails.
`-R` (only required contexts) does not propose a file's own syntax either, and the `-x?` options
each add one compressed syntax for *every* SOP class. What sends each file of a mixed directory
in its own transfer syntax, in one association, is an association profile (`-xf FILE PROFILE`)
that pairs each SOP class with its syntax, plus `+sd` to scan the directory.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import MPEG4HP41, ExplicitVRLittleEndian, JPEGBaseline8Bit

from archive_node.dicom.provenance import Provenance, from_file_meta
from tests.helpers import dicom_objects
from tests.helpers.dcmtk import output, run
from tests.helpers.serving import stored_path

pytestmark = [
    pytest.mark.dcmtk,
    pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK storescu not installed"),
    pytest.mark.skipif(shutil.which("echoscu") is None, reason="DCMTK echoscu not installed"),
]

# An association profile for storescu (DCMTK asconfig.txt format): each SOP class in the
# directory with the syntax its files are encoded in, so nothing is transcoded on the way.
STORESCU_PROFILE = r"""
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LittleEndianExplicit
TransferSyntax2 = LittleEndianImplicit

[JPEGBaseline]
TransferSyntax1 = JPEGBaseline

[MPEG4]
TransferSyntax1 = MPEG4HighProfile/Level4.1

[[PresentationContexts]]
[ArchiveInterop]
PresentationContext1 = CTImageStorage\Uncompressed
PresentationContext2 = SecondaryCaptureImageStorage\Uncompressed
PresentationContext3 = UltrasoundMultiframeImageStorage\Uncompressed
PresentationContext4 = EncapsulatedPDFStorage\Uncompressed
PresentationContext5 = VLPhotographicImageStorage\JPEGBaseline
PresentationContext6 = VideoPhotographicImageStorage\MPEG4

[[Profiles]]
[Archive]
PresentationContexts = ArchiveInterop
"""


def echoscu(node, calling: str, called: str | None = None) -> subprocess.CompletedProcess[str]:
    return run(
        "echoscu",
        "-v",
        "-aet",
        calling,
        "-aec",
        called or node.ae_title,
        node.host,
        str(node.port),
    )


def storescu(node, calling: str, profile: Path, *inputs: Path) -> subprocess.CompletedProcess:
    return run(
        "storescu",
        "-v",
        "+sd",
        "-xf",
        profile,
        "Archive",
        "-aet",
        calling,
        "-aec",
        node.ae_title,
        node.host,
        str(node.port),
        *inputs,
    )


@pytest.fixture
def profile(tmp_path) -> Path:
    path = tmp_path / "storescu.cfg"
    path.write_text(STORESCU_PROFILE)
    return path


def mixed_objects() -> dict[str, object]:
    return {
        "us_multiframe.dcm": dicom_objects.us_multiframe(patient_id="DCMTK1"),
        "vl_photo_jpeg.dcm": dicom_objects.vl_photo_jpeg(patient_id="DCMTK1"),
        "video_h264.dcm": dicom_objects.video_h264(patient_id="DCMTK1"),
        "ct.dcm": dicom_objects.ct(patient_id="DCMTK1"),
        "secondary_capture.dcm": dicom_objects.secondary_capture(patient_id="DCMTK1"),
        "encapsulated_pdf.dcm": dicom_objects.encapsulated_pdf(patient_id="DCMTK1"),
    }


# -- C-ECHO ----------------------------------------------------------------------------------


def test_echoscu_from_registered_ae_succeeds(node):
    proc = echoscu(node, "UNN_US")
    assert proc.returncode == 0, output(proc)
    assert "Received Echo Response (Success)" in output(proc)


@pytest.mark.parametrize(
    ("calling", "called", "reason"),
    [
        ("NOBODY_KNOWN", None, "Calling AE Title Not Recognized"),
        ("UNN_US", "NOT_ARCHIVE", "Called AE Title Not Recognized"),
        # FARAWAY is registered for 10.255.255.1; this association comes from 127.0.0.1.
        ("FARAWAY", None, "Calling AE Title Not Recognized"),
    ],
    ids=["unregistered", "wrong-called-title", "wrong-address"],
)
def test_echoscu_rejections_carry_the_reason(node, calling, called, reason):
    proc = echoscu(node, calling, called=called)
    assert proc.returncode != 0
    text = output(proc)
    assert "Association Rejected" in text
    assert reason in text


def test_echoscu_without_echo_right_gets_not_authorised(node):
    # NLSH_CAM may only store: the association opens, the C-ECHO answers 0x0124.
    proc = echoscu(node, "NLSH_CAM")
    text = output(proc)
    assert "Association Accepted" in text
    match = re.search(r"Received Echo Response \((.*)\)", text)
    assert match, text
    assert "Success" not in match.group(1)
    assert "0x124" in match.group(1).lower()
    # DCMTK 3.6 echoscu exits 0 whatever the status: the status line is the verdict.
    assert proc.returncode in (0, 1)


# -- C-STORE ---------------------------------------------------------------------------------


def test_storescu_mixed_directory_kept_byte_for_byte(node, tmp_path, profile):
    push = tmp_path / "push"
    sources = {
        str(ds.SOPInstanceUID): dicom_objects.write(ds, push / name)
        for name, ds in mixed_objects().items()
    }
    expected_syntaxes = {str(dcmread(p).file_meta.TransferSyntaxUID) for p in sources.values()}
    assert {JPEGBaseline8Bit, MPEG4HP41, ExplicitVRLittleEndian} <= expected_syntaxes

    proc = storescu(node, "UNN_US", profile, push)
    text = output(proc)
    assert proc.returncode == 0, text
    assert text.count("Received Store Response (Success)") == len(sources), text
    # No file was re-encoded on the way: each went in the syntax it is stored in.
    for line in re.findall(r"Converting transfer syntax: (.*)", text):
        before, after = line.split(" -> ")
        assert before == after, line

    for sop_uid, source in sources.items():
        record = node.service.index.instances.find(sop_uid)
        assert record is not None, f"no index row for {source.name}"
        assert record.calling_ae == "UNN_US" and record.hospital == "UNN"
        kept = node.service.storage.absolute(record.path)
        assert dicom_objects.dataset_bytes(kept) == dicom_objects.dataset_bytes(source), (
            source.name
        )
        source_ts = dcmread(source, stop_before_pixels=True).file_meta.TransferSyntaxUID
        kept_ts = dcmread(kept, stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert kept_ts == source_ts, source.name
        assert record.transfer_syntax_uid == source_ts, source.name
        kept_meta = dcmread(kept, stop_before_pixels=True).file_meta
        assert from_file_meta(kept_meta) == Provenance("UNN_US", "UNN", "UNN"), source.name
    assert node.service.index.instances.count() == len(sources)
    assert list(node.service.storage.incoming.iterdir()) == []


def test_storescu_from_store_only_ae(node, tmp_path, profile):
    ds = dicom_objects.ct(patient_id="CAM1")
    source = dicom_objects.write(ds, tmp_path / "push" / "ct.dcm")
    proc = storescu(node, "NLSH_CAM", profile, source)
    text = output(proc)
    assert proc.returncode == 0, text
    assert "Received Store Response (Success)" in text
    kept = stored_path(node, ds.SOPInstanceUID)
    assert dicom_objects.dataset_bytes(kept) == dicom_objects.dataset_bytes(source)
    record = node.service.index.instances.find(ds.SOPInstanceUID)
    assert record.calling_ae == "NLSH_CAM" and record.hospital == "NLSH"


def test_storescu_from_unregistered_ae_stores_nothing(node, tmp_path, profile):
    ds = dicom_objects.secondary_capture()
    source = dicom_objects.write(ds, tmp_path / "push" / "sc.dcm")
    proc = storescu(node, "STRANGER", profile, source)
    assert proc.returncode != 0
    assert "Calling AE Title Not Recognized" in output(proc)
    assert node.service.index.instances.find(ds.SOPInstanceUID) is None
    assert node.service.index.instances.count() == 0
