"""Prediction files: the one place that writes, reads, validates and matches them to files.

Formats accepted (``../shared/docs/contract.md``):

- ``cleaner.predictions.v1``: ``{"format", "model", "classes", "out_of_fold", "predictions":
  [{"path", "sha256", "label", "prob_fake"}]}`` (written by :func:`write_predictions_v1`);
- hard-label lists from other tools: ``[{"path"|"image"|"file"|"index": ..., "prediction"|
  "label": "real"|"fake"|0|1}]`` (0 = fake, 1 = real, as in the original scripts); an entry
  that also carries ``prob_fake`` (``cleaner predict-dir``) is read as a probability;
- a plain mapping ``{"path": "real" | "fake" | prob_fake}``.

Why validation refuses a whole file: a predictions file decides which of someone's images move.
One impossible value (a probability of 1.7, NaN, a class called "dog", a path that leaves ROOT,
the same image with two different answers) says the file is not what its writer thought it
was, so none of it is trusted. The error is one line naming the file, the entry and the fix.
Entries that merely match no file (deleted, renamed, another dataset) are counted, not fatal.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeGuard

from cleaner.atomic import atomic_write_text
from cleaner.choices import Label, values
from cleaner.dataset import Workspace, check_input, check_relpath, resolve_inside
from cleaner.errors import CleanerError, PathEscapeError

FORMAT_V1 = "cleaner.predictions.v1"
"""The ``format`` field of cleaner's own predictions files."""

CLASSES: list[str] = list(values(Label))


class PredictionsError(CleanerError):
    """A predictions file that fails validation: refused whole, one line naming the entry."""


MAX_BYTES = 256 * 1024 * 1024
"""Largest predictions file read (100,000 v1 entries take about 20 MB): ``-p /dev/zero`` or a
wrong file must get one line, not a process that grows until the machine swaps."""
MAX_INT_DIGITS = 32
"""Longest integer literal accepted: no index or probability needs more, and a 5,000-digit one
would otherwise stop the reader with Python's own conversion-limit error."""


