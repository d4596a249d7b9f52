"""The audit trail's pure rules: the hash chain and every kind of break, the asserted user,
event names, a retrieve's per-study counts and outcome, retention days, the alert gate."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from archive_node.auditing import AlertGate
from archive_node.rules.audit import (
    GENESIS,
    MINOR_FAILURE,
    QUERY,
    SERIOUS_FAILURE,
    SUCCESS,
    Actor,
    AuditEvent,
    Checkpoint,
    Head,
    Touched,
    asserted_user,
    chain_breaks,
    chained,
    event_kind,
    per_study,
    prune_before,
    record_hash,
    transfer_outcome,
)


def chain(n: int) -> list:
    records, prev = [], GENESIS
    for seq in range(1, n + 1):
        event = AuditEvent(
            QUERY,
            "E",
            "C-FIND",
            Actor("s", ae_title=f"AE{seq}"),
            touched=(Touched("P", "UNN", "1.2"),),
            detail={"n": seq, "name": "Bjørn"},
        )
        record = chained(event, node="N", seq=seq, prev_hash=prev, time=f"t{seq}")
        records.append(record)
        prev = record.hash
    return records


def head_of(records) -> Head:
    return Head(records[-1].seq, records[-1].hash)


def breaks(records, *, start=None, head=None) -> list[str]:
    return list(chain_breaks(records, start=start, head=head))


def test_an_untouched_chain_has_no_breaks():
    records = chain(5)
    assert breaks(records, head=head_of(records)) == []
    assert breaks([], head=None) == []


def test_each_record_hashes_its_content_and_the_one_before():
    records = chain(2)
    assert records[1].prev_hash == records[0].hash
    assert record_hash(records[0]) == records[0].hash
    touched_changed = dataclasses.replace(records[0], touched=())
    assert record_hash(touched_changed) != records[0].hash


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda r: [r[0], dataclasses.replace(r[1], ae_title="X"), *r[2:]], "record 2: changed"),
        (lambda r: [r[0], r[1], *r[3:]], "record 3: removed"),
        (lambda r: [r[0], *r[3:]], "records 2-3: removed"),
        (lambda r: r[:4], "record 5: removed (the chain's head is record 5)"),
        (lambda r: [r[0], r[1], r[1], *r[2:]], "record 2: inserted"),
        (
            lambda r: [*r[:2], dataclasses.replace(r[2], prev_hash="f" * 64), *r[3:]],
            "record 3: changed",
        ),
    ],
)
def test_every_kind_of_tampering_is_named(tamper, expected):
    records = chain(5)
    found = breaks(tamper(records), head=head_of(records))
    assert any(expected in line for line in found), found


def test_a_forged_record_rechained_on_its_own_is_still_caught():
    records = chain(3)
    forged = chained(
        AuditEvent(QUERY, "E", "C-FIND", Actor("x")), node="N", seq=2, prev_hash="0" * 64, time="t"
    )
    found = breaks([records[0], forged, records[2]], head=head_of(records))
    assert any("record 2: inserted or re-chained" in line for line in found), found


def test_records_appended_past_the_head_are_named():
    records = chain(4)
    found = breaks(records, head=Head(2, records[1].hash))
    assert found == ["records 3-4: inserted after the chain's head"]


def test_a_pruned_chain_starts_at_its_checkpoint():
    records = chain(5)
    start = Checkpoint(2, records[1].hash)
    assert breaks(records[2:], start=start, head=head_of(records)) == []
    assert breaks(records[3:], start=start, head=head_of(records)) == ["record 3: removed"]


@pytest.mark.parametrize(
    ("kind", "primary", "expected"),
    [
        (1, b"dr.hansen", "dr.hansen"),
        (2, b"dr.hansen", "dr.hansen"),
        (2, b"evil\nline", "evil?line"),
        (1, "Bjørn".encode(), "Bjørn"),
        (1, b"x" * 200, "x" * 64),
        (3, b"<kerberos ticket bytes>", "(Kerberos ticket)"),
        (4, b"<saml/>", "(SAML assertion)"),
        (5, b"eyJ...", "(JSON Web Token)"),
        (None, None, ""),
        (9, b"?", ""),
    ],
)
def test_only_the_username_of_a_user_identity_is_kept(kind, primary, expected):
    assert asserted_user(kind, primary) == expected


def test_event_names_are_case_and_space_insensitive():
    assert event_kind("query") is QUERY
    assert event_kind("  QUERY ") is QUERY
    assert event_kind("security   alert").code == "110113"
    assert event_kind("coffee") is None


def item(uid: str, study: str) -> SimpleNamespace:
    return SimpleNamespace(sop_instance_uid=uid, study_uid=study, patient_id="P", issuer="UNN")


def test_a_retrieve_is_counted_per_study_and_judged():
    items = [item("1", "S1"), item("2", "S1"), item("3", "S2")]
    before = per_study(items)
    assert before == {
        Touched("P", "UNN", "S1"): {"instances": 2},
        Touched("P", "UNN", "S2"): {"instances": 1},
    }
    after = per_study(items, {"1": "completed", "2": "failed"})
    s1, s2 = after[Touched("P", "UNN", "S1")], after[Touched("P", "UNN", "S2")]
    assert s1 == {"instances": 2, "completed": 1, "failed": 1}
    assert s2 == {"instances": 1, "not_sent": 1}
    assert (transfer_outcome(s1), transfer_outcome(s2)) == (MINOR_FAILURE, SERIOUS_FAILURE)
    assert transfer_outcome({"instances": 2, "completed": 1, "warning": 1}) == SUCCESS


def test_retention_counts_whole_days_from_midnight_utc():
    now = datetime(2026, 12, 5, 15, 30, tzinfo=UTC)
    assert prune_before(30, now) == "2026-11-05T00:00:00.000000Z"
    assert prune_before(1, now) == "2026-12-04T00:00:00.000000Z"


def test_the_alert_gate_holds_back_a_flood_and_counts_it_into_the_next():
    clock = [0.0]
    gate = AlertGate(2, clock=lambda: clock[0])
    assert [gate.take("10.0.0.1") for _ in range(5)] == [0, 0, None, None, None]
    assert gate.take("10.0.0.2") == 0  # another address has its own minute
    clock[0] = 61.0
    assert gate.take("10.0.0.1") == 3
    assert gate.take("10.0.0.1") == 0
