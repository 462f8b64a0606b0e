"""Issue 25 through the CLI: the check of the move-precision estimate on predict's planted run
(a failed or missing check moves nothing), and the review list within its budget, ranked by the
probability of being misfiled, in the same order in the plan, `cleaner serve` and the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.models.planted import planted_mask
from tests.relabel_helpers import bytes_snapshot, make_tree, sha_of, write_v1

runner = CliRunner()
N = 150
FLIPS = 15
"""Misfiled images per class (10%)."""
DOUBT = 10
"""Correctly filed images per class on which one voter is sure of the other class and the
other is not: review candidates for the unanimous rule."""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT with 150 + 150 tiny PNGs (scanned) and labels.json, flips.json, doubt.json."""
    d = tmp_path_factory.mktemp("check")
    root = d / "R"
    labels = make_tree(root, N, N)
    rng = np.random.default_rng(0)
    flips: list[str] = []
    doubt: list[str] = []
    for label in ("real", "fake"):
        paths = [p for p in sorted(labels) if labels[p] == label]
        pick = rng.permutation(len(paths))
        flips += [paths[i] for i in pick[:FLIPS]]
        doubt += [paths[i] for i in pick[FLIPS : FLIPS + DOUBT]]
    for name, doc in (("labels", labels), ("flips", flips), ("doubt", doubt)):
        (d / f"{name}.json").write_text(json.dumps(doc))
    from cleaner.manifest import scan

    scan(root, progress=False)
    return d


def voters(d: Path, planted: str, *, doubt: bool = True) -> list[str]:
    """Two voters that know every image's true class (logit N(+-4, 2)), except that on the
    doubt images the first says 0.95 for the other class and the second anywhere in 0.05-0.65.
    ``planted``: their heads' planted run, ``same`` (the probabilities do not follow the labels
    the heads were given: strong features), ``memorised`` (the swapped images get the label
    they were given: heads that learn the folders, not the pictures) or ``none``."""
    labels: dict[str, str] = json.loads((d / "labels.json").read_text())
    flips = set(json.loads((d / "flips.json").read_text()))
    doubt = json.loads((d / "doubt.json").read_text()) if doubt else []
    rng = np.random.default_rng(1)
    spread = dict(zip(doubt, np.linspace(0.05, 0.65, len(doubt)), strict=True))
    order = sorted(labels)
    swapped = planted_mask(
        [labels[p] == "fake" for p in order], [sha_of(d / "R", p) for p in order]
    )
    files = []
    for m in range(2):
        probs: dict[str, float] = {}
        for p, label in labels.items():
            fake = (label == "fake") != (p in flips)
            logit = rng.normal(4.0 if fake else -4.0, 2.0)
            probs[p] = float(1 / (1 + np.exp(-logit)))
            if p in spread:
                other = 0.95 if m == 0 else float(spread[p])
                probs[p] = other if label == "real" else 1 - other
        run = None
        if planted == "same":
            run = probs
        elif planted == "memorised":
            given = {
                p: (labels[p] == "fake") != bool(s) for p, s in zip(order, swapped, strict=True)
            }
            run = {p: 0.98 if given[p] else 0.02 for p in order}
        files.append(str(write_v1(d / f"{planted}{m}.json", d / "R", probs, labels, planted=run)))
    return files


def other_probs(entry: dict) -> list[float]:  # type: ignore[type-arg]
    """A plan entry's votes as probabilities of the class it does not sit in (clipped)."""
    ps = [
        e["prob_fake"] if entry["from_label"] == "real" else 1 - e["prob_fake"]
        for e in entry["evidence"]
    ]
    return [min(max(p, 1e-6), 1 - 1e-6) for p in ps]


def separate(d: Path, files: list[str], *args: str) -> tuple[dict, str]:  # type: ignore[type-arg]
    plans = d / "R" / ".cleaner" / "plans"
    before = set(plans.glob("*.json"))
    r = runner.invoke(app, ["separate", "--root", str(d / "R"), "-p", *files, *args])
    assert r.exit_code == 0, r.output
    (new,) = set(plans.glob("*.json")) - before  # run ids of one second sort at random
    return json.loads(new.read_text()), r.stdout


