"""dicom/structure.py: each rule of PS3.10 7.1 and PS3.5 7.1, 7.5, A.4, A.5 on hand-made bytes,
and every file bundled with pydicom: the well-formed accepted, the broken refused by name."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pydicom
import pytest

from archive_node.dicom.structure import (
    MAX_DEPTH,
    Problem,
    check_dataset,
    check_file,
    check_path,
)
from tests.helpers import dicom_objects
from tests.helpers.raw_dicom import (
    DEFLATED,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    ITEM_DELIMITATION,
    JPEG_BASELINE,
    SEQUENCE_DELIMITATION,
    UNDEFINED,
    deflate,
    element,
    file_meta,
    fragments,
    implicit,
    item,
    part10,
    sequence,
)

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"


def meta_length(ts: str) -> int:
    return len(file_meta(ts, dicom_objects.SECONDARY_CAPTURE, "1.2.826.0.1.3680043.8.498.2"))


META = meta_length(EXPLICIT_LE)
META_DEFLATED = meta_length(DEFLATED)
META_IMPLICIT = meta_length(IMPLICIT_LE)
META_JPEG = meta_length(JPEG_BASELINE)

PATIENT_ID = 0x00100020
PATIENT_NAME = 0x00100010
ROWS = 0x00280010
REFERENCED_SERIES = 0x00081115  # SQ
REFERENCED_IMAGE = 0x00081140  # SQ
PIXEL_DATA = 0x7FE00010
PRIVATE = 0x00091010

# Files bundled with pydicom that are broken on purpose (or by a bug of the tool that made them),
# and what the check names. Each one would fail a retrieve to DCMTK or a strict reader.
BROKEN = {
    # PS3.5 7.1.1: its Pixel Data declares 8192 bytes and the file holds 8130 (issue 17's case)
    "MR_truncated.dcm": "(7FE0,0010) length 8192 > 8130 bytes left at byte 1488",
    # cut short inside a sequence
    "rtplan_truncated.dcm": "(300A,00B0) length 976 > 711 bytes left at byte 1410",
    # an Implicit VR dataset under an Explicit VR transfer syntax (written by highdicom 0.1.0)
    "SC_rgb_jpeg.dcm": "(0008,0008) invalid VR bytes 18 00 at byte 356",
    # a raw deflate stream followed by 8 bytes (a gzip-style trailer): not PS3.5 A.5
    "image_dfl.dcm": "8 byte(s) after the deflate stream at byte 4629",
    # its file meta lacks the Transfer Syntax UID (PS3.10 7.1: Type 1)
    "meta_missing_tsyntax.dcm": "no Transfer Syntax UID in the file meta at byte 132",
    # an element of odd length (in the illegal private group 0001)
    "nested_priv_SQ.dcm": "(0001,0002) odd length 9 at byte 300",
    # elements were removed from a record without shortening its item's length
    "dicomdirtests/DICOMDIR-nooffset": "item of (0004,1220) length 248 > 224 left at byte 10860",
}
# Bundled datasets without a Part 10 header (no preamble, no file meta), in their encodings.
NO_META = {
    "ExplVR_BigEndNoMeta.dcm": EXPLICIT_BE,
    "ExplVR_LitEndNoMeta.dcm": EXPLICIT_LE,
    "rtstruct.dcm": IMPLICIT_LE,
}
# CT_small.dcm's dataset without its file meta, after one stray byte (0x20).
NO_META_BROKEN = {"no_meta.dcm": EXPLICIT_LE}
NOT_DICOM = {".txt", ".json", ".dump", ".icc", ".gz"}


def bundled() -> list[str]:
    """Every DICOM file shipped in pydicom's wheel, by path below its test_files."""
    return sorted(
        str(path.relative_to(TEST_FILES))
        for path in TEST_FILES.rglob("*")
        if path.is_file() and path.suffix not in NOT_DICOM and path.name != "README"
    )


WELL_FORMED = [name for name in bundled() if name not in BROKEN | NO_META | NO_META_BROKEN]


