"""ROOT opened once per command (issue 27): the CLI opens the workspace, every step takes it.

`separate --apply` used to open the dataset three times, recover crashed runs twice and read
`manifest.csv` again inside the mover right after the scan wrote it. These tests count the
calls through the CLI on a real small dataset.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from typer.testing import CliRunner

from cleaner import dataset, journal
from cleaner.cli import app
from cleaner.dataset import Workspace
from cleaner.state import manifest as manifest_file
from tests.relabel_helpers import acceptance_probs, make_tree, write_v1

runner = CliRunner()


@pytest.fixture
def counted() -> Iterator[Counter[str]]:
    """Counts of: ROOT opened (``open_dataset``), crash recovery run (``journal.recover``),
    manifest.csv read (``state.manifest.read_rows``), however each is imported: the profiler
    sees every call of those functions' code in this thread."""
    watched = {
        dataset.open_dataset.__code__: "open",
        journal.recover.__code__: "recover",
        manifest_file.read_rows.__code__: "manifest read",
    }
    counts: Counter[str] = Counter()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in watched:
            counts[watched[frame.f_code]] += 1

    sys.setprofile(profile)
    try:
        yield counts
    finally:
        sys.setprofile(None)


def _dataset(tmp_path: Path) -> tuple[Path, list[str], set[str]]:
    root = tmp_path / "R"
    labels = make_tree(root, 40, 40)
    files: list[str] = []
    flipped: set[str] = set()
    for m in range(3):
        probs, flipped = acceptance_probs(labels, model=m)
        write_v1(tmp_path / f"p{m}.json", root, probs, labels, name=f"m{m}")
        files.append(str(tmp_path / f"p{m}.json"))
    return root, files, flipped


def test_separate_apply_opens_recovers_and_reads_the_manifest_once(
    tmp_path: Path, counted: Counter[str]
) -> None:
    root, preds, _ = _dataset(tmp_path)
    runner.invoke(app, ["scan", "--root", str(root)], catch_exceptions=False)  # a manifest to read
    counted.clear()
    r = runner.invoke(
        app,
        ["separate", "--root", str(root), "--predictions", *preds, "--apply", "--json",
         "--target-precision", "0", "--max-fraction", "0.5"],
        catch_exceptions=False,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["moved"] > 0  # the run really moved files, so the mover ran
    assert counted == {"open": 1, "recover": 1, "manifest read": 1}, counted


def test_a_workspace_answers_the_scan_rows_the_command_already_read(tmp_path: Path) -> None:
    from cleaner.manifest import ok_rows, scan

    root, _, _ = _dataset(tmp_path)
    ws = Workspace.open(root)
    rows = scan(ws, progress=False).rows
    (root / rows[0].path).unlink()
    # the same command does not rescan: the rows are the workspace's
    assert [r.path for r in ok_rows(ws)] == [r.path for r in rows if r.ok]
    # a new command (a new workspace) sees the disk
    assert len(ok_rows(Workspace.open(root))) < len([r for r in rows if r.ok])