class _Refuse(ValueError):
    """Raised inside the JSON parser's hooks; the message says what and where."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a key twice in one object (last would silently win) refuses the
    file, as the same image twice with different values does."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _Refuse(f"the key {k!r} appears twice in one object")
            seen.add(k)
    return out


def _parse_int(s: str) -> int:
    if len(s.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refuse(f"an integer of {len(s.lstrip('-')):,} digits")
    return int(s)


PREDICTIONS_PATH_FIX = "check the paths given to --predictions (each names a JSON file)"


def _read_capped(p: Path) -> bytes:
    """The file's bytes, refusing more than :data:`MAX_BYTES` and anything but a regular file.

    Opened without blocking (``O_NONBLOCK``: a FIFO with no writer would wait forever) and
    checked on the open descriptor (``fstat``), so the file read is the file checked."""
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PredictionsError(
            f"predictions file {p} is not a regular file (a FIFO, device, socket or folder); "
            "write the predictions to a file and pass its path"
        )
    with open(fd, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise PredictionsError(
            f"predictions file {p} is larger than {MAX_BYTES // (1024 * 1024)} MB; give a "
            "JSON predictions file (is this the right path?)"
        )
    return data


def _dump_v1(doc: Mapping[str, Any]) -> str:
    """The document as JSON with one prediction per line (readable, diffable, compact)."""
    head = {k: v for k, v in doc.items() if k != "predictions"}
    lines = [json.dumps(e, ensure_ascii=False) for e in doc["predictions"]]
    body = ",\n  ".join(lines)
    inner = json.dumps(head, ensure_ascii=False)[:-1]
    sep = ", " if head else ""
    return (
        f'{inner}{sep}"predictions": [\n  {body}\n]}}\n'
        if lines
        else (f'{inner}{sep}"predictions": []}}\n')
    )


def write_predictions_v1(
    path: str | os.PathLike[str],
    *,
    model: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    out_of_fold: bool,
) -> Path:
    """Write a ``cleaner.predictions.v1`` file atomically; returns its path.

    ``entries``: mappings with ``path`` (ROOT-relative), ``sha256``, ``label`` (the folder's
    class) and ``prob_fake`` in [0, 1]; extra keys are kept. Validated before anything is
    written, so a bug upstream never leaves a file that ``separate`` would refuse later.
    """
    out: list[dict[str, Any]] = []
    for i, e in enumerate(entries):
        for key in ("path", "sha256", "label", "prob_fake"):
            if key not in e:
                raise PredictionsError(f"predictions entry #{i} lacks {key!r}; cannot write {path}")
        p = float(e["prob_fake"])
        if not (0.0 <= p <= 1.0) or math.isnan(p):
            raise PredictionsError(
                f"predictions entry #{i} ({e['path']}) has prob_fake={e['prob_fake']!r}, "
                f"outside [0, 1]; cannot write {path}"
            )
        if e["label"] not in CLASSES:
            raise PredictionsError(
                f"predictions entry #{i} ({e['path']}) has label {e['label']!r}; "
                f"expected 'real' or 'fake'; cannot write {path}"
            )
        row = dict(e)
        row["path"] = str(e["path"])
        row["prob_fake"] = p
        out.append(row)
    doc = {
        "format": FORMAT_V1,
        "model": dict(model),
        "classes": list(CLASSES),
        "out_of_fold": bool(out_of_fold),
        "predictions": out,
    }
    target = Path(path)
    atomic_write_text(target, _dump_v1(doc), is_json=True)
    return target


# --------------------------------------------------------------------------- reading


HARD_LABELS = "hard-labels"
"""``format`` of a parsed hard-label list (other tools, the original scripts)."""
MAPPING = "mapping"
"""``format`` of a parsed plain ``{path: label | prob_fake}`` object."""

_KEY_FIELDS = ("path", "image", "file")
_VALUE_FIELDS = ("prediction", "label")
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Entry:
    """One prediction, normalised: ``prob_fake`` in [0, 1]; a hard label is 0.0 or 1.0."""

    key: str
    """How the file named the image (its path, image, file or ``index N``), for messages."""
    path: str | None
    """ROOT-relative, ``/``-separated, normalised; None for an index-only entry."""
    sha256: str | None
    prob_fake: float
    hard: bool = False
    """The file gave a class, not a probability."""
    index: int | None = None
    planted_prob: float | None = None
    """``planted_prob_fake``: its probability in ``cleaner predict``'s planted run
    (:mod:`cleaner.models.planted`), None when the file has none."""
    planted: bool = False
    """The planted run swapped its label."""


@dataclass(frozen=True)
class PredictionsFile:
    """A validated predictions file."""

    path: Path
    format: str
    """:data:`FORMAT_V1`, :data:`HARD_LABELS` or :data:`MAPPING`."""
    model: dict[str, Any]
    out_of_fold: bool | None
    """None when the file does not say (every format but v1)."""
    entries: list[Entry]

    @property
    def name(self) -> str:
        return str(self.path)


def _is_number(v: object) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool)


class _Reader:
    """Validation of one file's entries; every refusal names the file, the entry and the fix."""

    def __init__(self, path: Path, ws: Workspace | None) -> None:
        self.path = path
        self.root = (ws.given or ws.root) if ws is not None else None
        self.real_root = ws.root if ws is not None else None
        self.by_path: dict[str, Entry] = {}
        self.by_index: dict[int, Entry] = {}
        self.by_sha: dict[str, Entry] = {}
        self.folders_ok: set[str] = set()
        self.entries: list[Entry] = []

    def fail(self, where: str, problem: str, fix: str) -> PredictionsError:
        return PredictionsError(f"{self.path}: {where}: {problem}; {fix}")

    def prob(self, where: str, v: object) -> float:
        if not _is_number(v):
            raise self.fail(
                where, f"prob_fake {v!r} is not a number", "write a probability in [0, 1]"
            )
        try:
            p = float(v)
        except OverflowError:
            p = math.inf
        if math.isnan(p) or not 0.0 <= p <= 1.0:
            raise self.fail(
                where,
                f"prob_fake {v!r} is outside [0, 1]",
                "write probabilities of the class 'fake' in [0, 1] (regenerate the file)",
            )
        return p

    def hard(self, where: str, v: object, *, numbers_are: str) -> float:
        """A class given as a name, or as 0 = fake / 1 = real (the original scripts)."""
        if isinstance(v, str) and v.strip().lower() in values(Label):
            return 1.0 if v.strip().lower() == Label.FAKE else 0.0
        if numbers_are == "labels" and _is_number(v) and float(v) in (0.0, 1.0):
            return 0.0 if float(v) == 1.0 else 1.0
        hint = (
            "'real', 'fake', 0 (fake) or 1 (real)"
            if numbers_are == "labels"
            else ("'real', 'fake' or a probability of 'fake' in [0, 1]")
        )
        raise self.fail(where, f"unknown class {v!r}", f"use {hint}")

    def relpath(self, where: str, raw: object) -> str:
        if not isinstance(raw, str) or not raw.strip():
            raise self.fail(
                where, f"path {raw!r} is not a file name", "give a path relative to ROOT"
            )
        # a backslash is a Windows separator and "c:" a drive, unless the name as written is a
        # file under ROOT (on POSIX both are ordinary characters: reading them otherwise would
        # name another file, or refuse a real one)
        literal = (
            ("\\" in raw or raw[1:2] == ":")
            and self.root is not None
            and not raw.startswith(("/", "\\"))
            and os.path.lexists(os.path.join(self.root, raw))
        )
        s = raw if literal else raw.replace("\\", "/")
        if s.startswith("/") or (not literal and len(s) > 1 and s[1] == ":"):
            inside = None
            if self.root is not None and self.real_root is not None:
                cand = Path(os.path.normpath(s))
                for base in (Path(os.path.abspath(self.root)), self.real_root):
                    if cand.is_relative_to(base) and cand != base:
                        inside = cand.relative_to(base).as_posix()
                        break
            if inside is None:
                raise self.fail(
                    where,
                    f"absolute path {raw!r} lies outside ROOT",
                    "remove the entry or give a path relative to ROOT",
                )
            s = inside
        try:
            parts = s.split("/")
            if not s.isascii() or "\x00" in s or any(p in ("", ".", "..") for p in parts):
                # the slow, careful path for unusual spellings
                rel = str(check_relpath(s, backslash_is_separator=not literal))
            else:
                rel = s  # already normal: no '..', no empty or '.' parts
            if self.root is not None:
                # each folder resolved once (100,000 entries share a few folders); the file
                # itself only when it is a symlink
                folder = rel.rpartition("/")[0]
                if folder and folder not in self.folders_ok:
                    resolve_inside(self.root, folder)
                    self.folders_ok.add(folder)
                if os.path.islink(os.path.join(self.root, rel)):
                    resolve_inside(self.root, rel)
        except PathEscapeError as e:
            raise self.fail(
                where, str(e), "remove the entry or give a path relative to ROOT"
            ) from None
        return rel

    def sha(self, where: str, v: object) -> str | None:
        if v is None or v == "":
            return None
        if isinstance(v, str) and len(v) == 64 and set(v.lower()) <= _HEX:
            return v.lower()
        raise self.fail(
            where, f"sha256 {v!r} is not a sha256", "write 64 hex digits or leave it out"
        )

    def add(self, where: str, e: Entry) -> None:
        """Keep ``e``; the same image twice with different values refuses the file."""
        if e.path is not None:
            prev = self.by_path.get(e.path)
            key_desc = f"image {e.path!r}"
        elif e.index is not None:
            prev = self.by_index.get(e.index)
            key_desc = f"index {e.index}"
        else:  # pragma: no cover - every entry has one
            prev = None
            key_desc = e.key
        if prev is not None:
            if prev.prob_fake == e.prob_fake and (
                prev.sha256 is None or e.sha256 is None or prev.sha256 == e.sha256
            ):
                return  # a harmless repeat
            raise self.fail(
                where,
                f"{key_desc} appears twice with different values ({_show(prev)} and {_show(e)})",
                "keep one entry per image",
            )
        if e.sha256 is not None:
            other = self.by_sha.get(e.sha256)
            if other is not None and other.prob_fake != e.prob_fake:
                raise self.fail(
                    where,
                    f"sha256 {e.sha256[:12]}... (one image) appears twice with different values "
                    f"({other.key!r}: {_show(other)}, {e.key!r}: {_show(e)})",
                    "keep one entry per image",
                )
            self.by_sha.setdefault(e.sha256, e)
        if e.path is not None:
            self.by_path[e.path] = e
        elif e.index is not None:
            self.by_index[e.index] = e
        self.entries.append(e)