def check(dataset: bytes, ts: str = EXPLICIT_LE, **kw) -> Problem | None:
    return check_file(io.BytesIO(part10(dataset, ts)), **kw)


def refused(dataset: bytes, ts: str = EXPLICIT_LE, **kw) -> str:
    problem = check(dataset, ts, **kw)
    assert problem is not None, "accepted"
    return str(problem)


# -- pydicom's bundled files -------------------------------------------------------------------


def test_the_bundled_files_are_all_classified():
    assert len(WELL_FORMED) > 150
    for name in BROKEN | NO_META | NO_META_BROKEN:
        assert (TEST_FILES / name).is_file(), name


@pytest.mark.parametrize("name", WELL_FORMED)
def test_every_well_formed_bundled_file_is_accepted(name):
    assert check_path(TEST_FILES / name) is None


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_the_broken_bundled_files_are_refused_by_name(name):
    assert str(check_path(TEST_FILES / name)) == BROKEN[name]


@pytest.mark.parametrize("name", sorted(NO_META))
def test_bundled_datasets_without_file_meta_check_in_their_syntax(name):
    path = TEST_FILES / name
    assert str(check_path(path)) == "no DICM prefix (not a Part 10 file) at byte 128"
    with open(path, "rb") as fh:
        assert check_dataset(fh, NO_META[name]) is None


def test_no_meta_starts_with_a_stray_byte():
    path = TEST_FILES / "no_meta.dcm"
    with open(path, "rb") as fh:
        assert (
            str(check_dataset(fh, EXPLICIT_LE)) == "(0820,0500) invalid VR bytes 00 43 at byte 0"
        )
    fixed = path.read_bytes()[1:]  # CT_small.dcm's dataset without the stray byte
    assert check_dataset(io.BytesIO(fixed), EXPLICIT_LE) is None


# -- synthetic objects in every syntax ------------------------------------------------------------

