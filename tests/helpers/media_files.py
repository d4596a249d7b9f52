"""Synthetic media for tests: JPEGs made with Pillow, MP4s with ffmpeg, PDFs written by hand."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers.environment import REQUIRE_MEDIA_TOOLS

FFMPEG = shutil.which("ffmpeg")
DCIODVFY = shutil.which("dciodvfy")
# CI installs ffmpeg and dicom3tools and sets ARCHIVE_NODE_REQUIRE_MEDIA_TOOLS: their tests fail
# there instead of skipping.
needs_ffmpeg = pytest.mark.skipif(
    FFMPEG is None and not REQUIRE_MEDIA_TOOLS,
    reason="ffmpeg not installed (apt-get install ffmpeg)",
)


def jpeg(
    path: Path,
    *,
    size: tuple[int, int] = (97, 61),
    mode: str = "RGB",
    taken: str | None = None,
    make: str = "",
    model: str = "",
    orientation: int | None = None,
    **save: object,
) -> Path:
    """A JPEG of a gradient (so it compresses like a photo), with the EXIF asked for;
    `save` goes to Pillow (progressive=True, subsampling=0, quality=...)."""
    image = Image.linear_gradient("L").resize(size)
    if mode == "RGB":
        image = Image.merge("RGB", (image, image.rotate(90).resize(size), image.transpose(0)))
    elif mode != "L":
        image = image.convert(mode)
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if orientation is not None:
        exif[0x0112] = orientation
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken
    image.save(path, format="JPEG", exif=exif, **save)
    return path


def mp4(
    path: Path, *args: str, seconds: float = 1.0, size: str = "64x48", rate: str = "25"
) -> Path:
    """An MP4 of ffmpeg's test pattern: `args` are encoder options (default H.264 High,
    4:2:0 8-bit). Fails the test when ffmpeg is missing."""
    if FFMPEG is None:
        pytest.fail("ffmpeg is needed to make the test video")
    codec = list(args) or ["-c:v", "libx264", "-profile:v", "high", "-pix_fmt", "yuv420p"]
    source = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}", "-t", str(seconds)]
    subprocess.run(
        [FFMPEG, "-v", "error", "-nostdin", "-y", *source, *codec, str(path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return path


def pdf(path: Path, text: str = "Referral") -> Path:
    """A small, valid one-page PDF (ISO 32000-1), its cross-reference table computed."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path
