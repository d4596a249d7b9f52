"""Decompress a stored encapsulated object (JPEG, JPEG-LS, JPEG 2000, HTJ2K, RLE) into Explicit
or Implicit VR Little Endian for a peer that takes no compressed syntax, one frame at a time,
through pydicom's pixel data decoders (pylibjpeg with its libjpeg, openjpeg and rle plugins):
memory holds one decoded frame, never the whole pixel data of a multi-frame (PS3.5 8.2, A.4).

The stored file is only read. What PS3.5 and PS3.3 ask of the new object is set here:
Photometric Interpretation as decoded (YBR_FULL, YBR_FULL_422, YBR_ICT, YBR_RCT become RGB,
PS3.5 8.2.1, 8.2.4), Planar Configuration 0 (the decoders give colour-by-pixel), and Lossy Image
Compression kept "01" with its ratio and method once the pixels were ever lossy (PS3.3
C.7.6.1.1.5), set "01" when the stored syntax is only lossy; a lossless source gets no lossy
attribute."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels import as_pixel_options, get_decoder
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)

PIXEL_DATA = Tag(0x7FE0, 0x0010)
# Native pixel data has none of these (PS3.5 A.4: offset tables of encapsulated frames)
_ENCAPSULATED_ONLY = (Tag(0x7FE0, 0x0001), Tag(0x7FE0, 0x0002))
ICON_IMAGE_SEQUENCE = Tag(0x0088, 0x0200)
_DEFER_BYTES = 64 * 1024
# Stored syntaxes whose pixels are lossy whatever the dataset says, and their method's code
# (PS3.3 C.7.6.1.1.5.1, Defined Terms of Lossy Image Compression Method)
_ONLY_LOSSY = {
    str(JPEGBaseline8Bit): "ISO_10918_1",
    str(JPEGExtended12Bit): "ISO_10918_1",
    str(JPEGLSNearLossless): "ISO_14495_1",
}
# The decoding plugins tried in turn ("": each pydicom has, in its order). Pillow's libjpeg-turbo
# decodes 8-bit JPEG, colour conversion included, to the same values as DCMTK's dcmdjpeg (IJG);
# pylibjpeg's libjpeg differs from them by up to 3 in lossy images.
_PLUGINS = {str(JPEGBaseline8Bit): ("pillow", "")}


class Undecodable(ValueError):
    """The stored pixel data cannot be decompressed here (no decoder, or a decoder error)."""


def decompress(source: Path, target: Path, transfer_syntax: str, plugin: str = "") -> None:
    """Write the Part 10 file `source`, in an encapsulated syntax pydicom can decode, to
    `target` in `transfer_syntax` (Explicit or Implicit VR Little Endian), decoding and writing
    one frame at a time. Elements after the pixel data are not kept (Data Set Trailing Padding
    is the usual one). `plugin` names pydicom's decoding plugin (default: those _PLUGINS
    names, in turn). Raises Undecodable, OSError, or pydicom's errors for a file it cannot
    read."""
    dataset = dcmread(source, defer_size=_DEFER_BYTES)
    stored = UID(str(dataset.file_meta.TransferSyntaxUID))
    if PIXEL_DATA not in dataset:
        raise Undecodable("it has no pixel data to decompress")
    # still on disk: pydicom's overload of get_item says DataElement
    pixel = cast(RawDataElement, dataset.get_item(PIXEL_DATA, keep_deferred=True))
    if pixel.length != 0xFFFFFFFF:
        raise Undecodable("its pixel data is not encapsulated")
    try:
        decoder = get_decoder(stored)
    except NotImplementedError:
        raise Undecodable(f"no decoder for {stored.name}") from None
    if not decoder.is_available:
        raise Undecodable(f"the decoders of {stored.name} are not installed")
    options: dict[str, Any] = as_pixel_options(dataset)
    options.update(transfer_syntax_uid=stored, pixel_keyword="PixelData")
    if not stored.is_implicit_VR:
        options["pixel_vr"] = "OB"
    frames = int(options["number_of_frames"])
    bits = int(dataset.BitsAllocated)
    if bits not in (8, 16, 32, 64):
        raise Undecodable(f"Bits Allocated {bits} is not decoded here")
    frame_length = int(dataset.Rows) * int(dataset.Columns) * int(dataset.SamplesPerPixel)
    frame_length *= bits // 8
    total = frame_length * frames
    if total + total % 2 >= 0xFFFFFFFF:  # PS3.5 7.1.1: a 32-bit value length
        raise Undecodable("its decompressed pixel data exceeds 4 GiB")
    compressed = os.path.getsize(source) - pixel.value_tell
    with open(source, "rb") as src, open(target, "wb") as out:
        failure = Undecodable("no decoding plugin")
        for name in (plugin,) if plugin else _PLUGINS.get(str(stored), ("",)):
            src.seek(pixel.value_tell)
            decoded = _frames(decoder, src, options, name)
            try:
                first, properties = next(decoded)
                break
            except Undecodable as exc:
                failure = exc
        else:
            raise failure
        _describe(dataset, properties, stored, total, compressed)
        for tag in (PIXEL_DATA, *_ENCAPSULATED_ONLY):
            if tag in dataset:
                del dataset[tag]
        # the tags, not the elements: iterating a Dataset reads each deferred value
        for tag in [t for t in list(dataset.keys()) if t > PIXEL_DATA]:
            del dataset[tag]
        _drop_encapsulated_icon(dataset)
        dataset.file_meta.TransferSyntaxUID = UID(transfer_syntax)
        dataset.save_as(out, enforce_file_format=True)
        vr = b"OB" if bits == 8 else b"OW"
        length = total + total % 2
        if transfer_syntax == ImplicitVRLittleEndian:
            out.write(struct.pack("<HHI", 0x7FE0, 0x0010, length))
        else:
            out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, vr, 0, length))
        written = _write(out, first, frame_length)
        for array, _ in decoded:
            written += _write(out, array, frame_length)
        if written != total:
            raise Undecodable(f"{written // frame_length} frames decoded of {frames}")
        if total % 2:
            out.write(b"\0")  # PS3.5 7.1.1: values have an even length


def _frames(
    decoder: Any, src: IO[bytes], options: dict[str, Any], plugin: str
) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """The decoded frames of the pixel data at `src`'s position, one at a time, with the image
    pixel properties of the decoded data; a decoder's error becomes Undecodable."""
    try:
        yield from decoder.iter_array(src, validate=True, decoding_plugin=plugin, **options)
    except Undecodable:
        raise
    except Exception as exc:
        raise Undecodable(f"{type(exc).__name__}: {exc}") from exc


