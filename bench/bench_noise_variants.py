"""Issue 17b: would another noise-rate estimate make `separate --target-precision` less biased?

Reads the predictions files a label-error bench run left (no backbone, no head: about 1 s per
voter set) and, for each noise-rate estimate below, prints the estimated against the true
precision of rule `mean` at a few thresholds, with the self-test of :class:`SelfTest` unchanged:

- ``current``: :func:`cleaner.noise.fit` (logistic link on the mean logit, 1% tails clipped);
- ``truth``: the planted flips' share per folder (the best any noise estimate can do);
- ``cleanlab``: confident learning's calibrated joint (``cleanlab.count.estimate_joint``) on
  the voters' mean ``prob_fake``;
- ``poly3`` / ``poly5``: the same label-noise likelihood with a polynomial link of degree 3 / 5;
- ``twoslope``: the same with one slope for positive and one for negative scores;
- ``posterior``: no self-test; the moves' mean posterior of being misfiled under the current fit.

Usage: bench_noise_variants.py WORK PREDICTIONS.json... (WORK holds flips.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from cleaner.consensus import Evidence, ImageVotes, SelfTest, moved_mask
from cleaner.noise import MAX_FLIP, PRIOR, TAIL, score

THRESHOLDS = (0.9, 0.95, 0.99, 0.995, 0.999)


def per_folder(post: np.ndarray, y: np.ndarray) -> dict[bool, float]:
    return {f: float(post[y == f].mean()) for f in (True, False)}


def link_noise(z: np.ndarray, y: np.ndarray, link: str) -> dict[bool, float]:
    """Noise per folder from the label-noise likelihood with the link ``polyN`` or ``twoslope``."""
    lo, hi = np.quantile(z, [TAIL, 1 - TAIL])
    zs = np.clip(z, lo, hi) / np.std(np.clip(z, lo, hi))
    if link == "twoslope":
        x = np.stack([np.maximum(zs, 0), np.minimum(zs, 0)], 1)
    else:
        x = np.stack([zs**k for k in range(1, int(link[4:]) + 1)], 1)
    deg = x.shape[1]

    def parts(th: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = 1 / (1 + np.exp(-np.clip(x @ th[:deg] + th[deg], -40, 40)))
        return q, th[deg + 1] + (1 - th[deg + 1] - th[deg + 2]) * q

    def nll(th: np.ndarray) -> float:
        p1 = np.clip(parts(th)[1], 1e-12, 1 - 1e-12)
        prior = PRIOR * (np.log1p(-th[deg + 1]) + np.log1p(-th[deg + 2]))
        return float(-np.sum(np.where(y, np.log(p1), np.log1p(-p1))) - prior)

    bounds = [(-50.0, 50.0)] * deg + [(-30.0, 30.0), (0.0, MAX_FLIP), (0.0, MAX_FLIP)]
    fits = [
        minimize(nll, [1.0] + [0.0] * deg + [e, e], method="L-BFGS-B", bounds=bounds)
        for e in (0.01, 0.1, 0.25)
    ]
    th = min(fits, key=lambda r: r.fun).x
    q, p1 = parts(th)
    e0, e1 = th[deg + 1], th[deg + 2]
    return per_folder(np.where(y, e0 * (1 - q) / p1, e1 * q / (1 - p1)), y)


def cleanlab_noise(prob_fake: np.ndarray, y: np.ndarray) -> dict[bool, float]:
    from cleanlab.count import estimate_joint

    joint = estimate_joint(y.astype(int), np.stack([1 - prob_fake, prob_fake], 1))
    return {True: joint[1, 0] / joint[1].sum(), False: joint[0, 1] / joint[0].sum()}


def main() -> None:
    work, files = Path(sys.argv[1]), sys.argv[2:]
    truth = {f["path"] for f in json.loads((work / "flips.json").read_text())["flips"]}
    by: dict[str, tuple[str, list[Evidence]]] = {}
    for f in files:
        for e in json.loads(Path(f).read_text())["predictions"]:
            by.setdefault(e["path"], (e["label"], []))[1].append(Evidence(f, e["prob_fake"]))
    st = SelfTest(
        [ImageVotes(p, "", lab, tuple(ev)) for p, (lab, ev) in sorted(by.items())], "mean"
    )
    flip = np.array([im.path in truth for im in st.covered])
    y = st.in_fake
    z = np.array([score([e.prob_fake for e in im.evidence]) for im in st.covered])
    pf = np.array([np.mean([e.prob_fake for e in im.evidence]) for im in st.covered])
    variants = {
        "current": st.noise,
        "truth": per_folder(flip.astype(float), y),
        "cleanlab": cleanlab_noise(pf, y),
        **{link: link_noise(z, y, link) for link in ("poly3", "poly5", "twoslope")},
    }
    print(work.name, [Path(f).stem for f in files], f"true noise {flip.mean():.3f}")
    for name, noise in variants.items():
        st.noise = noise
        rate = (noise[True] * y.sum() + noise[False] * (~y).sum()) / len(y)
        cells = []
        for c in THRESHOLDS:
            est, mv = st.at(c), moved_mask(st.m, "mean", c, st.flags)
            true = (mv & flip).sum() / max(1, mv.sum())
            cells.append(f"{c:g}: {est.moves} {est.precision or 0:.3f}/{true:.3f}")
        print(f"  {name:8s} noise {rate:.3f} | " + " | ".join(cells))
    post = st.model.p_wrong_folder(z, y)
    cells = []
    for c in THRESHOLDS:
        mv = moved_mask(st.m, "mean", c, st.flags)
        true = (mv & flip).sum() / max(1, mv.sum())
        cells.append(f"{c:g}: {mv.sum()} {post[mv].mean() if mv.any() else 0:.3f}/{true:.3f}")
    print("  posterior        | " + " | ".join(cells))


if __name__ == "__main__":
    main()
