"""The facts of an MP4 (ISO/IEC 14496-12 and -14) video that DICOM needs, read from its boxes.

Only box headers and the small boxes of the movie header are read: the media data ('mdat'),
however large, is skipped by seeking, so memory does not grow with the file. Written here
rather than taken from a library: pymp4 pins construct 2.8.8 (2016), and hachoir, a
kitchen-sink of 300 parsers, neither knows HEVC's 'hvcC' nor reads 'avcC' without warnings;
what is needed is a box walk and a dozen fixed fields.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from .refusal import Refusal

# Boxes whose children are boxes (ISO/IEC 14496-12 8.1-8.5).
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}
# The movie box holds only headers and tables; one larger than this is not a video we know.
_MAX_MOVIE_BOX = 256 * 1024 * 1024
_MP4_EPOCH = datetime(1904, 1, 1, tzinfo=UTC)  # ISO/IEC 14496-12 8.2.2.3: seconds since 1904

# ISO/IEC 14496-15: the sample entries of H.264 (5.4.2.1) and HEVC (8.4.1.1) streams.
AVC_ENTRIES = {b"avc1", b"avc3"}
HEVC_ENTRIES = {b"hvc1", b"hev1"}
_KNOWN_CODECS = {
    b"mp4v": "MPEG-4 Part 2 Visual",
    b"av01": "AV1",
    b"vp09": "VP9",
    b"vp08": "VP8",
    b"mjpa": "Motion JPEG",
    b"jpeg": "Motion JPEG",
    b"apcn": "Apple ProRes",
    b"apch": "Apple ProRes",
    b"dvh1": "Dolby Vision",
    b"dvhe": "Dolby Vision",
    b"encv": "an encrypted stream",
}


@dataclass(frozen=True)
class VideoStream:
    """The video track of an MP4 file, as its headers describe it."""

    codec: str  # "H.264" or "HEVC"
    sample_entry: str  # avc1, avc3, hvc1, hev1
    profile_idc: int
    constraint_flags: int  # H.264: constraint_set0..5 flags (the byte after profile_idc)
    level_idc: int
    bit_depth: int
    chroma_format: int  # 1 = 4:2:0
    tier: int  # HEVC: 0 Main tier, 1 High tier
    columns: int
    rows: int
    frames: int
    duration_seconds: float
    frame_rate: float
    created: datetime | None  # UTC, from the movie header; None when unset
    rotation: int  # degrees a player turns the picture (the track header's matrix)
    pixel_aspect: tuple[int, int]  # horizontal:vertical spacing ('pasp'), 1:1 when absent
    audio: str | None  # the sample entry of the first audio track, e.g. "mp4a"


def read_mp4(path: str | os.PathLike[str]) -> VideoStream:
    """The video stream of an MP4 file. Raises Refusal naming what is wrong: not an MP4,
    truncated, fragmented, no video track, or a codec other than H.264 and HEVC."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        boxes = _top_level_boxes(fh, size)
        if not boxes or boxes[0][0] != b"ftyp":
            raise Refusal("not an MP4 file (no 'ftyp' box at its start)")
        fh.seek(boxes[0][1])
        if fh.read(4) == b"qt  ":  # ISO/IEC 14496-14 is the container PS3.5 8.2.7 names
            raise Refusal(
                "a QuickTime (.mov) file, not MP4: remux it first, e.g. "
                "ffmpeg -i IN -c copy OUT.mp4 (the stream is not re-encoded)"
            )
        kinds = [kind for kind, _, _ in boxes]
        if b"moof" in kinds:
            raise Refusal(
                "a fragmented MP4 ('moof' boxes): remux it first, e.g. "
                "ffmpeg -i IN -c copy -movflags +faststart OUT.mp4"
            )
        if b"moov" not in kinds:
            raise Refusal("no movie header ('moov' box): truncated, or the recording never ended")
        if b"mdat" not in kinds:
            raise Refusal("no media data ('mdat' box)")
        _, start, length = next(box for box in boxes if box[0] == b"moov")
        if length > _MAX_MOVIE_BOX:
            raise Refusal(f"movie header of {length} bytes: not a video this node knows")
        fh.seek(start)
        moov = fh.read(length)
    return _movie(moov, size)


def _top_level_boxes(fh: BinaryIO, size: int) -> list[tuple[bytes, int, int]]:
    """(type, payload offset, payload length) of each top-level box; Refusal when one runs
    past the end of the file (truncated)."""
    boxes: list[tuple[bytes, int, int]] = []
    offset = 0
    while offset < size:
        fh.seek(offset)
        kind, header, total = _box_header(fh.read(16), size - offset)
        if total < header or offset + total > size:
            if boxes:
                raise Refusal(
                    f"truncated: the '{_name(kind)}' box at byte {offset} ends past the file"
                )
            raise Refusal("not an MP4 file")
        boxes.append((kind, offset + header, total - header))
        offset += total
    return boxes


