"""Which associations the patches serve: those of the AEs the node made, never anyone else's.

A replaced library function is replaced for the whole process, so each replacement asks first
whose association it is working for, and does what pynetdicom would for any AE the node did not
enable (a test's client, a plug-in's). Where a function has no association in hand it asks the
thread: pynetdicom runs each association in its own Association thread and its DUL thread.
"""

from __future__ import annotations

import threading
import weakref

from pynetdicom import AE
from pynetdicom.association import Association

_fast: weakref.WeakSet[AE] = weakref.WeakSet()  # AEs whose associations take the speed patches


def enable_fast_paths(ae: AE) -> None:
    """Let `ae`'s associations take the speed patches."""
    _fast.add(ae)


def is_fast(ae: AE | None) -> bool:
    """Whether `ae`'s associations take the speed patches."""
    return ae in _fast


def thread_is_fast() -> bool:
    """Whether the current thread works for an association of an AE with the speed patches
    (its Association thread, or its DUL thread)."""
    return is_fast(getattr(association_of_thread(), "ae", None))


def association_of_thread() -> Association | None:
    """The association the current thread runs (Association thread) or serves (DUL thread)."""
    thread = threading.current_thread()
    if isinstance(thread, Association):
        return thread
    return getattr(thread, "assoc", None)
