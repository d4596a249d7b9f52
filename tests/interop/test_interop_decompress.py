"""Issue 17 with DCMTK's own tools: every stored JPEG, JPEG-LS, JPEG 2000, RLE, Deflate and Big
Endian object of a representative set is retrieved by getscu and moved by movescu into a
storescp with their default (uncompressed only) proposals, and its pixels equal what DCMTK's
dcmdjpeg, dcmdjpls, dcmdrle (or dcmconv, for Deflate and Big Endian) make of the stored file.
DCMTK has no JPEG 2000 decoder: those are compared with pydicom's (openjpeg) decoding."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from archive_node.dicom import status
from tests.helpers.dcmtk import (
    MISSING,
    TOOLS,
    counts,
    dcmtk,
    final_response,
    getscu,
    output,
)
from tests.helpers.dimse import store
from tests.helpers.environment import REQUIRE_DCMTK
from tests.helpers.ports import free_port
from tests.helpers.serving import stored_path
from tests.interop.test_interop_retrieve import (
    LOOPBACK,
    STORESCP,
    StoreSCP,
    listening,
    movescu,
)
from tests.node.test_decompress_on_retrieve import bundled

DECODERS = {tool: dcmtk(tool) for tool in ("dcmdjpeg", "dcmdjpls", "dcmdrle", "dcmconv")}

pytestmark = [
    pytest.mark.dcmtk,
    pytest.mark.skipif(
        bool(MISSING + [t for t, p in DECODERS.items() if p is None]) and not REQUIRE_DCMTK,
        reason="DCMTK not installed",
    ),
]

# name: the DCMTK tool that decompresses it (None: pydicom's decoding, DCMTK has none)
OBJECTS = {
    "SC_rgb_jpeg_dcmtk.dcm": "dcmdjpeg",  # JPEG baseline, YBR_FULL_422
    "SC_rgb_dcmtk_+eb+cr.dcm": "dcmdjpeg",  # JPEG baseline, RGB
    "examples_ybr_color.dcm": "dcmdjpeg",  # JPEG baseline, US multi-frame
    "SC_rgb_small_odd_jpeg.dcm": "dcmdjpeg",
    "JPGExtended.dcm": "dcmdjpeg",  # JPEG extended, 12-bit
    "SC_rgb_jpeg_gdcm.dcm": "dcmdjpeg",  # JPEG lossless SV1
    "MR_small_jpeg_ls_lossless.dcm": "dcmdjpls",
    "JPEGLSNearLossless_16.dcm": "dcmdjpls",
    "SC_rgb_jls_lossy_sample.dcm": "dcmdjpls",
    "MR_small_RLE.dcm": "dcmdrle",
    "SC_rgb_rle_16bit_2frame.dcm": "dcmdrle",
    "rtdose_rle.dcm": "dcmdrle",  # 32-bit, 15 frames
    "image_dfl.dcm": "dcmconv",  # Deflated Explicit VR Little Endian
    "MR_small_bigendian.dcm": "dcmconv",
    "SC_rgb_small_odd_big_endian.dcm": "dcmconv",
    "MR_small_jp2klossless.dcm": None,  # JPEG 2000 lossless
    "JPEG2000.dcm": None,  # JPEG 2000
}
# 12-bit JPEG: pillow has no 12-bit decoder, and pylibjpeg's libjpeg and DCMTK's IJG build
# round some pixels of this lossy image differently, by 1 (every other one is exact)
TOLERANCE = {"JPGExtended.dcm": 1}


@pytest.fixture(autouse=True)
def _dcmtk_present() -> None:
    missing = MISSING + [tool for tool, path in DECODERS.items() if path is None]
    if missing:
        pytest.fail(f"DCMTK {', '.join(missing)} missing but ARCHIVE_NODE_REQUIRE_DCMTK=1")


@pytest.fixture
def study(node) -> tuple[str, dict[str, tuple[str, Dataset]]]:
    """OBJECTS stored in one study: its UID, and per SOP Instance UID (name, dataset)."""
    study_uid = generate_uid()
    kept = {}
    for name in OBJECTS:
        ds = bundled(name, study_uid, patient_id="DCMTK-DEC")
        assert store(node, ds) == status.SUCCESS, name
        kept[str(ds.SOPInstanceUID)] = (name, ds)
    return study_uid, kept


def reference_pixels(node, uid: str, name: str, tmp_path: Path) -> np.ndarray:
    """The pixels DCMTK decodes from the stored file (pydicom's for JPEG 2000)."""
    kept = stored_path(node, uid)
    tool = OBJECTS[name]
    if tool is None:
        return dcmread(kept).pixel_array
    out = tmp_path / f"reference-{uid}.dcm"
    args = [str(DECODERS[tool]), str(kept), str(out)]
    if tool == "dcmconv":
        args.insert(1, "+te")  # Explicit VR Little Endian
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dcmread(out).pixel_array


def assert_dcmtk_pixels(node, received: dict[str, Path], study, tmp_path: Path) -> None:
    _, kept = study
    assert set(received) == set(kept)
    for uid, (name, ds) in kept.items():
        out = dcmread(received[uid])
        # decompressed or re-encoded; or as stored where the peer takes it (storescp: Big Endian)
        arrived = out.file_meta.TransferSyntaxUID
        assert arrived in (ExplicitVRLittleEndian, ImplicitVRLittleEndian) or (
            arrived == ds.file_meta.TransferSyntaxUID and not arrived.is_compressed
        ), name
        got, expected = out.pixel_array, reference_pixels(node, uid, name, tmp_path)
        assert got.shape == expected.shape, name
        difference = np.abs(got.astype(np.int64) - expected.astype(np.int64)).max()
        assert difference <= TOLERANCE.get(name, 0), f"{name}: off by {difference}"


def test_getscu_default_proposal_receives_every_object_decompressed(node, study, tmp_path):
    study_uid, kept = study
    proc, files = getscu(
        node, tmp_path, "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study_uid}"
    )
    final = final_response(proc, "C-GET RSP")
    assert (final.status, *counts(final)) == (status.SUCCESS, len(kept), 0, 0), output(proc)
    assert_dcmtk_pixels(node, files, study, tmp_path)


def test_getscu_preferring_jpeg_receives_every_object(node, study, tmp_path):
    """getscu +xy proposes [JPEG baseline, uncompressed...] in one context per class: the node
    takes Explicit VR Little Endian, in which every object can go (issue 17 point 5)."""
    study_uid, kept = study
    proc, files = getscu(
        node,
        tmp_path,
        "-S",
        "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={study_uid}",
        prefer="+xy",
    )
    final = final_response(proc, "C-GET RSP")
    assert (final.status, *counts(final)) == (status.SUCCESS, len(kept), 0, 0), output(proc)
    assert_dcmtk_pixels(node, files, study, tmp_path)


@pytest.fixture
def plain_storescp(node, tmp_path):
    """storescp with its default proposal handling (uncompressed syntaxes only), registered
    for UNN as STORESCP."""
    directory, log = tmp_path / "storescp", tmp_path / "storescp.log"
    directory.mkdir()
    scp = None
    for _ in range(3):  # the free port may be taken before storescp binds it
        port = free_port()
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [str(TOOLS["storescp"]), "-aet", STORESCP, "-od", str(directory), str(port)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TCP_NODELAY": "1"},
            )
        if listening(proc, port):
            scp = StoreSCP(proc, port, directory, log)
            break
    assert scp is not None, log.read_text(errors="replace")
    try:
        node.service.registry.add_ae(STORESCP, "UNN", host=LOOPBACK, port=scp.port, allow="echo")
        yield scp
    finally:
        scp.stop()


def test_movescu_into_a_default_storescp_moves_every_object_decompressed(
    node, study, plain_storescp, tmp_path
):
    study_uid, kept = study
    proc = movescu(node, "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study_uid}")
    final = final_response(proc, "C-MOVE RSP")
    assert (final.status, *counts(final)) == (status.SUCCESS, len(kept), 0, 0), output(proc)
    assert_dcmtk_pixels(node, plain_storescp.files(), study, tmp_path)
