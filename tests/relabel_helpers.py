"""Fixtures of the relabeling area: trees of tiny unique PNGs, snapshots, predictions files."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from cleaner.predictions import write_predictions_v1


def png_bytes(seed: int, size: int = 8) -> bytes:
    """A tiny PNG whose pixels encode ``seed``: every seed gives different bytes."""
    raw = hashlib.sha256(str(seed).encode()).digest() * ((size * size * 3) // 32 + 1)
    im = Image.frombytes("RGB", (size, size), raw[: size * size * 3])
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def make_tree(
    root: Path, n_real: int, n_fake: int, *, sub_every: int = 5, seed0: int = 0
) -> dict[str, str]:
    """``root/real_images`` and ``root/fake_images`` with tiny PNGs (every ``sub_every``-th one
    in a sub-folder, to check that moves keep it); returns path -> label."""
    labels: dict[str, str] = {}
    k = seed0
    for label, folder, n in (("real", "real_images", n_real), ("fake", "fake_images", n_fake)):
        for i in range(n):
            sub = f"sub{i % 3}/" if sub_every and i % sub_every == 0 else ""
            rel = f"{folder}/{sub}{label}_{i:05d}.png"
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(png_bytes(k))
            k += 1
            labels[rel] = label
    return labels


def snapshot(root: Path) -> dict[str, str]:
    """ROOT-relative path -> sha256 of every file outside ``.cleaner/`` (symlinks by target)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir.parts[:1] == (".cleaner",):
            dirnames[:] = []
            continue
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                out[(rel_dir / name).as_posix()] = "symlink:" + os.readlink(p)
                continue
            out[(rel_dir / name).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def contents(root: Path) -> Counter[str]:
    """The multiset of file contents under ROOT (what no move may ever change)."""
    return Counter(snapshot(root).values())


def bytes_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ROOT, ``.cleaner/`` excluded, with its bytes (for byte-identity)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".cleaner" not in p.relative_to(root).parts
    }


def sha_of(root: Path, rel: str) -> str:
    return hashlib.sha256((root / rel).read_bytes()).hexdigest()


def write_v1(
    path: Path,
    root: Path,
    probs: Mapping[str, float],
    labels: Mapping[str, str],
    *,
    out_of_fold: bool = True,
    name: str = "m",
    planted: Mapping[str, float] | None = None,
) -> Path:
    """A cleaner.predictions.v1 file for ``probs`` (path -> prob_fake); with ``planted``
    (path -> prob_fake), a planted run as ``cleaner predict`` writes one: each entry's
    ``planted_prob_fake``, and ``planted: true`` on the images its planted run swaps
    (:func:`cleaner.models.planted.planted_mask`)."""
    from cleaner.models.planted import planted_mask

    entries: list[dict[str, Any]] = [
        {"path": p, "sha256": sha_of(root, p), "label": labels[p], "prob_fake": v}
        for p, v in probs.items()
    ]
    if planted is not None:
        swap = planted_mask([e["label"] == "fake" for e in entries], [e["sha256"] for e in entries])
        for e, sw in zip(entries, swap, strict=True):
            e["planted_prob_fake"] = planted[e["path"]]
            if sw:
                e["planted"] = True
    return write_predictions_v1(
        path, model={"name": name, "backbone": "test"}, entries=entries, out_of_fold=out_of_fold
    )


def acceptance_probs(
    labels: Mapping[str, str], *, flips: int = 20, coins: int = 20, model: int = 0
) -> tuple[dict[str, float], set[str]]:
    """Probabilities of one model: right and confident on most images, confidently the other
    class on ``flips`` images per class, 0.55 fake on ``coins`` more per class. Returns the
    probabilities and the set of flipped paths (the true label errors)."""
    probs: dict[str, float] = {}
    flipped: set[str] = set()
    by_label: dict[str, list[str]] = {"real": [], "fake": []}
    for p in sorted(labels):
        by_label[labels[p]].append(p)
    for label, paths in by_label.items():
        for i, p in enumerate(paths):
            wiggle = 0.01 * ((i + model) % 4)
            if i < flips:
                probs[p] = 0.97 - wiggle if label == "real" else 0.03 + wiggle
                flipped.add(p)
            elif i < flips + coins:
                probs[p] = 0.55
            else:
                probs[p] = 0.04 + wiggle if label == "real" else 0.96 - wiggle
    return probs, flipped


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path
