"""Orthanc measured in the same run as the node (issue 23): Debian's `orthanc` package started
with a generated configuration in a temporary directory (its own SQLite index and storage area,
fsync on, no plugins, no HTTP access from outside loopback), polled until it answers a C-ECHO.

The bench's clients are registered as its modalities: BENCH (storescu, findscu, movescu,
getscu) and STORESCP (the DCMTK storescp a C-MOVE delivers into). Its figures are taken with
the same clients and corpus as the node's; its peak RSS is its process's VmHWM, as the node's.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

ORTHANC = "/usr/sbin/Orthanc"
AET = "ORTHANC"
LABEL = "Orthanc 1.10 (SQLite, fsync)"
_missing_said = False


def _say(message: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def executable() -> str | None:
    """Orthanc's executable, installing Debian's `orthanc` package when it is absent and this
    runs as root with apt-get; None (and one clear line on stderr) when it cannot be had."""
    global _missing_said
    found = shutil.which("Orthanc") or (ORTHANC if os.access(ORTHANC, os.X_OK) else None)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _say("Orthanc absent: apt-get install -y orthanc")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "orthanc"]):
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                break
        # the package's own service (if any init system started it) is not the one measured
        found = shutil.which("Orthanc") or (ORTHANC if os.access(ORTHANC, os.X_OK) else None)
        if found:
            return found
    if not _missing_said:
        _say(
            "Orthanc not installed and cannot be installed here (needs root and apt-get: "
            "apt-get install -y orthanc): Orthanc is skipped, its columns stay empty"
        )
        _missing_said = True
    return None


def version() -> str | None:
    path = executable()
    if not path:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    first = out.strip().splitlines()[0] if out.strip() else ""
    return first.split()[-1] if first else None


def config(
    root: Path,
    dicom_port: int,
    http_port: int,
    modalities: dict[str, tuple[str, int]],
    *,
    sync: bool = True,
) -> dict:
    """The configuration measured: Orthanc 1.10's defaults (as Debian's /etc/orthanc/orthanc.json
    documents them) but for what the bench needs to reach it and to keep it to itself: its own
    directories, fixed ports, no plugins or Lua, the bench's AEs allowed everything, the
    called AE title not checked, the web explorer and WebDAV off (HTTP is for /statistics and
    the C-FIND corpus alone). fsync (SyncStorageArea) and StorageCompression are set to their
    defaults explicitly, being what is compared."""
    allow = {
        "AllowEcho": True,
        "AllowFind": True,
        "AllowGet": True,
        "AllowMove": True,
        "AllowStore": True,
    }
    return {
        "Name": "archive-node-bench",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),  # the built-in SQLite index
        "TemporaryDirectory": str(root / "tmp"),
        "StorageCompression": False,
        "SyncStorageArea": sync,  # fsync of every file written (its default since 1.7.4)
        "Plugins": [],
        "LuaScripts": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,  # loopback only...
        "AuthenticationEnabled": False,  # ...so no password on it
        "RegisteredUsers": {},
        "WebDavEnabled": False,
        "OrthancExplorerEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": AET,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowFindWorklist": False,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "DicomCheckModalityHost": False,
        "DicomModalities": {
            name.lower(): {"AET": name, "Host": "127.0.0.1", "Port": port, **allow}
            for name, (_, port) in modalities.items()
        },
    }


@dataclass
class Server:
    """A running Orthanc: its DICOM and HTTP ports, process, directory."""

    proc: subprocess.Popen
    port: int
    http_port: int
    root: Path
    called: str = AET

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, path: str) -> object:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=60)
        try:
            conn.request("GET", path)
            rsp = conn.getresponse()
            body = rsp.read()
            if rsp.status != 200:
                raise RuntimeError(f"Orthanc GET {path}: HTTP {rsp.status} {body[:200]!r}")
            return json.loads(body)
        finally:
            conn.close()

    def count(self) -> int:
        """Instances held, as its REST /statistics counts them."""
        stats = self.get("/statistics")
        assert isinstance(stats, dict)
        return int(stats["CountInstances"])


@contextlib.contextmanager
def serving(
    root: Path,
    modalities: dict[str, tuple[str, int]] | None = None,
    *,
    sync: bool = True,
    dicom_port: int | None = None,
) -> Iterator[Server]:
    """Run Orthanc on free ports with its index and storage under `root` (kept: a second
    start on the same `root` is a restart); `modalities` maps AE titles to (host, port).
    Waits, polling, until it answers a C-ECHO from BENCH."""
    from bench.find import DCMTK_ENV, START_ATTEMPTS, free_port, wait_until_answering

    path = executable()
    if path is None:
        raise RuntimeError("Orthanc is not installed")
    root.mkdir(parents=True, exist_ok=True)
    modalities = {"BENCH": ("127.0.0.1", 0), **(modalities or {})}
    conf = root / "orthanc.json"
    for attempt in range(START_ATTEMPTS):
        port = dicom_port or free_port()
        http_port = free_port()
        # a modality needs some port: BENCH is never called back (no C-MOVE to it)
        registered = {name: (host, p or free_port()) for name, (host, p) in modalities.items()}
        conf.write_text(json.dumps(config(root, port, http_port, registered, sync=sync), indent=2))
        with open(root / "orthanc.log", "ab") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                [path, "--no-jobs", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                env=DCMTK_ENV,  # TCP_NODELAY=1: without it Nagle's delays cost 40 ms a store
            )
        try:
            wait_until_answering(proc, port, "BENCH", AET, timeout=60)
        except RuntimeError:
            exited = proc.poll() is not None
            _stop(proc)
            if exited and attempt + 1 < START_ATTEMPTS and not dicom_port:
                continue  # gone at its start: most likely a free port was taken meanwhile
            raise
        break
    try:
        yield Server(proc, port, http_port, root)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def post_instances(
    server: Server, blobs: Iterator[bytes], *, threads: int = 2, say: Callable | None = None
) -> int:
    """POST each DICOM file of `blobs` to Orthanc's REST /instances over `threads` kept-alive
    HTTP connections; returns how many were stored. Raises on the first failure."""
    work: queue.Queue[bytes | None] = queue.Queue(maxsize=threads * 64)
    errors: list[BaseException] = []
    stored = [0] * threads

    def poster(slot: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=120)
        try:
            while True:
                blob = work.get()
                if blob is None:
                    return
                if errors:
                    continue
                try:
                    conn.request("POST", "/instances", blob, {"Content-Type": "application/dicom"})
                    rsp = conn.getresponse()
                    body = rsp.read()
                    if rsp.status != 200:
                        raise RuntimeError(f"POST /instances: HTTP {rsp.status} {body[:200]!r}")
                    stored[slot] += 1
                except BaseException as exc:
                    errors.append(exc)
        finally:
            conn.close()

    workers = [threading.Thread(target=poster, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    sent = 0
    try:
        for blob in blobs:
            if errors:
                break
            work.put(blob)
            sent += 1
            if say and sent % 50_000 == 0:
                say(f"Orthanc: {sent:,} instances posted")
    finally:
        for _ in workers:
            work.put(None)
        for w in workers:
            w.join()
    if errors:
        raise errors[0]
    return sum(stored)


def encode(ds) -> bytes:  # type: ignore[no-untyped-def]
    """A pydicom dataset (with file_meta) as a DICOM file's bytes."""
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def corpus_rows(index_url: str) -> list[tuple]:
    """Every instance row of an index (bench.corpus.populate) with its series', study's and
    patient's attributes, in the order of the fields of CORPUS_FIELDS."""
    from archive_node.index import Index

    index = Index.open(index_url)
    try:
        with index.session():
            return list(
                index.db.execute_sql(
                    "SELECT p.patient_id, p.patient_name, p.birth_date, p.sex, st.study_uid, "
                    "st.study_date, st.study_time, st.accession_number, st.study_id, "
                    "st.description, se.series_uid, se.modality, se.series_number, "
                    "i.sop_uid, i.sop_class_uid, i.instance_number FROM instance i "
                    "JOIN series se ON se.id = i.series_id JOIN study st ON st.id = se.study_id "
                    "JOIN patient p ON p.id = st.patient_id ORDER BY i.id"
                ).fetchall()
            )
    finally:
        index.close()


