"""End to end in a real headless chromium: upload and read the answer, accept a move and see it
moved and journaled, open the report with no console error and every thumbnail loaded.

Skipped with the reason when chromium, chromium-driver or selenium is missing (.ci/run installs
them: `apt-get install -y chromium chromium-driver`).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from cleaner.hashing import file_sha256
from cleaner.journal import list_runs
from cleaner.report import SECTIONS, build_report
from cleaner.web import create_app
from tests.browser_helpers import chromium, console_errors, missing_reason, serve_in_thread
from tests.report_helpers import make_state_dataset, write_image
from tests.test_serve import redness

_why = missing_reason()
pytestmark = pytest.mark.skipif(_why is not None, reason=f"no headless browser: {_why}")


def _wait(fn: Callable[[], Any], timeout: float = 15.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > end:
            return v
        time.sleep(0.1)


def _images_loaded(d: Any) -> list[list[Any]]:
    return list(
        d.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete,"
            " i.naturalWidth]);"
        )
    )


def test_browser_upload_review_and_report(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    ds = make_state_dataset(tmp_path)
    report = tmp_path / "out" / "report.html"
    build_report(ds.root, report, model_metrics=ds.metrics, page_size=1, progress=False)
    upload = write_image(tmp_path / "upload me.jpg", seed=77, size=64)
    want = redness(Image.open(io.BytesIO(upload.read_bytes())).convert("RGB"))
    app = create_app(ds.root, predictor=redness)
    with serve_in_thread(app) as url, chromium() as d:
        # upload an image and read the answer
        d.get(url + "/")
        d.find_element(By.ID, "image").send_keys(str(upload))
        d.find_element(By.ID, "submit").click()
        result = _wait(lambda: d.find_elements(By.ID, "result"))
        assert result, d.page_source[:2000]
        box = result[0]
        assert float(box.get_attribute("data-prob-fake")) == pytest.approx(want, abs=1e-5)
        assert float(box.get_attribute("data-prob-real")) == pytest.approx(1 - want, abs=1e-5)
        verdict = d.find_element(By.ID, "verdict").text.strip()
        assert verdict == ("fake" if want >= 0.5 else "real")
        assert d.find_element(By.ID, "prob-fake").text == f"{100 * want:.1f}%"
        preview = d.find_element(By.CSS_SELECTOR, "#result img.preview")
        assert d.execute_script("return arguments[0].naturalWidth;", preview) == 64
        assert console_errors(d) == []
        # a non-image upload gets a clear message
        junk = tmp_path / "notes.jpg"
        junk.write_text("not a picture")
        d.find_element(By.ID, "image").send_keys(str(junk))
        d.find_element(By.ID, "submit").click()
        err = _wait(lambda: d.find_elements(By.ID, "error"))
        assert err and "notes.jpg is not an image" in err[0].text
        console_errors(d)  # the 400 answer itself is logged as a failed load: not a page error

        # the review queue: thumbnails load, accept a move, see it moved and journaled
        d.get(url + "/review")
        assert _wait(lambda: all(c and w > 0 for _, c, w in _images_loaded(d)))
        src = ds.root / "real_images" / "r2.jpg"
        sha = file_sha256(src)
        d.find_element(By.CSS_SELECTOR, "#item-m0 button.accept").click()
        flash = _wait(lambda: d.find_elements(By.CSS_SELECTOR, ".flash"))
        assert flash and "moved real_images/r2.jpg -> fake_images/r2.jpg" in flash[0].text
        moved = ds.root / "fake_images" / "r2.jpg"
        assert not src.exists() and moved.exists() and file_sha256(moved) == sha
        runs = [r for r in list_runs(ds.root) if r.kind == "apply"]
        assert len(runs) == 1 and runs[0].moved == 1 and runs[0].finished
        decisions = json.loads((ds.root / ".cleaner" / "review" / f"{ds.plan_id}.json").read_text())
        assert decisions["items"]["m0"]["journal_run"] == runs[0].run_id
        assert not d.find_elements(By.CSS_SELECTOR, "#item-m0")  # decided: out of the queue
        assert console_errors(d) == []

        # the report: every section, no console error, every thumbnail loaded, paging works
        d.get(report.as_uri())
        ids = set(d.execute_script("return Array.from(document.querySelectorAll('section'))"
                                   ".map(s => s.id);"))  # fmt: skip
        assert ids >= {sid for sid, _ in SECTIONS}
        for img in d.find_elements(By.TAG_NAME, "img"):  # lazy: each loads once scrolled to
            d.execute_script("arguments[0].scrollIntoView();", img)
            _wait(lambda img=img: img.get_attribute("complete") == "true", timeout=5)
        assert _wait(lambda: all(c for _, c, _ in _images_loaded(d)))
        imgs = _images_loaded(d)
        assert len(imgs) >= 8 and all(w > 0 for _, _, w in imgs), imgs
        cards = d.find_elements(By.CSS_SELECTOR, "#moves .card")
        assert len(cards) == 1 and cards[0].get_attribute("data-id") == "m0"
        d.execute_script("document.querySelector('#moves .pager button:last-of-type').click();")
        assert _wait(
            lambda: [c.get_attribute("data-id") for c in
                     d.find_elements(By.CSS_SELECTOR, "#moves .card")] == ["m1"]
        )  # fmt: skip
        box = d.find_element(By.CSS_SELECTOR, "#moves .pager input")
        box.send_keys("f3.png")  # the filter narrows the list to the matching card
        assert _wait(
            lambda: [c.get_attribute("data-id") for c in
                     d.find_elements(By.CSS_SELECTOR, "#moves .card")] == ["m1"]
        )  # fmt: skip
        assert "1 items" in d.find_element(By.CSS_SELECTOR, "#moves .pager span").text
        assert console_errors(d) == []
