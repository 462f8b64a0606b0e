"""Moves per second of cleaner's journaled mover against the original scripts' shutil.move loop.

Both move the same N small files from real_images/ to fake_images/ (a sub-folder every 10th
file) in identical fresh trees under a temp folder. cleaner's figure includes everything the
crash guarantees cost: the ROOT lock, sha256 of every file (recorded in the journal, checked
against the plan), intents fsync'd before each batch of moves, no-clobber renameat2, folder
fsyncs, 'done' records fsync'd. The undo of the same run is timed too.

    .venv/bin/python bench/bench_moves.py            # N = 5,000 (make bench)
    .venv/bin/python bench/bench_moves.py --full     # N = 100,000 (the issue's figure)
    CLEANER_BENCH_FULL=1 .venv/bin/python bench/bench_moves.py

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cleaner.journal import Move, apply_moves, undo


def make_tree(root: Path, n: int, size: int) -> list[str]:
    """n files of ``size`` bytes (distinct contents) under real_images/; returns their paths."""
    rels: list[str] = []
    pad = b"\0" * max(0, size - 16)
    for i in range(n):
        sub = f"s{i % 100}/" if i % 10 == 0 else ""
        rel = f"real_images/{sub}img_{i:06d}.jpg"
        p = root / rel
        if sub:
            p.parent.mkdir(parents=True, exist_ok=True)
        else:
            (root / "real_images").mkdir(parents=True, exist_ok=True)
        p.write_bytes(i.to_bytes(16, "little") + pad)
        rels.append(rel)
    (root / "fake_images").mkdir(exist_ok=True)
    return rels


def dst_of(rel: str) -> str:
    return "fake_images/" + rel.split("/", 1)[1]


def bench(n: int, size: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="cleaner-bench-moves-") as d:
        ours_root, peer_root = Path(d) / "ours", Path(d) / "peer"
        rels = make_tree(ours_root, n, size)
        make_tree(peer_root, n, size)
        moves = [Move(r, dst_of(r)) for r in rels]

        t0 = time.perf_counter()
        run = apply_moves(ours_root, moves, command="bench", progress=False)
        ours_s = time.perf_counter() - t0
        assert len(run.moved) == n, run.skipped[:3]

        t0 = time.perf_counter()
        res = undo(ours_root, run.run_id, progress=False)
        undo_s = time.perf_counter() - t0
        assert len(res.restored) == n and not res.left

        t0 = time.perf_counter()
        for r in rels:  # the original scripts: no record, no way back, overwrites silently
            dst = peer_root / dst_of(r)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(peer_root / r), str(dst))
        peer_s = time.perf_counter() - t0

        ours_rate, peer_rate = n / ours_s, n / peer_s
        return {
            "bench": "moves",
            "n": n,
            "file_bytes": size,
            "cleaner_moves_per_s": round(ours_rate, 1),
            "cleaner_undo_moves_per_s": round(n / undo_s, 1),
            "shutil_move_per_s": round(peer_rate, 1),
            "ratio_cleaner_vs_shutil": round(ours_rate / peer_rate, 3),
            "goal_moves_per_s": 2000,
            "meets_goal": ours_rate >= 2000,
            "journal_bytes": sum(
                p.stat().st_size for p in (ours_root / ".cleaner").rglob("*.jsonl")
            ),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="100,000 files (default 5,000)")
    ap.add_argument("-n", type=int, default=None, help="number of files")
    ap.add_argument("--size", type=int, default=2048, help="bytes per file (default 2048)")
    a = ap.parse_args()
    full = a.full or os.environ.get("CLEANER_BENCH_FULL") == "1"
    n = a.n or (100_000 if full else 5_000)
    print(json.dumps(bench(n, a.size)), flush=True)


if __name__ == "__main__":
    main()