def _box_header(head: bytes, remaining: int) -> tuple[bytes, int, int]:
    """(type, header length, total length) of the box whose first bytes are `head`."""
    if len(head) < 8:
        return b"", 8, remaining + 1  # too short for a box header: runs past the end
    total, kind = struct.unpack(">I4s", head[:8])
    if total == 1:  # a 64-bit largesize follows the type
        if len(head) < 16:
            return kind, 16, remaining + 1
        return kind, 16, struct.unpack(">Q", head[8:16])[0]
    if total == 0:  # the box runs to the end of the file
        return kind, 8, remaining
    return kind, 8, total


def _children(data: bytes) -> dict[bytes, list[bytes]]:
    """The payloads of the boxes in `data`, by type. Refusal when one overruns `data`."""
    found: dict[bytes, list[bytes]] = {}
    offset = 0
    while offset + 8 <= len(data):
        kind, header, total = _box_header(data[offset : offset + 16], len(data) - offset)
        if total < header or offset + total > len(data):
            raise Refusal(f"damaged movie header: the '{_name(kind)}' box overruns its parent")
        found.setdefault(kind, []).append(data[offset + header : offset + total])
        offset += total
    return found


def _movie(moov: bytes, file_size: int) -> VideoStream:
    boxes = _children(moov)
    created = _created(_one(boxes, b"mvhd", "movie header"))
    video = None
    audio = None
    for trak in boxes.get(b"trak", []):
        track = _children(trak)
        media = _children(_one(track, b"mdia", "media box"))
        handler = _one(media, b"hdlr", "handler box")[8:12]
        if handler == b"soun" and audio is None:
            audio = _audio_entry(media)
        if handler == b"vide" and video is None:
            video = (track, media)
    if video is None:
        raise Refusal("no video track")
    track, media = video
    timescale, duration = _media_header(_one(media, b"mdhd", "media header"))
    information = _children(_one(media, b"minf", "media information"))
    table = _children(_one(information, b"stbl", "sample table"))
    entry = _sample_entry(_one(table, b"stsd", "sample description"))
    frames = _sample_count(_one(table, b"stsz", "sample sizes") if b"stsz" in table else b"")
    if frames == 0:
        raise Refusal("the video track has no frames")
    seconds = duration / timescale if timescale else 0.0
    if seconds <= 0:
        raise Refusal("the video track has no duration")
    codec, fields = entry
    return VideoStream(
        codec=codec,
        frames=frames,
        duration_seconds=seconds,
        frame_rate=frames / seconds,
        created=created,
        rotation=_rotation(_one(track, b"tkhd", "track header")),
        audio=audio,
        **fields,
    )


def _audio_entry(media: dict[bytes, list[bytes]]) -> str:
    """The four-character code of an audio track's first sample description."""
    information = _children(_one(media, b"minf", "media information"))
    table = _children(_one(information, b"stbl", "sample table"))
    stsd = _one(table, b"stsd", "sample description")
    return _name(stsd[12:16]) if len(stsd) >= 16 else "?"


def _one(boxes: dict[bytes, list[bytes]], kind: bytes, what: str) -> bytes:
    found = boxes.get(kind)
    if not found:
        raise Refusal(f"damaged movie header: no {what} ('{_name(kind)}')")
    return found[0]


def _media_header(mdhd: bytes) -> tuple[int, int]:
    """(timescale, duration) of a media header box (ISO/IEC 14496-12 8.4.2)."""
    try:
        if mdhd[0] == 1:
            return struct.unpack(">IQ", mdhd[20:32])
        return struct.unpack(">II", mdhd[12:20])
    except (IndexError, struct.error):
        raise Refusal("damaged movie header: short media header") from None


def _created(mvhd: bytes) -> datetime | None:
    """The movie's creation time (ISO/IEC 14496-12 8.2.2), None when zero or unreadable."""
    try:
        seconds = struct.unpack(">Q", mvhd[4:12])[0] if mvhd[0] == 1 else _u32(mvhd, 4)
        return _MP4_EPOCH + timedelta(seconds=seconds) if seconds else None
    except (IndexError, struct.error, OverflowError):
        return None


def _rotation(tkhd: bytes) -> int:
    """The clockwise turn the track header's matrix asks for: 0, 90, 180 or 270."""
    matrix_at = 52 if tkhd[:1] == b"\x01" else 40  # after the version 1 or 0 fields (8.3.2)
    try:
        a, b = struct.unpack(">ii", tkhd[matrix_at : matrix_at + 8])
    except struct.error:
        return 0
    return {(0, 1): 90, (-1, 0): 180, (0, -1): 270}.get((a >> 16, b >> 16), 0)


