"""The accepting loop of a serving node collects only young garbage (admission.NodeServer):
pynetdicom's collected the whole heap every 3 s, a stall of every running association."""

from __future__ import annotations

import gc

from archive_node.dicom import status
from archive_node.net.admission import NodeServer
from tests.helpers import dicom_objects
from tests.helpers.dimse import store


def test_the_accept_loop_never_collects_the_whole_heap(node):
    (listener,) = [s for s in node.server.ae._servers if isinstance(s, NodeServer)]
    collected: list[int] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start":
            collected.append(info["generation"])

    enabled = gc.isenabled()
    gc.disable()  # only the collections the loop asks for are seen
    gc.callbacks.append(seen)
    try:
        for _ in range(2 * 61):  # two of pynetdicom's collection periods
            listener.service_actions()
    finally:
        gc.callbacks.remove(seen)
        if enabled:
            gc.enable()
    assert collected == [1, 1]
    assert store(node, dicom_objects.secondary_capture()) == status.SUCCESS  # it serves on
