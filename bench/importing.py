"""Issue 7's import measurement: `archive-node import` of camera photos and of a large video
(wall time, MB/s, the process's peak RSS), beside DCMTK's img2dcm converting the same photos.

The video is a real H.264 clip from ffmpeg's test source padded to size with a 'free' box, as
some recorders reserve: import reads, copies and hashes it byte for byte without decoding, so
the padding costs what the same size of stream would. img2dcm only converts into a file (no
index, no store); it is the lower bound of what wrapping a JPEG costs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.find import index_url_for
from bench.media import CACHE
from bench.retrieve import vm_hwm

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE_NODE = ROOT / ".venv" / "bin" / "archive-node"
PHOTO_SIZE = (4000, 3000)  # a 12-megapixel camera photo


def photos(count: int, seed: int) -> list[Path]:
    """`count` 12-megapixel baseline JPEGs of a noisy gradient (~3 MB each), cached."""
    from PIL import Image

    folder = CACHE / f"import-photos-{count}-{seed}"
    done = folder / "done"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        rng = random.Random(seed)
        base = Image.linear_gradient("L").resize(PHOTO_SIZE)
        for n in range(count):
            noise = Image.frombytes("L", PHOTO_SIZE, rng.randbytes(PHOTO_SIZE[0] * PHOTO_SIZE[1]))
            grey = Image.blend(base, noise, 0.25)
            image = Image.merge("RGB", (grey, base, noise))
            image.save(folder / f"photo-{n:04d}.jpg", quality=90)
        done.touch()
    return sorted(folder.glob("photo-*.jpg"))


def video(megabytes: int) -> Path:
    """A 4 s 1280x720 H.264 clip padded with a 'free' box to `megabytes` MiB, cached."""
    path = CACHE / f"import-video-{megabytes}.mp4"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    clip = CACHE / "import-clip.mp4"
    source = ["-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30", "-t", "4"]
    codec = ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p"]
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", *source, *codec, str(clip)],
        check=True,
        timeout=600,
    )
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as out:
        out.write(clip.read_bytes())
        padding = megabytes * 2**20 - out.tell()
        out.write((padding).to_bytes(4, "big") + b"free")
        block = random.Random(0).randbytes(2**20)
        left = padding - 8
        while left > 0:
            left -= out.write(block[: min(left, len(block))])
    partial.rename(path)
    return path


def import_run(files: list[Path], backend: str) -> dict:
    """One `archive-node import` into a fresh store and index: seconds and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-import-") as scratch:
        root = Path(scratch)
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(index_url_for(backend, root))
            config = root / "archive-node.toml"
            config.write_text(
                f'[storage]\npath = "{root / "storage"}"\nmin_free_mb = 0\n'
                f'[index]\nurl = "{url}"\n[log]\nlevel = "WARNING"\n'
            )
            env = {**os.environ, "ARCHIVE_NODE_CONFIG": str(config)}
            for args in (["init"], ["hospital", "add", "BENCH", "--name", "Bench"]):
                subprocess.run([ARCHIVE_NODE, *args], env=env, check=True, capture_output=True)
            command = [ARCHIVE_NODE, "import", *map(str, files), "--hospital", "BENCH"]
            command += ["--patient-id", "BENCH-1", "--json"]
            start = time.perf_counter()
            proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)
            peak = _PeakWatch(proc.pid)
            output = proc.stdout.read()
            code = proc.wait()
            seconds = time.perf_counter() - start
            peak.join()
            if code != 0:
                raise RuntimeError(f"archive-node import exited {code}")
            report = json.loads(output)
            stored = sum(1 for f in report["files"] if f["status"] == "stored")
            if stored != len(files):
                raise RuntimeError(f"stored {stored} of {len(files)}")
    return {"seconds": seconds, "peak_rss_mb": peak.bytes / 2**20}


class _PeakWatch(threading.Thread):
    """VmHWM of a process, read every 5 ms until it exits. wait4's ru_maxrss would not do: it
    keeps the high-water mark of the forked copy of this (large) process from before exec."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.bytes = pid, 0
        self.start()

    def run(self) -> None:
        while True:
            try:
                self.bytes = max(self.bytes, vm_hwm(self.pid))
            except (OSError, AttributeError):  # gone, or a zombie without memory
                return
            time.sleep(0.005)


def img2dcm_run(files: list[Path]) -> float | None:
    """Seconds DCMTK's img2dcm takes to convert `files` into VL Photographic files."""
    tool = shutil.which("img2dcm")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory(prefix="bench-img2dcm-") as scratch:
        start = time.perf_counter()
        for n, path in enumerate(files):
            out = Path(scratch) / f"{n}.dcm"
            subprocess.run([tool, "-vlp", str(path), str(out)], check=True, capture_output=True)
        return time.perf_counter() - start


def run(photo_count: int, video_mb: int, runs: int, backends: list[str], seed: int) -> dict:
    pictures, movie = photos(photo_count, seed), video(video_mb)
    photo_bytes = sum(p.stat().st_size for p in pictures)
    results: dict = {"photos": photo_count, "photo_bytes": photo_bytes, "video_mb": video_mb}
    for backend in backends:
        for name, files, size in (
            ("photos", pictures, photo_bytes),
            ("video", [movie], movie.stat().st_size),
        ):
            rows = [import_run(files, backend) for _ in range(runs)]
            seconds = statistics.median(r["seconds"] for r in rows)
            results[f"{name} {backend}"] = {
                "seconds": round(seconds, 3),
                "MB/s": round(size / 2**20 / seconds, 1),
                "files/s": round(len(files) / seconds, 1),
                "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rows), 1),
            }
    converted = [img2dcm_run(pictures) for _ in range(runs)]
    if None not in converted:
        seconds = statistics.median(converted)
        results["photos img2dcm"] = {
            "seconds": round(seconds, 3),
            "MB/s": round(photo_bytes / 2**20 / seconds, 1),
            "files/s": round(photo_count / seconds, 1),
        }
    return results


def table(results: dict) -> str:
    lines = [
        f"Import of {results['photos']} 12-megapixel JPEGs "
        f"({results['photo_bytes'] / 2**20:.0f} MiB) and of one {results['video_mb']} MiB H.264 "
        "MP4; median of the runs, peak RSS the largest.",
        "",
        "| what | seconds | MB/s | files/s | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    for name, row in results.items():
        if isinstance(row, dict):
            rss = row.get("peak_rss_mb", "-")
            lines.append(
                f"| {name} | {row['seconds']} | {row['MB/s']} | {row['files/s']} | {rss} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench import", description=__doc__)
    parser.add_argument("--photos", type=int, default=40, help="12 MP photos (default 40)")
    parser.add_argument("--video-mb", type=int, default=300, help="video size (default 300)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = run(args.photos, args.video_mb, args.runs, backends, args.seed)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