def tiny_dataset(row: tuple):  # type: ignore[no-untyped-def]
    """One corpus row (corpus_rows) as a pydicom dataset with file meta: the patient, study,
    series and instance attributes the C-FIND benchmark asks about, no pixels, UTF-8."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    (pid, name, birth, sex, study, date, time_, accession, study_id, description) = row[:10]
    (series, modality, series_number, sop, sop_class, number) = row[10:]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = date, time_, accession
    ds.Modality, ds.StudyDescription = modality, description
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = name, pid, birth, sex
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.StudyID = study, series, study_id
    ds.SeriesNumber, ds.InstanceNumber = series_number, number
    return ds


def _element(group: int, element: int, vr: bytes, value: bytes, pad: bytes = b" ") -> bytes:
    """One Explicit VR Little Endian data element of a short (16-bit length) VR."""
    if len(value) % 2:
        value += pad
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


_META_VERSION = struct.pack("<HH2sHI", 2, 1, b"OB", 0, 2) + b"\x00\x01"


def tiny_file(row: tuple) -> bytes:
    """tiny_dataset(row) as the bytes of its DICOM file, packed by hand (pydicom takes about
    a millisecond a file, too slow for 200,000 of them); tested equal to pydicom's."""
    (pid, name, birth, sex, study, date, time_, accession, study_id, description) = row[:10]
    (series, modality, series_number, sop, sop_class, number) = row[10:]
    ui = b"\x00"
    meta = b"".join(
        (
            _META_VERSION,
            _element(2, 2, b"UI", sop_class.encode(), ui),
            _element(2, 3, b"UI", sop.encode(), ui),
            _element(2, 0x10, b"UI", b"1.2.840.10008.1.2.1", ui),
            _element(2, 0x12, b"UI", PYDICOM_IMPLEMENTATION_UID.encode(), ui),
            _element(2, 0x13, b"SH", PYDICOM_IMPLEMENTATION_VERSION.encode()),
        )
    )
    body = b"".join(
        (
            _element(8, 5, b"CS", b"ISO_IR 192"),
            _element(8, 0x16, b"UI", sop_class.encode(), ui),
            _element(8, 0x18, b"UI", sop.encode(), ui),
            _element(8, 0x20, b"DA", date.encode()),
            _element(8, 0x30, b"TM", time_.encode()),
            _element(8, 0x50, b"SH", accession.encode()),
            _element(8, 0x60, b"CS", modality.encode()),
            _element(8, 0x1030, b"LO", description.encode()),
            _element(0x10, 0x10, b"PN", name.encode()),
            _element(0x10, 0x20, b"LO", pid.encode()),
            _element(0x10, 0x30, b"DA", birth.encode()),
            _element(0x10, 0x40, b"CS", sex.encode()),
            _element(0x20, 0xD, b"UI", study.encode(), ui),
            _element(0x20, 0xE, b"UI", series.encode(), ui),
            _element(0x20, 0x10, b"SH", study_id.encode()),
            _element(0x20, 0x11, b"IS", str(series_number).encode()),
            _element(0x20, 0x13, b"IS", str(number).encode()),
        )
    )
    length = struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(meta))
    return b"\x00" * 128 + b"DICM" + length + meta + body


