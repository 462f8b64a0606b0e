"""A degraded copy of faces140k, as scraped data is: each face blurred, resized to 96 px and
saved as JPEG at a quality drawn from 30-50 (seeded), same folders and names.

    .venv/bin/python bench/degrade_faces.py OUT      # OUT/{real,fake}/*.jpg

Issue 25 (weak voters (b)): bench_label_errors.py --faces OUT plants flips in this copy.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_label_errors import FACES  # one place finds faces140k for the benches

SIZE = 96
QUALITY = (30, 50)
BLUR = 1.0
"""Gaussian radius in pixels of the 256-px original, before the resize."""


def degrade(src: Path, dst: Path, quality: int) -> None:
    with Image.open(src) as im:
        im = im.convert("RGB").filter(ImageFilter.GaussianBlur(BLUR))
        im = im.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        im.save(dst, "JPEG", quality=quality)


def main() -> None:
    out = Path(sys.argv[1])
    rng = random.Random(0)
    for cls in ("real", "fake"):
        (out / cls).mkdir(parents=True, exist_ok=True)
        for src in sorted((FACES / cls).glob("*.jpg")):
            degrade(src, out / cls / src.name, rng.randint(*QUALITY))
    print(out)


if __name__ == "__main__":
    main()