KINDS = {
    "secondary-capture": dicom_objects.secondary_capture,
    "ct": dicom_objects.ct,
    "us-multiframe": dicom_objects.us_multiframe,
    "vl-photo-jpeg": dicom_objects.vl_photo_jpeg,
    "video-h264": dicom_objects.video_h264,
    "pdf": dicom_objects.encapsulated_pdf,
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_objects_written_by_pydicom_are_accepted(kind, tmp_path):
    ds = KINDS[kind]()
    assert check_path(dicom_objects.write(ds, tmp_path / "a.dcm")) is None


@pytest.mark.parametrize("ts", [IMPLICIT_LE, EXPLICIT_BE, DEFLATED])
@pytest.mark.parametrize("kind", ["secondary-capture", "ct", "pdf"])
def test_native_objects_in_other_syntaxes_are_accepted(kind, ts, tmp_path):
    ds = KINDS[kind](transfer_syntax=ts)
    assert check_path(dicom_objects.write(ds, tmp_path / "a.dcm")) is None


def test_a_large_video_is_walked_by_seeking(tmp_path):
    path = dicom_objects.write_large_video(tmp_path / "v.dcm", 64 << 20)
    reads = []

    class Counting(io.FileIO):
        def read(self, n=-1):
            data = super().read(n)
            reads.append(len(data))
            return data

    with Counting(path, "rb") as fh:
        assert check_file(fh) is None
    assert sum(reads) < 1 << 20  # item headers, not 64 MiB of fragments


# -- elements (PS3.5 7.1) --------------------------------------------------------------------


def test_well_formed_elements_in_each_encoding():
    explicit = element(PATIENT_NAME, "PN", b"DOE^J ") + element(ROWS, "US", b"\x10\x00")
    assert check(explicit) is None
    big = element(PATIENT_NAME, "PN", b"DOE^J ", big=True) + element(
        ROWS, "US", b"\0\x10", big=True
    )
    assert check(big, EXPLICIT_BE) is None
    assert (
        check(implicit(PATIENT_NAME, b"DOE^J ") + implicit(ROWS, b"\x10\x00"), IMPLICIT_LE) is None
    )
    assert check(b"") is None  # an empty dataset is well-formed (its UIDs are read_header's)


def test_truncated_value_is_refused_with_what_it_declares_and_what_is_left():
    pixel = element(PIXEL_DATA, "OW", bytes(8192))[: 12 + 8130]
    head = element(PATIENT_ID, "LO", b"P1")
    assert refused(head + pixel) == (
        f"(7FE0,0010) length 8192 > 8130 bytes left at byte {META + len(head)}"
    )


def test_implicit_bytes_under_an_explicit_syntax_are_refused():
    dataset = implicit(0x00080005, b"ISO_IR 100") + implicit(PATIENT_ID, b"P1")
    assert refused(dataset) == f"(0008,0005) invalid VR bytes 0A 00 at byte {META}"


def test_explicit_bytes_under_the_implicit_syntax_are_refused():
    dataset = element(0x00080005, "CS", b"ISO_IR 100")
    assert refused(dataset, IMPLICIT_LE) == (
        f"(0008,0005) odd length 676675 at byte {META_IMPLICIT}"
    )


def test_big_endian_bytes_under_little_endian_are_refused():
    dataset = element(PATIENT_NAME, "PN", b"DOE^J ", big=True)
    assert refused(dataset).startswith("(1000,1000) length 1536 > 6 bytes left")


def test_odd_value_length_is_refused():
    dataset = element(PATIENT_ID, "LO", b"P1") + element(PATIENT_NAME, "PN", b"DOE")
    assert refused(dataset) == f"(0010,0010) odd length 3 at byte {META + 10}"


def test_odd_dataset_length_is_refused():
    dataset = element(PATIENT_ID, "LO", b"P1")
    assert refused(dataset + b"\0") == f"odd dataset length: 1 stray byte(s) at byte {META + 10}"
    assert (
        refused(dataset + b"\0" * 4)
        == f"4 stray bytes at the end of the dataset at byte {META + 10}"
    )


# US, SS and OW are 2 bytes: any even length is a multiple
@pytest.mark.parametrize(
    ("vr", "length", "size"),
    [("UL", 6, 4), ("FD", 4, 8), ("AT", 2, 4), ("OF", 6, 4), ("SL", 2, 4), ("SV", 12, 8)],
)
def test_binary_value_not_a_multiple_of_its_size_is_refused(vr, length, size):
    dataset = element(ROWS, vr, bytes(length))
    assert refused(dataset) == (
        f"(0028,0010) {vr} length {length} not a multiple of {size} at byte {META}"
    )


def test_unknown_vr_is_refused():
    assert refused(element(PATIENT_ID, "XX", b"P1")) == f"(0010,0020) invalid VR XX at byte {META}"


def test_undefined_length_is_only_for_sequences_un_and_encapsulated_pixel_data():
    ut = element(0x00081030, "UT", length=UNDEFINED)
    assert refused(ut) == f"(0008,1030) UT of undefined length at byte {META}"
    ob = element(0x00091011, "OB", length=UNDEFINED)
    assert refused(ob) == f"(0009,1011) OB of undefined length at byte {META}"
    # Implicit VR: a known tag that is no sequence
    assert refused(implicit(PATIENT_ID, length=UNDEFINED), IMPLICIT_LE) == (
        f"(0010,0020) of undefined length, not a sequence at byte {META_IMPLICIT}"
    )


def test_item_tag_among_elements_is_refused():
    assert refused(item(b"")) == f"(FFFE,E000) where an element was due at byte {META}"
    stray = element(PATIENT_ID, "LO", b"P1") + ITEM_DELIMITATION
    assert refused(stray) == f"(FFFE,E00D) where an element was due at byte {META + 10}"


# -- sequences and items (PS3.5 7.5) -------------------------------------------------------------


def nested(undefined: bool) -> bytes:
    """A sequence holding an item holding a sequence, every length defined or undefined."""
    inner = sequence(
        REFERENCED_IMAGE,
        item(element(PATIENT_ID, "LO", b"P1"), undefined=undefined),
        undefined=undefined,
    )
    return sequence(
        REFERENCED_SERIES,
        item(inner + element(ROWS, "US", b"\1\0"), undefined=undefined),
        item(b"", undefined=undefined),
        undefined=undefined,
    )


def test_nested_sequences_of_defined_and_undefined_length_are_accepted():
    for outer in (False, True):
        assert check(nested(outer) + element(PATIENT_NAME, "PN", b"AB")) is None
    mixed = sequence(REFERENCED_SERIES, item(nested(True)), item(nested(False), undefined=True))
    assert check(mixed) is None
    assert check(sequence(REFERENCED_SERIES)) is None  # empty, defined
    assert check(sequence(REFERENCED_SERIES, undefined=True)) is None  # empty, undefined


def test_implicit_sequences_private_and_known_are_walked():
    private = sequence(
        PRIVATE, item(implicit(PATIENT_ID, b"P1"), undefined=True), undefined=True, vr=None
    )
    known = sequence(REFERENCED_SERIES, item(implicit(PATIENT_ID, b"P1")), vr=None)
    assert check(private + known, IMPLICIT_LE) is None
    # a known sequence of defined length is looked into: its item overruns it
    content = struct.pack("<HHI", 0xFFFE, 0xE000, 12) + implicit(PATIENT_ID, b"P1")
    assert refused(implicit(REFERENCED_SERIES, content), IMPLICIT_LE) == (
        f"item of (0008,1115) length 12 > 10 left at byte {META_IMPLICIT + 8}"
    )


def test_un_of_undefined_length_holds_an_implicit_sequence():
    content = item(implicit(PATIENT_ID, b"P1"), undefined=True)
    un = element(PRIVATE, "UN", content + SEQUENCE_DELIMITATION, length=UNDEFINED)
    assert check(un) is None
    # explicit bytes inside it are read as implicit, as PS3.5 6.2.2 says, and refused
    wrong = item(element(PATIENT_ID, "LO", b"P1"), undefined=True)
    un = element(PRIVATE, "UN", wrong + SEQUENCE_DELIMITATION, length=UNDEFINED)
    assert refused(un).startswith("(0010,0020) length 151372 > 18 bytes left")


def test_sequence_without_its_delimiter_is_refused():
    open_sequence = sequence(REFERENCED_SERIES, undefined=True)[:-8]
    assert refused(open_sequence) == (
        f"(0008,1115) without Sequence Delimitation at byte {META + 12}"
    )


def test_item_without_its_delimiter_is_refused():
    open_item = (
        element(REFERENCED_SERIES, "SQ", length=UNDEFINED)
        + item(element(PATIENT_ID, "LO", b"P1"), undefined=True)[:-8]
    )
    assert refused(open_item) == f"item without Item Delimitation at byte {META + 30}"
    # inside a sequence of defined length: the item may not run past the sequence
    inner = item(element(PATIENT_ID, "LO", b"P1"), undefined=True)[:-8]
    assert refused(element(REFERENCED_SERIES, "SQ", inner) + element(ROWS, "US", b"\1\0")) == (
        f"item without Item Delimitation at byte {META + 12 + 18}"
    )


def test_delimiters_of_the_wrong_kind_or_length_are_refused():
    defined = element(REFERENCED_SERIES, "SQ", SEQUENCE_DELIMITATION)
    assert refused(defined) == f"delimiter in (0008,1115) of defined length at byte {META + 12}"
    bad_length = element(REFERENCED_SERIES, "SQ", length=UNDEFINED) + struct.pack(
        "<HHI", 0xFFFE, 0xE0DD, 4
    )
    assert refused(bad_length) == f"Sequence Delimitation length 4 at byte {META + 12}"
    item_end = (
        element(REFERENCED_SERIES, "SQ", length=UNDEFINED)
        + struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED)
        + struct.pack("<HHI", 0xFFFE, 0xE00D, 2)
    )
    assert refused(item_end) == f"Item Delimitation length 2 at byte {META + 20}"


