"""`cleaner dedupe` on aligned portraits on a plain background: the case that defeated a fixed
raw-pixel check (issue 16).

Builds, in a temporary folder outside the repository, a dataset of all 2,200 faces of
../shared/data/faces140k, each masked to an ellipse (x 0.2-0.8, y 0.12-0.95 of the image, edge
blurred by 6 px) on a flat light-grey background (grey 200-230), saved as JPEG q92 in
``real_images/`` or ``fake_images/`` by its source class, plus the five copy kinds of
``--copied`` of them (half size, JPEG q40, +30 % brightness, a 5 % crop, a mirror), made from the
masked image. Then the whole command, ``cleaner dedupe --root R --json``, as a process, and the
checks on ``duplicates.json``: false pairs (two members of one group from different faces;
faces140k's own near-identical StyleGAN pairs, listed in bench_dedupe_quality.py, counted
apart), recall of each copy kind (original and copy in one group), the largest group, and what
the command says of itself (expected false pairs, threshold, review). ``--cleaner-path`` runs
another checkout's cleaner on the same folder (e.g. the code before this change). One JSON line.

    .venv/bin/python bench/bench_dedupe_aligned.py
    .venv/bin/python bench/bench_dedupe_aligned.py --cleaner-path /tmp/cleaner-before
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dedupe_quality import FACES, KINDS, SOURCE_DUPLICATES

REPO = Path(__file__).resolve().parents[1]


def masked(im: Image.Image, grey: int) -> Image.Image:
    """The face inside a soft ellipse, the rest flat ``grey``."""
    w, h = im.size
    m = Image.new("L", (w, h), 0)
    ImageDraw.Draw(m).ellipse((0.2 * w, 0.12 * h, 0.8 * w, 0.95 * h), fill=255)
    m = m.filter(ImageFilter.GaussianBlur(6))
    return Image.composite(im, Image.new("RGB", (w, h), (grey, grey, grey)), m)


def copies(im: Image.Image, rng: random.Random) -> dict[str, tuple[Image.Image, int]]:
    w, h = im.size
    cw, ch = round(w * 0.95), round(h * 0.95)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return {
        "half": (im.resize((w // 2, h // 2), Image.Resampling.LANCZOS), 95),
        "jpeg40": (im, 40),
        "bright": (ImageEnhance.Brightness(im).enhance(1.3), 95),
        "crop5": (im.crop((x, y, x + cw, y + ch)), 95),
        "mirror": (im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 95),
    }


def build(root: Path, n_copied: int, seed: int = 0) -> dict[str, tuple[str, str]]:
    """Write the dataset; ROOT-relative path -> (source file, kind)."""
    rng = random.Random(seed)
    files = sorted((FACES / "real").glob("*.jpg")) + sorted((FACES / "fake").glob("*.jpg"))
    copied = set(random.Random(seed + 1).sample(range(len(files)), n_copied))
    truth: dict[str, tuple[str, str]] = {}
    for k, f in enumerate(files):
        src = f"{f.parent.name}/{f.name}"
        folder = root / f"{f.parent.name}_images"
        folder.mkdir(parents=True, exist_ok=True)
        im = masked(Image.open(f).convert("RGB"), rng.randint(200, 230))
        variants = {"orig": (im, 92)}
        if k in copied:
            variants.update(copies(im, rng))
        for kind, (v, q) in variants.items():
            rel = f"{folder.name}/{k:05d}_{kind}.jpg"
            v.save(root / rel, quality=q)
            truth[rel] = (src, kind)
    return truth


@dataclass
class Tally:
    """A dedupe run's groups against the truth (path -> (source face, kind)): pairs of distinct
    faces grouped (``false``, ``source``: listed duplicates of the source set), and per kind the
    planted copies and those grouped with their original."""

    false: list[list[str]]
    source: int
    planted: Counter[str]
    found: Counter[str]
    missed: list[str]


def tally(doc: dict[str, Any], truth: dict[str, tuple[str, str]]) -> Tally:
    """Every pair inside a group of ``duplicates.json``, judged by the truth."""
    false: list[list[str]] = []
    source = 0
    together: set[frozenset[str]] = set()
    for g in doc["groups"]:
        for a, b in combinations([m["path"] for m in g["members"]], 2):
            (sa, _), (sb, _) = truth[a], truth[b]
            if sa == sb:
                together.add(frozenset((a, b)))
            elif frozenset((sa, sb)) in SOURCE_DUPLICATES:
                source += 1
            else:
                false.append(sorted((a, b)))
    orig = {s: p for p, (s, k) in truth.items() if k == "orig"}
    copies_ = [(p, k, frozenset((p, orig[s])) in together) for p, (s, k) in sorted(truth.items())]
    return Tally(
        false,
        source,
        Counter(k for _, k, _ in copies_ if k != "orig"),
        Counter(k for _, k, grouped in copies_ if k != "orig" and grouped),
        [p for p, k, grouped in copies_ if k != "orig" and not grouped],
    )


def check(doc: dict[str, Any], truth: dict[str, tuple[str, str]]) -> dict[str, Any]:
    t = tally(doc, truth)
    groups = [g["members"] for g in doc["groups"]]
    return {
        "false_pairs": len(t.false),
        "source_duplicate_pairs": t.source,
        "recall": {k: round(t.found[k] / max(1, t.planted[k]), 4) for k in KINDS},
        "largest_group": max((len(g) for g in groups), default=0),
        "groups": len(groups),
        "review_only_groups": sum(1 for g in doc["groups"] if g.get("review_only")),
    }


CALIBRATION = ("expected_false_pairs", "threshold", "weak_evidence", "review_pairs")
"""The summary's keys on how sure the run's threshold is (both benches report them)."""


def run_cleaner(root: Path, path: Path | None) -> tuple[dict[str, Any], float]:
    """``cleaner dedupe --json`` as a process (scan included); ``path``: another checkout."""
    env = {**os.environ, "PYTHONPATH": str(path or REPO)}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "cleaner", "dedupe", "--root", str(root), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=root.parent,  # not the repository: `python -m` puts the cwd first on sys.path
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1]), time.perf_counter() - t0


def compare(
    root: Path,
    cleaner_path: Path | None,
    judge: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """``cleaner dedupe`` on ``root`` from scratch with this checkout (and ``cleaner_path``, another
    one, when given): per checkout its seconds and ``judge`` of its ``duplicates.json`` and its
    ``--json`` summary."""
    res: dict[str, Any] = {}
    for name, path in (("cleaner", None), ("other", cleaner_path)):
        if name == "other" and path is None:
            continue
        shutil.rmtree(root / ".cleaner", ignore_errors=True)  # each run from scratch
        summary, seconds = run_cleaner(root, path)
        doc = json.loads((root / ".cleaner" / "duplicates.json").read_text())
        res[name] = {"seconds_incl_scan": round(seconds, 1), **judge(doc, summary)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copied", type=int, default=200)
    ap.add_argument("--cleaner-path", type=Path, help="another checkout's cleaner, run after")
    ap.add_argument("--keep", type=Path, help="build the dataset here and keep it")
    args = ap.parse_args()
    if not FACES.is_dir():
        print(json.dumps({"bench": "dedupe_aligned", "skipped": f"{FACES} not found"}))
        return
    with tempfile.TemporaryDirectory(prefix="cleaner-bench-al-") as tmp:
        root = args.keep or Path(tmp) / "aligned"
        truth = build(root, args.copied)
        res: dict[str, Any] = {"bench": "dedupe_aligned", "images": len(truth)}

        def judge(doc: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
            return {
                **check(doc, truth),
                **{k: summary.get(k) for k in CALIBRATION},
                "to_quarantine": summary.get("to_quarantine", summary.get("redundant")),
            }

        res |= compare(root, args.cleaner_path, judge)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
