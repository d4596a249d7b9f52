"""The accepting loop of a serving node collects young garbage every 60 turns and the whole heap
once a minute (admission.NodeServer): pynetdicom's collected the whole heap every 3 s, a stall
of every running association."""

from __future__ import annotations

import gc

from archive_node.dicom import status
from archive_node.net import admission
from archive_node.net.admission import NodeServer
from tests.helpers import dicom_objects
from tests.helpers.dimse import store


def test_the_accept_loop_collects_the_whole_heap_once_a_minute(node):
    (listener,) = [s for s in node.server.ae._servers if isinstance(s, NodeServer)]
    collected: list[int] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start":
            collected.append(info["generation"])

    enabled = gc.isenabled()
    gc.disable()  # only the collections the loop asks for are seen
    gc.callbacks.append(seen)
    try:
        for _ in range(admission.GC_TURNS * admission.FULL_COLLECTION_EVERY * 2):
            listener.service_actions()
    finally:
        gc.callbacks.remove(seen)
        if enabled:
            gc.enable()
    every = admission.FULL_COLLECTION_EVERY
    assert collected == ([1] * (every - 1) + [2]) * 2  # a minute's at 0.05 s a turn, twice
    assert store(node, dicom_objects.secondary_capture()) == status.SUCCESS  # it serves on