def test_a_non_item_in_a_sequence_is_refused():
    dataset = element(REFERENCED_SERIES, "SQ", element(PATIENT_ID, "LO", b"P1"))
    assert (
        refused(dataset) == f"(0010,0020) in (0008,1115) where an item was due at byte {META + 12}"
    )


def test_items_and_elements_may_not_overrun_their_container():
    too_long_item = element(
        REFERENCED_SERIES, "SQ", struct.pack("<HHI", 0xFFFE, 0xE000, 20) + bytes(8)
    ) + bytes(12)
    assert refused(too_long_item) == f"item of (0008,1115) length 20 > 8 left at byte {META + 12}"
    odd_item = element(REFERENCED_SERIES, "SQ", struct.pack("<HHI", 0xFFFE, 0xE000, 3) + bytes(4))
    assert refused(odd_item) == f"item of (0008,1115) odd length 3 at byte {META + 12}"
    # an element running past the end of its item, though not past the file
    content = element(PATIENT_ID, "LO", b"P1", length=12)
    overrun = element(REFERENCED_SERIES, "SQ", item(content)) + element(ROWS, "US", b"\1\0" * 3)
    assert refused(overrun) == f"(0010,0020) length 12 > 2 bytes left at byte {META + 20}"
    # a sequence's items must fill it exactly
    short = element(REFERENCED_SERIES, "SQ", item(b"") + bytes(4))
    assert refused(short) == f"(0008,1115) ends inside an item header at byte {META + 20}"
    stray = element(REFERENCED_SERIES, "SQ", item(element(PATIENT_ID, "LO", b"P1") + bytes(2)))
    assert refused(stray) == f"2 stray byte(s) at the end of an item at byte {META + 30}"


