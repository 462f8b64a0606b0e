"""Memory of ``cleaner serve`` under many large uploads at once (issue #26): N threads each post
a W x W PNG to ``/predict`` through Flask's test client (the app's own code path, in one
process, as the threaded server runs it). Memory is the growth of the child's peak RSS
(``ru_maxrss``) over the burst; with a decode budget (``cleaner.web.budget``) its peak
reservation is printed too.

    .venv/bin/python bench/bench_serve_concurrent.py [--uploads 40] [--side 4000]
    .venv/bin/python bench/bench_serve_concurrent.py --code OTHER_CHECKOUT   # its peer

Each code directory runs in a fresh child process. Prints one JSON line per code directory and
a last one with the ratio of the first to the second.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import io, json, resource, sys, tempfile, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from cleaner.web import create_app
data = Path(sys.argv[2]).read_bytes()
n = int(sys.argv[3])
d = tempfile.mkdtemp(); (Path(d) / "real_images").mkdir()
app = create_app(d, predictor=lambda im: 0.5)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
codes = []
def upload():
    r = app.test_client().post("/predict?format=json", data={"image": (io.BytesIO(data), "x.png")})
    codes.append(r.status_code)
t0 = time.perf_counter()
ts = [threading.Thread(target=upload) for _ in range(n)]
for t in ts: t.start()
for t in ts: t.join()
budget = app.extensions["cleaner"].get("decode_budget")
print(json.dumps({"code": sys.argv[1], "uploads": n, "ok": codes.count(200),
    "seconds": round(time.perf_counter() - t0, 2),
    "rss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024),
    "budget_mb": round(budget.total / 2**20) if budget else None,
    "budget_peak_mb": round(budget.peak / 2**20) if budget else None}))
"""


def upload_png(side: int) -> bytes:
    """A photo-like ``side`` x ``side`` RGB PNG: smooth blocks with noise, a few MB."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (side // 16, side // 16, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((side, side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--uploads", type=int, default=40)
    ap.add_argument("--side", type=int, default=4000)
    ap.add_argument("--code", nargs="*", default=[], help="other checkouts to compare")
    a = ap.parse_args()
    data = upload_png(a.side)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "up.png"
        p.write_bytes(data)
        for code in [str(ROOT), *a.code]:
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, code, str(p), str(a.uploads)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["png_mb"] = round(len(data) / 2**20, 2)
            rows.append(row)
            print(json.dumps(row))
    if len(rows) > 1 and rows[1]["rss_growth_mb"]:
        ratio = rows[0]["rss_growth_mb"] / rows[1]["rss_growth_mb"]
        print(json.dumps({"ratio_rss_growth_this_vs_peer": round(ratio, 3)}))


if __name__ == "__main__":
    main()
