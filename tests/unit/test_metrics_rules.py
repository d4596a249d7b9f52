"""The metrics' pure parts: a status as its outcome label, a SOP class as its family."""

from __future__ import annotations

import pytest
from pynetdicom.sop_class import _STORAGE_CLASSES

from archive_node.dicom.sop_families import FAMILIES, sop_class_family
from archive_node.metrics import outcome_of


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (0x0000, "success"),
        (0x0001, "warning"),
        (0x0107, "warning"),
        (0x0116, "warning"),
        (0xB000, "warning"),
        (0xB007, "warning"),
        (0xFE00, "cancel"),
        (0x0124, "failure"),
        (0xA700, "failure"),
        (0xA801, "failure"),
        (0xC000, "failure"),
        (0x0110, "failure"),
        (None, "failure"),
    ],
)
def test_outcome_of_a_status(code, outcome):
    assert outcome_of(code) == outcome


@pytest.mark.parametrize(
    ("uid", "family"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "ct"),  # CT Image Storage
        ("1.2.840.10008.5.1.4.1.1.4", "mr"),
        ("1.2.840.10008.5.1.4.1.1.6.1", "ultrasound"),
        ("1.2.840.10008.5.1.4.1.1.3.1", "ultrasound"),  # US Multi-frame
        ("1.2.840.10008.5.1.4.1.1.77.1.4", "photo"),  # VL Photographic
        ("1.2.840.10008.5.1.4.1.1.77.1.7", "photo"),  # Dermoscopic Photography
        ("1.2.840.10008.5.1.4.1.1.77.1.1.1", "video"),  # Video Endoscopic
        ("1.2.840.10008.5.1.4.1.1.77.1.4.1", "video"),  # Video Photographic
        ("1.2.840.10008.5.1.4.1.1.104.1", "document"),  # Encapsulated PDF
        ("1.2.840.10008.5.1.4.1.1.88.11", "document"),  # Basic Text SR
        ("1.2.840.10008.5.1.4.1.1.88.59", "key-object"),  # KOS, rejection notes among them
        ("1.2.840.10008.5.1.4.1.1.7", "secondary-capture"),
        ("1.2.840.10008.5.1.4.1.1.1.1", "projection"),  # DX
        ("1.2.840.10008.5.1.4.1.1.1.2", "projection"),  # Mammography
        ("1.2.840.10008.5.1.4.1.1.12.1", "angiography"),
        ("1.2.840.10008.5.1.4.1.1.128", "nuclear-medicine"),  # PET
        ("1.2.840.10008.5.1.4.1.1.481.2", "radiotherapy"),  # RT Dose
        ("1.2.840.10008.5.1.4.1.1.9.1.1", "waveform"),  # 12-lead ECG
        ("1.2.840.10008.5.1.4.1.1.11.1", "presentation-state"),
        ("1.2.840.10008.5.1.4.1.1.66.4", "segmentation"),
        ("1.2.826.0.1.3680043.9.9999.1", "other"),  # a private class
        ("", "other"),
    ],
)
def test_family_of_a_sop_class(uid, family):
    assert sop_class_family(uid) == family


def test_every_storage_class_has_one_of_the_bounded_families():
    """The label set cannot grow with the SOP classes a peer sends."""
    assert {sop_class_family(uid) for uid in _STORAGE_CLASSES.values()} <= set(FAMILIES)