def _write(out: IO[bytes], array: np.ndarray, frame_length: int) -> int:
    """Write one frame little endian, colour-by-pixel (the array is rows, columns, samples)."""
    data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    if len(data) != frame_length:
        raise Undecodable(f"a frame decoded to {len(data)} bytes, not {frame_length}")
    out.write(data)
    return len(data)


def _describe(
    dataset: Dataset, properties: dict[str, Any], stored: UID, total: int, compressed: int
) -> None:
    """Set the Image Pixel and lossy compression attributes of the decompressed object."""
    dataset.PhotometricInterpretation = properties["photometric_interpretation"]
    if int(dataset.SamplesPerPixel) > 1:
        dataset.PlanarConfiguration = 0  # the decoders give colour-by-pixel (PS3.3 C.7.6.3.1.3)
    elif "PlanarConfiguration" in dataset:
        del dataset.PlanarConfiguration
    method = _ONLY_LOSSY.get(str(stored))
    if dataset.get("LossyImageCompression") == "01" or method is None:
        return  # the history as stored: a lossy one kept, a lossless one left lossless
    # PS3.3 C.7.6.1.1.5: the pixels went through lossy compression; say so, with its ratio
    dataset.LossyImageCompression = "01"
    ratios = list(dataset.get("LossyImageCompressionRatio") or [])
    methods = list(dataset.get("LossyImageCompressionMethod") or [])
    ratios.append(f"{total / max(compressed, 1):.2f}")
    methods.append(method)
    dataset.LossyImageCompressionRatio = ratios
    dataset.LossyImageCompressionMethod = methods


def _drop_encapsulated_icon(dataset: Dataset) -> None:
    """An icon (PS3.3 C.7.6.1.1.6) in the source's compressed syntax cannot stay: the new
    object's syntax is native. The icon is optional: it is left out."""
    icons = dataset.get(ICON_IMAGE_SEQUENCE)
    if icons is None:
        return
    for item in icons.value:
        element = item.get_item(PIXEL_DATA, keep_deferred=True) if PIXEL_DATA in item else None
        if element is not None and getattr(element, "is_undefined_length", False):
            del dataset[ICON_IMAGE_SEQUENCE]
            return
        if isinstance(element, RawDataElement) and element.length == 0xFFFFFFFF:
            del dataset[ICON_IMAGE_SEQUENCE]
            return
