"""The node's Prometheus metrics: what it did (associations, C-STORE, C-FIND/MOVE/GET, refusals,
index errors) and what it holds (store free space against the reserve, commitment reports
pending), in one view however many worker processes serve the port.

Metrics observe the service and the handlers; nothing reads them back. Labels are bounded sets
the node chooses: outcome, SOP class family (dicom/sop_families.py), DIMSE service, status
code, reason, and the AE title and hospital only of registered AEs (an unregistered calling AE
counts as "(unregistered)", so a peer cannot grow the label set). No label ever carries patient
data.

Under `serve --workers N` the counters live in prometheus-client's multiprocess mode: each
worker writes its values to files in a directory the supervisor owns, and the supervisor,
which serves /metrics, sums them (https://prometheus.github.io/client_python/multiprocess/).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import values as _values
from prometheus_client.core import CollectorRegistry, Counter, GaugeMetricFamily, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from . import __version__
from .dicom import status as statuses

UNREGISTERED = "(unregistered)"
# C-STORE latency buckets (seconds): a 10 KB object in ~5 ms to a 1 GB video in minutes
STORE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def outcome_of(code: int | None) -> str:
    """A DIMSE status as the outcome label: success, warning, cancel or failure (PS3.7 C)."""
    if code is None:
        return "failure"
    if code == statuses.SUCCESS:
        return "success"
    if code == statuses.CANCELLED:
        return "cancel"
    if code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
        return "warning"
    return "failure"


@dataclass(frozen=True)
class NodeState:
    """What /metrics reports of the node's state at each scrape (asked then, not counted)."""

    store_free_bytes: Callable[[], int]
    store_reserve_bytes: int
    commitments_pending: Callable[[], int]


def use_multiprocess(directory: str) -> None:
    """Keep this process's metric values in files under `directory` from now on (before the
    first metric is made; the workers inherit it across fork). prometheus-client reads its
    PROMETHEUS_MULTIPROC_DIR once, at import; the node decides at start, so it asks the
    library to choose its value class again (its own get_value_class)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    _values.ValueClass = _values.get_value_class()


class Metrics:
    """The node's counters and histograms, registered in a registry of their own (several
    nodes may run in one test process). In multiprocess mode the workers' metrics are not
    registered: the supervisor's `Exposition` collects their files."""

    def __init__(self, *, registered: bool = True) -> None:
        self.registry = CollectorRegistry() if registered else None
        r = self.registry
        self.associations = Counter(
            "archive_node_associations",
            "Associations asked for, by outcome (accepted or rejected), calling AE, hospital "
            "and rejection reason.",
            ["outcome", "ae", "hospital", "reason"],
            registry=r,
        )
        self.stores = Counter(
            "archive_node_stores",
            "C-STORE requests answered, by SOP class family and outcome.",
            ["family", "outcome"],
            registry=r,
        )
        self.store_bytes = Counter(
            "archive_node_store_bytes",
            "Bytes received in C-STORE datasets, by SOP class family and outcome.",
            ["family", "outcome"],
            registry=r,
        )
        self.store_seconds = Histogram(
            "archive_node_store_duration_seconds",
            "Seconds from a C-STORE's dataset received to its response, by family and outcome.",
            ["family", "outcome"],
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "archive_node_requests",
            "C-ECHO, C-FIND (patient and study roots, worklist), C-MOVE and C-GET requests "
            "answered, by service and outcome.",
            ["service", "outcome"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "archive_node_request_duration_seconds",
            "Seconds from a request to its final response, by service and outcome.",
            ["service", "outcome"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.matches = Counter(
            "archive_node_find_matches",
            "C-FIND matches sent (pending responses), by service.",
            ["service"],
            registry=r,
        )
        self.suboperations = Counter(
            "archive_node_suboperations",
            "C-MOVE and C-GET sub-operations, by service and outcome (completed, failed, "
            "warning).",
            ["service", "outcome"],
            registry=r,
        )
        self.refusals = Counter(
            "archive_node_refusals",
            "Requests answered with a failure status, by service and status code.",
            ["service", "status"],
            registry=r,
        )
        self.index_errors = Counter(
            "archive_node_index_errors",
            "Index database errors (unreachable, timed out, failed statements).",
            registry=r,
        )

    # -- observations: called by the handlers and the index session ----------------------------

    def association(self, accepted: bool, ae: str, hospital: str, reason: str = "") -> None:
        """One association request; `ae` and `hospital` only for a registered AE."""
        self.associations.labels(
            "accepted" if accepted else "rejected", ae or UNREGISTERED, hospital, reason
        ).inc()

    def stored(self, family: str, code: int | None, size: int, seconds: float) -> None:
        outcome = outcome_of(code)
        self.stores.labels(family, outcome).inc()
        self.store_bytes.labels(family, outcome).inc(size)
        self.store_seconds.labels(family, outcome).observe(seconds)
        self._refused("C-STORE", code)

    def answered(self, service: str, code: int | None, seconds: float, matches: int = 0) -> None:
        """A C-ECHO, C-FIND (`matches` sent), C-MOVE or C-GET request's final status."""
        outcome = outcome_of(code)
        self.requests.labels(service, outcome).inc()
        self.request_seconds.labels(service, outcome).observe(seconds)
        if matches:
            self.matches.labels(service).inc(matches)
        self._refused(service, code)

    def suboperations_done(self, service: str, completed: int, failed: int, warning: int) -> None:
        for outcome, count in (("completed", completed), ("failed", failed), ("warning", warning)):
            if count:
                self.suboperations.labels(service, outcome).inc(count)

    def index_error(self) -> None:
        self.index_errors.inc()

    def _refused(self, service: str, code: int | None) -> None:
        if outcome_of(code) == "failure":
            self.refusals.labels(service, "none" if code is None else f"0x{code:04X}").inc()


class _StateCollector(Collector):
    """Gauges asked of the node at each scrape."""

    def __init__(self, state: NodeState) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield _info()
        yield GaugeMetricFamily(
            "archive_node_store_free_bytes",
            "Free bytes on the store's filesystem.",
            value=self.state.store_free_bytes(),
        )
        yield GaugeMetricFamily(
            "archive_node_store_reserve_bytes",
            "The free-space reserve (storage.min_free_mb): below it C-STORE answers 0xA700.",
            value=self.state.store_reserve_bytes,
        )
        try:
            pending = float(self.state.commitments_pending())
        except Exception:  # the index is down: /readyz says so; the other metrics still go out
            pending = float("nan")
        yield GaugeMetricFamily(
            "archive_node_commitment_reports_pending",
            "Storage Commitment reports not yet delivered to their requester.",
            value=pending,
        )


def _info() -> GaugeMetricFamily:
    family = GaugeMetricFamily("archive_node_info", "The node's release.", labels=["version"])
    family.add_metric([__version__], 1)
    return family


class Exposition:
    """What /metrics answers: the node's metrics (this process's, or every worker's from the
    multiprocess directory) and its state."""

    def __init__(self, state: NodeState, metrics: Metrics | None, directory: str | None) -> None:
        if directory is not None:
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=directory)
        else:
            assert metrics is not None and metrics.registry is not None
            self.registry = metrics.registry
        self.registry.register(_StateCollector(state))

    def render(self) -> bytes:
        return generate_latest(self.registry)
