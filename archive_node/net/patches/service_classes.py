"""Which pynetdicom service class serves a request: the node's own for the classes it takes over.

pynetdicom picks a request's service class by SOP class UID in Association._serve_request
(association.uid_to_service_class). That lookup is wrapped once per process; the node's
service classes behave as pynetdicom's own for associations of any AE that is not a node's.
"""

from __future__ import annotations

import threading
from typing import Any

from pynetdicom import association as _association

_stock_service_class = _association.uid_to_service_class
_routes: dict[str, Any] = {}
_lock = threading.Lock()


def route(sop_classes: Any, service_class: Any) -> None:
    """Serve requests for `sop_classes` with `service_class` from now on."""
    with _lock:
        _routes.update(dict.fromkeys((str(uid) for uid in sop_classes), service_class))
        _association.uid_to_service_class = _service_class


def _service_class(uid: str) -> Any:
    return _routes.get(str(uid)) or _stock_service_class(uid)
