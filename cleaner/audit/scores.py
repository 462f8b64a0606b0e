"""How well each property, and all of them together, tell the folders apart without the picture.

- A numeric property (width, JPEG quality...) scores the AUC of its value against the label.
- A categorical one (format, camera, name tokens...) scores the AUC of each file's *out-of-fold*
  fake rate of its category (smoothed towards the overall rate): a category seen in one file
  only cannot look predictive, because its own label is never used to score it.
- Separating power is ``max(AUC, 1 - AUC)`` (a property that marks the real class counts as much
  as one marking the fakes), with the Hanley-McNeil 95% interval.
- The shortcut classifier: gradient-boosted trees on every property together, out-of-fold on
  folds grouped by ``duplicates.json`` (copies never straddle train and test, as ``predict``
  does), its AUC with a bootstrap interval.

A property is *named* when its power is at least :data:`THRESHOLD` and its interval's lower end
clears chance: a small folder cannot name a property on luck. The verdict says whether a
detector could learn the folder from the files' form (shortcut AUC at least the threshold).

``bytes_per_pixel`` is shown but neither named nor given to the classifier: it follows the
picture's own detail (sensor noise compresses badly) as much as the encoder, whose settings the
quality, subsampling and format already capture.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

THRESHOLD = 0.7
"""Shortcut AUC (and property power) from which the audit warns: a detector trained on such a
folder can score well by learning the form instead of the picture."""

FOLDS = 5
BOOTSTRAP = 500
SMOOTHING = 2.0
"""Pseudo-count pulling a category's fake rate towards the overall rate."""

NUMERIC: tuple[str, ...] = ("width", "height", "aspect", "megapixels", "jpeg_quality")
CATEGORICAL: tuple[str, ...] = (
    "format", "ext", "subsampling", "progressive", "mode", "alpha", "icc", "exif", "camera",
    "software", "png_text", "xmp", "c2pa",
)  # fmt: skip
TOKENS = "name_tokens"
INFORMATIONAL: tuple[str, ...] = ("bytes_per_pixel",)
"""Shown, never named nor used by the classifier (see the module docstring)."""


@dataclass
class PropertyScore:
    name: str
    kind: str
    """``numeric``, ``categorical``, ``tokens`` or ``informational``."""
    auc: float
    """AUC of the property's score for ``fake`` (0.5: no information)."""
    power: float
    low: float
    high: float
    named: bool
    leans: str
    """Numeric properties: ``fake`` when the fakes' values are the higher (AUC > 0.5), else
    ``real``; categorical ones: the class the score (the category's fake rate) marks, always
    ``fake`` above 0.5 (see :func:`typical` for what each class holds)."""
    distribution: dict[str, Any] = field(default_factory=dict)


@dataclass
class ShortcutScore:
    auc: float
    low: float
    high: float
    folds: int
    files: int
    verdict: str
    shortcut: bool
    named: list[str]