def test_nesting_is_bounded():
    deep = b""
    for _ in range(MAX_DEPTH + 1):
        deep = sequence(REFERENCED_SERIES, item(deep, undefined=True), undefined=True)
    assert refused(deep).startswith(f"sequences nested more than {MAX_DEPTH} deep")
    fine = b""
    for _ in range(MAX_DEPTH):
        fine = sequence(REFERENCED_SERIES, item(fine, undefined=True), undefined=True)
    assert check(fine) is None


# -- encapsulated Pixel Data (PS3.5 A.4) -----------------------------------------------------


def test_well_formed_encapsulation_is_accepted():
    assert check(fragments(b"\xff\xd8\xff\xd9"), JPEG_BASELINE) is None
    offsets = struct.pack("<2I", 0, 12)
    assert check(fragments(b"ab", b"cdef", offsets=offsets), JPEG_BASELINE) is None
    # OW (old writers) and UN (a VR lost on the way) hold fragments as OB does
    for vr in ("OW", "UN"):
        other = fragments(b"ab")[:4] + vr.encode() + fragments(b"ab")[6:]
        assert check(other, JPEG_BASELINE) is None


def encapsulated(*items: bytes) -> bytes:
    return element(PIXEL_DATA, "OB", b"".join(items), length=UNDEFINED)


def raw_item(value: bytes, length: int | None = None, tag: int = 0xFFFEE000) -> bytes:
    length = len(value) if length is None else length
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length) + value


