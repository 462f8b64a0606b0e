"""Write docs/screenshots/{report,serve,review}.png from the demo dataset with headless chromium.

    .venv/bin/python docs/make_screenshots.py            # a few minutes on 2 cores
    .venv/bin/python docs/make_screenshots.py --fast     # spectrum only, tiny training
    .venv/bin/python docs/make_screenshots.py --check data/demo/.cleaner/report.html

It runs the real chain on a fresh `cleaner demo` in a temporary folder (never under the
repository): scan, out-of-fold predictions from two backbones, dedupe (when built), a dry-run
separate (so the review queue has moves to accept), a small training, `cleaner report`; then
`cleaner serve`'s app on 127.0.0.1 with that model: an upload of one demo image and the review
queue. Needs chromium and chromium-driver (`apt-get install chromium chromium-driver`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser_helpers import (  # noqa: E402
    chromium,
    console_errors,
    missing_reason,
    serve_in_thread,
)

CLEANER = [sys.executable, "-m", "cleaner"]
OUT = REPO / "docs" / "screenshots"


def run(*args: str, ok_codes: tuple[int, ...] = (0,)) -> int:
    """Run a cleaner command, echo it, and return its exit code (refuse unexpected ones)."""
    print("$ cleaner", " ".join(args), flush=True)
    rc = subprocess.run([*CLEANER, *args], cwd=REPO).returncode
    if rc not in ok_codes:
        raise SystemExit(f"cleaner {args[0]} failed with exit code {rc}")
    return rc


def shrink(png: Path, width: int = 1100) -> None:
    """Resize to ``width`` and quantise to 256 colours: a small file that still reads well."""
    from PIL import Image

    im = Image.open(png).convert("RGB")
    if im.width > width:
        im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
    im.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)


def work_png(driver: object, name: str, element: object | None = None) -> Path:
    """A screenshot of the viewport (or of one element) in a temp file."""
    p = Path(tempfile.mkdtemp(prefix="cleaner-shot-")) / f"{name}.png"
    if element is not None:
        element.screenshot(str(p))  # type: ignore[attr-defined]
    else:
        driver.save_screenshot(str(p))  # type: ignore[attr-defined]
    return p


def stitch(parts: list[Path], out: Path, heights: tuple[int, ...]) -> None:
    """Stack the tops of several screenshots (each cut to its height) into one picture."""
    from PIL import Image

    ims = [Image.open(p).convert("RGB") for p in parts]
    ims = [im.crop((0, 0, im.width, min(im.height, h))) for im, h in zip(ims, heights, strict=True)]
    width = max(im.width for im in ims)
    canvas = Image.new("RGB", (width, sum(im.height for im in ims) + 8 * (len(ims) - 1)), "#f6f7f9")
    y = 0
    for im in ims:
        canvas.paste(im, (0, y))
        y += im.height + 8
    canvas.save(out)
    for p in parts:
        shutil.rmtree(p.parent, ignore_errors=True)


def build(work: Path, fast: bool) -> tuple[Path, Path, Path]:
    demo, preds, models = work / "demo", work / "preds", work / "models"
    run("demo", str(demo), "--seed", "0")
    run("scan", "--root", str(demo))
    dedupe = run("dedupe", "--root", str(demo), ok_codes=(0, 1, 2))
    files = [str(preds / "spectrum.json")]
    run("predict", "--root", str(demo), "--backbone", "spectrum", "--folds", "5",
        "--out", files[0])  # fmt: skip
    if not fast:
        files.append(str(preds / "lite0.json"))
        run("predict", "--root", str(demo), "--backbone", "efficientnet-lite0", "--folds", "5",
            "--out", files[1])  # fmt: skip
    run("separate", "--root", str(demo), "--predictions", *files, ok_codes=(0, 1))
    model = models / "M.keras"
    train = ["train", "--root", str(demo), "--out", str(model), "--seed", "0"]
    if fast:
        train += ["--backbone", "simple-cnn", "--weights", "none", "--image-size", "32",
                  "--epochs", "2"]  # fmt: skip
    else:
        train += ["--backbone", "efficientnet-lite0", "--image-size", "128", "--epochs", "2"]
    run(*train)
    if dedupe != 0:
        print("(cleaner dedupe failed: the duplicates section names the command to run)")
    report = work / "report" / "report.html"
    run("report", "--root", str(demo), "--out", str(report),
        "--model-metrics", str(model.with_name("M.metrics.json")))  # fmt: skip
    return demo, model, report


def check_page(d: Any, report: Path) -> None:
    """Open a report in chromium: every section present, every image on the first pages loads
    (scrolled to, as they are lazy), no console error, every thumbnail URL a local file."""
    import json
    import re

    from selenium.webdriver.common.by import By

    from cleaner.report import SECTIONS

    d.get(report.resolve().as_uri())
    imgs = d.find_elements(By.TAG_NAME, "img")
    for img in imgs:
        d.execute_script("arguments[0].scrollIntoView();", img)
    time.sleep(1.0)
    broken = d.execute_script(
        "return Array.from(document.images).filter(i => !i.complete || !i.naturalWidth)"
        ".map(i => i.getAttribute('src'));"
    )
    errors = console_errors(d)
    ids = set(d.execute_script("return Array.from(document.querySelectorAll('section'))"
                               ".map(s => s.id);"))  # fmt: skip
    missing = [sid for sid, _ in SECTIONS if sid not in ids]
    html = report.read_text(encoding="utf-8")
    thumbs = []
    for blob in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S):
        for it in json.loads(blob):
            thumbs += [it["thumb"]] if "thumb" in it else []
            thumbs += [m["thumb"] for m in it.get("members", []) if "thumb" in m]
    absent = [t for t in thumbs if not (report.parent / t).is_file()]
    print(f"report: {len(ids)} sections ({len(missing)} missing), {len(imgs)} images on first "
          f"pages ({len(broken)} not loaded), {len(thumbs)} thumbnails in the data "
          f"({len(absent)} not local files), {len(errors)} console errors")  # fmt: skip
    if missing or broken or errors or absent:
        raise SystemExit(
            f"the report has problems: {missing} {broken[:5]} {errors[:5]} {absent[:5]}"
        )


def shoot(demo: Path, model: Path, report: Path) -> None:
    from selenium.webdriver.common.by import By

    from cleaner.web import create_app

    OUT.mkdir(parents=True, exist_ok=True)
    upload = next(iter(sorted((demo / "fake_images").glob("*.png"))), None)
    with chromium(1280, 1250) as d:
        check_page(d, report)
        d.execute_script("window.scrollTo(0, 0);")
        time.sleep(0.5)
        parts = [work_png(d, "top")]
        d.execute_script("document.querySelector('nav').style.position = 'static';")
        for sid in ("duplicates", "training"):
            el = d.find_element(By.ID, sid)
            d.execute_script("arguments[0].scrollIntoView();", el)
            time.sleep(0.3)
            parts.append(work_png(d, sid, el))
        stitch(parts, OUT / "report.png", heights=(1250, 620, 700))
        app = create_app(demo, model_path=model)
        with serve_in_thread(app) as url:
            if upload is not None:
                d.set_window_size(1000, 560)
                d.get(url + "/")
                d.find_element(By.ID, "image").send_keys(str(upload))
                d.find_element(By.ID, "submit").click()
                for _ in range(600):
                    if d.find_elements(By.ID, "result") or d.find_elements(By.ID, "error"):
                        break
                    time.sleep(0.1)
                d.save_screenshot(str(OUT / "serve.png"))
            d.set_window_size(1280, 900)
            d.get(url + "/review")
            time.sleep(1.0)
            d.save_screenshot(str(OUT / "review.png"))
    for p in sorted(OUT.glob("*.png")):
        shrink(p)
        print(f"wrote {p.relative_to(REPO)} ({p.stat().st_size // 1024} KiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fast", action="store_true", help="one backbone, a tiny CNN: about 1 min")
    ap.add_argument("--keep", type=Path, help="build in this folder and keep it")
    ap.add_argument("--reuse", type=Path, help="a folder kept by --keep: only take the pictures")
    ap.add_argument(
        "--check",
        type=Path,
        metavar="REPORT.html",
        help="only check a report page in chromium (sections, images, console)",
    )
    args = ap.parse_args()
    if args.check:
        with chromium() as d:
            check_page(d, args.check)
        return
    why = missing_reason()
    if why:
        raise SystemExit(f"cannot take screenshots: {why}")
    if args.reuse:
        r = args.reuse
        model = r / "models" / "M.keras"
        run("report", "--root", str(r / "demo"), "--out", str(r / "report" / "report.html"),
            "--model-metrics", str(model.with_name("M.metrics.json")))  # fmt: skip
        shoot(r / "demo", model, r / "report" / "report.html")
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="cleaner-shots-"))
    if args.keep and args.keep.exists():
        shutil.rmtree(args.keep)
    try:
        shoot(*build(work, args.fast))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
