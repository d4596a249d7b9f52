"""The facts of a JPEG photo that DICOM needs: its frame header, its colour, its EXIF, and
where its bitstream ends.

Pillow reads the image and its EXIF; the frame's coding process (Pillow does not say which
SOF marker it met) is read by a walk over the marker segments before the scan (ITU-T T.81
B.1.1.3, Table B.1), and the walk goes on through the scans to the end-of-image marker: what
follows it (the video of a phone's "motion photo", say) is not part of the JPEG bitstream.
The entropy-coded data is decoded once, at an eighth of the size, so a file cut off before its
end is refused without holding a full-size image in memory.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from PIL import Image, UnidentifiedImageError

from .refusal import Refusal

# ITU-T T.81 Table B.1: the start-of-frame markers and the coding process each one names.
_FRAME_TYPES = {
    0xC0: "baseline",
    0xC1: "extended sequential (SOF1)",
    0xC2: "progressive (SOF2)",
    0xC3: "lossless (SOF3)",
    0xC5: "differential sequential (SOF5)",
    0xC6: "differential progressive (SOF6)",
    0xC7: "differential lossless (SOF7)",
    0xC9: "arithmetic-coded sequential (SOF9)",
    0xCA: "arithmetic-coded progressive (SOF10)",
    0xCB: "arithmetic-coded lossless (SOF11)",
    0xCD: "differential arithmetic-coded sequential (SOF13)",
    0xCE: "differential arithmetic-coded progressive (SOF14)",
    0xCF: "differential arithmetic-coded lossless (SOF15)",
}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length (T.81 B.1.1.4)
_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA

# EXIF 2.3 tags (CIPA DC-008): IFD0, and the Exif IFD it points to.
_EXIF_IFD = 0x8769
_ORIENTATION, _MAKE, _MODEL, _SOFTWARE = 0x0112, 0x010F, 0x0110, 0x0131
_DATE_TIME_ORIGINAL, _DATE_TIME_DIGITIZED = 0x9003, 0x9004
_SUBSEC_ORIGINAL = 0x9291

# Decoded at 1/8 scale, a gigapixel photo takes ~50 MB: Pillow's own limit (~179 megapixels,
# against decompression bombs at full size) would refuse a 200-megapixel phone photo.
MAX_MEGAPIXELS = 1000
_pixel_limit = threading.Lock()


@dataclass(frozen=True)
class JpegImage:
    """A baseline JPEG photo as DICOM describes it (PS3.5 8.2.1, PS3.3 C.7.6.3)."""

    rows: int
    columns: int
    samples_per_pixel: int
    photometric_interpretation: str
    taken: datetime | None  # EXIF DateTimeOriginal (local time of the camera)
    make: str
    model: str
    software: str
    orientation: int  # EXIF Orientation, 1 = upright as stored
    icc_profile: bytes | None
    length: int  # bytes of the JPEG bitstream, SOI to EOI
    trailing: int  # bytes after the end-of-image marker (not part of the bitstream)


def read_jpeg(path: str | os.PathLike[str]) -> JpegImage:
    """The DICOM facts of a baseline JPEG. Raises Refusal naming why it is not one: not a
    JPEG, another coding process (progressive, 12-bit, lossless, arithmetic...), CMYK, too
    large, or cut off before its end."""
    with open(path, "rb") as fh:
        rows, columns, components, ids = _baseline_frame(*_frame_header(fh))
        size = os.fstat(fh.fileno()).st_size
        end = _end_of_image(fh)
        if end is None:
            raise Refusal("a truncated JPEG: no end-of-image marker after its scans")
        fh.seek(0)
        info, exif = _decoded(fh)
    photometric = _photometric(components, ids, info.get("adobe_transform"))
    return JpegImage(
        rows=rows,
        columns=columns,
        samples_per_pixel=components,
        photometric_interpretation=photometric,
        taken=_taken(exif),
        make=_text(exif.get(_MAKE)),
        model=_text(exif.get(_MODEL)),
        software=_text(exif.get(_SOFTWARE)),
        orientation=_orientation(exif.get(_ORIENTATION)),
        icc_profile=info.get("icc_profile") or None,
        length=end,
        trailing=size - end,
    )


def _baseline_frame(marker: int, frame: bytes) -> tuple[int, int, int, bytes]:
    """(rows, columns, components, component ids) of a baseline frame header; Refusal for
    another coding process, precision, component count or size."""
    if marker != 0xC0:
        raise Refusal(
            f"a {_FRAME_TYPES[marker]} JPEG: only baseline JPEG (ISO/IEC 10918-1 process 1) "
            "is kept unchanged, and re-encoding would alter a clinical photo"
        )
    precision, rows, columns, components = struct.unpack(">BHHB", frame[:6])
    if precision != 8:
        raise Refusal(f"a {precision}-bit JPEG: baseline JPEG has 8 bits per sample")
    if components not in (1, 3):
        kind = "CMYK" if components == 4 else f"{components}-component"
        raise Refusal(f"a {kind} JPEG: DICOM photos are grayscale or colour (1 or 3 samples)")
    if rows == 0 or columns == 0:
        raise Refusal("a JPEG whose height is set only after the scan (DNL): not supported")
    if rows * columns > MAX_MEGAPIXELS * 1_000_000:
        megapixels = rows * columns / 1e6
        raise Refusal(f"a {megapixels:.0f}-megapixel JPEG: more than {MAX_MEGAPIXELS} megapixels")
    return rows, columns, components, bytes(frame[6 + 3 * i] for i in range(components))


def _decoded(fh: BinaryIO) -> tuple[dict[str | tuple[int, int], Any], Image.Exif]:
    """Pillow's info and EXIF of the JPEG in `fh`, after decoding all of it at 1/8 scale;
    Refusal when that fails (damaged or cut-off data)."""
    try:
        with _pixel_limit, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            default, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked before
            try:
                with Image.open(fh) as image:
                    info = dict(image.info)
                    exif = image.getexif()
                    _decode_all(image)
            finally:
                Image.MAX_IMAGE_PIXELS = default
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise Refusal(f"a damaged or truncated JPEG: {exc}") from None
    return info, exif


def _frame_header(fh: BinaryIO) -> tuple[int, bytes]:
    """(SOF marker, frame header parameters) of a JPEG, walking the segments before it."""
    if fh.read(2) != b"\xff\xd8":
        raise Refusal("not a JPEG file (no start-of-image marker)")
    while True:
        byte = fh.read(1)
        if byte != b"\xff":
            raise Refusal("a damaged JPEG: no marker where one must be")
        marker = 0xFF
        while marker == 0xFF:  # fill bytes before a marker (T.81 B.1.1.2)
            read = fh.read(1)
            if not read:
                raise Refusal("a truncated JPEG: it ends before its frame header")
            marker = read[0]
        if marker in _STANDALONE:
            continue
        if marker in (_SOI, _EOI, _SOS):
            raise Refusal("a damaged JPEG: no frame header before its scan")
        head = fh.read(2)
        if len(head) < 2:
            raise Refusal("a truncated JPEG: it ends before its frame header")
        (length,) = struct.unpack(">H", head)
        if length < 2:
            raise Refusal("a damaged JPEG: a marker segment of impossible length")
        if marker in _FRAME_TYPES:
            frame = fh.read(length - 2)
            if len(frame) < 6 or len(frame) < 6 + 3 * frame[5]:
                raise Refusal("a truncated JPEG: its frame header is cut short")
            return marker, frame
        fh.seek(length - 2, os.SEEK_CUR)


def _end_of_image(fh: BinaryIO) -> int | None:
    """The offset just past the EOI marker that ends the bitstream, or None when the file
    ends first. Marker segments are skipped by their length (an EXIF thumbnail's own EOI
    lies inside one); in entropy-coded data 0xFF is followed by 0x00 (stuffing) or a restart
    marker, anything else is a marker (T.81 B.1.1.5, F.1.2.3). Read through a memory map: the
    file is never copied into memory."""
    with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        size, offset = len(data), 2
        while offset + 2 <= size:
            if data[offset] != 0xFF:
                return None
            marker = data[offset + 1]
            if marker == 0xFF:  # a fill byte
                offset += 1
                continue
            if marker == _EOI:
                return offset + 2
            if marker in _STANDALONE:
                offset += 2
                continue
            if offset + 4 > size:
                return None
            offset += 2 + int.from_bytes(data[offset + 2 : offset + 4], "big")
            if marker == _SOS:
                offset = _after_entropy_coded_data(data, offset)
                if offset < 0:
                    return None
    return None


def _after_entropy_coded_data(data: mmap.mmap, offset: int) -> int:
    """The offset of the first marker after a scan's entropy-coded data, -1 at end of file."""
    while True:
        offset = data.find(b"\xff", offset)
        if offset < 0 or offset + 1 >= len(data):
            return -1
        following = data[offset + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:  # stuffing, RSTn
            offset += 2
        elif following == 0xFF:  # fill bytes before a marker
            offset += 1
        else:
            return offset


def _decode_all(image: Any) -> None:
    """Decode every scan at 1/8 scale (libjpeg's DCT scaling): all the entropy-coded data is
    read, for a fraction of the memory and time of a full decode."""
    image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
    image.load()


def _photometric(components: int, ids: bytes, transform: Any) -> str:
    """Photometric Interpretation of baseline JPEG pixel data (PS3.5 Table 8.2.1-1: only
    MONOCHROME2, YBR_FULL_422 and RGB). Colour transformed to YCbCr is YBR_FULL_422 whatever
    its chroma subsampling (PS3.3 C.7.6.3.1.2: 'though inaccurate ... proven harmless', and
    YBR_FULL is not allowed here); colour left untransformed (Adobe APP14 transform 0, or
    components named R, G, B) is RGB, so no viewer converts it a second time."""
    if components == 1:
        return "MONOCHROME2"
    if transform == 0 or (transform is None and ids == b"RGB"):
        return "RGB"
    return "YBR_FULL_422"


def _taken(exif: Any) -> datetime | None:
    """When the photo was taken: EXIF DateTimeOriginal, else DateTimeDigitized (camera local
    time, 'YYYY:MM:DD HH:MM:SS'); None when absent or not a real time. DateTime (0x0132) is
    left out: it is when the file was last changed, by an editor as well as the camera."""
    try:
        details = exif.get_ifd(_EXIF_IFD)
    except Exception:  # a damaged Exif IFD: no time rather than no photo
        details = {}
    for value in (details.get(_DATE_TIME_ORIGINAL), details.get(_DATE_TIME_DIGITIZED)):
        try:
            taken = datetime.strptime(_text(value)[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            continue
        fraction = _text(details.get(_SUBSEC_ORIGINAL))
        if value is details.get(_DATE_TIME_ORIGINAL) and fraction.isdigit():
            taken = taken.replace(microsecond=int(fraction[:6].ljust(6, "0")))
        return taken
    return None


def _orientation(value: Any) -> int:
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value).strip("\0 ").strip() if value is not None else ""
