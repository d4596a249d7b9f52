"""Hand-packed pending C-MOVE/C-GET responses are the bytes pynetdicom would encode."""

from __future__ import annotations

import pytest
from pynetdicom.dimse_messages import C_GET_RSP, C_MOVE_RSP
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.dsutils import encode

from archive_node import commands

STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"  # odd length: padded


@pytest.mark.parametrize(
    ("primitive", "message", "field", "sop_class"),
    [
        (C_MOVE, C_MOVE_RSP, commands.C_MOVE_RSP, STUDY_MOVE),
        (C_GET, C_GET_RSP, commands.C_GET_RSP, STUDY_GET),
    ],
)
def test_pending_response_is_what_pynetdicom_encodes(primitive, message, field, sop_class):
    rsp = primitive()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = sop_class
    rsp.Status = 0xFF00
    rsp.NumberOfRemainingSuboperations = 997
    rsp.NumberOfCompletedSuboperations = 2
    rsp.NumberOfFailedSuboperations = 1
    rsp.NumberOfWarningSuboperations = 0
    msg = message()
    msg.primitive_to_message(rsp)
    expected = encode(msg.command_set, True, True)
    packed = commands.pending_response(
        field, sop_class, 7, remaining=997, completed=2, failed=1, warning=0
    )
    assert packed == expected


def test_counts_beyond_an_unsigned_short_are_capped():
    packed = commands.pending_response(
        commands.C_MOVE_RSP, STUDY_MOVE, 1, remaining=70_000, completed=0, failed=0, warning=0
    )
    assert b"\x00\x00\x20\x10\x02\x00\x00\x00\xff\xff" in packed