@pytest.mark.parametrize("planted", ["memorised", "none"])
def test_a_failed_or_missing_check_moves_nothing_whatever_the_target(
    base: Path, planted: str
) -> None:
    """The user's run alone would move the flips (the voters are sure), but the planted run
    shows a noise model that cannot find known swaps (or there is none): no threshold is
    vouched for, nothing moves even with --apply and a low target, and one line says why."""
    files = voters(base, planted, doubt=False)
    before = bytes_snapshot(base / "R")
    plan, out = separate(base, files, "--rule", "mean", "--target-precision", "0.7", "--apply")
    assert bytes_snapshot(base / "R") == before and plan["moves"] == []
    est = plan["estimate"]
    want = "failed" if planted == "memorised" else "unavailable"
    assert est["check"]["outcome"] == want and plan["threshold"] is None
    assert all(t["estimated_precision"] is None for t in est["thresholds"])
    assert max(t["unchecked_precision"] or 0 for t in est["thresholds"]) >= 0.9  # it would have
    assert "the voters' evidence cannot vouch for any threshold" in " ".join(out.split())
    # the would-be moves are listed for review, by the voters' mean logit, with no expectation
    rb, review = plan["review_budget"], plan["review"]
    assert rb["order"] == "mean_logit_other" and rb["expected_misfiled_listed"] is None
    assert len(review) >= FLIPS and plan["counts"]["review_candidates"] == len(review)
    logits = [float(np.mean([np.log(p / (1 - p)) for p in other_probs(r)])) for r in review]
    assert logits == sorted(logits, reverse=True) and logits[0] > logits[-1]
    if planted == "memorised":
        for f in est["check"]["folders"].values():
            assert f["swapped_in"] == 15 and f["recovery"] < 0.7
    else:
        assert "planted run" in est["check"]["why"]
    # the same files with a planted run that finds the swaps: the flips move
    files = voters(base, "same", doubt=False)
    plan, _ = separate(base, files, "--rule", "mean", "--target-precision", "0.7")
    assert plan["estimate"]["check"]["outcome"] == "passed" and plan["threshold"] is not None
    flips = set(json.loads((base / "flips.json").read_text()))
    assert {m["path"] for m in plan["moves"]} == flips


def test_review_list_ranked_by_probability_of_being_misfiled_within_the_budget(
    base: Path, tmp_path: Path
) -> None:
    """Unanimous rule: the doubt images are review candidates (one voter for the other class,
    one not). --review-budget 5 lists the 5 likeliest misfiled, says how many misfiled files
    they and the rest are expected to hold, and the serve queue and the report show the same
    order."""
    files = voters(base, "same")
    plan, out = separate(base, files, "--review-budget", "5")
    rb = plan["review_budget"]
    review, below = plan["review"], plan["review_below_budget"]
    assert rb["budget"] == 5 and rb["listed"] == len(review) == 5 and rb["order"] == "p_misfiled"
    assert rb["candidates"] == len(review) + len(below) >= 2 * DOUBT
    ranked = review + below
    assert [r["rank"] for r in ranked] == list(range(1, len(ranked) + 1))
    p = [r["p_misfiled"] for r in ranked]
    assert p == sorted(p, reverse=True) and p[0] > p[-1]
    assert rb["expected_misfiled_listed"] == pytest.approx(sum(p[:5]), abs=0.1)
    assert rb["expected_misfiled_below"] == pytest.approx(sum(p[5:]), abs=0.1)
    assert rb["expected_misfiled_unlisted"] is not None
    assert plan["counts"]["review"] == 5
    assert f"likeliest misfiled of {rb['candidates']} candidates" in " ".join(out.split())
    order = [r["path"] for r in review]
    # cleaner serve's queue, in its page order
    from cleaner.web import create_app

    html = create_app(base / "R").test_client().get("/review").get_data(as_text=True)
    ids = re.findall(r'id="item-(r\d+)"', html)
    assert [review[int(i[1:])]["path"] for i in ids] == order
    # the report's review list
    out_html = tmp_path / "report.html"
    r = runner.invoke(app, ["report", "--root", str(base / "R"), "--out", str(out_html)])
    assert r.exit_code == 0, r.output
    blob = re.search(r'id="data-review"[^>]*>(.*?)</script>', out_html.read_text(), re.S)
    assert blob is not None
    page = " ".join(out_html.read_text().split())
    assert (
        "Check of the estimate" in page and "passed" in page and "Likeliest misfiled first" in page
    )
    assert [it["path"] for it in json.loads(blob.group(1))] == order
    # a budget is a count of files
    r = runner.invoke(
        app, ["separate", "--root", str(base / "R"), "-p", *files, "--review-budget", "-1"]
    )
    assert r.exit_code == 1 and "--review-budget" in r.stderr and len(r.stderr.splitlines()) == 1
