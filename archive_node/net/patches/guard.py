"""The papers of every replacement of pynetdicom internals: which release it was copied from, a
fingerprint of each function it replaces, and a refusal to start when either differs.

A replacement is a copy of a library function, edited. A release whose function changed under
the copy (a fix, a new parameter) would install silently and the node would run the old copy
of it: wrong in ways no test names. So the node checks, before it replaces anything, that the
installed pynetdicom is a release the copies were taken from, and that the source of every
function it replaces is still the one it was taken from (a SHA-256 of `inspect.getsource`).
`node.untested_pynetdicom = true` lets it start on another release, but never over a
function whose source changed: then the patch named must be taken again from the new release
(or, when it is a speed patch, left out with `node.fast_paths = false`).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pynetdicom

from ...errors import ConfigError

# The pynetdicom releases every copy in patches/ was taken from (and tested with).
TAKEN_FROM = ("3.0.4",)

# The first 16 hex digits of sha256(inspect.getsource(f)) of every function f a patch replaces
# or relies on, in pynetdicom 3.0.4 (write_file_meta_info: pydicom 3.0.2). A test compares them
# with the installed libraries, so an upgrade that changes one fails there first, by name.
FINGERPRINTS: dict[str, str] = {
    "pynetdicom.association.Association.__init__": "eb07516b8009ad8f",
    "pynetdicom.association.Association._get_valid_context": "117a52c2ae6720e0",
    "pynetdicom.association.Association._handle_no_response": "6f3d62518395c3a8",
    "pynetdicom.association.Association._run_reactor": "f28838c5559e462a",
    "pynetdicom.association.Association.send_c_store": "fa5a8127f349f8e7",
    "pynetdicom.association.uid_to_service_class": "88fa4636b8cbaacd",
    "pynetdicom.dimse.DIMSEServiceProvider.get_msg": "890e3e04283f5aeb",
    "pynetdicom.dimse.DIMSEServiceProvider.receive_primitive": "5f99c86b14a15cef",
    "pynetdicom.dimse.DIMSEServiceProvider.send_msg": "a839cf2fb46976d9",
    "pynetdicom.dimse_messages.DIMSEMessage.decode_msg": "f51c777e841a76be",
    "pynetdicom.dimse_messages.DIMSEMessage.encode_msg": "73000c902c52832d",
    "pynetdicom.dimse_messages.DIMSEMessage.message_to_primitive": "f8f43d34e43450ef",
    "pynetdicom.dimse_messages.create_file_meta": "035ed415f5aeea15",
    "pynetdicom.dimse_messages.write_file_meta_info": "0568f3155349513b",
    "pynetdicom.dsutils.split_dataset": "377ac781c097b81f",
    "pynetdicom.dul.DULServiceProvider._read_pdu_data": "19f2d4e38c13c835",
    "pynetdicom.dul.DULServiceProvider.run_reactor": "e3a10eb3a0931e48",
    "pynetdicom.dul.DULServiceProvider.send_pdu": "7cbce5da8594124e",
    "pynetdicom.fsm.AA_2": "a58069d8299198e0",
    "pynetdicom.fsm.AR_7": "9a8d68182bf5c9fd",
    "pynetdicom.fsm.DT_1": "82e5c5d4114534fa",
    "pynetdicom.fsm.DT_2": "9ec543394e0b49eb",
    "pynetdicom.service_class.QueryRetrieveServiceClass._get_scp": "8ca1538e3e56c4f7",
    "pynetdicom.service_class.QueryRetrieveServiceClass._move_scp": "5c14d1be3d737bef",
    "pynetdicom.service_class.encode": "0d29ffd5d358c45a",
    "pynetdicom.service_class_n.StorageCommitmentServiceClass.SCP": "be6e758c67d99a09",
}


class PatchError(ConfigError):
    """The installed pynetdicom is not what the node's patches were taken from."""


