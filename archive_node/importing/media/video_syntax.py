"""Which DICOM transfer syntax carries an H.264 or HEVC stream unchanged, or why none does.

PS3.5 8.2.7-8.2.11 (the MPEG-4 AVC/H.264 and HEVC/H.265 syntaxes) and A.4: the MP4 file is
the stream's container as it is (8.2.7: 'MPEG-2 Transport Stream ... or MPEG-4 ... MP4
container'), 4:2:0 8-bit (10-bit for HEVC Main 10) in YBR_PARTIAL_420, square pixels. The
non-fragmentable H.264 syntaxes hold the whole stream in one fragment; a stream too long for
one item (2^32 - 2 bytes) takes the Fragmentable variant (.1). HEVC streams may always be
split.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...dicom.values import MAX_VALUE_LENGTH
from .mp4 import VideoStream
from .refusal import Refusal

# H.264 profile_idc (ITU-T H.264 A.2) and HEVC general_profile_idc (ITU-T H.265 A.3).
_AVC_PROFILES = {
    66: "Baseline",
    77: "Main",
    88: "Extended",
    100: "High",
    110: "High 10",
    122: "High 4:2:2",
    244: "High 4:4:4 Predictive",
    44: "CAVLC 4:4:4 Intra",
    118: "Multiview High",
    128: "Stereo High",
}
_HEVC_PROFILES = {1: "Main", 2: "Main 10", 3: "Main Still Picture", 4: "Range Extensions"}
_CONSTRAINT_SET1 = 0x40  # constraint_set1_flag: the stream obeys Main profile (A.2.1.1)
# PS3.5 8.2.12: the audio an MP4 container may carry with the video
_AUDIO = {"mp4a": "AAC or MPEG audio", ".mp3": "MP3"}

H264_LEVEL_41 = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264 High Profile / Level 4.1
H264_LEVEL_41_FRAGMENTABLE = "1.2.840.10008.1.2.4.102.1"
H264_LEVEL_42 = "1.2.840.10008.1.2.4.104"  # ... High Profile / Level 4.2 For 2D Video
H264_LEVEL_42_FRAGMENTABLE = "1.2.840.10008.1.2.4.104.1"
HEVC_MAIN = "1.2.840.10008.1.2.4.107"  # HEVC/H.265 Main Profile / Level 5.1
HEVC_MAIN_10 = "1.2.840.10008.1.2.4.108"  # HEVC/H.265 Main 10 Profile / Level 5.1


@dataclass(frozen=True)
class VideoEncoding:
    """The transfer syntax of a video. Its Pixel Data is the stream in fragments as large as
    one item holds (part10.Bulk without a fragment size): one, unless the stream is longer."""

    transfer_syntax_uid: str
    name: str
    bits_stored: int  # 8, or 10 for HEVC Main 10 (in 16 allocated)


def video_encoding(stream: VideoStream, length: int) -> VideoEncoding:
    """The syntax for `stream` in an MP4 file of `length` bytes. Raises Refusal naming the
    codec, profile, level or property no DICOM transfer syntax covers."""
    if stream.pixel_aspect[0] != stream.pixel_aspect[1]:
        h, v = stream.pixel_aspect
        raise Refusal(f"non-square pixels ({h}:{v}): DICOM video has square pixels")
    if stream.audio is not None and stream.audio not in _AUDIO:
        raise Refusal(
            f"audio '{stream.audio}': an MP4 in DICOM carries AAC or MPEG audio (PS3.5 8.2.12)"
        )
    if stream.codec == "H.264":
        return _h264(stream, length)
    return _hevc(stream)


def _h264(stream: VideoStream, length: int) -> VideoEncoding:
    profile = _AVC_PROFILES.get(stream.profile_idc, f"profile {stream.profile_idc}")
    if stream.profile_idc == 66 and stream.constraint_flags & _CONSTRAINT_SET1:
        profile = "Constrained Baseline"
    level = _avc_level(stream)
    named = f"H.264 {profile} profile level {level}"
    if profile not in ("Constrained Baseline", "Main", "High"):
        raise Refusal(
            f"{named}: DICOM's H.264 syntaxes carry High profile streams (and the Main and "
            "Constrained Baseline streams a High profile decoder plays), not this one"
        )
    if stream.chroma_format != 1 or stream.bit_depth != 8:
        raise Refusal(f"{named} with {_sampling(stream)}: DICOM's H.264 is 4:2:0 8-bit")
    one_fragment = length <= MAX_VALUE_LENGTH
    if stream.level_idc <= 41 or level == "1b":
        uid = H264_LEVEL_41 if one_fragment else H264_LEVEL_41_FRAGMENTABLE
        name = "MPEG-4 AVC/H.264 High Profile / Level 4.1"
    elif stream.level_idc == 42:
        uid = H264_LEVEL_42 if one_fragment else H264_LEVEL_42_FRAGMENTABLE
        name = "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video"
    else:
        raise Refusal(
            f"{named}: no DICOM transfer syntax covers H.264 above level 4.2 (re-encoding "
            "would alter the video; record at 1080p and at most 60 frames/s, or in HEVC)"
        )
    if not one_fragment:
        name = f"Fragmentable {name}"
    return VideoEncoding(uid, name, bits_stored=8)


def _hevc(stream: VideoStream) -> VideoEncoding:
    profile = _HEVC_PROFILES.get(stream.profile_idc, f"profile {stream.profile_idc}")
    tier = "High tier " if stream.tier else ""
    level = f"{stream.level_idc // 30}.{stream.level_idc % 30 // 3}"
    named = f"HEVC {profile} profile {tier}level {level}"
    if profile not in ("Main", "Main 10") or stream.tier:
        raise Refusal(f"{named}: DICOM's HEVC syntaxes carry Main and Main 10, Main tier")
    if stream.level_idc > 153:  # level 5.1 is general_level_idc 153 (30 x 5.1)
        raise Refusal(f"{named}: no DICOM transfer syntax covers HEVC above level 5.1")
    if stream.chroma_format != 1:
        raise Refusal(f"{named} with {_sampling(stream)}: DICOM's HEVC is 4:2:0")
    if profile == "Main":
        return VideoEncoding(HEVC_MAIN, "HEVC/H.265 Main Profile / Level 5.1", 8)
    return VideoEncoding(HEVC_MAIN_10, "HEVC/H.265 Main 10 Profile / Level 5.1", 10)


def _avc_level(stream: VideoStream) -> str:
    """The level as H.264 Table A-1 names it; level_idc 11 with constraint_set3 is 1b in the
    Baseline, Main and Extended profiles (7.4.2.1.1)."""
    if stream.level_idc == 9 or (
        stream.level_idc == 11
        and stream.profile_idc in (66, 77, 88)
        and stream.constraint_flags & 0x10
    ):
        return "1b"
    return f"{stream.level_idc // 10}.{stream.level_idc % 10}"


def _sampling(stream: VideoStream) -> str:
    chroma = {0: "4:0:0", 1: "4:2:0", 2: "4:2:2", 3: "4:4:4"}.get(stream.chroma_format, "?")
    return f"{chroma} {stream.bit_depth}-bit"
