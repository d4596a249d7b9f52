"""An A-ASSOCIATE-RJ in words (PS3.8 Table 9-21): every defined combination, and the values the
standard leaves reserved or undefined named by their number."""

from __future__ import annotations

import pytest

from archive_node.dicom.association_rejection import REASONS, RESULTS, SOURCES, rejection_words

PERMANENT, TRANSIENT = "rejected (permanent)", "rejected (transient)"
USER, ACSE, PRESENTATION = (
    "the service user",
    "the service provider (ACSE)",
    "the service provider (presentation)",
)
DEFINED = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


@pytest.mark.parametrize(("result", "result_words"), [(1, PERMANENT), (2, TRANSIENT)])
@pytest.mark.parametrize(("source", "reason"), list(DEFINED), ids=[f"{s}-{r}" for s, r in DEFINED])
def test_every_defined_combination(result, result_words, source, reason):
    source_words = {1: USER, 2: ACSE, 3: PRESENTATION}[source]
    assert rejection_words(result, source, reason) == (
        f"{result_words} by {source_words}: {DEFINED[(source, reason)]}"
    )


def test_the_tables_hold_exactly_the_standards_values():
    assert set(RESULTS) == {1, 2} and set(SOURCES) == {1, 2, 3}
    assert {(s, r) for s, reasons in REASONS.items() for r in reasons} == set(DEFINED)


def test_the_example_of_the_issue():
    assert rejection_words(1, 1, 3) == (
        "rejected (permanent) by the service user: calling AE title not recognized"
    )


@pytest.mark.parametrize(
    ("source", "reason"),
    # reserved per source: 4-6 and 8-10 of the service user, 3-7 of the ACSE provider, 0 and
    # 3-7 of the presentation provider
    [(1, r) for r in (0, 4, 5, 6, 8, 9, 10)]
    + [(2, r) for r in (0, 3, 4, 7)]
    + [(3, r) for r in (0, 3, 4, 5, 6, 7)],
)
def test_a_reserved_reason_is_named_by_its_number(source, reason):
    words = rejection_words(1, source, reason)
    assert words.endswith(f": reason {reason} (reserved)")
    assert words.startswith(f"{PERMANENT} by the service")


def test_undefined_result_and_source_are_named_by_their_numbers():
    assert rejection_words(3, 1, 3) == (
        "rejected (result 3, not defined) by the service user: calling AE title not recognized"
    )
    assert rejection_words(1, 4, 1) == (
        "rejected (permanent) by source 4 (not defined): reason 1 (reserved)"
    )