@dataclass(frozen=True)
class Replacement:
    """One function of a library replaced: `path` is its dotted name, under which its
    fingerprint is kept; `install` puts the replacement in place and returns the original."""

    path: str
    install: Callable[[], Any]


@dataclass(frozen=True)
class Patch:
    """Replacements that stand or fall together, under one name (its module's)."""

    name: str
    speed: bool  # only makes things faster: node.fast_paths = false leaves it out
    replacements: tuple[Replacement, ...]
    relies_on: tuple[str, ...] = ()  # functions copied or called for their internals: checked too

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(r.path for r in self.replacements) + self.relies_on


_lock = threading.Lock()
_originals: dict[str, Any] = {}  # path -> the library's function, once replaced


def replace(path: str, replacement: Callable[..., Any]) -> Replacement:
    """A Replacement that sets the attribute `path` names to `replacement`."""

    def install() -> Any:
        owner, name = _owner(path)
        original = getattr(owner, name)
        setattr(owner, name, replacement)
        return original

    return Replacement(path, install)


def replace_action(path: str, replacement: Callable[[Any], str]) -> Replacement:
    """A Replacement of a state machine action where pynetdicom looks it up: fsm.ACTIONS
    (`path` is the action's function, e.g. pynetdicom.fsm.DT_1 for "DT-1")."""
    name = path.rsplit(".", 1)[1].replace("_", "-")

    def install() -> Any:
        from pynetdicom import fsm

        description, original, next_state = fsm.ACTIONS[name]
        fsm.ACTIONS[name] = (description, replacement, next_state)  # type: ignore[assignment]
        return original

    return Replacement(path, install)


def install(replacements: tuple[Replacement, ...]) -> None:
    """Put each replacement in place once per process (later calls change nothing)."""
    with _lock:
        for item in replacements:
            if item.path not in _originals:
                _originals[item.path] = item.install()


def original(path: str) -> Any:
    """The library's own function at `path`, also after a patch replaced it."""
    if path in _originals:
        return _originals[path]
    owner, name = _owner(path)
    return getattr(owner, name)


def fingerprint(path: str) -> str:
    """The first 16 hex digits of the SHA-256 of the source of the library's function; "none"
    when its source cannot be read (a library installed without its .py files)."""
    try:
        source = inspect.getsource(original(path))
    except (OSError, TypeError):
        return "none"
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def check(patch: Patch, *, untested_ok: bool) -> None:
    """Refuse (PatchError, one line) a pynetdicom release the patches were not taken from, unless
    `untested_ok`, and always a function `patch` replaces whose source is not the one copied."""
    version = pynetdicom.__version__
    if version not in TAKEN_FROM and not untested_ok:
        raise PatchError(
            f"pynetdicom {version} is not a release the node's patches were taken from "
            f"({', '.join(TAKEN_FROM)}): install pynetdicom=={TAKEN_FROM[-1]}, or set "
            "node.untested_pynetdicom = true to try it"
        )
    for path in patch.paths:
        expected = FINGERPRINTS[path]
        found = fingerprint(path)
        if found == expected:
            continue
        fallback = ", or set node.fast_paths = false" if patch.speed else ""
        if found == "none":
            raise PatchError(
                f"pynetdicom {version}: the source of {path} cannot be read to check the node's "
                f"{patch.name} patch against it: install pynetdicom with its .py files{fallback}"
            )
        raise PatchError(
            f"pynetdicom {version}: {path} is not the function the node's {patch.name} "
            f"patch was taken from (source fingerprint {found}, expected {expected}): "
            f"install pynetdicom=={TAKEN_FROM[-1]}{fallback}"
        )


def _owner(path: str) -> tuple[Any, str]:
    """The object holding the attribute `path` names (a module or a class), and its name."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:-1]:
            owner = getattr(owner, part)
        return owner, parts[-1]
    raise ValueError(f"no module in {path}")