def _pydicom_implementation() -> tuple[str, str]:
    from pydicom import __version__
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID as uid

    return str(uid), f"PYDICOM {__version__}"


PYDICOM_IMPLEMENTATION_UID, PYDICOM_IMPLEMENTATION_VERSION = _pydicom_implementation()


def find_run(studies: int, runs: int, seed: int) -> dict:
    """C-FIND timings of Orthanc over the same synthetic corpus as the node's (bench.corpus,
    same seed), by the same client and the same draws; bench.find.run's report shape.

    Filled over REST: the corpus is written into a throwaway SQLite index of the node (as
    bench.find does), each of its instance rows becomes a tiny DICOM file (the same patient,
    study and series attributes, no pixels) POSTed to /instances over three kept-alive
    connections, into an Orthanc with fsync off; then Orthanc is restarted on the same index
    and storage with fsync on, and measured (its peak RSS is the restarted process's)."""
    from archive_node.index import Index
    from bench.corpus import populate
    from bench.find import (
        mark_rare_modality,
        measure,
        time_findscu,
    )
    from bench.retrieve import tree_hwm

    with tempfile.TemporaryDirectory(prefix="archive-node-bench-orthanc-") as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root}/corpus.sqlite3"
        index = Index.open(url)
        index.init_schema()
        corpus = populate(index, studies, seed=seed)
        mark_rare_modality(index, corpus)
        index.close()
        rows = corpus_rows(url)
        (root / "corpus.sqlite3").unlink()
        started = time.perf_counter()
        with serving(root / "orthanc", sync=False) as server:
            stored = post_instances(server, (tiny_file(row) for row in rows), threads=3, say=_say)
            held = server.count()
        filled = time.perf_counter() - started
        if stored != len(rows) or held != len(rows):
            raise RuntimeError(f"Orthanc holds {held} of {len(rows)} instances ({stored} posted)")
        del rows
        with serving(root / "orthanc") as server:
            results = measure(server.port, corpus, runs, seed, called=AET, scoped=False)
            findscu = (
                time_findscu(server.port, corpus, max(3, runs // 10), called=AET)
                if shutil.which("findscu")
                else None
            )
            peak = tree_hwm(server.pid)
    return {
        "backend": "orthanc",
        "studies": corpus.studies,
        "patients": corpus.patients,
        "series": corpus.series,
        "instances": corpus.instances,
        "populate_s": round(filled, 1),
        "populate": "REST POST /instances of tiny files, 3 connections, fsync off, then a "
        "restart with fsync on",
        "queries": results,
        "findscu": findscu,
        "serve_peak_rss_mb": round(peak / 2**20, 1),
    }
