"""Issue 30's acceptance run: composites beside their sources are pairs, cross-class copies are
conflicts, same-class copies are quarantined, through ``cleaner dedupe --apply``.

From faces140k reals (a seeded draw): ``--composites`` composites (an eyes, nose or mouth box
pasted from another real face, colour-matched, feathered, saved as JPEG ``--quality``, resized to
``--side`` when given) in ``fake_images/`` beside their sources in ``real_images/``;
``--copies`` byte copies and as many JPEG 60 re-encodings, each in the other class than its
original; ``--same`` same-class copies (half bytes, half JPEG 60); ``--others`` faces140k fakes
alone. Then ``cleaner dedupe --apply --json`` and the counts: pairs listed (recall, precision),
composites missed (called a conflict, or not matched by the verifier at all), conflicts listed
as pairs, conflicts in review groups, members quarantined by kind, and the
summary's "N of M fakes are paired" line. One JSON line.

    .venv/bin/python bench/bench_pairs.py                           # 100 composites, JPEG 90
    .venv/bin/python bench/bench_pairs.py --quality 40 --side 128 --seed 1   # degraded

``--statistic``: no dedupe; the locality statistic itself (``peak``, :mod:`cleaner.pairs`) of
every composite against its source and of ``--kinds`` whole-image copies of the first 40
sources (JPEG 30 and 60, half size, 64 px, 5 % crop, mirror, blur, brightened 1.3x), per kind
min / 5 % / median / 95 % / max, and the share of each kind at or above ``PEAK``: where ``PEAK``
was fitted.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.pairs_helpers import Truth, build

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces140k"
CLEANER = str(Path(sys.executable).parent / "cleaner")


def _load(p: Path) -> Image.Image:
    return Image.open(p).convert("RGB")


def make(root: Path, faces: Path, args: argparse.Namespace) -> Truth:
    reals = sorted((faces / "real").glob("*.jpg"))
    fakes = sorted((faces / "fake").glob("*.jpg"))
    need = args.composites + 2 * args.copies + args.same
    # each seed takes its own slice of the reals (sources first, donors after them)
    off = (args.seed * (need + args.donors)) % max(1, len(reals) - need - args.donors)
    pics = [functools.partial(_load, p) for p in reals[off : off + need + args.donors]]
    others = [functools.partial(_load, p) for p in fakes[off : off + args.others]]
    return build(
        root, pics, composites=args.composites, byte_copies=args.copies, reencoded=args.copies,
        same_class=args.same, quality=args.quality, side=args.side, seed=args.seed, extra=others,
    )  # fmt: skip


def score(root: Path, truth: Truth, summary: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads((root / ".cleaner/duplicates.json").read_text())
    listed = {(p["real"], p["fake"]) for p in doc["pairs"]}
    pairs, conflicts = set(truth.pairs), set(truth.conflicts)
    groups = {frozenset(m["path"] for m in g["members"]): g for g in doc["groups"]}
    reviewed = sum(
        1
        for a, b in conflicts
        if (g := groups.get(frozenset((a, b)))) and g["conflict"] and g.get("review_only")
    )
    qdir = root / "quarantine/duplicates"
    moved = {p.relative_to(qdir).as_posix() for p in qdir.rglob("*") if p.is_file()}
    in_conflict = {m["path"] for g in doc["groups"] if g["conflict"] for m in g["members"]}
    peaks = sorted(p["peak"] for p in doc["pairs"] if (p["real"], p["fake"]) in pairs)
    return {
        "pairs_planted": len(pairs),
        "pairs_listed": len(listed),
        "pairs_right": len(listed & pairs),
        "pair_recall": round(len(listed & pairs) / max(1, len(pairs)), 4),
        "pairs_as_conflicts": sum(1 for a, b in pairs - listed if b in in_conflict),
        "pairs_unmatched": sum(1 for a, b in pairs - listed if b not in in_conflict),
        "conflicts_listed_as_pairs": len(listed & conflicts),
        "other_pairs_listed": len(listed - pairs - conflicts),
        "conflicts_planted": len(conflicts),
        "conflicts_in_review": reviewed,
        "pair_members_quarantined": sum(1 for a, b in pairs if a in moved or b in moved),
        "conflict_members_quarantined": sum(1 for a, b in conflicts if a in moved or b in moved),
        "same_class_planted": len(truth.same),
        "same_class_quarantined": sum(1 for a, b in truth.same if (a in moved) != (b in moved)),
        "quarantined": len(moved),
        "pair_peak_min": peaks[0] if peaks else None,
        "paired": summary.get("paired"),
        "threshold": summary.get("threshold"),
    }


def _jpeg(im: Image.Image, q: int) -> Image.Image:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=q)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _crop5(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = im.size
    cw, ch = round(w * 0.95), round(h * 0.95)
    x, y = (int(v) for v in rng.integers(0, (w - cw + 1, h - ch + 1)))
    return im.crop((x, y, x + cw, y + ch))


KINDS: dict[str, Any] = {
    "jpeg60": lambda im, rng: _jpeg(im, 60),
    "jpeg30": lambda im, rng: _jpeg(im, 30),
    "half": lambda im, rng: _jpeg(im.resize((im.width // 2, im.height // 2), Image.LANCZOS), 85),
    "px64": lambda im, rng: _jpeg(im.resize((64, 64), Image.Resampling.LANCZOS), 75),
    "crop5": lambda im, rng: _jpeg(_crop5(im, rng), 85),
    "mirror": lambda im, rng: _jpeg(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 85),
    "blur": lambda im, rng: _jpeg(im.filter(ImageFilter.GaussianBlur(1.5)), 85),
    "bright": lambda im, rng: _jpeg(ImageEnhance.Brightness(im).enhance(1.3), 85),
}


def statistic(root: Path, truth: Truth, seed: int) -> dict[str, Any]:
    """``peak`` of every composite and of whole-image copies of 40 sources, per kind."""
    from cleaner import pairs as P

    def peak(a: Image.Image, b: Image.Image) -> float:
        x, _ = P.image_of(a)
        y, size = P.image_of(b)
        return P.locality(P.align(x, y), size).peak

    def load(rel: str) -> Image.Image:
        return Image.open(root / rel).convert("RGB")

    rng = np.random.default_rng(seed)
    got = {"composite": [peak(load(a), load(b)) for a, b in truth.pairs]}
    sources = [load(a) for a, _ in truth.pairs[:40]]
    for kind, f in KINDS.items():
        got[kind] = [peak(s, f(s, rng)) for s in sources]
    out: dict[str, Any] = {"PEAK": P.PEAK, "PATCH": P.PATCH, "BLUR": P.BLUR}
    for kind, v in got.items():
        x = np.asarray(v)
        q = np.quantile(x, [0, 0.05, 0.5, 0.95, 1]).round(1).tolist()
        out[kind] = {"n": int(x.size), "min_q05_med_q95_max": q,
                     "at_or_above_PEAK": round(float((x >= P.PEAK).mean()), 3)}  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=Path, default=FACES)
    ap.add_argument("--composites", type=int, default=100)
    ap.add_argument("--copies", type=int, default=30, help="byte copies, and as many JPEG 60")
    ap.add_argument("--same", type=int, default=30)
    ap.add_argument("--others", type=int, default=300, help="faces140k fakes, alone")
    ap.add_argument("--donors", type=int, default=200, help="reals the pasted parts come from")
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--side", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="folder for the set (default: temp)")
    ap.add_argument("--statistic", action="store_true", help="measure peak per kind, no dedupe")
    args = ap.parse_args()
    if not (args.faces / "real").is_dir():
        sys.exit(f"faces140k not found at {args.faces}; pass --faces")
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        root = Path(tmp) / "data"
        truth = make(root, args.faces, args)
        head = {k: v for k, v in vars(args).items() if k not in ("faces", "work")}
        if args.statistic:
            stat = statistic(root, truth, args.seed)
            print(json.dumps({"bench": "pairs-statistic", **head, **stat}))
            return
        t0 = time.perf_counter()
        run = subprocess.run(
            [CLEANER, "dedupe", "--root", str(root), "--apply", "--json"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        if run.returncode != 0:
            sys.exit(f"cleaner dedupe failed ({run.returncode}): {run.stderr.strip()[-500:]}")
        summary = json.loads(run.stdout.strip().splitlines()[-1])
        out = {"bench": "pairs", **head}
        out.update(score(root, truth, summary), seconds=round(seconds, 1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
