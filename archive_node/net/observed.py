"""The node's DIMSE handlers, observed: each wrapped at binding time to time it and count its
outcome in the metrics (metrics.py), without the handlers knowing. A C-FIND handler is a
generator: its pending responses are counted as they go out, its final status when it ends."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.events import Event, EventHandlerType

from ..dicom import status
from ..dicom.sop_families import sop_class_family
from ..metrics import Metrics
from ..rules.worklist import WORKLIST_FIND

_PENDING = (status.PENDING, 0xFF01)


def observed(bindings: list[EventHandlerType], metrics: Metrics) -> list[EventHandlerType]:
    """`bindings` with the C-ECHO, C-STORE, C-FIND and N-CREATE/N-SET handlers observed."""
    wrappers: dict[Any, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
        evt.EVT_C_STORE: lambda handler: _store(handler, metrics),
        evt.EVT_C_FIND: lambda handler: _find(handler, metrics),
        evt.EVT_C_ECHO: lambda handler: _simple(handler, metrics, "C-ECHO"),
        evt.EVT_N_CREATE: lambda handler: _simple(handler, metrics, "N-CREATE"),
        evt.EVT_N_SET: lambda handler: _simple(handler, metrics, "N-SET"),
    }
    result: list[EventHandlerType] = []
    for binding in bindings:
        event, handler = binding[0], binding[1]
        wrap = wrappers.get(event)
        result.append((event, wrap(handler)) if wrap else binding)
    return result


def status_code(answer: Any) -> int | None:
    """The status of a handler's answer: an int, a Dataset with (0000,0900) Status, or the
    first of an (status, dataset) pair."""
    if isinstance(answer, tuple):
        answer = answer[0] if answer else None
    if isinstance(answer, Dataset):
        value = answer.get("Status")
        return int(value) if value is not None else None
    return int(answer) if isinstance(answer, int) else None


def _received_size(event: Event) -> int:
    with contextlib.suppress(Exception):  # not a chunked C-STORE: nothing on disk to measure
        path = event.dataset_path
        return os.path.getsize(path)
    return 0


def _timed(
    handler: Callable[[Event], Any],
    observe: Callable[[Event], Callable[[int | None, float], None]],
) -> Callable[[Event], Any]:
    """`handler`, telling what `observe(event)` returns of its status (None when it raised)
    and its duration."""

    def on_request(event: Event) -> Any:
        started = time.monotonic()
        done = observe(event)  # before the handler runs (a C-STORE's file is still there)
        code: int | None = None
        try:
            answer = handler(event)
            code = status_code(answer)
            return answer
        finally:
            done(code, time.monotonic() - started)

    return on_request


def _store(handler: Callable[[Event], Any], metrics: Metrics) -> Callable[[Event], Any]:
    def observe(event: Event) -> Callable[[int | None, float], None]:
        size = _received_size(event)
        family = sop_class_family(str(event.request.AffectedSOPClassUID or ""))
        return lambda code, seconds: metrics.stored(family, code, size, seconds)

    return _timed(handler, observe)


def _simple(
    handler: Callable[[Event], Any], metrics: Metrics, service: str
) -> Callable[[Event], Any]:
    return _timed(
        handler, lambda _event: lambda code, seconds: metrics.answered(service, code, seconds)
    )


def _find(handler: Callable[[Event], Iterator[Any]], metrics: Metrics) -> Callable[..., Any]:
    def on_find(event: Event) -> Iterator[Any]:
        started = time.monotonic()
        service = (
            "worklist" if str(event.request.AffectedSOPClassUID) == WORKLIST_FIND else "C-FIND"
        )
        matches, code = 0, None
        try:
            for answer in handler(event):
                code = status_code(answer)
                if code in _PENDING:
                    matches += 1
                yield answer
            if code is None or code in _PENDING:  # pynetdicom ends with Success
                code = status.SUCCESS
        finally:
            # a generator closed early (the association ended) or failed counts as a failure
            metrics.answered(
                service,
                code if code not in _PENDING else None,
                time.monotonic() - started,
                matches,
            )

    return on_find