@pytest.mark.parametrize(
    ("items", "message", "at"),
    [
        ((SEQUENCE_DELIMITATION,), "Pixel Data without Basic Offset Table", 12),
        ((raw_item(b""), SEQUENCE_DELIMITATION), "Pixel Data without fragments", 20),
        (
            (raw_item(b"\0\0"), raw_item(b"ab"), SEQUENCE_DELIMITATION),
            "Basic Offset Table length 2 not a multiple of 4",
            12,
        ),
        ((raw_item(b""), raw_item(b"abc"), SEQUENCE_DELIMITATION), "fragment of odd length 3", 20),
        ((raw_item(b""), raw_item(b"", UNDEFINED)), "fragment item of undefined length", 20),
        ((raw_item(b"", UNDEFINED),), "Basic Offset Table item of undefined length", 12),
        ((raw_item(b""), raw_item(b"ab")), "Pixel Data without Sequence Delimitation", 30),
        ((raw_item(b""), raw_item(b"ab", 64)), "fragment length 64 > 2 bytes left", 20),
        (
            (raw_item(b""), raw_item(b"ab", tag=0x00100020), SEQUENCE_DELIMITATION),
            "(0010,0020) in Pixel Data where an item was due",
            20,
        ),
        (
            (raw_item(b""), raw_item(b"ab"), raw_item(b"", 4, 0xFFFEE0DD)),
            "Sequence Delimitation length 4",
            30,
        ),
    ],
    ids=[
        "no-bot",
        "no-fragment",
        "bot-not-4",
        "odd-fragment",
        "undefined-fragment",
        "undefined-bot",
        "no-delimiter",
        "truncated-fragment",
        "not-an-item",
        "delimiter-length",
    ],
)
def test_malformed_encapsulation_is_refused(items, message, at):
    assert refused(encapsulated(*items), JPEG_BASELINE) == f"{message} at byte {META_JPEG + at}"


def test_encapsulation_must_match_the_syntax():
    assert refused(fragments(b"ab")) == f"encapsulated Pixel Data, native syntax at byte {META}"
    native = element(PIXEL_DATA, "OB", b"ab")
    assert (
        refused(native, JPEG_BASELINE)
        == f"Pixel Data not encapsulated (PS3.5 A.4) at byte {META_JPEG}"
    )
    # an icon's Pixel Data in a sequence may be native under an encapsulated syntax
    icon = sequence(0x00880200, item(element(PIXEL_DATA, "OB", b"ab")))
    assert check(icon + fragments(b"ab"), JPEG_BASELINE) is None
    # a syntax pydicom does not know is held to neither
    assert check(fragments(b"ab"), "1.2.826.0.1.3680043.8.498.99") is None
    assert check(native, "1.2.826.0.1.3680043.8.498.99") is None


# -- the File Meta Information (PS3.10 7.1) --------------------------------------------------


def test_file_meta_problems_are_refused():
    good = file_meta(EXPLICIT_LE, dicom_objects.SECONDARY_CAPTURE, "1.2.3")
    assert check_file(io.BytesIO(good)) is None
    assert (
        str(check_file(io.BytesIO(good[:100]))) == "no Part 10 preamble (file too short) at byte 0"
    )
    no_dicm = good[:128] + b"DICX" + good[132:]
    assert (
        str(check_file(io.BytesIO(no_dicm))) == "no DICM prefix (not a Part 10 file) at byte 128"
    )
    # a group length larger than the group: the dataset's first element falls inside it
    longer = (
        good[:140] + struct.pack("<I", struct.unpack("<I", good[140:144])[0] + 10) + good[144:]
    )
    dataset = element(PATIENT_ID, "LO", b"P1") + element(PATIENT_NAME, "PN", b"AB")
    assert str(check_file(io.BytesIO(longer + dataset))) == (
        f"(0010,0020) in the file meta (group 0002 only) at byte {len(good)}"
    )
    past = good[:140] + struct.pack("<I", 1000) + good[144:]
    assert str(check_file(io.BytesIO(past))) == "file meta group length 1000 > file at byte 132"
    # a group length shorter than the group: an element crosses its end
    shorter = (
        good[:140] + struct.pack("<I", struct.unpack("<I", good[140:144])[0] - 4) + good[144:]
    )
    assert str(check_file(io.BytesIO(shorter))).startswith("(0002,0012) length ")
    odd = good + element(0x00020016, "AE", b"ABC")
    odd = odd[:140] + struct.pack("<I", len(odd) - 144) + odd[144:]
    assert str(check_file(io.BytesIO(odd))) == f"(0002,0016) odd length 3 at byte {len(good)}"


