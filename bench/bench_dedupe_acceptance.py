"""The issue's acceptance run on a copy of faces140k, end to end through the CLI, beside
imagededup on the same folder.

All 2,200 faces go to ``real_images/`` and ``fake_images/`` in a temp folder outside the
repository; ``--planted`` of them (seeded) get a copy each, in turn: a byte copy, a half-size
copy, a JPEG quality-40 copy, a copy in the other class. Then ``cleaner dedupe`` (first run,
scan included), ``--apply``, a rerun, ``cleaner undo``, and the checks: every planted copy
grouped with its original, conflicts exactly the cross-class groups, the rerun finds nothing,
undo restores the tree (sha256 of every file). Groups not made by a planted copy are printed:
faces140k holds a few near-identical StyleGAN faces of its own. imagededup (pHash, radius 10,
``recursive=True``) on the same tree: planted pairs found and other pairs reported. One JSON
line.

    .venv/bin/python bench/bench_dedupe_acceptance.py               # 400 planted copies
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _imagededup

FACES = Path(
    os.environ.get(
        "FACES140K", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces140k"
    )
)
CLEANER = str(Path(sys.executable).parent / "cleaner")
KINDS = ("bytes", "half", "q40", "cross")


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".cleaner" not in p.relative_to(root).parts
    }


def cli(*args: str) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    out = subprocess.run([CLEANER, *args, "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1]), time.perf_counter() - t0


def plant(root: Path, n: int, seed: int) -> list[tuple[str, str, str]]:
    for cls, folder in (("real", "real_images"), ("fake", "fake_images")):
        (root / folder).mkdir(parents=True)
        for f in sorted((FACES / cls).glob("*.jpg")):
            shutil.copy(f, root / folder / f.name)
    files = sorted((root / "real_images").glob("*.jpg")) + sorted(
        (root / "fake_images").glob("*.jpg")
    )
    truth = []
    for k, f in enumerate(random.Random(seed).sample(files, n)):
        kind = KINDS[k % 4]
        dst = f.parent / f"{kind}_{f.name}"
        if kind == "bytes":
            shutil.copy(f, dst)
        elif kind == "half":
            im = Image.open(f)
            im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS).save(
                dst, quality=90
            )
        elif kind == "q40":
            Image.open(f).save(dst, quality=40)
        else:
            other = "fake_images" if f.parent.name == "real_images" else "real_images"
            dst = root / other / f"{kind}_{f.name}"
            shutil.copy(f, dst)
        truth.append((f.relative_to(root).as_posix(), dst.relative_to(root).as_posix(), kind))
    return truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--planted", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if not FACES.is_dir():
        print(json.dumps({"bench": "dedupe_acceptance", "skipped": f"{FACES} not found"}))
        return
    with tempfile.TemporaryDirectory(prefix="cleaner-bench-acc-") as tmp:
        root = Path(tmp) / "faces"
        truth = plant(root, args.planted, args.seed)
        before = tree(root)
        first, t_first = cli("dedupe", "--root", str(root))
        doc = json.loads((root / ".cleaner/duplicates.json").read_text())
        groups = [{m["path"] for m in g["members"]} for g in doc["groups"]]
        pairs = [{a, b} for a, b, _ in truth]
        missed = [t for t, p in zip(truth, pairs, strict=True) if not any(p <= g for g in groups)]
        cross = [p for t, p in zip(truth, pairs, strict=True) if t[2] == "cross"]
        conflicts_ok = all(
            g["conflict"] == any(p <= {m["path"] for m in g["members"]} for p in cross)
            for g in doc["groups"]
        )
        unplanted = [
            sorted(g - {b for _, b, _ in truth})
            for g in groups
            if len(g - {b for _, b, _ in truth}) > 1
        ]
        # the planted copies are ~12 % of a class: over the default guard (--max-fraction 0.1)
        applied, t_apply = cli("dedupe", "--root", str(root), "--apply", "--max-fraction", "0.5")
        rerun, t_rerun = cli("dedupe", "--root", str(root))
        undo = subprocess.run([CLEANER, "undo", "--root", str(root)], capture_output=True)
        restored = undo.returncode == 0 and tree(root) == before
        peer: dict[str, Any] | str = "not installed (see bench/_imagededup.py)"
        mod = _imagededup.load()
        if mod is not None:
            t0 = time.perf_counter()
            ph = mod.PHash(verbose=False)
            enc = ph.encode_images(image_dir=str(root), recursive=True)
            dups = ph.find_duplicates(encoding_map=enc, max_distance_threshold=10)
            found = {frozenset((a, b)) for a, bs in dups.items() for b in bs}
            planted = {frozenset(p) for p in pairs}
            peer = {
                "seconds": round(time.perf_counter() - t0, 1),
                "planted_found": len(planted & found),
                "other_pairs": len(found - planted),
            }
    res = {
        "bench": "dedupe_acceptance",
        "files": first["files"],
        "planted": len(truth),
        "cleaner": {
            "first_run_s_incl_scan": round(t_first, 1),
            "planted_found": len(truth) - len(missed),
            "missed": missed,
            "groups": first["groups"],
            "conflicts": first["conflicts"],
            "conflicts_exactly_the_cross_class_copies": conflicts_ok,
            "groups_among_original_faces": unplanted,
            "apply_moved": applied["moved"],
            "apply_s": round(t_apply, 1),
            "rerun_groups": rerun["groups"],
            "rerun_hashed": rerun["hashed"],
            "rerun_s": round(t_rerun, 1),
            "undo_restores_tree": restored,
        },
        "imagededup": peer,
    }
    print(json.dumps(res))
    # a rerun finds only the label conflicts (never quarantined: review, not --apply)
    if missed or not conflicts_ok or rerun["groups"] != rerun["conflicts"] or not restored:
        sys.exit("acceptance failed")


if __name__ == "__main__":
    main()
