"""Every replacement of pynetdicom internals, installed in one place with its papers (guard.py).

The node runs on pynetdicom 3.0.4 with some of its internals replaced. Each module here opens
with what it replaces, why (measured where it is about speed) and what upstream behaviour it
works around; each is a Patch that guard.py checks against the installed library before it is
put in place. Two kinds:

- features, which the node needs to be what it is: `receiving` (the sender in each received
  file's meta, a full disk answered 0xA700), `service_classes` (the node's own C-MOVE, C-GET
  and Storage Commitment SCPs) and `limits` (PDU lengths checked before they are read, the
  ARTIM timer, oversized or malformed requests answered with a status);
- speed, which `node.fast_paths = false` leaves out, so that the benchmark shows what they are
  worth and an upgrade that breaks one has a way back: `reactor` (event-driven loops),
  `messages` (responses and identifiers packed by hand), `file_sending` (a stored file's PDUs
  written straight to the socket) and `file_meta` (a received file's first meta without
  pydicom). Without them, send_queue.py bounds the memory of sending a stored file.

install_for(ae, ...) is the one way in: it checks and installs the patches (once per process),
makes pynetdicom's and pydicom's process-wide settings, and enables them for `ae` alone
(scope.py): another AE in the same process (a test's client) keeps pynetdicom's behaviour.
"""

from __future__ import annotations

import threading
from collections.abc import Collection

from pydicom import config as pydicom_config
from pynetdicom import AE, _config

from . import (
    file_meta,
    file_sending,
    guard,
    limits,
    messages,
    reactor,
    receiving,
    scope,
    service_classes,
)
from .guard import PatchError

FEATURES: tuple[guard.Patch, ...] = (receiving.PATCH, service_classes.PATCH, limits.PATCH)
SPEED: tuple[guard.Patch, ...] = (
    reactor.PATCH,
    messages.PATCH,
    file_sending.PATCH,
    file_meta.PATCH,
)

__all__ = [
    "FEATURES",
    "SPEED",
    "FastPaths",
    "PatchError",
    "check",
    "install_for",
    "packs_responses",
    "sends_files_whole",
]

# node.fast_paths: True (every speed patch), False (none), or the names of those to take
FastPaths = bool | Collection[str]

_lock = threading.Lock()
_settings_made = False


def speed_patches(fast_paths: FastPaths) -> tuple[guard.Patch, ...]:
    """The speed patches `fast_paths` asks for. Raises PatchError for a name none has."""
    if fast_paths is True or fast_paths is False:
        return SPEED if fast_paths else ()
    known = {patch.name for patch in SPEED}
    unknown = sorted(set(fast_paths) - known)
    if unknown:
        raise PatchError(
            f"node.fast_paths: no speed patch {', '.join(unknown)} ({', '.join(sorted(known))})"
        )
    return tuple(patch for patch in SPEED if patch.name in fast_paths)


def check(*, fast_paths: FastPaths, untested_pynetdicom: bool = False) -> None:
    """Raise PatchError (one line, naming the function) unless every patch that these settings
    install was taken from the installed pynetdicom."""
    for patch in FEATURES + speed_patches(fast_paths):
        guard.check(patch, untested_ok=untested_pynetdicom)


def install_for(ae: AE, *, fast_paths: FastPaths, untested_pynetdicom: bool = False) -> None:
    """Check and install the patches (once per process), make the process-wide settings, and
    let `ae`'s associations take them: the features always, the speed patches `fast_paths`
    names (True: all). Raises PatchError, installing nothing, when a check fails."""
    speed = speed_patches(fast_paths)
    check(fast_paths=fast_paths, untested_pynetdicom=untested_pynetdicom)
    with _lock:
        _make_settings()
        for patch in FEATURES + speed:
            guard.install(patch.replacements)
    scope.enable(ae, frozenset(patch.name for patch in speed))


def packs_responses(ae: AE) -> bool:
    """Whether `ae`'s associations pack their responses by hand (the messages patch)."""
    return scope.takes(ae, messages.NAME)


def sends_files_whole(ae: AE) -> bool:
    """Whether `ae`'s associations hand a stored file's dataset to the DUL as one primitive
    (messages and file_sending); otherwise pynetdicom queues a P-DATA per PDU, and a sender
    bounds that queue (send_queue.py)."""
    return scope.takes(ae, messages.NAME) and scope.takes(ae, file_sending.NAME)


def _make_settings() -> None:
    """pynetdicom's and pydicom's settings for the whole process, made once."""
    global _settings_made
    if _settings_made:
        return
    # Receive C-STORE datasets straight into a file in the store's filesystem, and send stored
    # files in fragments read from disk: memory does not grow with the object.
    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.STORE_SEND_CHUNKED_DATASET = True
    # Query identifiers carry patient names and IDs: never at INFO.
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    # The node validates what it indexes itself (dicom/values.py, dicom/instance_header.py);
    # pydicom's per-value warnings about what senders send would only flood the log.
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    _settings_made = True