def test_file_meta_without_group_length_is_read_to_its_last_group_0002_element():
    good = file_meta(EXPLICIT_LE, dicom_objects.SECONDARY_CAPTURE, "1.2.3")
    without = good[:132] + good[144:]
    assert check_file(io.BytesIO(without + element(PATIENT_ID, "LO", b"P1"))) is None
    assert check_file(io.BytesIO(without)) is None


# -- deflate (PS3.5 A.5) ---------------------------------------------------------------------


def deflated_dataset(odd: bool) -> bytes:
    """Elements whose deflate stream has odd (or even) length."""
    for n in range(2, 400, 2):
        data = element(PATIENT_ID, "LO", b"P" * n) + element(0x00080018, "UI", b"1.2.3\0")
        if len(deflate(data, pad=False)) % 2 == odd:
            return data
    raise AssertionError("no length found")


def test_deflated_dataset_of_either_length_parity_is_accepted_padded():
    for odd in (False, True):
        assert check(deflate(deflated_dataset(odd)), DEFLATED) is None


def test_odd_deflate_stream_without_its_pad_is_refused():
    stream = deflate(deflated_dataset(True), pad=False)
    assert refused(stream, DEFLATED) == (
        f"odd deflate stream length {len(stream)}, no pad at byte {META_DEFLATED + len(stream)}"
    )


def test_bytes_after_the_deflate_stream_are_refused():
    stream = deflate(deflated_dataset(False))
    assert refused(stream + b"\0\0", DEFLATED) == (
        f"2 byte(s) after the deflate stream at byte {META_DEFLATED + len(stream)}"
    )
    odd = deflate(deflated_dataset(True), pad=False)
    assert refused(odd + b"\1", DEFLATED).startswith("1 byte(s) after the deflate stream")


def test_truncated_and_corrupt_deflate_streams_are_refused():
    stream = deflate(element(PATIENT_ID, "LO", bytes(20000)))
    assert refused(stream[:10], DEFLATED).startswith("deflate stream truncated")
    assert refused(b"\xff" * 64, DEFLATED).startswith("corrupt deflate stream")


def test_the_inflated_dataset_is_checked_with_inflated_offsets():
    data = element(PATIENT_ID, "LO", b"P1") + element(PATIENT_NAME, "PN", b"DOE")
    assert refused(deflate(data), DEFLATED) == "(0010,0010) odd length 3 at inflated byte 10"
    cut = element(PATIENT_ID, "LO", b"P1") + element(PIXEL_DATA, "OW", bytes(100), length=8192)
    assert (
        refused(deflate(cut), DEFLATED)
        == "(7FE0,0010) length 8192 > 100 bytes left at inflated byte 10"
    )
    assert refused(deflate(data[:10] + b"\0"), DEFLATED) == (
        "odd dataset length: 1 stray byte(s) at inflated byte 10"
    )


def test_a_deflate_bomb_is_refused_at_the_bound():
    bomb = deflate(element(PATIENT_ID, "LO", b"P1") + element(PIXEL_DATA, "OB", bytes(64 << 20)))
    assert len(bomb) < 128 << 10
    assert refused(bomb, DEFLATED, max_inflated=8 << 20) == (
        f"deflate bomb: over 8 MiB inflated at inflated byte {8 << 20}"
    )
    assert check(bomb, DEFLATED, max_inflated=65 << 20) is None


def test_problem_text_fits_an_error_comment():
    # an Error Comment (LO) keeps 64 characters: the cases fit with their offsets
    for problem in [
        Problem("(7FE0,0010) length 8192 > 8130 bytes left", 1_073_741_824),
        Problem("odd deflate stream length 1073741823, no pad", 1_073_741_824),
        Problem("deflate bomb: over 1024 MiB inflated", 1 << 30, inflated=True),
        Problem("(0008,0008) invalid VR bytes 18 00", 1_073_741_824),
        Problem("odd dataset length: 1 stray byte(s)", 1_073_741_824),
    ]:
        assert len(str(problem)) <= 64, str(problem)
