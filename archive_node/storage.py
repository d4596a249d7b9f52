"""The filesystem store: UID-derived layout, durable keep (fsync, link, fsync dir), removal."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, InvalidInput
from .values import is_valid_uid

log = logging.getLogger(__name__)

CHUNK = 1 << 20
INCOMING = ".incoming"


@dataclass(frozen=True)
class FileFacts:
    """What the store records of a file's content."""

    size: int
    sha256: str


class FilesystemStorage:
    """Files under one root, laid out as <fan-out>/<study>/<series>/<sop>.dcm.

    Every path handed out or accepted is relative to the root; UIDs are validated before they
    become path components, so no dataset can name a place outside the tree.
    """

    def __init__(self, root: Path, *, fsync: bool = True, min_free_bytes: int = 0) -> None:
        self.root = Path(root).absolute()
        self.fsync = fsync
        self.min_free_bytes = min_free_bytes
        self._dirs_lock = threading.Lock()

    @property
    def incoming(self) -> Path:
        """Where partial transfers are written; on the store's filesystem so keeping is a link."""
        return self.root / INCOMING

    def create(self) -> None:
        """Create the store's directories. Raises ConfigError when that is impossible."""
        try:
            self.incoming.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"storage.path: cannot use {self.root}: {exc.strerror}") from None

    def sweep_incoming(self) -> int:
        """Remove partial files of interrupted transfers; return how many.

        Only for a node that is starting: a running node's transfers in progress live there.
        """
        self.create()
        removed = 0
        for entry in self.incoming.iterdir():
            if entry.is_file():
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
        if not path.is_relative_to(self.root.resolve()):
            raise InvalidInput(f"path {relative!r} is outside the store")
        return path

    def inspect(self, path: Path) -> FileFacts:
        """Size and SHA-256 of a file, read in chunks; fsynced in the same pass when enabled."""
        digest = hashlib.sha256()
        size = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
            if self.fsync:
                os.fsync(fh.fileno())
        return FileFacts(size=size, sha256=digest.hexdigest())

    def has_room(self) -> bool:
        """False when free space is below the configured reserve."""
        return shutil.disk_usage(self.root).free >= self.min_free_bytes

    def keep(self, source: Path, relative: str) -> str:
        """Give `source` (already fsynced) a durable name in the store; return that name.

        The name is `relative` unless a file is already there (a leftover, or a concurrent
        sender of the same instance), in which case a unique sibling name is chosen: a kept file
        is never overwritten. `source` is left in place for its owner to remove.
        """
        target = self.absolute(relative)
        self._make_dirs(target.parent)
        copied = None
        candidate = target
        try:
            while True:
                try:
                    os.link(copied or source, candidate)
                    break
                except FileExistsError:
                    candidate = target.with_name(f"{target.stem}.{uuid.uuid4().hex[:12]}.dcm")
                except OSError as exc:
                    if exc.errno != errno.EXDEV or copied:
                        raise
                    copied = self._copy_in(source)  # source on another filesystem
        finally:
            if copied:
                copied.unlink(missing_ok=True)
        self._sync_dirs([candidate.parent])
        return candidate.relative_to(self.root).as_posix()

    def make_durable(self, relative: str) -> None:
        """fsync a kept file and its directory whatever storage.fsync says: before the node
        commits to keeping it (Storage Commitment), it must survive power loss."""
        path = self.absolute(relative)
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
        _fsync_directory(path.parent)

    def exists(self, relative: str) -> bool:
        return self.absolute(relative).is_file()

    def remove(self, relative: str) -> None:
        """Delete a kept file (missing is fine) and make the deletion durable."""
        path = self.absolute(relative)
        path.unlink(missing_ok=True)
        self._sync_dirs([path.parent])

    def _make_dirs(self, directory: Path) -> None:
        """mkdir -p whose new entries are durable before any thread can see the directory.

        Under one lock, so a thread that finds a directory already there knows its creator has
        fsynced the parents: otherwise it could acknowledge a file in a directory that a crash
        would still take away.
        """
        with self._dirs_lock:
            missing = []
            probe = directory
            while not probe.exists():
                missing.append(probe)
                probe = probe.parent
            for path in reversed(missing):
                path.mkdir()
            self._sync_dirs([p.parent for p in missing])

    def _copy_in(self, source: Path) -> Path:
        """Copy a file from another filesystem into the incoming area, fsynced."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        copy = self.incoming / f"copy-{uuid.uuid4().hex}.dcm"
        with open(source, "rb") as src, open(copy, "wb") as dst:
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


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
