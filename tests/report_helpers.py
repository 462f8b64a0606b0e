"""A small generated dataset with every state file the report and the review queue read
(manifest, plan, duplicates, split, quarantine, training metrics and plots), written in the
contract's formats. Used by tests/test_report.py, tests/test_serve.py and tests/test_browser.py.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cleaner.hashing import file_sha256


def write_image(path: Path, seed: int, size: int = 48, fmt: str = "JPEG") -> Path:
    """A seeded colour picture (distinct per seed)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    c = rng.uniform(0, 255, 3)
    arr = np.stack([(x * c[0] + y * c[1]) / size % 255, (x + y) * c[2] / (2 * size), x * 0 + c[0]])
    arr = np.clip(arr.transpose(1, 2, 0) + rng.normal(0, 8, (size, size, 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), "RGB").save(
        buf, fmt, **({"quality": 90} if fmt == "JPEG" else {})
    )
    path.write_bytes(buf.getvalue())
    return path


@dataclass
class StateDataset:
    root: Path
    metrics: Path
    sha: dict[str, str] = field(default_factory=dict)
    """ROOT-relative path -> sha256."""
    plan_id: str = "20261123T120000-test"
    moves: list[dict[str, object]] = field(default_factory=list)
    review: list[dict[str, object]] = field(default_factory=list)


def make_state_dataset(
    base: Path, *, with_state: bool = True, applied: bool = False
) -> StateDataset:
    """``base/root``: 6 real + 6 fake images, a near copy, a cross-class copy, a corrupt file and a
    text file; with ``with_state`` also a scan, a plan (2 moves, 1 review item), duplicates.json
    (one plain group, one conflict), split.csv (one group straddling train/test), audit.json, a
    quarantined file, and ``base/models/M.metrics.json`` with its two plots."""
    root = base / "root"
    for i in range(6):
        write_image(root / "real_images" / f"r{i}.jpg", seed=i)
        write_image(root / "fake_images" / f"f{i}.png", seed=100 + i, fmt="PNG")
    write_image(root / "real_images" / "sub" / "r0_copy.jpg", seed=0, size=40)
    write_image(root / "fake_images" / "f_dup_of_r1.jpg", seed=1)
    (root / "real_images" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    (root / "fake_images" / "notes.txt").write_text("not an image\n")
    metrics = base / "models" / "M.metrics.json"
    ds = StateDataset(root=root, metrics=metrics)
    for p in sorted(root.rglob("*")):
        if p.is_file():
            ds.sha[p.relative_to(root).as_posix()] = file_sha256(p)
    if not with_state:
        return ds

    from cleaner.manifest import scan

    scan(root, workers=1, progress=False)
    state = root / ".cleaner"
    files = ["preds/a.json", "preds/b.json"]

    def item(path: str, to: str, pa: float, pb: float, **extra: object) -> dict[str, object]:
        frm = "fake" if to == "real" else "real"
        dst = path.replace(f"{frm}_images", f"{to}_images", 1)
        return {"path": path, "sha256": ds.sha[path], "from_label": frm, "to_label": to,
                "dst": dst, "evidence": [{"file": files[0], "prob_fake": pa},
                                         {"file": files[1], "prob_fake": pb}], **extra}  # fmt: skip

    ds.moves = [item("real_images/r2.jpg", "fake", 0.97, 0.93),
                item("fake_images/f3.png", "real", 0.04, 0.08)]  # fmt: skip
    ds.review = [item("real_images/r4.jpg", "fake", 0.95, 0.12, why="the files disagree")]
    plan = {"format": "cleaner.plan.v1", "run_id": ds.plan_id, "created": "2026-11-23T12:00:00Z",
            "rule": "unanimous", "min_confidence": 0.9, "prediction_files": files,
            "moves": ds.moves, "review": ds.review, "applied": applied}  # fmt: skip
    (state / "plans").mkdir(parents=True, exist_ok=True)
    (state / "plans" / f"{ds.plan_id}.json").write_text(json.dumps(plan, indent=1))

    def member(path: str, distance: int) -> dict[str, object]:
        label = "real" if path.startswith("real") else "fake"
        return {"path": path, "label": label, "sha256": ds.sha[path], "distance": distance}

    dup = {"method": "phash", "max_distance": 8, "groups": [
        {"kept": "real_images/r0.jpg", "conflict": False,
         "members": [member("real_images/r0.jpg", 0), member("real_images/sub/r0_copy.jpg", 2)]},
        {"kept": "real_images/r1.jpg", "conflict": True,
         "members": [member("real_images/r1.jpg", 0), member("fake_images/f_dup_of_r1.jpg", 0)]},
    ]}  # fmt: skip
    (state / "duplicates.json").write_text(json.dumps(dup, indent=1))
    rows = ["path,sha256,label,split,group"]
    for i, (path, sha) in enumerate(sorted(ds.sha.items())):
        split = "test" if path == "real_images/sub/r0_copy.jpg" else ("train" if i % 3 else "val")
        rows.append(f"{path},{sha},{'real' if path.startswith('real') else 'fake'},{split},{i}")
    (state / "split.csv").write_text("\n".join(rows) + "\n")
    from cleaner.audit import run_audit

    run_audit(root, workers=1, progress=False)  # the "Shortcuts and provenance" section
    write_image(root / "quarantine" / "duplicates" / "real_images" / "old_copy.jpg", seed=5)
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps({
        "accuracy": 0.9, "precision": 0.875, "recall": 0.93, "f1": 0.9, "roc_auc": 0.95,
        "confusion_matrix": [[9, 1], [1, 9]], "classes": ["real", "fake"],
        "classification_report": "real 0.90\nfake 0.90", "epochs": 3, "backbone": "simple-cnn",
        "image_size": 32, "crop": "resize", "versions": {"keras": "3"},
    }))  # fmt: skip
    for name, colour in (("confusion", (200, 30, 30)), ("roc", (30, 30, 200))):
        Image.new("RGB", (64, 48), colour).save(metrics.parent / f"M.{name}.png")
    return ds
