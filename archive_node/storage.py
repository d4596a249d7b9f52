"""The filesystem store: UID-derived layout, durable keep (fsync, link, fsync dir), removal."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .dicom.values import is_valid_uid
from .errors import ConfigError, InvalidInput

log = logging.getLogger(__name__)

CHUNK = 1 << 20
INCOMING = ".incoming"
CORRECTIONS_JOURNAL = "corrections.jsonl"  # the corrections, for reindex (correcting.py)
# The store's identity, which its index records too (integrity/pairing.py): one line, a UUID.
IDENTITY_FILE = ".archive-node-store"
# What a walk of the kept files leaves out: transfers in progress, the corrections journal,
# the store's identity, and the directory fsck keeps at a filesystem's root (the store may be
# a mount point; it is root's, mode 0700).
NOT_KEPT = frozenset({INCOMING, CORRECTIONS_JOURNAL, IDENTITY_FILE, "lost+found"})
DURABLE_DIRS_REMEMBERED = 10_000  # then forgotten (and fsynced again once used)


@dataclass(frozen=True)
class FileFacts:
    """What the store records of a file's content."""

    size: int
    sha256: str


@dataclass(frozen=True)
class KeptFiles:
    """The files of one directory of the store, for comparing with the index a study at a time.

    `study_uid` is the directory's name when it stands where the layout puts a study
    (<fan-out>/<study>); it is None for files lying elsewhere. `files` are relative paths of
    every file below the directory; `unlistable` the (relative path, reason) of directories
    below it that could not be listed.
    """

    directory: str
    study_uid: str | None
    files: list[str]
    unlistable: list[tuple[str, str]] = field(default_factory=list)