def _sample_count(stsz: bytes) -> int:
    """The number of samples (frames) of a sample size box (ISO/IEC 14496-12 8.7.3)."""
    if len(stsz) < 12:
        raise Refusal("damaged movie header: no sample size table")
    return _u32(stsz, 8)


def _sample_entry(stsd: bytes) -> tuple[str, dict[str, Any]]:
    """The codec of the first sample description and what its configuration record says."""
    if len(stsd) < 16:
        raise Refusal("damaged movie header: empty sample description")
    entry_size, fourcc = struct.unpack(">I4s", stsd[8:16])
    entry = stsd[16 : 8 + entry_size]
    if fourcc in AVC_ENTRIES:
        codec = "H.264"
    elif fourcc in HEVC_ENTRIES:
        codec = "HEVC"
    else:
        named = _KNOWN_CODECS.get(fourcc, f"'{_name(fourcc)}'")
        raise Refusal(
            f"video codec {named}: DICOM carries H.264 and HEVC video unchanged, not this"
        )
    # VisualSampleEntry (ISO/IEC 14496-12 12.1.3): 8 bytes of SampleEntry, 16 reserved, then
    # width and height, ..., 78 bytes before its child boxes.
    if len(entry) < 78:
        raise Refusal("damaged movie header: short video sample entry")
    columns, rows = struct.unpack(">HH", entry[24:28])
    configs = _children(entry[78:])
    fields: dict[str, Any] = {
        "sample_entry": fourcc.decode(),
        "columns": columns,
        "rows": rows,
        "pixel_aspect": _pixel_aspect(configs.get(b"pasp", [b""])[0]),
    }
    if codec == "H.264":
        fields.update(_avc_configuration(_one(configs, b"avcC", "H.264 configuration")))
    else:
        fields.update(_hevc_configuration(_one(configs, b"hvcC", "HEVC configuration")))
    return codec, fields


def _pixel_aspect(pasp: bytes) -> tuple[int, int]:
    """hSpacing:vSpacing of a pixel aspect ratio box (ISO/IEC 14496-12 12.1.4), 1:1 if none."""
    if len(pasp) < 8:
        return (1, 1)
    h, v = struct.unpack(">II", pasp[:8])
    return (h, v) if h and v else (1, 1)


def _avc_configuration(avcc: bytes) -> dict[str, int]:
    """AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1): profile, constraint flags,
    level and, for the High profiles, chroma format and bit depth."""
    if len(avcc) < 4 or avcc[0] != 1:
        raise Refusal("damaged H.264 configuration record")
    profile, constraints, level = avcc[1], avcc[2], avcc[3]
    chroma_format, bit_depth = 1, 8
    if profile in (100, 110, 122, 144, 244):
        tail = _avc_tail(avcc)
        if tail is not None:
            chroma_format = tail[0] & 0x03
            bit_depth = (tail[1] & 0x07) + 8
        elif profile != 100:  # High 10, 4:2:2, 4:4:4 say so only here; High is 4:2:0 8-bit
            bit_depth = 10
    return {
        "profile_idc": profile,
        "constraint_flags": constraints,
        "level_idc": level,
        "bit_depth": bit_depth,
        "chroma_format": chroma_format,
        "tier": 0,
    }


def _avc_tail(avcc: bytes) -> bytes | None:
    """The chroma_format and bit_depth_luma bytes after the parameter sets, when present."""
    try:
        offset = 5
        count = avcc[offset] & 0x1F
        offset += 1
        for _ in range(count):
            offset += 2 + struct.unpack(">H", avcc[offset : offset + 2])[0]
        count = avcc[offset]
        offset += 1
        for _ in range(count):
            offset += 2 + struct.unpack(">H", avcc[offset : offset + 2])[0]
        tail = avcc[offset : offset + 2]
        return tail if len(tail) == 2 else None
    except (IndexError, struct.error):
        return None


def _hevc_configuration(hvcc: bytes) -> dict[str, int]:
    """HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1): profile, tier, level,
    chroma format and bit depth."""
    if len(hvcc) < 23 or hvcc[0] != 1:
        raise Refusal("damaged HEVC configuration record")
    return {
        "profile_idc": hvcc[1] & 0x1F,
        "constraint_flags": 0,
        "tier": (hvcc[1] >> 5) & 0x01,
        "level_idc": hvcc[12],
        "chroma_format": hvcc[16] & 0x03,
        "bit_depth": (hvcc[17] & 0x07) + 8,
    }


def _u32(data: bytes, offset: int) -> int:
    return struct.unpack(">I", data[offset : offset + 4])[0]


def _name(fourcc: bytes) -> str:
    return fourcc.decode("latin-1").strip("\0") or "?"
