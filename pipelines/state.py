"""Helpers the pipeline recipes (pipelines/*.mk) call: content stamps and the demo's test folder.

Make decides by timestamps; these make a timestamp move only when content changed:

    python pipelines/state.py digest ROOT STAMP      # STAMP <- digest of ROOT's manifest
    python pipelines/state.py params STAMP ARGS...   # STAMP <- the stage's parameters
    python pipelines/state.py unlabel DEMO_DIR OUT_DIR LABELS_JSON

``digest`` and ``params`` rewrite STAMP only when its content would change, so the stages that
depend on it re-run exactly when the images, their labels or the parameters changed.
``unlabel`` copies a demo dataset's good images to OUT_DIR as 1.png, 2.png, ... (what
``predict-dir`` expects) and writes their true labels to LABELS_JSON, outside OUT_DIR.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path


def write_if_changed(path: Path, text: str) -> bool:
    """Replace ``path`` with ``text`` unless it already holds exactly that; True if written."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def manifest_digest(root: Path) -> str:
    """sha256 over (path, label, sha256, status) of every manifest row: what the images are and
    where they sit, not when they were scanned."""
    h = hashlib.sha256()
    with open(root / ".cleaner" / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["path"])
    for r in rows:
        h.update(f"{r['path']}\t{r['label']}\t{r['sha256']}\t{r['status']}\n".encode())
    return h.hexdigest()


def unlabel(demo_dir: Path, out_dir: Path, labels_json: Path) -> int:
    truth = json.loads((demo_dir / "ground_truth.json").read_text(encoding="utf-8"))
    images = sorted(
        (e for e in truth.get("images", []) if e.get("role", "original") == "original"),
        key=lambda e: e["path"],
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    labels = []
    for i, e in enumerate(images, start=1):
        src = demo_dir / e["path"]
        name = f"{i}{src.suffix.lower()}"
        shutil.copyfile(src, out_dir / name)
        labels.append({"index": i, "image": name, "label": e["true_label"]})
    labels_json.write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
    return len(labels)


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "digest":
        changed = write_if_changed(Path(argv[2]), manifest_digest(Path(argv[1])) + "\n")
        print(f"dataset {'changed' if changed else 'unchanged'} ({argv[2]})")
        return 0
    if len(argv) >= 2 and argv[0] == "params":
        write_if_changed(Path(argv[1]), "\n".join(argv[2:]) + "\n")
        return 0
    if len(argv) == 4 and argv[0] == "unlabel":
        n = unlabel(Path(argv[1]), Path(argv[2]), Path(argv[3]))
        print(f"{n} unlabelled images in {argv[2]} (true labels in {argv[3]})")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