def _show(e: Entry) -> str:
    if e.hard:
        return Label.FAKE if e.prob_fake == 1.0 else Label.REAL
    return f"prob_fake {e.prob_fake:g}"


def _where(i: int, key: object = None) -> str:
    return f"entry #{i}" + (f" ({key!r})" if key is not None else "")


def _read_v1(r: _Reader, doc: dict[str, Any]) -> PredictionsFile:
    fmt = doc.get("format")
    if fmt != FORMAT_V1:
        raise r.fail(
            "field 'format'",
            f"unknown format {fmt!r}",
            f"expected {FORMAT_V1!r}, a list of hard labels or a {{path: label}} object",
        )
    classes = doc.get("classes", CLASSES)
    if not isinstance(classes, list) or sorted(map(str, classes)) != sorted(CLASSES):
        raise r.fail("field 'classes'", f"unknown classes {classes!r}", 'use ["real", "fake"]')
    oof = doc.get("out_of_fold")
    if oof is not None and not isinstance(oof, bool):
        raise r.fail("field 'out_of_fold'", f"{oof!r} is not true/false", "write true or false")
    model = doc.get("model", {})
    if not isinstance(model, dict):
        raise r.fail("field 'model'", f"{model!r} is not an object", "write an object or omit it")
    preds = doc.get("predictions")
    if not isinstance(preds, list):
        raise r.fail(
            "field 'predictions'", "missing or not a list", "write a list of {path, prob_fake}"
        )
    for i, item in enumerate(preds):
        if not isinstance(item, dict):
            raise r.fail(_where(i), f"{item!r} is not an object", "write {path, sha256, prob_fake}")
        key = item.get("path")
        where = _where(i, key)
        path = r.relpath(where, key)
        if "prob_fake" not in item:
            raise r.fail(where, "no prob_fake", "write the probability of 'fake' for each entry")
        prob = r.prob(where, item["prob_fake"])
        label = item.get("label")
        if label is not None and label not in CLASSES:
            raise r.fail(where, f"unknown class {label!r}", "use 'real' or 'fake'")
        pp = item.get("planted_prob_fake")
        planted = None if pp is None else r.prob(where, pp)
        sha = r.sha(where, item.get("sha256"))
        r.add(
            where,
            Entry(
                str(key), path, sha, prob, planted_prob=planted, planted=item.get("planted") is True
            ),
        )
    return PredictionsFile(r.path, FORMAT_V1, dict(model), oof, r.entries)


