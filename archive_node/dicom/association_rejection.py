"""An A-ASSOCIATE-RJ's Result, Source and Reason/Diag. in words (PS3.8 9.3.4, Table 9-21)."""

from __future__ import annotations

# PS3.8 Table 9-21, A-ASSOCIATE-RJ PDU fields
RESULTS = {1: "rejected (permanent)", 2: "rejected (transient)"}
SOURCES = {
    1: "the service user",
    2: "the service provider (ACSE)",
    3: "the service provider (presentation)",
}
# Reason/Diag. values are defined per Source; the others are reserved.
REASONS = {
    1: {
        1: "no reason given",
        2: "application context name not supported",
        3: "calling AE title not recognized",
        7: "called AE title not recognized",
    },
    2: {1: "no reason given", 2: "protocol version not supported"},
    3: {1: "temporary congestion", 2: "local limit exceeded"},
}


def rejection_words(result: int, source: int, reason: int) -> str:
    """e.g. 'rejected (permanent) by the service user: calling AE title not recognized'.
    A value the standard does not define is named with its number, never dropped."""
    said_result = RESULTS.get(result, f"rejected (result {result}, not defined)")
    said_source = SOURCES.get(source, f"source {source} (not defined)")
    said_reason = REASONS.get(source, {}).get(reason, f"reason {reason} (reserved)")
    return f"{said_result} by {said_source}: {said_reason}"
