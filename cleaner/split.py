"""The train/val/test split of ``cleaner train`` (no TensorFlow): stratified by label, every
near-duplicate group of ``R/.cleaner/duplicates.json`` (and every set of byte-identical files)
on one side, kept across runs in ``R/.cleaner/split.csv`` (:mod:`cleaner.state.split`; a file
keeps its split, matched by sha256, so files that were moved or relabelled stay where they
were)."""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cleaner.dataset import LABELS, Workspace
from cleaner.errors import CleanerError
from cleaner.state import WsLike, duplicates
from cleaner.state import split as split_file
from cleaner.state.split import SPLITS, SplitRow

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def read_split(ws: WsLike) -> list[SplitRow]:
    """The rows of ``split.csv`` (CleanerError when missing)."""
    rows = split_file.read(ws, fix="rerun cleaner train")
    if rows is None:
        raise CleanerError(f"{split_file.path(ws)} does not exist; run cleaner train first")
    return rows


def duplicate_groups(ws: WsLike) -> list[set[str]]:
    """The sha256 sets of ``R/.cleaner/duplicates.json``'s groups (empty when absent)."""
    return [{s for _, s in g if s} for g in duplicates.member_keys(ws)]


def group_ids(samples: Sequence[Sample], dup_groups: Iterable[set[str]]) -> dict[str, str]:
    """sha256 -> group id: byte-identical files and each duplicate group share one id (the
    first 16 hex digits of the smallest sha256 in the group, stable across runs)."""
    shas = sorted({s.sha256 for s in samples})
    index = duplicates.group_index(shas, shas, [[("", h) for h in g] for g in dup_groups])
    smallest: dict[int, str] = {}
    for h, g in zip(shas, index, strict=True):
        smallest.setdefault(g, h)
    return {h: smallest[g][:16] for h, g in zip(shas, index, strict=True)}


@dataclass(frozen=True)
class Sample:
    """An image to split: ROOT-relative path, content hash, folder label."""

    path: str
    sha256: str
    label: str


def _assign_groups(
    groups: Mapping[str, Sequence[Sample]], seed: int, counts: dict[str, Counter[str]]
) -> dict[str, str]:
    """Greedy stratified assignment: per class (a group's majority label), groups in seeded
    random order go to the split furthest below its share of that class."""
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = defaultdict(list)
    for gid in sorted(groups):
        labels = Counter(s.label for s in groups[gid])
        by_label[max(sorted(labels), key=lambda k: labels[k])].append(gid)
    out: dict[str, str] = {}
    for label in sorted(by_label):
        gids = by_label[label]
        rng.shuffle(gids)
        # biggest groups first so they cannot unbalance the tail; stable within equal sizes
        gids.sort(key=lambda g: -len(groups[g]))
        have = counts.setdefault(label, Counter())
        total = sum(len(groups[g]) for g in gids) + sum(have.values())
        for gid in gids:
            n = len(groups[gid])
            deficit = {s: FRACTIONS[s] * total - have[s] for s in SPLITS}
            best = max(SPLITS, key=lambda s: (deficit[s] - n / 2, -SPLITS.index(s)))
            out[gid] = best
            have[best] += n
    return out


def make_split(
    ws: Workspace,
    samples: Sequence[Sample],
    *,
    seed: int = 0,
    resplit: bool = False,
) -> tuple[list[SplitRow], bool]:
    """The split of ``samples``, reusing ``R/.cleaner/split.csv`` unless ``resplit``; written
    back (paths and labels brought up to date). Returns (rows, reused)."""
    gid = group_ids(samples, duplicate_groups(ws))
    previous: dict[str, str] = {}
    extra: dict[str, Mapping[str, str]] = {}  # columns a later version added, kept per file
    for r in (None if resplit else split_file.read(ws)) or ():
        if r.split in SPLITS and r.sha256:
            previous[r.sha256] = r.split
        if r.extra and r.sha256:
            extra.setdefault(r.sha256, r.extra)
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[gid[s.sha256]].append(s)
    assigned: dict[str, str] = {}
    counts: dict[str, Counter[str]] = {}
    todo: dict[str, list[Sample]] = {}
    for g, members in groups.items():
        old = [previous[m.sha256] for m in members if m.sha256 in previous]
        if old:
            # a group keeps the split its first-known member had (majority if they disagree)
            c = Counter(old)
            assigned[g] = max(SPLITS, key=lambda s: (c[s], -SPLITS.index(s)))
            for m in members:
                counts.setdefault(m.label, Counter())[assigned[g]] += 1
        else:
            todo[g] = members
    reused = bool(previous) and bool(assigned)
    assigned.update(_assign_groups(todo, seed, counts))
    rows = sorted(
        (
            SplitRow(
                s.path,
                s.sha256,
                s.label,
                assigned[gid[s.sha256]],
                gid[s.sha256],
                extra=extra.get(s.sha256, {}),
            )
            for s in samples
        ),
        key=lambda r: r.path,
    )
    split_file.write(ws, rows)
    return rows, reused


def dataset_samples(ws: Workspace) -> list[Sample]:
    """The readable images of ROOT (an incremental scan first, so the list is current)."""
    from cleaner.manifest import ok_rows

    rows = ok_rows(ws)
    return [Sample(r.path, r.sha256, r.label) for r in rows if r.label in LABELS]


def data_digest(rows: Sequence[SplitRow]) -> str:
    """sha256 over (sha256, label, split) of every image: two runs with the same digest trained
    and were tested on the same data."""
    h = hashlib.sha256()
    for r in sorted(rows, key=lambda r: (r.sha256, r.path)):
        h.update(f"{r.sha256}\t{r.label}\t{r.split}\n".encode())
    return h.hexdigest()