def _read_list(r: _Reader, doc: list[Any]) -> PredictionsFile:
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            raise r.fail(
                _where(i),
                f"{item!r} is not an object",
                "write objects with path/image/file/index and prediction/label",
            )
        field_ = next((f for f in _KEY_FIELDS if item.get(f) is not None), None)
        index: int | None = None
        path: str | None = None
        if field_ is not None:
            where = _where(i, item[field_])
            path = r.relpath(where, item[field_])
            key = str(item[field_])
        elif "index" in item and _is_number(item["index"]) and float(item["index"]).is_integer():
            index = int(item["index"])
            key = f"index {index}"
            where = _where(i, key)
        else:
            raise r.fail(
                _where(i),
                "names no image",
                "give each entry one of 'path', 'image', 'file' or an integer 'index'",
            )
        hard = False
        if item.get("prob_fake") is not None:
            prob = r.prob(where, item["prob_fake"])
        else:
            vfield = next((f for f in _VALUE_FIELDS if f in item), None)
            if vfield is None:
                raise r.fail(
                    where,
                    "has no prediction",
                    "give each entry 'prediction' or 'label' ('real'/'fake' or 0 = fake, 1 = real)",
                )
            prob = r.hard(where, item[vfield], numbers_are="labels")
            hard = True
        r.add(where, Entry(key, path, r.sha(where, item.get("sha256")), prob, hard, index))
    return PredictionsFile(r.path, HARD_LABELS, {}, None, r.entries)