class FilesystemStorage:
    """Files under one root, laid out as <fan-out>/<study>/<series>/<sop>.dcm.

    Every path handed out or accepted is relative to the root; UIDs are validated before they
    become path components, so no dataset can name a place outside the tree.
    """

    def __init__(self, root: Path, *, fsync: bool = True, min_free_bytes: int = 0) -> None:
        self.root = Path(root).resolve()  # symlinks and .. resolved once: paths compare
        self.fsync = fsync
        self.min_free_bytes = min_free_bytes
        self._dirs_lock = threading.Lock()
        self._durable_dirs: set[Path] = set()  # made durable by this process (_make_dirs)
        self._node = ""
        self._expected_identity: str | None = None  # a serving node's (expect_identity)

    @property
    def incoming(self) -> Path:
        """Where partial transfers are written; on the store's filesystem so keeping is a link.
        A serving node writes in its own directory below it (use_node_directory)."""
        return self.root / INCOMING / self._node if self._node else self.root / INCOMING

    def use_node_directory(self, node: str) -> None:
        """Write partial transfers in .incoming/`node`: nodes sharing one store (NFS) each
        sweep only their own at start-up, never another's transfers in progress."""
        self._node = node.replace("/", "_").replace(os.sep, "_")

    def create(self) -> None:
        """Create the store's directories (the root among them), each readable by its owner
        only whatever the umask. Raises ConfigError naming the store when that is impossible."""
        missing = []
        probe = self.incoming
        while not probe.is_dir() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        try:
            for directory in reversed(missing):
                _owner_only_directory(directory)
        except OSError as exc:
            raise ConfigError(f"storage.path: cannot use {self.root}: {exc.strerror}") from None

    # -- the store's identity (integrity/pairing.py) -----------------------------------------

    @property
    def identity_path(self) -> Path:
        return self.root / IDENTITY_FILE

    def identity(self) -> str | None:
        """The store identity recorded at its root, or None when there is none (a store made
        before identities, or not a store at all). Raises ConfigError naming the file when it
        cannot be read or holds no UUID."""
        try:
            text = self.identity_path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) else "not ASCII"
            raise ConfigError(f"store identity {self.identity_path}: {detail}") from None
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise ConfigError(
                f"store identity {self.identity_path}: {text[:40]!r} is not a UUID"
            ) from None

    def claim_identity(self, identity: str) -> str:
        """Record `identity` at the store's root unless one is there already; return the one
        the store holds afterwards (another process may have claimed it first). The file is
        written beside, fsynced, and linked into place (never overwritten), then the root is
        fsynced; readable by the owner only. Raises ConfigError naming the store."""
        self.create()
        self._put_identity(identity, replace=False)
        recorded = self.identity()
        assert recorded is not None  # linked above, or by whoever was first
        return recorded

    def replace_identity(self, identity: str) -> None:
        """Record a new identity at the store's root in place of the one there (`reindex
        --adopt-store`: the index that held the old one no longer matches). Written beside,
        fsynced, renamed over it, the root fsynced. Raises ConfigError naming the store."""
        self._put_identity(identity, replace=True)

    def _put_identity(self, identity: str, *, replace: bool) -> None:
        """The identity file written beside, fsynced, then renamed over the one there
        (`replace`) or linked into place unless one is there; the root fsynced."""
        beside = self.root / f".{IDENTITY_FILE}.{uuid.uuid4().hex[:12]}"
        try:
            fd = os.open(beside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, f"{uuid.UUID(identity)}\n".encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            if replace:
                os.replace(beside, self.identity_path)
            else:
                with contextlib.suppress(FileExistsError):
                    os.link(beside, self.identity_path)
            _fsync_directory(self.root)
        except OSError as exc:
            raise ConfigError(
                f"storage.path: cannot record the store identity in {self.root}: "
                f"{exc.strerror or exc}"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                beside.unlink()

    def expect_identity(self, identity: str | None) -> None:
        """The identity checked at the start of a serving node: from then on a store whose
        identity changed (another index took it over) takes nothing more (identity_problem)."""
        self._expected_identity = identity

    def identity_problem(self) -> str | None:
        """Why nothing may be stored: the store's identity is no longer the one this node
        started with (another index took the store over), or None. A small file read per call."""
        expected = self._expected_identity
        if expected is None:
            return None
        try:
            held = self.identity()
        except ConfigError as exc:
            return str(exc)
        if held != expected:
            return (
                f"the store now belongs to another index (store identity {held or 'none'}, "
                f"not {expected}): stop this node"
            )
        return None

    def holds_files(self) -> bool:
        """Whether any kept file is in the store (its identity and partial transfers aside):
        walked until the first one. False for a store that does not exist."""
        try:
            tops = self.top_directories()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ConfigError(f"storage.path: cannot list {self.root}: {exc.strerror}") from None
        return any(group.files for top in tops for group in self.kept_files(top))

    def sweep_incoming(self, *, loose_after: float = 300.0) -> int:
        """Remove partial files of interrupted transfers; return how many.

        Only for a node that is starting, in its own directory: a running node's transfers in
        progress live there. Files lying in .incoming itself (written by the CLI, or by an
        earlier version) go once unchanged for `loose_after` seconds.
        """
        self.create()
        removed = 0
        shared = self.root / INCOMING
        for entry in self.incoming.iterdir():
            if entry.is_file():
                entry.unlink(missing_ok=True)
                removed += 1
        if self.incoming != shared:
            for entry in shared.iterdir():
                if entry.is_file() and _unchanged_for(entry, loose_after):
                    entry.unlink(missing_ok=True)
                    removed += 1
        return removed

    def layout(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        """The relative path of an instance. Raises InvalidInput for a UID unfit for a path."""
        for name, uid in (("Study", study_uid), ("Series", series_uid), ("SOP Instance", sop_uid)):
            if not is_valid_uid(uid):
                raise InvalidInput(f"{name} UID {uid!r} is not a valid UID")
        fan_out = hashlib.sha1(study_uid.encode()).hexdigest()[:2]
        return f"{fan_out}/{study_uid}/{series_uid}/{sop_uid}.dcm"

    def absolute(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidInput(f"path {relative!r} is outside the store")
        return path

    def inspect(self, path: Path) -> FileFacts:
        """Size and SHA-256 of a received file, read in chunks (keep() makes it durable)."""
        with open(path, "rb", buffering=0) as fh:
            return _facts(fh)

    def has_room(self) -> bool:
        """False when free space is below the configured reserve."""
        return shutil.disk_usage(self.root).free >= self.min_free_bytes

    def keep(self, source: Path, relative: str, *, stale_after: float | None = None) -> str:
        """Give `source` a durable name in the store, its bytes durable too; return that name.

        The name is made first, then the bytes and the name are fsynced (when storage.fsync
        is on), in that order, before this returns: on a journaling filesystem (ext4, XFS) the
        file's fsync then commits the new directory entry in the same journal transaction, and
        the directory's fsync that follows finds little left to do (one flush instead of two:
        ~0.6 ms less per instance on the development machine's ext4). Nothing is acknowledged
        before both, so a crash between them leaves at most a file no index row names, of a
        store no sender was told succeeded (swept as a leftover when that instance is resent).

        The name is `relative` unless a file is already there (a leftover, or a concurrent
        sender of the same instance), in which case a unique sibling name is chosen: a kept file
        is never overwritten. With `stale_after`, the caller knows that no index row names
        `relative`: a file there that has not changed for that many seconds is a leftover of a
        crash between keeping a file and indexing it, and is replaced (atomically) instead.
        `source` is left in place for its owner to remove.
        """
        target = self.absolute(relative)
        self._make_dirs(target.parent)
        os.chmod(source, OWNER_ONLY_FILE)  # the kept name is a link to it: the same mode
        copied = None
        candidate = target
        try:
            while True:
                try:
                    os.link(copied or source, candidate)
                    break
                except FileExistsError:
                    if candidate == target and _unchanged_for(target, stale_after):
                        self._replace(copied or source, target)
                        break
                    candidate = target.with_name(f"{target.stem}.{uuid.uuid4().hex[:12]}.dcm")
                except OSError as exc:
                    if exc.errno != errno.EXDEV or copied:
                        raise
                    copied = self._copy_in(source)  # source on another filesystem
            if self.fsync and not copied:  # a copy was fsynced as it was made
                _fsync_file(source)  # the kept name is a link to it: the same bytes
        finally:
            if copied:
                copied.unlink(missing_ok=True)
        self._sync_dirs([candidate.parent])
        return candidate.relative_to(self.root).as_posix()

    def make_durable(self, relative: str) -> None:
        """fsync a kept file and every directory from it up to the store's root, whatever
        storage.fsync says: before the node commits to keeping it (Storage Commitment), its
        name as well as its bytes must survive power loss."""
        path = self.absolute(relative)
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
        for directory in path.parents:
            _fsync_directory(directory)
            if directory == self.root:
                break

    @staticmethod
    def _replace(source: Path, target: Path) -> None:
        """Put `source` at `target` in one step (a link beside it, renamed over it)."""
        beside = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}")
        os.link(source, beside)
        try:
            os.replace(beside, target)
        except BaseException:
            beside.unlink(missing_ok=True)
            raise
        log.warning("replaced %s, a leftover no index row named", target.name)

    def matches(self, relative: str, facts: FileFacts) -> bool:
        """Whether a kept file still has the size and SHA-256 recorded for it: its size
        first (a stat), and only when that matches its hash, read in CHUNK-sized pieces.
        False for a missing or unreadable file."""
        try:
            path = self.absolute(relative)
            if path.stat().st_size != facts.size:
                return False
            return self.digest(path) == facts
        except OSError:
            return False

    def exists(self, relative: str) -> bool:
        return self.absolute(relative).is_file()

    def remove(self, relative: str) -> None:
        """Delete a kept file (missing is fine) and make the deletion durable."""
        path = self.absolute(relative)
        path.unlink(missing_ok=True)
        self._sync_dirs([path.parent])

    def _make_dirs(self, directory: Path) -> None:
        """mkdir -p whose entries are durable before this process keeps a file below them.

        Another thread, another worker or another node sharing the store may have created a
        directory a moment ago and not yet fsynced its parent; a file acknowledged in it could
        then vanish with it in a crash. So the first time this process uses a directory, it
        fsyncs the parent of each directory on the way down from the root, whoever made them;
        under one lock, so a thread that finds a directory in the set knows it is durable.
        """
        with self._dirs_lock:
            if directory in self._durable_dirs:
                return
            chain = []
            probe = directory
            while probe != self.root and probe != probe.parent and probe not in self._durable_dirs:
                chain.append(probe)
                probe = probe.parent
            for path in reversed(chain):
                _owner_only_directory(path)  # another process may make it at the same moment
            self._sync_dirs([p.parent for p in reversed(chain)])
            if len(self._durable_dirs) >= DURABLE_DIRS_REMEMBERED:
                self._durable_dirs.clear()
            self._durable_dirs.update(chain)

    def _copy_in(self, source: Path) -> Path:
        """Copy a file from another filesystem into the incoming area, fsynced."""
        self.create()
        copy = self.incoming / f"copy-{uuid.uuid4().hex}.dcm"
        with open(source, "rb") as src, open_owner_only(copy) as dst:
            shutil.copyfileobj(src, dst, CHUNK)
            if self.fsync:
                dst.flush()
                os.fsync(dst.fileno())
        return copy

    def _sync_dirs(self, directories: list[Path]) -> None:
        if not self.fsync:
            return
        for directory in dict.fromkeys(directories):
            _fsync_directory(directory)

    # -- reading back what is kept (verify, reindex) -----------------------------------------

    def study_directory(self, study_uid: str) -> str:
        """The relative directory of a study's files. Raises InvalidInput for an unfit UID."""
        # the layout's own first two components, so that the two can never disagree
        return self.layout(study_uid, "0", "0").rsplit("/", 2)[0]

    def digest(self, path: Path, progress: Callable[[int], None] | None = None) -> FileFacts:
        """Size and SHA-256 of a file, read in CHUNK-sized pieces into one buffer (memory does
        not grow with the file) and never fsynced: a check, not a keep; `progress` is told the
        bytes of each piece. Raises OSError."""
        with open(path, "rb", buffering=0) as fh:
            with contextlib.suppress(AttributeError, OSError):  # a hint: not everywhere
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            return _facts(fh, progress)

    def stat(self, relative: str) -> os.stat_result:
        """The stat of a kept file (its mtime is when it was received). Raises OSError,
        InvalidInput for a path outside the store."""
        return self.absolute(relative).stat()

    def top_directories(self) -> list[str]:
        """The walk's units, in order: "" (files lying in the root itself), then each fan-out
        directory (NOT_KEPT left out). Raises OSError when the root cannot be listed."""
        names = sorted(
            entry.name
            for entry in os.scandir(self.root)
            if entry.name not in NOT_KEPT and entry.is_dir(follow_symlinks=False)
        )
        return ["", *names]

    def kept_files(self, top: str) -> Iterator[KeptFiles]:
        """The files under one of top_directories(), a study directory at a time (memory holds
        one study's names), in name order; files not inside a study directory come as groups
        whose study_uid is None, directories that cannot be listed as `unlistable`."""
        base = self.root / top if top else self.root
        loose: list[str] = []
        directories: list[str] = []
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except FileNotFoundError:  # removed since it was listed
            return
        except OSError as exc:
            yield KeptFiles(top, None, [], [(top, exc.strerror or str(exc))])
            return
        for entry in entries:
            if not top and entry.name in NOT_KEPT:
                continue
            if entry.is_dir(follow_symlinks=False):
                directories.append(entry.name)
            else:
                loose.append(self._relative(Path(entry.path)))
        if loose:
            yield KeptFiles(top, None, loose)
        if not top:
            return  # the root's directories are top directories of their own
        for name in directories:
            yield self._files_below(f"{top}/{name}", study_uid=name)

    def study_files(self, study_uid: str) -> KeptFiles:
        """The files of one study's directory (none when it does not exist). Raises
        InvalidInput for an unfit UID."""
        return self._files_below(self.study_directory(study_uid), study_uid=study_uid)

    def _files_below(self, directory: str, *, study_uid: str | None) -> KeptFiles:
        files: list[str] = []
        unlistable: list[tuple[str, str]] = []

        def note(exc: OSError) -> None:
            if not isinstance(exc, FileNotFoundError):  # gone since: nothing to check
                where = self._relative(Path(exc.filename)) if exc.filename else directory
                unlistable.append((where, exc.strerror or str(exc)))

        for current, subdirectories, names in os.walk(self.root / directory, onerror=note):
            subdirectories.sort()
            files.extend(self._relative(Path(current) / name) for name in sorted(names))
        return KeptFiles(directory, study_uid, files, unlistable)

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


# Everything in the store is its owner's alone (patient data), whatever the umask.
OWNER_ONLY_FILE = 0o600
OWNER_ONLY_DIRECTORY = 0o700


def open_owner_only(path: Path) -> BinaryIO:
    """A new file (never an existing one) opened for writing, mode 0600 whatever the umask.
    Raises FileExistsError, OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY_FILE)
    try:
        os.fchmod(fd, OWNER_ONLY_FILE)  # a umask that took the owner's bits away
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def _owner_only_directory(path: Path) -> None:
    """mkdir with mode 0700 whatever the umask; a directory already there is left as it is
    (another process may have made it a moment ago). Raises OSError."""
    try:
        path.mkdir(mode=OWNER_ONLY_DIRECTORY)
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    os.chmod(path, OWNER_ONLY_DIRECTORY)


def _unchanged_for(path: Path, seconds: float | None) -> bool:
    if seconds is None:
        return False
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


def _facts(fh: Any, progress: Callable[[int], None] | None = None) -> FileFacts:
    """Size and SHA-256 of an open unbuffered file, read into one CHUNK-sized buffer."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while read := fh.readinto(buffer):
        digest.update(view[:read])
        size += read
        if progress is not None:
            progress(read)
    return FileFacts(size=size, sha256=digest.hexdigest())


def _fsync_file(path: Path) -> None:
    with open(path, "rb", buffering=0) as fh:
        os.fsync(fh.fileno())


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
