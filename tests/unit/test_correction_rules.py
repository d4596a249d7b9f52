"""The pure rules of corrections: prior identifiers, reasons, demographics, deletion dates."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from archive_node.errors import InvalidInput
from archive_node.rules.corrections import (
    Demographics,
    check_demographics,
    check_patient_id,
    check_reason,
    due_for_deletion,
    prior_ids,
    with_prior,
    without,
)


def test_prior_identifiers_are_kept_once_in_order():
    stored = with_prior("", ("A", "UNN"))
    stored = with_prior(stored, ("B", "NLSH"), ("A", "UNN"), ("", "UNN"))
    assert prior_ids(stored) == (("A", "UNN"), ("B", "NLSH"))
    assert prior_ids(without(stored, ("A", "UNN"))) == (("B", "NLSH"),)
    assert without(with_prior("", ("A", "UNN")), ("A", "UNN")) == ""
    assert prior_ids("") == ()


@pytest.mark.parametrize(
    ("reason", "problem"),
    [("", "required"), ("   ", "required"), ("two\nlines", "one line"), ("x" * 1025, "longer")],
)
def test_a_reason_is_required_one_line_and_bounded(reason, problem):
    with pytest.raises(InvalidInput, match=problem):
        check_reason(reason)


def test_a_good_reason_is_stripped():
    assert check_reason("  wrong patient (ticket 4711) ") == "wrong patient (ticket 4711)"


@pytest.mark.parametrize(
    ("name", "birth", "sex", "problem"),
    [
        ("A\\B", None, None, "--name"),
        ("A^B^C^D^E^F", None, None, "--name"),
        ("x" * 65, None, None, "--name"),
        (None, "19991332", None, "--birth-date"),
        (None, "1999-01-01", None, "--birth-date"),
        (None, None, "X", "--sex"),
    ],
)
def test_bad_demographics_are_refused(name, birth, sex, problem):
    with pytest.raises(InvalidInput, match=problem):
        check_demographics(name, birth, sex)


def test_good_demographics_pass_and_empty_clears():
    assert check_demographics("Ødegård^Bjørn", "19750505", "F") == (
        "Ødegård^Bjørn",
        "19750505",
        "F",
    )
    assert check_demographics(None, "", "") == (None, "", "")
    assert Demographics("A", "B", "C").changed(None, "", None) == Demographics("A", "", "C")


@pytest.mark.parametrize("value", ["", "  ", "A\\B", "x" * 65, "tab\there"])
def test_bad_patient_ids_are_refused(value):
    with pytest.raises(InvalidInput):
        check_patient_id(value)


@pytest.mark.parametrize(
    ("code", "days", "due"),
    [("113001", 30, None), ("113037", 0, None), ("113038", 30, 30), ("113039", 0, 0)],
)
def test_only_worklist_and_retention_rejections_are_deleted(code, days, due):
    now = datetime(2026, 12, 5, 12, 0)
    expected = None if due is None else now + timedelta(days=due)
    assert due_for_deletion(code, now, days) == expected