def _read_mapping(r: _Reader, doc: dict[str, Any]) -> PredictionsFile:
    if isinstance(doc.get("predictions"), list):
        raise r.fail(
            "top level",
            "has a 'predictions' list but no 'format'",
            f'add "format": "{FORMAT_V1}" (or write a plain {{path: label}} object)',
        )
    for i, (key, v) in enumerate(doc.items()):
        where = _where(i, key)
        path = r.relpath(where, key)
        if isinstance(v, str):
            prob, hard = r.hard(where, v, numbers_are="probabilities"), True
        elif _is_number(v):
            prob, hard = r.prob(where, v), False
        else:
            raise r.fail(
                where,
                f"value {v!r} is neither a class nor a probability",
                "write 'real', 'fake' or the probability of 'fake' in [0, 1]",
            )
        r.add(where, Entry(key, path, None, prob, hard))
    return PredictionsFile(r.path, MAPPING, {}, None, r.entries)


def read_predictions(
    path: str | os.PathLike[str], *, ws: Workspace | None = None
) -> PredictionsFile:
    """Read and validate one predictions file in any accepted format.

    With ``ws`` (ROOT), paths are also checked against the disk (a symlink that leads out of ROOT is
    refused) and absolute paths inside ROOT are made relative. Raises :class:`PredictionsError`
    (one line: file, entry, fix) on anything that makes the file untrustworthy.
    """
    p = Path(path)
    check_input(p, "predictions file", PREDICTIONS_PATH_FIX, error=PredictionsError)
    try:
        raw = _read_capped(p)
    except FileNotFoundError:
        msg = f"predictions file {p} does not exist; {PREDICTIONS_PATH_FIX}"
        raise PredictionsError(msg) from None
    except OSError as e:
        raise PredictionsError(f"predictions file {p} cannot be read: {e.strerror or e}") from None
    try:
        doc = json.loads(
            raw.decode("utf-8-sig"),
            object_pairs_hook=_no_duplicate_keys,
            parse_int=_parse_int,
        )
    except UnicodeDecodeError:
        raise PredictionsError(f"{p} is not UTF-8 text; give a JSON predictions file") from None
    except json.JSONDecodeError as e:
        raise PredictionsError(
            f"{p} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); fix the file "
            "or write it again with `cleaner predict`"
        ) from None
    except _Refuse as e:
        raise PredictionsError(
            f"{p}: {e}, which makes the file ambiguous or not a predictions file; fix the file "
            "or write it again with `cleaner predict`"
        ) from None
    except RecursionError:
        raise PredictionsError(
            f"{p} nests JSON deeper than Python can read; a predictions file is at most three "
            "levels deep: fix the file or write it again with `cleaner predict`"
        ) from None
    r = _Reader(p, ws)
    if isinstance(doc, dict) and "format" in doc:
        return _read_v1(r, doc)
    if isinstance(doc, dict):
        return _read_mapping(r, doc)
    if isinstance(doc, list):
        return _read_list(r, doc)
    raise r.fail(
        "top level",
        f"a JSON {type(doc).__name__} fits no predictions format",
        f"write {FORMAT_V1}, a list of hard labels or a {{path: label}} object",
    )


# --------------------------------------------------------------------------- matching


class FileRow(Protocol):
    """What matching needs of a dataset file (a :class:`cleaner.manifest.ManifestRow`)."""

    @property
    def path(self) -> str: ...

    @property
    def sha256(self) -> str: ...


