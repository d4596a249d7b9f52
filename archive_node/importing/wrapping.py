"""The DICOM instance each media file becomes: the attributes of its IOD, and its bulk value.

- A baseline JPEG: VL Photographic Image (PS3.3 A.32.4), JPEG Baseline (Process 1), the
  bitstream as the one fragment of its Pixel Data (PS3.5 A.4.1).
- An MP4 with H.264 or HEVC video: Video Photographic Image (PS3.3 A.32.7), the MP4 file as
  the stream of its Pixel Data (PS3.5 8.2.7-8.2.11).
- A PDF: Encapsulated PDF (PS3.3 A.45.1), the document as its Encapsulated Document.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from .. import __version__
from ..dicom.part10_writer import Bulk
from .media.jpeg import JpegImage
from .media.mp4 import VideoStream
from .media.pdf import PdfDocument
from .media.probe import DOCUMENT, PHOTO, VIDEO, Media

VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"
VIDEO_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4.1"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"

PIXEL_DATA = 0x7FE00010
ENCAPSULATED_DOCUMENT = 0x00420011

# The series each kind goes to in a study, and its Modality (PS3.3 C.7.3.1.1.1: XC is
# external-camera photography; DOC a document, as CP-749 and DCMTK's pdf2dcm use).
MODALITY = {PHOTO: "XC", VIDEO: "XC", DOCUMENT: "DOC"}
SERIES_NUMBER = {PHOTO: 1001, VIDEO: 1002, DOCUMENT: 1003}
SOP_CLASS = {PHOTO: VL_PHOTOGRAPHIC, VIDEO: VIDEO_PHOTOGRAPHIC, DOCUMENT: ENCAPSULATED_PDF}

# SNOMED CT 'Topography unknown': the Video Photographic IOD wants an Anatomic Region, and
# the importer is not told one in codes (BodyPartExamined carries --body-part as text).
_UNKNOWN_REGION = ("87100004", "SCT", "Topography unknown")
_TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "UC"}


@dataclass(frozen=True)
class Subject:
    """Who and what study an import is for, as the admin gave it (or the index knows it)."""

    patient_id: str
    issuer: str
    patient_name: str
    birth_date: str
    sex: str
    study_uid: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    study_description: str
    referring_physician: str
    series_description: str
    body_part: str
    operator: str


@dataclass(frozen=True)
class Wrapped:
    """One media file as a DICOM instance: its dataset (without the bulk value) and the bulk
    value to copy into it from the file."""

    sop_class_uid: str
    transfer_syntax_uid: str
    dataset: Dataset
    bulk: Bulk
    note: str  # what the encoding is, for the admin


def wrap(
    media: Media,
    subject: Subject,
    *,
    series_uid: str,
    sop_instance_uid: str,
    instance_number: int,
) -> Wrapped:
    """The instance `media` becomes in `subject`'s study. Nothing in it depends on the time
    of the import: the same file, subject and UIDs give the same bytes."""
    ds = _common(subject, media.kind, series_uid, sop_instance_uid, instance_number)
    wrapped = _wrap(ds, media)
    _character_set(ds)
    return wrapped


def _wrap(ds: Dataset, media: Media) -> Wrapped:
    facts = media.facts
    if isinstance(facts, JpegImage):
        _photo(ds, facts)
        _when(ds, _taken(media), media.modified)
        return Wrapped(
            VL_PHOTOGRAPHIC,
            JPEGBaseline8Bit,
            ds,
            Bulk(PIXEL_DATA, media.path, facts.length, encapsulated=True),
            "JPEG Baseline (Process 1)",
        )
    if isinstance(facts, VideoStream):
        encoding = media.encoding
        assert encoding is not None  # probe() chose it
        _video(ds, facts, encoding.bits_stored)
        _when(ds, _taken(media), media.modified)
        return Wrapped(
            VIDEO_PHOTOGRAPHIC,
            encoding.transfer_syntax_uid,
            ds,
            Bulk(PIXEL_DATA, media.path, media.size, encapsulated=True),
            encoding.name,
        )
    assert isinstance(facts, PdfDocument)
    _document(ds, media)
    return Wrapped(
        ENCAPSULATED_PDF,
        ExplicitVRLittleEndian,
        ds,
        Bulk(ENCAPSULATED_DOCUMENT, media.path, media.size, encapsulated=False),
        f"PDF {facts.version}",
    )


def content_time(media: Media) -> datetime:
    """When the photo was taken or the video recorded (local time) if the file says, else
    when the file was last written."""
    return _taken(media) or media.modified


def _taken(media: Media) -> datetime | None:
    facts = media.facts
    if isinstance(facts, JpegImage):
        return facts.taken
    if isinstance(facts, VideoStream) and facts.created is not None:
        return facts.created.astimezone().replace(tzinfo=None)
    return None


def _common(
    subject: Subject,
    kind: str,
    series_uid: str,
    sop_instance_uid: str,
    instance_number: int,
) -> Dataset:
    """Patient, General Study, General Series, General Equipment and SOP Common."""
    ds = Dataset()
    # SOP Common (PS3.3 C.12.1)
    ds.SOPClassUID = SOP_CLASS[kind]
    ds.SOPInstanceUID = sop_instance_uid
    # Patient (C.7.1.1)
    ds.PatientName = subject.patient_name
    ds.PatientID = subject.patient_id
    ds.IssuerOfPatientID = subject.issuer
    ds.PatientBirthDate = subject.birth_date
    ds.PatientSex = subject.sex
    # General Study (C.7.2.1)
    ds.StudyInstanceUID = subject.study_uid
    ds.StudyDate = subject.study_date
    ds.StudyTime = subject.study_time
    ds.ReferringPhysicianName = subject.referring_physician
    ds.StudyID = subject.study_id
    ds.AccessionNumber = subject.accession_number
    if subject.study_description:
        ds.StudyDescription = subject.study_description
    # General Series (C.7.3.1), Encapsulated Document Series (C.24.1)
    ds.Modality = MODALITY[kind]
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = SERIES_NUMBER[kind]
    if subject.series_description:
        ds.SeriesDescription = subject.series_description
    if kind != DOCUMENT:  # not attributes of the Encapsulated PDF IOD
        ds.Laterality = ""  # 2C: unknown to the importer (PS3.3 C.7.3.1)
        if subject.body_part:
            ds.BodyPartExamined = subject.body_part
        if subject.operator:
            ds.OperatorsName = subject.operator
    # General Equipment (C.7.5.1)
    ds.Manufacturer = ""
    ds.InstanceNumber = instance_number
    return ds


def _character_set(ds: Dataset) -> None:
    """UTF-8 (ISO_IR 192, PS3.3 C.12.1.1.2) when any text is not ASCII; else the default."""
    if any(e.VR in _TEXT_VRS and not str(e.value).isascii() for e in ds):
        ds.SpecificCharacterSet = "ISO_IR 192"


def _image(ds: Dataset, rows: int, columns: int, samples: int, photometric: str) -> None:
    """General Image (C.7.6.1), Image Pixel (C.7.6.3), Acquisition Context (C.7.6.14)."""
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelRepresentation = 0
    ds.AcquisitionContextSequence = []


def _photo(ds: Dataset, photo: JpegImage) -> None:
    """VL Photographic Image (PS3.3 A.32.4): the VL Image module (C.8.12.1) over the JPEG."""
    # the camera as its EXIF names it, made fit for LO (one value, at most 64 characters)
    if make := _lo(photo.make):
        ds.Manufacturer = make
    if model := _lo(photo.model):
        ds.ManufacturerModelName = model
    if software := _lo(photo.software):
        ds.SoftwareVersions = software
    _image(
        ds, photo.rows, photo.columns, photo.samples_per_pixel, photo.photometric_interpretation
    )
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    # The camera compressed it lossily (PS3.3 C.7.6.1.1.5); the ratio is to 8-bit samples.
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    raw = photo.rows * photo.columns * photo.samples_per_pixel
    ds.LossyImageCompressionRatio = f"{raw / max(photo.length, 1):.2f}"
    if photo.icc_profile:  # ICC Profile module (C.11.15): the camera's colours, kept
        ds.ICCProfile = photo.icc_profile


def _video(ds: Dataset, video: VideoStream, bits_stored: int) -> None:
    """Video Photographic Image (PS3.3 A.32.7): VL Image, Cine (C.7.6.5) and Multi-frame
    (C.7.6.6), with the pixel description PS3.5 8.2.7-8.2.11 prescribes."""
    _image(ds, video.rows, video.columns, 3, "YBR_PARTIAL_420")
    ds.BitsAllocated = 8 if bits_stored == 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.LossyImageCompression = "01"
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = _UNKNOWN_REGION
    ds.AnatomicRegionSequence = [region]
    ds.NumberOfFrames = video.frames
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.FrameTime = f"{1000 / video.frame_rate:.6g}"  # ms per frame (mean, for variable rate)
    ds.CineRate = ds.RecommendedDisplayFrameRate = max(1, round(video.frame_rate))
    ds.ActualFrameDuration = round(1000 / video.frame_rate)
    ds.PreferredPlaybackSequencing = 0  # looping
    ds.StartTrim = 1
    ds.StopTrim = video.frames


def _document(ds: Dataset, media: Media) -> None:
    """Encapsulated PDF (PS3.3 A.45.1): SC Equipment (C.8.6.1) and Encapsulated Document
    (C.24.2)."""
    ds.ConversionType = "SD"  # scanned document: the region's paper records
    ds.SecondaryCaptureDeviceManufacturer = "archive-node"
    ds.SecondaryCaptureDeviceSoftwareVersions = __version__
    ds.ContentDate = da_value(media.modified)  # when the scan or export was written
    ds.ContentTime = tm_value(media.modified)
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "YES"  # a clinical document names its patient
    ds.DocumentTitle = _lo(media.path.stem.encode("utf-8", "replace").decode())
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = media.size  # without the pad byte (PS3.3 C.24.2.1)


def _when(ds: Dataset, taken: datetime | None, modified: datetime) -> None:
    """Content and acquisition date/time (C.7.6.1, C.7.10.1): when the camera recorded it,
    else (the VL Image module wants a Content Time) when the file was last written."""
    if taken is None:
        ds.ContentDate = da_value(modified)
        ds.ContentTime = tm_value(modified)
        return
    ds.ContentDate = ds.AcquisitionDate = da_value(taken)
    ds.ContentTime = ds.AcquisitionTime = tm_value(taken)
    ds.AcquisitionDateTime = da_value(taken) + tm_value(taken)


def _lo(text: str) -> str:
    """`text` as one LO value (PS3.5 6.2): no backslash or control character, 64 at most."""
    kept = "".join(c if c.isprintable() and c != "\\" else " " for c in text)
    return " ".join(kept.split())[:64]


def da_value(moment: datetime) -> str:
    """A DA value (PS3.5 6.2): YYYYMMDD."""
    return moment.strftime("%Y%m%d")


def tm_value(moment: datetime) -> str:
    """A TM value (PS3.5 6.2): HHMMSS, with the fraction when there is one."""
    return moment.strftime("%H%M%S.%f") if moment.microsecond else moment.strftime("%H%M%S")