def auc(score: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC of ``score`` for ``y == 1`` (ties count half); 0.5 when a class is absent."""
    from scipy.stats import rankdata

    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return 0.5
    r = rankdata(score)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def hanley_mcneil(a: float, n1: int, n0: int) -> float:
    """Standard error of an AUC (Hanley & McNeil 1982)."""
    if n1 == 0 or n0 == 0:
        return 0.5
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0)
    return float(np.sqrt(max(var, 0.0)))


def _power(name: str, kind: str, score: np.ndarray, y: np.ndarray) -> PropertyScore:
    a = auc(score, y)
    p = max(a, 1 - a)
    se = hanley_mcneil(p, int(y.sum()), int(len(y) - y.sum()))
    low, high = max(0.5, p - 1.96 * se), min(1.0, p + 1.96 * se)
    named = kind != "informational" and p >= THRESHOLD and low > 0.5
    return PropertyScore(name, kind, a, p, low, high, named, "fake" if a >= 0.5 else "real")


def oof_rate(codes: Sequence[Sequence[int]], y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Each file's out-of-fold fake rate of its categories (mean over its categories; the prior
    for a file with none or with categories unseen outside its fold)."""
    prior = float(y.mean()) if len(y) else 0.5
    out = np.full(len(y), prior)
    for f in np.unique(folds):
        test = folds == f
        fake: Counter[int] = Counter()
        seen: Counter[int] = Counter()
        for i in np.flatnonzero(~test).tolist():
            for c in codes[i]:
                seen[c] += 1
                fake[c] += int(y[i])
        for i in np.flatnonzero(test).tolist():
            if codes[i]:
                rates = [(fake[c] + SMOOTHING * prior) / (seen[c] + SMOOTHING) for c in codes[i]]
                out[i] = float(np.mean(rates))
    return out


def _distribution_numeric(v: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Per class: quartiles, and counts in 10 bins shared by both classes (for the plot)."""
    lo, hi = float(np.min(v)), float(np.max(v))
    edges = np.linspace(lo, hi if hi > lo else lo + 1, 11)
    out: dict[str, Any] = {"edges": [round(float(e), 4) for e in edges]}
    for name, cls in (("real", 0), ("fake", 1)):
        x = v[y == cls]
        if len(x) == 0:
            out[name] = {"n": 0}
            continue
        q = np.percentile(x, [0, 25, 50, 75, 100])
        out[name] = {
            "n": len(x),
            "quartiles": [round(float(t), 4) for t in q],
            "hist": np.histogram(x, bins=edges)[0].tolist(),
        }
    return out


def _distribution_categorical(values: Sequence[Sequence[str]], y: np.ndarray) -> dict[str, Any]:
    """The 8 commonest categories with each class's count."""
    total: Counter[str] = Counter(c for vs in values for c in vs)
    top = [c for c, _ in total.most_common(8)]
    per = {name: Counter(c for vs, t in zip(values, y, strict=True) if t == cls for c in vs)
           for name, cls in (("real", 0), ("fake", 1))}  # fmt: skip
    return {
        "top": [{"value": c, "real": per["real"][c], "fake": per["fake"][c]} for c in top],
        "others": len(total) - len(top),
        "n": {"real": int((y == 0).sum()), "fake": int((y == 1).sum())},
    }


def _codes(values: Sequence[Sequence[str]]) -> tuple[list[list[int]], list[str]]:
    vocab: dict[str, int] = {}
    codes = [[vocab.setdefault(v, len(vocab)) for v in vs] for vs in values]
    return codes, list(vocab)


def property_scores(
    table: dict[str, list[Any]], y: np.ndarray, folds: np.ndarray
) -> list[PropertyScore]:
    """One :class:`PropertyScore` per property, strongest first."""
    out: list[PropertyScore] = []
    for name in NUMERIC + INFORMATIONAL:
        v = np.asarray(table[name], dtype=np.float64)
        s = _power(name, "informational" if name in INFORMATIONAL else "numeric", v, y)
        s.distribution = _distribution_numeric(v, y)
        out.append(s)
    for name in (*CATEGORICAL, TOKENS):
        values = table[name] if name == TOKENS else [[str(v)] for v in table[name]]
        codes, _ = _codes(values)
        s = _power(name, "tokens" if name == TOKENS else "categorical",
                   oof_rate(codes, y, folds), y)  # fmt: skip
        s.distribution = _distribution_categorical(values, y)
        out.append(s)
    out.sort(key=lambda s: (-s.power, s.name))
    return out


def feature_matrix(table: dict[str, list[Any]]) -> tuple[np.ndarray, list[bool], list[str]]:
    """Numbers for the classifier: numeric properties as they are, each categorical as codes of
    its 254 commonest values (native categorical splits), the commonest name tokens as 0/1."""
    cols: list[np.ndarray] = []
    is_cat: list[bool] = []
    names: list[str] = []
    for name in NUMERIC:
        cols.append(np.asarray(table[name], dtype=np.float64))
        is_cat.append(False)
        names.append(name)
    for name in CATEGORICAL:
        counts = Counter(str(v) for v in table[name])
        index = {v: i for i, (v, _) in enumerate(counts.most_common(254))}
        cols.append(np.array([index.get(str(v), 254) for v in table[name]], dtype=np.float64))
        is_cat.append(True)
        names.append(name)
    n = len(table[TOKENS])
    tokens = Counter(t for ts in table[TOKENS] for t in ts)
    for tok, c in tokens.most_common(50):
        if c < max(3, n // 200):
            break
        cols.append(np.array([tok in ts for ts in table[TOKENS]], dtype=np.float64))
        is_cat.append(False)
        names.append(f"{TOKENS}:{tok}")
    return np.stack(cols, axis=1), is_cat, names


def oof_classifier(
    x: np.ndarray, is_cat: list[bool], y: np.ndarray, folds: np.ndarray
) -> np.ndarray:
    """Out-of-fold probability of ``fake`` from the properties alone."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    prob = np.full(len(y), float(y.mean()))
    leaf = max(2, min(20, len(y) // 50))
    for f in np.unique(folds):
        train, test = folds != f, folds == f
        if len(np.unique(y[train])) < 2:
            continue
        clf = HistGradientBoostingClassifier(
            max_iter=100, max_leaf_nodes=15, min_samples_leaf=leaf,
            categorical_features=np.array(is_cat), random_state=0,
        )  # fmt: skip
        # one thread: trees this small gain nothing from OpenMP, which spins badly on a
        # shared machine (30 s instead of 0.7 s for 70 files under load)
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")
            clf.fit(x[train], y[train])
            prob[test] = clf.predict_proba(x[test])[:, 1]
    return prob


def bootstrap_interval(prob: np.ndarray, y: np.ndarray, *, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the AUC over files resampled with replacement."""
    rng = np.random.default_rng(seed)
    n = len(y)
    reps = BOOTSTRAP if n <= 20_000 else 100
    vals = []
    for _ in range(reps):
        i = rng.integers(0, n, n)
        vals.append(auc(prob[i], y[i]))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def verdict(a: float, low: float, high: float, named: list[str]) -> tuple[bool, str]:
    """(shortcut?, the one-line summary)."""
    where = f"shortcut AUC {a:.3f} [{low:.3f}, {high:.3f}]"
    if a >= THRESHOLD:
        props = ", ".join(named) if named else "several properties together, none alone"
        return True, (
            f"SHORTCUT: a detector could learn this folder from the files' form instead of "
            f"their pictures ({where} >= {THRESHOLD}); it would learn: {props}"
        )
    tail = f"; yet {', '.join(named)} separate the classes alone" if named else ""
    return False, f"no shortcut: the files' form does not tell the classes apart ({where}){tail}"


def typical(prop: dict[str, Any], cls: str) -> str:
    """One short text for a class's distribution of one property (``asdict`` of a
    :class:`PropertyScore`): its quartiles, or its commonest category and share."""
    d = prop.get("distribution") or {}
    if "edges" in d:
        q = (d.get(cls) or {}).get("quartiles")
        return f"{q[1]:g} / {q[2]:g} / {q[3]:g}" if q else ""
    top = sorted(d.get("top") or [], key=lambda t: -t[cls])
    if not top or not top[0][cls]:
        return ""
    total = (d.get("n") or {}).get(cls, 0) or 1
    return f"{top[0]['value'] or '(none)'} ({top[0][cls] / total:.0%})"
