"""The family of a SOP Class (CT, US, photo, video, document...): a short, bounded name that
groups the ~180 storage SOP classes for the operator's dashboards (metric labels), never a UID
a peer chose."""

from __future__ import annotations

import functools

from pydicom.uid import UID

# Storage SOP Class UIDs by their PS3.4 B.5 name: the first family whose words the name holds.
# Ordered: "Enhanced US Volume" is US, "Video Endoscopic Image" is video, not endoscopy.
_BY_NAME = (
    ("video", ("Video",)),
    ("key-object", ("Key Object Selection",)),  # rejection notes (IHE IOCM) among them
    ("document", ("Encapsulated", "Report", "SR ")),
    ("presentation-state", ("Presentation State",)),
    ("ultrasound", ("Ultrasound", "US ")),
    ("ct", ("CT ", "Computed Tomography")),
    ("mr", ("MR ", "Magnetic Resonance")),
    (
        "projection",
        ("Digital X-Ray", "Computed Radiography", "Mammography", "Intra-Oral", "Breast"),
    ),
    ("angiography", ("X-Ray Angiographic", "X-Ray Radiofluoroscopic", "X-Ray 3D", "XA ", "XRF ")),
    ("nuclear-medicine", ("Nuclear Medicine", "Positron Emission", "PET ")),
    ("photo", ("VL ", "Visible Light", "Ophthalmic", "Dermoscopic", "Wide Field")),
    ("secondary-capture", ("Secondary Capture",)),
    ("radiotherapy", ("RT ", "Radiation Storage", "Radiation Record")),
    ("waveform", ("Waveform", "ECG", "Hemodynamic", "Electro")),
    ("segmentation", ("Segmentation",)),
)
FAMILIES = (*(name for name, _ in _BY_NAME), "other")


@functools.lru_cache(maxsize=512)  # bounded: the UID comes from a peer
def sop_class_family(sop_class_uid: str) -> str:
    """One of FAMILIES; "other" for a SOP class pydicom does not name (a private one)."""
    name = UID(sop_class_uid).name if sop_class_uid else ""
    if name == sop_class_uid:  # pydicom's name of an unknown UID is the UID itself
        return "other"
    padded = name + " "
    for family, words in _BY_NAME:
        if any(word in padded for word in words):
            return family
    return "other"
