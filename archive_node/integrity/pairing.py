"""Which store an index belongs to: one store identity (a UUID) recorded in both, made by
`init`, checked by `serve`, `verify`, `reindex` and `import`, adopted by `reindex`.

Without it a second node given the same store and another index served it: a resend then
replaced an acknowledged instance's file (the leftover rule saw a file no row of *its* index
named), and the first index's `verify` found the file corrupt (issue 22). Several nodes sharing
one index and one store share the identity too, and work as before.
"""

from __future__ import annotations

import logging
import uuid

from ..errors import ConfigError
from ..index import Index
from ..storage import FilesystemStorage

log = logging.getLogger(__name__)

NONE = "none"
REINDEX = (
    "run `archive-node reindex` to make this index the store's (it indexes the store's files)"
)
# A store that has an identity is another index's: it is taken over only on purpose, and then
# the index that held it is refused from the next command or C-STORE on.
ADOPT = (
    "the store belongs to another index; only if that index is lost, `archive-node reindex "
    "--adopt-store` makes this one the store's (the other index is refused from then on)"
)


class NotAPair(ConfigError):
    """The index and the store do not belong together; one line naming both, with both
    identities, and what to do."""


def check(storage: FilesystemStorage, index: Index, *, writing: bool) -> str | None:
    """The store identity of a matching index and store (None for a pair made before
    identities, which `init` upgrades). `writing` (serve, import): a new index without rows
    over a store that holds files is refused too, until `reindex` adopts the store.

    Raises NotAPair; ConfigError when the store's identity cannot be read; IndexUnavailable.
    """
    recorded, held = index.store_identity(), storage.identity()
    if recorded is not None and recorded == held:
        return recorded
    if recorded is not None and held is not None:
        raise _not_a_pair(storage, index, recorded, held, "check index.url and storage.path")
    if held is not None:
        raise _not_a_pair(storage, index, recorded, held, ADOPT)
    if recorded is not None:
        raise _not_a_pair(
            storage,
            index,
            recorded,
            held,
            "the store is not this index's (check storage.path: a share not mounted?); a new, "
            "empty store is made the index's by `archive-node init`",
        )
    if writing and storage.holds_files() and not index.holds_instances():
        raise _not_a_pair(
            storage,
            index,
            recorded,
            held,
            f"the index is new and the store holds files: {REINDEX}",
        )
    return None


def claim(storage: FilesystemStorage, index: Index) -> str:
    """`init`: the identity the pair shares, recorded in both if neither has one (an index and
    store made before identities, or both new). A store that has one and an index that does
    not are another index's store (`reindex` adopts it); a store without one is claimed only
    when it fits the index (both empty, or both holding instances).

    Raises NotAPair, ConfigError, IndexUnavailable.
    """
    recorded, held = index.store_identity(), storage.identity()
    if recorded is not None and recorded == held:
        return recorded
    if held is not None:
        advice = ADOPT if recorded is None else "check index.url and storage.path"
        raise _not_a_pair(storage, index, recorded, held, advice)
    problem = _claim_problem(storage, index, recorded, adopting=False)
    if problem:
        raise _not_a_pair(storage, index, recorded, held, problem)
    return _record_in_both(storage, index, recorded or str(uuid.uuid4()))


def adopt(
    storage: FilesystemStorage, index: Index, *, take_over: bool = False
) -> tuple[str, bool]:
    """`reindex`: make the store the index's (the recovery path for a lost index); (identity,
    whether it was recorded now). An index and a store with different identities are refused:
    each already belongs to another. A store that has an identity, for an index without one,
    is taken over only with `take_over` (`--adopt-store`), and then under a new identity, so
    that the index it belonged to, should it still exist, is refused from then on (its nodes
    store nothing more: FilesystemStorage.identity_problem).

    Raises NotAPair, ConfigError, IndexUnavailable.
    """
    recorded, held = index.store_identity(), storage.identity()
    if recorded is not None and recorded == held:
        return recorded, False
    if recorded is None and held is not None:
        if not take_over:
            raise _not_a_pair(storage, index, recorded, held, ADOPT)
        identity = str(uuid.uuid4())
        storage.replace_identity(identity)
        recorded = index.record_store_identity(identity)
        if recorded != identity:
            raise _not_a_pair(storage, index, recorded, identity, "check index.url")
        log.warning(
            "reindex: index %s took over store %s (store identity %s, was %s): the index that "
            "held it is refused from now on",
            index.name,
            storage.root,
            identity,
            held,
        )
        return identity, True
    if recorded is not None and held is not None:
        raise _not_a_pair(
            storage,
            index,
            recorded,
            held,
            "each belongs to another: check index.url and storage.path",
        )
    if held is None:
        problem = _claim_problem(storage, index, recorded, adopting=True)
        if problem:
            raise _not_a_pair(storage, index, recorded, held, problem)
    identity = _record_in_both(storage, index, held or recorded or str(uuid.uuid4()))
    log.warning(
        "reindex: index %s adopted store %s (store identity %s)",
        index.name,
        storage.root,
        identity,
    )
    return identity, True


def _claim_problem(
    storage: FilesystemStorage, index: Index, recorded: str | None, *, adopting: bool
) -> str | None:
    """Why a store without an identity must not be given one, or None. An index that has an
    identity and rows is not given an empty store (a share not mounted: `init` runs at every
    start under systemd); an index and a store both made before identities are paired as they
    are (a mistake there shows as soon as the real store comes back without the identity)."""
    files, rows = storage.holds_files(), index.holds_instances()
    if recorded is not None and rows and not files:
        return (
            "the index holds instances and the store no file: check storage.path (a share "
            "not mounted?)"
        )
    if files and not rows and not adopting:
        return f"the index is new and the store holds files: {REINDEX}"
    return None


def _record_in_both(storage: FilesystemStorage, index: Index, identity: str) -> str:
    """The store first (its file is linked, never overwritten: the first of two nodes running
    `init` at once wins), then the index takes the store's; a mismatch left by a race is
    refused."""
    held = storage.claim_identity(identity)
    recorded = index.record_store_identity(held)
    if recorded != held:
        raise _not_a_pair(storage, index, recorded, held, "check index.url and storage.path")
    return held


def _not_a_pair(
    storage: FilesystemStorage,
    index: Index,
    recorded: str | None,
    held: str | None,
    advice: str,
) -> NotAPair:
    return NotAPair(
        f"index {index.name} (store identity {recorded or NONE}) and store {storage.root} "
        f"(store identity {held or NONE}) do not belong together: {advice}"
    )
