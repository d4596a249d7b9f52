"""DCMTK's deflated datasets against the structure check at receipt, on both backends.

dcmconv +td writes a deflate stream of odd length without the pad byte PS3.5 A.5 asks for
(CT_small.dcm and rtplan.dcm come out odd): such a file sent as it is, byte for byte, is refused.
storescu -xd pads what it sends, even from such a file: DCMTK senders are kept.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread

from archive_node.dicom import status
from archive_node.dicom.structure import check_path
from tests.helpers.dcmtk import output, run
from tests.helpers.dimse import associate, send_file
from tests.unit.test_structure import TEST_FILES

pytestmark = [
    pytest.mark.dcmtk,
    pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK storescu not installed"),
    pytest.mark.skipif(shutil.which("dcmconv") is None, reason="DCMTK dcmconv not installed"),
]
DEFLATED = "1.2.840.10008.1.2.1.99"


def deflated_by_dcmconv(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"dfl-{name}"
    proc = run("dcmconv", "+td", TEST_FILES / name, path)
    assert proc.returncode == 0, output(proc)
    return path


@pytest.mark.parametrize("name", ["CT_small.dcm", "rtplan.dcm"])
def test_storescu_deflated_is_kept_even_from_an_unpadded_file(node, tmp_path, name):
    path = deflated_by_dcmconv(tmp_path, name)
    # DCMTK 3.6's file is odd and unpadded; storescu pads what it sends all the same
    proc = run(
        "storescu", "-v", "-xd", "-aet", "UNN_US", "-aec", node.ae_title,
        node.host, node.port, path,
    )  # fmt: skip
    text = output(proc)
    assert re.search(r"Received Store Response \(Success\)", text), text
    uid = dcmread(path, stop_before_pixels=True).SOPInstanceUID
    kept = node.service.storage.absolute(node.service.index.instances.find(uid).path)
    assert check_path(kept) is None
    assert str(dcmread(kept).file_meta.TransferSyntaxUID) == DEFLATED


def test_the_unpadded_file_sent_as_it_is_is_refused(node, tmp_path):
    path = deflated_by_dcmconv(tmp_path, "rtplan.dcm")
    if check_path(path) is None:
        pytest.skip("this DCMTK pads the deflate streams it writes")
    sop_class = str(dcmread(path, stop_before_pixels=True).SOPClassUID)
    assoc = associate(node, "UNN_US", [(sop_class, [DEFLATED])])
    try:
        answer = send_file(assoc, path)
    finally:
        assoc.release()
    assert answer.Status == status.CANNOT_UNDERSTAND
    assert answer.ErrorComment.startswith("odd deflate stream length ")
    assert node.service.index.instances.count() == 0
