"""Thumbnails for the report, cached by the image's sha256 next to the page.

``report_files/thumbs/<sha256>.jpg``: a rerun of ``cleaner report`` (or a report of the same
dataset after moves) finds them by content and makes only the new ones. They are made in
parallel through :func:`cleaner.engine.map_batches`, decoded through :mod:`cleaner.images`'s fast
path (JPEG draft mode), and written atomically so an interrupted run leaves no half file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cleaner import images
from cleaner.engine import map_batches

THUMB_SIDE = 160
"""Longer side of a thumbnail, in pixels (two rows of cards fit a laptop screen)."""


@dataclass(frozen=True)
class ThumbJob:
    candidates: tuple[str, ...]
    """Absolute paths where the image may be now (it may have moved since the plan): the first
    one whose bytes have ``sha256`` is used."""
    sha256: str
    """sha256 of the image's bytes ("" when unknown: the first readable candidate is used)."""
    dst: str
    """Absolute path of the thumbnail to write."""


def make_thumb(job: ThumbJob, side: int = THUMB_SIDE) -> str:
    """Write one thumbnail; returns "" when done, else the reason it could not be made."""
    data: bytes | None = None
    for c in job.candidates:
        try:
            with open(c, "rb") as f:
                blob = f.read()
        except OSError:
            continue
        if not job.sha256 or hashlib.sha256(blob).hexdigest() == job.sha256:
            data = blob
            break
    if data is None:
        return "file not found (moved or changed since this state was written)"
    tmp = f"{job.dst}.{os.getpid()}.tmp"
    try:
        im = images.thumbnail(data, side)
        im.save(tmp, "JPEG", quality=80)
        os.replace(tmp, job.dst)
        return ""
    except images.ImageError as e:
        return f"{e.status}: {e.reason}"
    except OSError as e:
        return f"cannot write thumbnail: {e.strerror or e}"
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def thumb_batch(batch: Sequence[ThumbJob]) -> list[str]:
    """Pure batch function for the engine."""
    return [make_thumb(j) for j in batch]


@dataclass
class ThumbStats:
    made: int = 0
    cached: int = 0
    failed: int = 0


def make_thumbs(
    jobs: Sequence[ThumbJob], *, workers: int | None = None, progress: bool | None = None
) -> tuple[dict[str, str], ThumbStats]:
    """Make the thumbnails that are not cached yet. Returns (dst -> failure reason) for the ones
    that could not be made, and counts."""
    stats = ThumbStats()
    todo: list[ThumbJob] = []
    seen: set[str] = set()
    for j in jobs:
        if j.dst in seen:
            continue
        seen.add(j.dst)
        if os.path.exists(j.dst):
            stats.cached += 1
        else:
            todo.append(j)
    failures: dict[str, str] = {}
    i = 0
    for out in map_batches(
        thumb_batch, todo, batch_size=32, workers=workers, desc="thumbnails", progress=progress
    ):
        for reason in out:
            if reason:
                failures[todo[i].dst] = reason
                stats.failed += 1
            else:
                stats.made += 1
            i += 1
    return failures, stats


def thumb_name(sha256: str) -> str:
    return f"{sha256}.jpg"


def thumb_dir(files_dir: Path) -> Path:
    return files_dir / "thumbs"
