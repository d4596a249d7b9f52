"""Synthetic DICOM objects for tests: CT, US multi-frame, VL photo JPEG, H.264 video, PDF."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    MPEG4HP41,
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

from archive_node.dicom.instance_header import InstanceHeader
from archive_node.index import NewInstance

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"
VIDEO_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"


def testdata(name: str) -> str:
    """A file bundled with pydicom (never downloaded)."""
    return get_testdata_file(name, download=False)


def base_dataset(
    sop_class: str,
    *,
    patient_id: str = "PID001",
    patient_name: str = "TEST^PATIENT",
    issuer: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    modality: str = "OT",
    transfer_syntax: str = ExplicitVRLittleEndian,
    charset: str | None = None,
    study_date: str = "20240115",
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid = sop_uid or generate_uid()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    if issuer:
        ds.IssuerOfPatientID = issuer
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC1"
    ds.StudyID = "1"
    ds.StudyDescription = "Synthetic study"
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    return ds


def _image(ds: Dataset, rows: int, cols: int, samples: int, photometric: str) -> None:
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if samples == 3:
        ds.PlanarConfiguration = 0


def secondary_capture(**kw) -> Dataset:
    """A ~10 KB 8-bit grayscale secondary capture."""
    ds = base_dataset(SECONDARY_CAPTURE, **kw)
    _image(ds, 100, 100, 1, "MONOCHROME2")
    ds.ConversionType = "WSD"
    ds.PixelData = os.urandom(100 * 100)
    return ds


def ct(**kw) -> Dataset:
    """A 64x64 16-bit CT slice."""
    ds = base_dataset(CT_IMAGE, modality="CT", **kw)
    _image(ds, 64, 64, 1, "MONOCHROME2")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PixelData = os.urandom(64 * 64 * 2)
    return ds


def us_multiframe(frames: int = 4, **kw) -> Dataset:
    """An uncompressed RGB ultrasound multi-frame."""
    ds = base_dataset(US_MULTIFRAME, modality="US", **kw)
    _image(ds, 32, 32, 3, "RGB")
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = (0x0018, 0x1063)
    ds.FrameTime = 40
    ds.PixelData = os.urandom(32 * 32 * 3 * frames)
    return ds


def _jpeg_bytes() -> bytes:
    """A real baseline JPEG bitstream, taken from a pydicom test file."""
    src = dcmread(testdata("SC_rgb_jpeg_dcmtk.dcm"))
    from pydicom.encaps import generate_frames

    return next(generate_frames(src.PixelData, number_of_frames=1))


def vl_photo_jpeg(**kw) -> Dataset:
    """A VL Photographic Image with a JPEG baseline bitstream (a dermatology photo)."""
    ds = base_dataset(VL_PHOTO, modality="XC", transfer_syntax=JPEGBaseline8Bit, **kw)
    _image(ds, 100, 100, 3, "YBR_FULL_422")
    ds.PixelData = encapsulate([_jpeg_bytes()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True  # PS3.5 A.4: encapsulated is undefined length
    return ds


def video_h264(payload: int = 200_000, **kw) -> Dataset:
    """A Video Photographic Image in MPEG-4 AVC/H.264 High Profile (synthetic fragments)."""
    ds = base_dataset(VIDEO_PHOTO, modality="XC", transfer_syntax=MPEG4HP41, **kw)
    _image(ds, 480, 640, 3, "YBR_PARTIAL_420")
    ds.NumberOfFrames = 25
    ds.FrameIncrementPointer = (0x0018, 0x1063)
    ds.FrameTime = 40
    ds.PixelData = encapsulate([os.urandom(payload)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def encapsulated_pdf(**kw) -> Dataset:
    ds = base_dataset(ENCAPSULATED_PDF, modality="DOC", **kw)
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n%synthetic\n%%EOF\n"
    return ds


def write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_large_video(path: Path, size: int, **kw) -> Path:
    """An H.264 video object of about `size` bytes, written in chunks (bounded memory)."""
    ds = video_h264(payload=2, **kw)
    del ds.PixelData
    write(ds, path)
    chunk = os.urandom(1 << 20)
    with open(path, "ab") as fh:
        # (7FE0,0010) OB, undefined length; empty Basic Offset Table; fragments; delimiter
        fh.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF))
        fh.write(struct.pack("<HHI", 0xFFFE, 0xE000, 0))
        written = 0
        while written < size:
            fh.write(struct.pack("<HHI", 0xFFFE, 0xE000, len(chunk)))
            fh.write(chunk)
            written += len(chunk)
        fh.write(struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    return path


def dataset_bytes(path: Path) -> bytes:
    """The bytes of a Part 10 file after its File Meta Information (what travelled)."""
    raw = Path(path).read_bytes()
    assert raw[128:132] == b"DICM"
    group_length = struct.unpack("<I", raw[140:144])[0]
    return raw[144 + group_length :]


def instance_header(**overrides) -> InstanceHeader:
    """What header.read_header would return for a secondary capture, without a file."""
    values = {
        "sop_class_uid": SECONDARY_CAPTURE,
        "sop_instance_uid": generate_uid(),
        "transfer_syntax_uid": ExplicitVRLittleEndian,
        "study_uid": generate_uid(),
        "series_uid": generate_uid(),
        "patient_id": "PID001",
        "issuer_of_patient_id": None,
        "patient_name": "TEST^PATIENT",
        "patient_birth_date": "",
        "patient_sex": "",
        "study_date": "",
        "study_time": "",
        "accession_number": "",
        "study_id": "",
        "study_description": "",
        "referring_physician": "",
        "modality": "OT",
        "series_number": 1,
        "series_description": "",
        "body_part": "",
        "instance_number": 1,
        "number_of_frames": None,
    }
    values.update(overrides)
    return InstanceHeader(**values)


def index_row(
    service, header: InstanceHeader, *, hospital: str = "UNN", calling_ae: str = "UNN_US"
) -> InstanceHeader:
    """Record an instance in the index without a file: fast set-up for queries that never
    open the files. The issuer is the header's, else the hospital's code."""
    new = NewInstance(
        header=header,
        path=f"/nonexistent/{header.sop_instance_uid}.dcm",
        size=1,
        sha256="0" * 64,
        calling_ae=calling_ae,
        hospital=hospital,
        issuer=header.issuer_of_patient_id or hospital,
    )
    assert service.index.instances.record(new) is None
    return header


def four_kinds(study_uid: str, patient_id: str) -> list[Dataset]:
    """One study of the kinds retrieve tests send: a US multi-frame, a VL photo (JPEG
    baseline), an H.264 video and a CT, in that order."""
    return [
        us_multiframe(study_uid=study_uid, patient_id=patient_id),
        vl_photo_jpeg(study_uid=study_uid, patient_id=patient_id),
        video_h264(study_uid=study_uid, patient_id=patient_id),
        ct(study_uid=study_uid, patient_id=patient_id),
    ]
