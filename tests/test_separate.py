"""`cleaner separate` and `cleaner undo` through the CLI: the acceptance cases of the issue."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cleaner.cli import app
from tests.relabel_helpers import (
    acceptance_probs,
    bytes_snapshot,
    make_tree,
    png_bytes,
    sha_of,
    snapshot,
    write_json,
    write_v1,
)

runner = CliRunner()
N = 150  # per class: 20 flips are 13% of a class, inside the default --max-fraction 0.15


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT with 150 + 150 tiny PNGs (scanned once), three out-of-fold v1 files that agree on
    20 flipped images per class and say 0.55 on 20 more per class, and flips.json."""
    d = tmp_path_factory.mktemp("sep")
    root = d / "R"
    labels = make_tree(root, N, N)
    flipped: set[str] = set()
    for m in range(3):
        probs, flipped = acceptance_probs(labels, model=m)
        write_v1(d / f"p{m}.json", root, probs, labels, name=f"m{m}")
    write_json(d / "flips.json", sorted(flipped))
    write_json(d / "labels.json", labels)
    from cleaner.manifest import scan

    scan(root, progress=False)
    return d


@pytest.fixture
def ws(base: Path, tmp_path: Path) -> Path:
    """A private copy of the base workspace (mtimes kept, so the rescan is incremental)."""
    d = tmp_path / "ws"
    shutil.copytree(base, d, copy_function=shutil.copy2, symlinks=True)
    return d


