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

# The speed patches each AE's associations take, by patch name.
_speed: weakref.WeakKeyDictionary[AE, frozenset[str]] = weakref.WeakKeyDictionary()


def enable(ae: AE, speed_patches: frozenset[str]) -> None:
    """Let `ae`'s associations take these speed patches (and no others)."""
    _speed[ae] = speed_patches


def takes(ae: AE | None, patch: str) -> bool:
    """Whether `ae`'s associations take the speed patch named `patch`."""
    return ae is not None and patch in _speed.get(ae, frozenset())


def thread_takes(patch: str) -> bool:
    """Whether the current thread works for an association whose AE takes the speed patch
    `patch` (its Association thread, or its DUL thread)."""
    return takes(getattr(association_of_thread(), "ae", None), patch)


def association_of_thread() -> Association | None:
    """The association the current thread runs (Association thread) or serves (DUL thread)."""
    thread = threading.current_thread()
    if isinstance(thread, Association):
        return thread
    return getattr(thread, "assoc", None)