@dataclass
class MatchResult:
    """One predictions file matched to the dataset's files."""

    file: PredictionsFile
    probs: dict[str, float] = field(default_factory=dict)
    """Dataset path -> prob_fake."""
    planted: dict[str, tuple[float, bool]] = field(default_factory=dict)
    """Dataset path -> (planted_prob_fake, swapped in the planted run), for the entries that
    have one."""
    matched: int = 0
    unmatched: int = 0
    """Entries naming no file under ROOT (deleted, renamed, another dataset)."""
    stale: int = 0
    """Entries whose path exists but whose sha256 differs: the file changed since it was
    predicted, so the prediction is not about it."""
    ambiguous: int = 0
    """Entries that fit several files equally (a bare name or index found in several folders,
    or a sha256 shared by copies none of which is at the entry's path)."""
    examples: list[str] = field(default_factory=list)
    """A few unmatched/stale/ambiguous entries, for the report."""

    def summary(self) -> dict[str, Any]:
        return {
            "file": self.file.name,
            "format": self.file.format,
            "out_of_fold": self.file.out_of_fold,
            "entries": len(self.file.entries),
            "matched": self.matched,
            "unmatched": self.unmatched,
            "stale": self.stale,
            "ambiguous": self.ambiguous,
            "examples": self.examples,
        }


def _below_class(path: str) -> str:
    """The part of a path below its class folder (what a move keeps)."""
    parts = PurePosixPath(path).parts
    return "/".join(parts[1:]) if len(parts) > 1 else path


def match_entries(pf: PredictionsFile, rows: Sequence[FileRow]) -> MatchResult:
    """Match entries to files: by sha256 first (a file moved since is still found), then by
    path, then (for bare names and indices) by a unique file name. Non-matches are counted."""
    by_sha: dict[str, list[FileRow]] = {}
    by_path: dict[str, FileRow] = {}
    by_name: dict[str, list[FileRow]] = {}
    by_stem: dict[str, list[FileRow]] = {}
    for f in rows:
        by_path[f.path] = f
        if f.sha256:
            by_sha.setdefault(f.sha256, []).append(f)
        pp = PurePosixPath(f.path)
        by_name.setdefault(pp.name, []).append(f)
        by_stem.setdefault(pp.stem, []).append(f)
    res = MatchResult(pf)
    by_file: dict[str, Entry] = {}

    def note(kind: str, e: Entry) -> None:
        if len(res.examples) < 5:
            res.examples.append(f"{kind}: {e.key}")

    for e in pf.entries:
        row: FileRow | None = None
        if e.sha256 is not None and e.sha256 in by_sha:
            cands = by_sha[e.sha256]
            exact = [c for c in cands if c.path == e.path]
            if exact or len(cands) == 1:
                row = (exact or cands)[0]
            else:
                rest = _below_class(e.path) if e.path else None
                below = [c for c in cands if _below_class(c.path) == rest]
                if len(below) == 1:
                    row = below[0]
                else:
                    res.ambiguous += 1
                    note("ambiguous", e)
                    continue
        elif e.sha256 is not None:
            if e.path is not None and e.path in by_path:
                res.stale += 1
                note("changed since predicted", e)
            else:
                res.unmatched += 1
                note("no such file", e)
            continue
        elif e.path is not None and e.path in by_path:
            row = by_path[e.path]
        else:
            if e.path is not None and "/" not in e.path:
                cands = by_name.get(e.path, [])
            elif e.index is not None:
                cands = by_stem.get(str(e.index), [])
            else:
                cands = []
            if len(cands) == 1:
                row = cands[0]
            elif cands:
                res.ambiguous += 1
                note("ambiguous", e)
                continue
        if row is None:
            res.unmatched += 1
            note("no such file", e)
            continue
        first = by_file.get(row.path)
        if first is not None:  # two entries reach one file (a full path and a bare name ...)
            if first.prob_fake != e.prob_fake:
                raise PredictionsError(
                    f"{pf.path}: entries {first.key!r} ({_show(first)}) and {e.key!r} "
                    f"({_show(e)}) both name the image {row.path} with different values; keep "
                    "one entry per image"
                )
            continue
        by_file[row.path] = e
        res.probs[row.path] = e.prob_fake
        if e.planted_prob is not None:
            res.planted[row.path] = (e.planted_prob, e.planted)
        res.matched += 1
    return res