def cli(ws: Path, *args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, [*args], catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def preds(ws: Path) -> list[str]:
    return [str(ws / f"p{m}.json") for m in range(3)]


def moved_files(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return set(before) - set(after)


def test_dry_run_then_apply_moves_exactly_the_flips_and_undo_restores(ws: Path) -> None:
    root = ws / "R"
    flips = set(json.loads((ws / "flips.json").read_text()))
    before_bytes = bytes_snapshot(root)
    before = snapshot(root)

    # one --predictions followed by three files, as the shell expands --predictions *.json
    code, out, err = cli(ws, "separate", "--root", str(root), "--predictions", *preds(ws))
    assert code == 0, err
    assert "dry run" in out and "40 to move" in out
    assert bytes_snapshot(root) == before_bytes  # byte-identical outside .cleaner/
    plans = sorted((root / ".cleaner" / "plans").glob("*.json"))
    assert len(plans) == 1
    plan = json.loads(plans[0].read_text())
    assert plan["format"] == "cleaner.plan.v1" and plan["applied"] is False
    assert {m["path"] for m in plan["moves"]} == flips
    first = plan["moves"][0]
    assert set(first) >= {"path", "sha256", "from_label", "to_label", "dst", "evidence"}
    assert [e["file"] for e in first["evidence"]] == preds(ws) == plan["prediction_files"]

    code, out, err = cli(
        ws, "separate", "--root", str(root), "--predictions", *preds(ws), "--apply", "--json"
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["moved"] == 40 and summary["applied"] is True and not summary["skipped"]
    after = snapshot(root)
    assert moved_files(before, after) == flips
    for p in flips:  # to the other class folder, sub-path kept, same bytes
        top, rest = p.split("/", 1)
        other = "fake_images" if top == "real_images" else "real_images"
        assert after[f"{other}/{rest}"] == before[p]
    applied = json.loads((root / ".cleaner/plans" / f"{summary['run_id']}.json").read_text())
    assert applied["applied"] is True and all(m["moved"] for m in applied["moves"])

    code, out, err = cli(ws, "undo", "--root", str(root))
    assert code == 0, err
    assert f"undid run {summary['run_id']}: 40 files" in out
    assert bytes_snapshot(root) == before_bytes
    undone = json.loads((root / ".cleaner/plans" / f"{summary['run_id']}.json").read_text())
    assert undone["undone"]["restored"] == 40 and undone["undone"]["left"] == []


def test_repeated_predictions_option_and_json(ws: Path) -> None:
    root = ws / "R"
    args = [x for p in preds(ws) for x in ("-p", p)]
    code, out, err = cli(ws, "separate", "--root", str(root), *args, "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["moves"] == 40 and s["applied"] is False
    assert [p["matched"] for p in s["predictions"]] == [2 * N] * 3


def test_files_without_predictions_flag_are_refused(ws: Path) -> None:
    code, _, err = cli(ws, "separate", "--root", str(ws / "R"), str(ws / "p0.json"))
    assert code == 1 and "after --predictions" in err


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_entry_outside_root_refuses_everything(ws: Path, kind: str) -> None:
    root = ws / "R"
    if kind == "dotdot":
        bad = "../../etc/passwd"
    elif kind == "absolute":
        bad = "/etc/passwd"
    else:
        (root / "real_images" / "escape.png").symlink_to(ws / "p0.json")
        bad = "real_images/escape.png"
    doc = json.loads((ws / "p2.json").read_text())
    doc["predictions"].append({"path": bad, "label": "real", "prob_fake": 0.99})
    write_json(ws / "p2.json", doc)
    before = bytes_snapshot(root)
    code, _, err = cli(ws, "separate", "--root", str(root), "--predictions", *preds(ws), "--apply")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "p2.json" in lines[0] and bad in lines[0] and "outside ROOT" in lines[0]
    assert bytes_snapshot(root) == before
    assert not (root / ".cleaner" / "journal").exists()


def test_malformed_json_is_one_line(ws: Path) -> None:
    (ws / "p1.json").write_text('{"format": "cleaner.predictions.v1", "predictions": [')
    code, _, err = cli(ws, "separate", "--root", str(ws / "R"), "--predictions", *preds(ws))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "not valid JSON" in err


def test_every_input_format(ws: Path) -> None:
    """Hard-label list (0 = fake / 1 = real), predict-dir style list, plain mapping: three
    tools that agree on the flips move them under the default rule."""
    root = ws / "R"
    labels: dict[str, str] = json.loads((ws / "labels.json").read_text())
    flips = set(json.loads((ws / "flips.json").read_text()))

    def says(p: str) -> str:  # what a correct tool says: the true class
        return labels[p] if p not in flips else ("fake" if labels[p] == "real" else "real")

    hard = [{"image": p, "prediction": 0 if says(p) == "fake" else 1} for p in sorted(labels)]
    listed = [
        {"file": p, "label": says(p), "prob_fake": 0.98 if says(p) == "fake" else 0.02}
        for p in sorted(labels)
    ]
    mapping = {p: says(p) for p in sorted(labels)}
    files = [
        str(write_json(ws / "hard.json", hard)),
        str(write_json(ws / "list.json", listed)),
        str(write_json(ws / "map.json", mapping)),
    ]
    before = snapshot(root)
    code, out, err = cli(
        ws, "separate", "--root", str(root), "--predictions", *files, "--apply", "--json"
    )
    assert code == 0, err
    s = json.loads(out)
    assert [p["format"] for p in s["predictions"]] == ["hard-labels", "hard-labels", "mapping"]
    assert s["moved"] == 40
    assert moved_files(before, snapshot(root)) == flips
    assert "does not say whether it is out-of-fold" in " ".join(s["warnings"])
    assert sum("counts as certain" in w for w in s["warnings"]) == 2  # hard.json and map.json


def test_guard_refuses_a_plan_moving_too_much_then_override(ws: Path) -> None:
    root = ws / "R"
    labels: dict[str, str] = json.loads((ws / "labels.json").read_text())
    probs, _ = acceptance_probs(labels, flips=40, coins=0)
    f = write_v1(ws / "big.json", root, probs, labels)
    before = bytes_snapshot(root)
    code, _, err = cli(ws, "separate", "--root", str(root), "--predictions", str(f), "--apply")
    assert code == 1
    (line,) = err.strip().splitlines()
    assert "40 of 150" in line and "--max-fraction 0.15" in line and "--max-fraction 0.27" in line
    assert bytes_snapshot(root) == before
    code, _, err = cli(
        ws, "separate", "--root", str(root), "-p", str(f), "--apply", "--max-fraction", "0.27"
    )
    assert code == 0, err
    assert len(set(before) - set(snapshot(root))) == 80


def test_not_out_of_fold_warns_and_stale_entries_are_not_used(ws: Path) -> None:
    root = ws / "R"
    labels: dict[str, str] = json.loads((ws / "labels.json").read_text())
    probs, flipped = acceptance_probs(labels)
    f = write_v1(ws / "in_sample.json", root, probs, labels, out_of_fold=False)
    victim = sorted(flipped)[0]
    (root / victim).write_bytes(png_bytes(10**6))  # another image at the same path
    code, out, err = cli(ws, "separate", "--root", str(root), "-p", str(f), "--json")
    assert code == 0, err
    s = json.loads(out)
    assert any("not out-of-fold" in w for w in s["warnings"])
    assert s["predictions"][0]["stale"] == 1 and s["moves"] == 39


def test_confident_rule_and_coin_flip_floor(ws: Path) -> None:
    root = ws / "R"
    flips = set(json.loads((ws / "flips.json").read_text()))
    code, out, err = cli(
        ws, "separate", "--root", str(root), "-p", *preds(ws), "--rule", "confident", "--json"
    )
    assert code == 0, err
    plan = json.loads(Path(json.loads(out)["plan"]).read_text())
    assert {m["path"] for m in plan["moves"]} == flips
    code, _, err = cli(
        ws, "separate", "--root", str(root), "-p", *preds(ws), "--min-confidence", "0.5"
    )
    assert code == 1 and "coin flip" in err
    code, _, _ = cli(ws, "separate", "--root", str(root), "-p", *preds(ws), "--rule", "vote")
    assert code == 2  # Typer's usage error: not one of the rules


def test_undo_without_runs_and_with_unknown_run(ws: Path) -> None:
    root = ws / "R"
    code, _, err = cli(ws, "undo", "--root", str(root))
    assert code == 1 and "no applied run to undo" in err
    code, _, err = cli(ws, "undo", "--root", str(root), "--run", "nope")
    assert code == 1 and "no run 'nope'" in err


def test_undo_reports_a_file_changed_since(ws: Path) -> None:
    root = ws / "R"
    code, out, err = cli(ws, "separate", "--root", str(root), "-p", *preds(ws), "--apply", "--json")
    assert code == 0, err
    s = json.loads(out)
    plan = json.loads(Path(s["plan"]).read_text())
    edited = plan["moves"][0]["dst"]
    (root / edited).write_bytes(b"edited after the move")
    code, out, err = cli(ws, "undo", "--root", str(root), "--run", s["run_id"], "--json")
    assert code == 0, err
    u = json.loads(out)
    assert u["restored"] == 39 and [x["path"] for x in u["left"]] == [edited]
    assert "changed since" in u["left"][0]["why"]
    assert (root / edited).read_bytes() == b"edited after the move"


def test_second_writer_is_refused_with_one_line(ws: Path) -> None:
    root = ws / "R"
    code = (
        "import sys, time\nfrom cleaner.journal import write_lock\n"
        "with write_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        rc, _, err = cli(ws, "separate", "--root", str(root), "-p", *preds(ws), "--apply")
        assert rc == 1 and len(err.strip().splitlines()) == 1
        assert "another cleaner command is writing" in err
    finally:
        holder.kill()
        holder.wait()


def test_separate_and_undo_never_import_tensorflow(ws: Path) -> None:
    root = ws / "R"
    exe = [sys.executable, "-X", "importtime", "-m", "cleaner"]
    for args in (
        ["separate", "--root", str(root), "-p", *preds(ws), "--apply", "--json"],
        ["undo", "--root", str(root), "--json"],
    ):
        r = subprocess.run([*exe, *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
        assert "cleaner.journal" in imported  # the probe works
        assert not {m for m in imported if m.split(".")[0] in ("tensorflow", "keras", "torch")}
    assert sha_of(root, "real_images/real_00001.png")  # back in place after the undo


def continuous(ws: Path) -> list[str]:
    """Two voters sure of the true class (logit +-4 to 9, spread 1): continuous probabilities
    (with logits all near one value the noise model cannot tell a folder's noise from the
    voters' doubt, and its check on the planted run says so)."""
    import numpy as np

    flips = set(json.loads((ws / "flips.json").read_text()))
    labels: dict[str, str] = json.loads((ws / "labels.json").read_text())
    rng = np.random.default_rng(1)
    files = []
    for m in range(2):
        logit = {
            p: rng.uniform(4.0, 9.0) * (1 if (labels[p] == "fake") != (p in flips) else -1)
            for p in labels
        }
        probs = {p: float(1 / (1 + np.exp(-(v + rng.normal(0, 1.0))))) for p, v in logit.items()}
        # their heads' planted run: voters this sure judge the swapped images as before
        f = write_v1(ws / f"c{m}.json", ws / "R", probs, labels, planted=probs)
        files.append(str(f))
    return files


def test_target_precision_records_the_estimate_beside_the_plan(ws: Path) -> None:
    """The default --target-precision 0.9: the flips move, and the plan and the summary say
    what was estimated (precision, recall, noise rate, wrong moves, every threshold tried)."""
    root = ws / "R"
    flips = set(json.loads((ws / "flips.json").read_text()))
    files = continuous(ws)
    code, out, err = cli(ws, "separate", "--root", str(root), "-p", *files)
    assert code == 0, err
    assert "target precision 0.9" in out and "estimate: noise rate" in out
    code, out, err = cli(ws, "separate", "--root", str(root), "-p", *files, "--json")
    assert code == 0, err
    s = json.loads(out)
    plan = json.loads(Path(s["plan"]).read_text())
    assert {m["path"] for m in plan["moves"]} == flips
    assert plan["target_precision"] == 0.9 and 0.7 <= plan["threshold"] < 0.97
    est = plan["estimate"]
    assert est["reached"] and est["estimated_precision"] >= 0.9
    assert 0.05 < est["estimated_noise_rate"] < 0.25 and est["estimated_recall"] > 0.5
    assert est["expected_wrong_moves"] == pytest.approx(
        40 * (1 - est["estimated_precision"]), abs=0.1
    )
    tried = [t["threshold"] for t in est["thresholds"]]
    assert tried == sorted(tried) and tried[0] == 0.7 and plan["threshold"] in tried
    assert s["estimate"]["estimated_precision"] == est["estimated_precision"]
    assert s["threshold"] == plan["threshold"]


def test_voters_that_know_nothing_move_nothing_and_say_so(ws: Path) -> None:
    """Probabilities unrelated to the folders (some far from 0.5): no threshold's moves reach
    the target, so nothing moves even with --apply (exit 0), the candidates go to review."""
    import numpy as np

    root = ws / "R"
    labels: dict[str, str] = json.loads((ws / "labels.json").read_text())
    rng = np.random.default_rng(3)
    probs = {p: float(1 / (1 + np.exp(-rng.normal(0, 2.0)))) for p in sorted(labels)}
    f = write_v1(ws / "weak.json", root, probs, labels, planted=probs)
    before = bytes_snapshot(root)
    code, out, err = cli(ws, "separate", "--root", str(root), "-p", str(f), "--rule", "mean")
    assert code == 0, err
    assert "cannot vouch for any threshold" in " ".join(out.split())
    code, out, err = cli(
        ws, "separate", "--root", str(root), "-p", str(f), "--rule", "mean", "--apply", "--json"
    )
    assert code == 0, err
    s = json.loads(out)
    plan = json.loads(Path(s["plan"]).read_text())
    assert s["moves"] == 0 and plan["threshold"] is None and not plan["estimate"]["reached"]
    assert bytes_snapshot(root) == before
    would = [t["moves"] for t in plan["estimate"]["thresholds"]]
    assert would[0] > 0 and len(plan["review"]) >= would[0]  # the candidates, for a person
    assert plan["estimate"]["check"]["outcome"] == "failed"
    assert all(t["estimated_precision"] is None for t in plan["estimate"]["thresholds"])


def test_fixed_threshold_still_reports_its_estimate_and_bad_targets_are_refused(ws: Path) -> None:
    root = ws / "R"
    code, out, err = cli(
        ws, "separate", "--root", str(root), "-p", *continuous(ws), "--target-precision", "0",
        "--min-confidence", "0.95", "--json",
    )  # fmt: skip
    assert code == 0, err
    plan = json.loads(Path(json.loads(out)["plan"]).read_text())
    assert plan["target_precision"] is None and plan["threshold"] == 0.95
    assert plan["estimate"]["estimated_precision"] > 0.5
    assert "thresholds" not in plan["estimate"]
    # a few distinct probabilities (these files have a dozen): no estimate, the fixed 0.9
    code, out, err = cli(ws, "separate", "--root", str(root), "-p", *preds(ws), "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["threshold"] == 0.9 and s["moves"] == 40 and s["estimate"] == {}
    assert any("cannot be estimated" in w for w in s["warnings"])
    for bad in ("1", "0.3", "-0.9"):
        code, _, err = cli(
            ws, "separate", "--root", str(root), "-p", *preds(ws), "--target-precision", bad
        )
        assert code == 1 and len(err.strip().splitlines()) == 1 and "--target-precision" in err
