"""``cleaner audit --equalize OUT``: a copy of the dataset in which both classes share one form.

Every readable image is decoded through :mod:`cleaner.images`, cut to one size policy (the
short side scaled to ``side``, then the central ``side x side`` square), and re-encoded as one
container at one quality (baseline JPEG, 4:2:0) with no metadata at all, named by the sha256 of
its original bytes. ``OUT/.cleaner/equalized.csv`` records where each file came from. ROOT is
only read; OUT must be new (absent or empty) and outside ROOT.

What it costs: re-encoding replaces the traces a detector could use (a generator's PNG output
keeps its exact pixels; after JPEG at one quality both classes carry the same compression), and
cropping drops the borders. A stratified subset (the same number of files of each form in each
class) keeps the originals and is better when the folder is large and the forms overlap enough.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cleaner import engine, images
from cleaner.atomic import atomic_write, atomic_write_text
from cleaner.audit import FileAudit
from cleaner.dataset import Workspace, state_path
from cleaner.errors import CleanerError

EQUALIZED_CSV = "equalized.csv"
DEFAULT_QUALITY = 92
CLASS_DIRS = {"real": "real_images", "fake": "fake_images"}


@dataclass
class EqualizeResult:
    out: Path
    side: int
    quality: int
    written: int
    skipped: int
    csv: Path


def default_side(files: Sequence[FileAudit]) -> int:
    """The median of the short sides, at least 16 px: half the images are shrunk, half
    enlarged, and a few tiny (or huge) files cannot drag the size for everyone (a low
    percentile let one 1x1 image equalize a whole folder to 16 px)."""
    shorts = [min(int(f.props["width"]), int(f.props["height"])) for f in files if f.ok]
    return max(16, int(np.median(shorts))) if shorts else 256


def check_unused(out: object | None, *, side: int | None, quality: int) -> None:
    """``--equalize-size`` and ``--equalize-quality`` shape ``--equalize OUT``'s copy: without
    it they would be ignored, so they are refused (a quality other than the default)."""
    given = ["--equalize-size"] if side is not None else []
    given += ["--equalize-quality"] if quality != DEFAULT_QUALITY else []
    if out is None and given:
        raise CleanerError(
            f"{' and '.join(given)}: used only with --equalize OUT (the equalized copy), "
            f"ignored without it; add --equalize OUT (a new folder outside ROOT) or drop "
            f"{' and '.join(given)}"
        )


def check_args(
    ws: Workspace,
    out: str | os.PathLike[str],
    *,
    side: int | None = None,
    quality: int = DEFAULT_QUALITY,
) -> Path:
    """``--equalize OUT`` and its options, checked before the audit reads a file; returns OUT
    resolved."""
    if not 1 <= quality <= 100:
        raise CleanerError(f"--equalize-quality {quality} must be in 1..100")
    if side is not None and side < 16:
        raise CleanerError(f"--equalize-size {side} is too small; use at least 16 px")
    return _check_out(ws, Path(out))


def _check_out(ws: Workspace, out: Path) -> Path:
    root = ws.root
    out = out.resolve()
    if out == root or out.is_relative_to(root):
        raise CleanerError(
            f"--equalize {out} is inside ROOT {root}; name a new folder outside it "
            f"(e.g. {root.parent / (root.name + '_equalized')})"
        )
    if root.is_relative_to(out):
        raise CleanerError(f"--equalize {out} holds ROOT {root}; name a new, empty folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CleanerError(f"--equalize {out} exists and is not an empty folder; name a new one")
    return out


Job = tuple[str, int, int, int]
"""(abspath, side, long side to decode at, quality)."""


def encode_one(job: Job) -> tuple[bytes, str]:
    """(JPEG bytes, '') or (b'', why it failed) for one image."""
    path, side, decode_side, quality = job
    try:
        im = images.load_rgb(path, max_side=decode_side)
    except images.ImageError as e:
        return b"", f"{e.status}: {e.reason}"
    w, h = im.size
    k = side / min(w, h)
    im = im.resize((max(side, round(w * k)), max(side, round(h * k))), Image.Resampling.LANCZOS)
    w, h = im.size
    left, top = (w - side) // 2, (h - side) // 2
    im = im.crop((left, top, left + side, top + side))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False)
    return buf.getvalue(), ""


def encode_batch(batch: Sequence[Job]) -> list[tuple[bytes, str]]:
    return [encode_one(j) for j in batch]


def _crashed(job: Job, error: BaseException) -> tuple[bytes, str]:
    return b"", f"corrupt: the decoder crashed on this file ({error})"[:300]


def _write_new(path: Path, data: bytes) -> None:
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    atomic_write(path, write)


def equalize(
    ws: Workspace,
    files: Sequence[FileAudit],
    out: str | os.PathLike[str],
    *,
    side: int | None = None,
    quality: int = DEFAULT_QUALITY,
    workers: int | None = None,
    progress: bool | None = None,
) -> EqualizeResult:
    """Write the equalized copy of ``files`` (ROOT's audit) into ``out``."""
    outp = check_args(ws, out, side=side, quality=quality)
    ok = [f for f in files if f.ok]
    side = side or default_side(ok)
    jobs: list[Job] = []
    for f in ok:
        w, h = int(f.props["width"]), int(f.props["height"])
        jobs.append((str(ws.root / f.path), side, math.ceil(side * max(w, h) / min(w, h)), quality))
    for d in CLASS_DIRS.values():
        (outp / d).mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    written = 0
    taken: set[str] = set()
    results = engine.map_batches(
        encode_batch, jobs, batch_size=32, workers=workers,
        desc="equalize", progress=progress, on_crash=_crashed,
    )  # fmt: skip
    for f, (data, why) in zip(ok, (r for b in results for r in b), strict=True):
        rel = f"{CLASS_DIRS[f.label]}/{f.props['sha256']}.jpg"
        row: dict[str, object] = {"path": rel, "label": f.label, "source": f.path,
                                  "source_sha256": f.props["sha256"], "sha256": "",
                                  "status": "ok"}  # fmt: skip
        if why:
            row.update(path="", status=why)
        elif rel in taken:
            row.update(path="", status=f"same bytes as another {f.label} file: written once")
        else:
            _write_new(outp / rel, data)
            taken.add(rel)
            row["sha256"] = hashlib.sha256(data).hexdigest()
            written += 1
        rows.append(row)
    for f in files:
        if not f.ok:
            why = f"{f.props.get('status')}: {f.props.get('reason', '')}"
            rows.append({"path": "", "label": f.label, "source": f.path, "sha256": "",
                         "source_sha256": f.props.get("sha256", ""), "status": why})  # fmt: skip
    csv_path = state_path(outp, EQUALIZED_CSV)
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=["path", "label", "source", "source_sha256", "sha256", "status"]
    )
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(csv_path, buf.getvalue())
    return EqualizeResult(outp, side, quality, written, len(rows) - written, csv_path)
