"""What one hostile upload costs ``cleaner serve``: memory and time, with the upload pixel budget
(``cleaner.images.upload_pixel_budget``) against the same bytes decoded without it (the path
``/predict`` took before issue #18: ``images.load_rgb`` under the 120 Mpx guard only).

The upload is a 14.6 KB 1-bit PNG of 10,950 x 10,950 pixels (just under 120 Mpx). Each variant
runs in a fresh child process; memory is the growth of its peak RSS (``ru_maxrss``) over the
request, time is the request's wall time.

    .venv/bin/python bench/bench_upload_cost.py

Prints one JSON line.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import io, json, resource, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from cleaner import images
from cleaner.web import create_app
data = Path(sys.argv[2]).read_bytes()
d = tempfile.mkdtemp(); (Path(d) / "real_images").mkdir()
app = create_app(d, predictor=lambda im: 0.5)
c = app.test_client()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if sys.argv[3] == "budget":
    r = c.post("/predict?format=json", data={"image": (io.BytesIO(data), "b.png")})
    status = r.status_code
else:
    images.load_rgb(data)
    status = 200
print(json.dumps({"status": status, "seconds": round(time.perf_counter() - t0, 3),
    "rss_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)}))
"""


def bomb_png(side: int) -> bytes:
    """A 1-bit PNG of ``side`` x ``side`` zero pixels: a few KB that decode to side^2 pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + kind + body + crc

    raw = zlib.compress((b"\x00" * (1 + (side + 7) // 8)) * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def run(path: Path, variant: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ROOT), str(path), variant],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bomb.png"
        data = bomb_png(10_950)
        path.write_bytes(data)
        budget = run(path, "budget")
        full = run(path, "unbudgeted")
    print(
        json.dumps(
            {
                "bench": "upload_cost",
                "upload_bytes": len(data),
                "pixels": 10_950 * 10_950,
                "budget_status": budget["status"],
                "budget_seconds": budget["seconds"],
                "budget_rss_mb": budget["rss_mb"],
                "unbudgeted_seconds": full["seconds"],
                "unbudgeted_rss_mb": full["rss_mb"],
                "ratio_seconds_budget_vs_unbudgeted": round(
                    budget["seconds"] / max(full["seconds"], 1e-9), 4
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
