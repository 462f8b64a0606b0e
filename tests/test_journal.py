"""The mover: no overwrite, suffixes, sub-paths, lock, recovery of every crash state, undo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleaner import journal
from cleaner.errors import CleanerError, LockedError, PathEscapeError
from cleaner.journal import Move, apply_moves, list_runs, recover, undo, write_lock
from tests.relabel_helpers import contents, snapshot


def put(root: Path, rel: str, data: bytes) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


@pytest.fixture(params=["atomic", "link"])
def method(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with renameat2(RENAME_NOREPLACE) and with the link+unlink fallback."""
    if request.param == "link":
        monkeypatch.setenv("CLEANER_MOVE_METHOD", "link")
    else:
        monkeypatch.delenv("CLEANER_MOVE_METHOD", raising=False)
    return str(request.param)


def test_move_keeps_subpath_suffixes_collisions_and_undo_restores(
    tmp_path: Path, method: str
) -> None:
    put(tmp_path, "real_images/x/a.jpg", b"A")
    put(tmp_path, "real_images/b.jpg", b"B")
    put(tmp_path, "fake_images/x/a.jpg", b"other A")
    put(tmp_path, "fake_images/x/a~1.jpg", b"other A1")
    before = snapshot(tmp_path)
    run = apply_moves(
        tmp_path,
        [
            Move("real_images/x/a.jpg", "fake_images/x/a.jpg"),
            Move("real_images/b.jpg", "fake_images/b.jpg"),
        ],
        command="test",
    )
    assert [r.dst for r in run.results] == ["fake_images/x/a~2.jpg", "fake_images/b.jpg"]
    assert (tmp_path / "fake_images/x/a.jpg").read_bytes() == b"other A"
    assert (tmp_path / "fake_images/x/a~1.jpg").read_bytes() == b"other A1"
    assert (tmp_path / "fake_images/x/a~2.jpg").read_bytes() == b"A"
    assert contents(tmp_path) == contents_of(before)
    res = undo(tmp_path)
    assert res.undone_run == run.run_id and len(res.restored) == 2 and not res.left
    assert snapshot(tmp_path) == before


def contents_of(snap: dict[str, str]) -> object:
    from collections import Counter

    return Counter(snap.values())


def test_two_moves_to_one_destination_both_survive(tmp_path: Path) -> None:
    put(tmp_path, "real_images/a.jpg", b"1")
    put(tmp_path, "real_images/s/a.jpg", b"2")
    run = apply_moves(
        tmp_path,
        [
            Move("real_images/a.jpg", "fake_images/a.jpg"),
            Move("real_images/s/a.jpg", "fake_images/a.jpg"),
        ],
        command="test",
    )
    assert sorted(r.dst or "" for r in run.results) == ["fake_images/a.jpg", "fake_images/a~1.jpg"]
    assert sorted(snapshot(tmp_path)) == ["fake_images/a.jpg", "fake_images/a~1.jpg"]


@pytest.mark.parametrize("force_link", [False, True])
def test_mover_refuses_an_existing_destination(tmp_path: Path, force_link: bool) -> None:
    """The primitive itself, not an existence check before it, refuses to replace."""
    put(tmp_path, "a", b"src")
    put(tmp_path, "b", b"dst")
    m = journal._Mover()
    if force_link:
        m.atomic = False
    with pytest.raises(FileExistsError):
        m.move(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == b"src" and (tmp_path / "b").read_bytes() == b"dst"


def test_destination_taken_in_a_race_gets_the_next_suffix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process creates the chosen name between the choice and the move."""
    put(tmp_path, "real_images/a.jpg", b"mine")
    real_move = journal._Mover.move
    raced: list[Path] = []

    def racing_move(self: journal._Mover, src: Path, dst: Path) -> None:
        if not raced:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(b"someone else's")
            raced.append(dst)
        real_move(self, src, dst)

    monkeypatch.setattr(journal._Mover, "move", racing_move)
    run = apply_moves(tmp_path, [Move("real_images/a.jpg", "fake_images/a.jpg")], command="t")
    assert run.results[0].dst == "fake_images/a~1.jpg"
    assert (tmp_path / "fake_images/a.jpg").read_bytes() == b"someone else's"
    assert (tmp_path / "fake_images/a~1.jpg").read_bytes() == b"mine"
    undo(tmp_path)
    assert (tmp_path / "real_images/a.jpg").read_bytes() == b"mine"
    assert (tmp_path / "fake_images/a.jpg").read_bytes() == b"someone else's"


def test_changed_or_missing_sources_are_skipped_and_reported(tmp_path: Path) -> None:
    put(tmp_path, "real_images/a.jpg", b"now")
    run = apply_moves(
        tmp_path,
        [
            Move("real_images/a.jpg", "fake_images/a.jpg", sha256="0" * 64),
            Move("real_images/gone.jpg", "fake_images/gone.jpg"),
        ],
        command="t",
    )
    assert [r.status for r in run.results] == ["skipped", "skipped"]
    assert "changed since" in run.results[0].why
    assert "no longer exists" in run.results[1].why
    assert snapshot(tmp_path) == {"real_images/a.jpg": snapshot(tmp_path)["real_images/a.jpg"]}


@pytest.mark.parametrize(
    ("src", "dst", "match"),
    [
        ("../x.jpg", "fake_images/x.jpg", "outside ROOT"),
        ("real_images/a.jpg", "/etc/x.jpg", "absolute"),
        ("real_images/a.jpg", ".cleaner/journal/x.jsonl", ".cleaner"),
    ],
)
def test_moves_that_leave_root_refuse_the_whole_list(
    tmp_path: Path, src: str, dst: str, match: str
) -> None:
    put(tmp_path, "real_images/a.jpg", b"a")
    put(tmp_path, "real_images/b.jpg", b"b")
    before = snapshot(tmp_path)
    with pytest.raises(PathEscapeError, match=match):
        apply_moves(
            tmp_path,
            [Move("real_images/b.jpg", "fake_images/b.jpg"), Move(src, dst)],
            command="t",
        )
    assert snapshot(tmp_path) == before


def test_symlinked_folder_out_of_root_is_skipped(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "R"
    put(root, "real_images/a.jpg", b"a")
    (root / "fake_images").mkdir()
    (root / "fake_images" / "out").symlink_to(outside)
    run = apply_moves(root, [Move("real_images/a.jpg", "fake_images/out/a.jpg")], command="t")
    assert run.results[0].status == "skipped" and "outside ROOT" in run.results[0].why
    assert list(outside.iterdir()) == []


def test_same_source_twice_is_refused(tmp_path: Path) -> None:
    put(tmp_path, "real_images/a.jpg", b"a")
    with pytest.raises(CleanerError, match="twice"):
        apply_moves(
            tmp_path,
            [Move("real_images/a.jpg", "fake_images/a.jpg"), Move("real_images/a.jpg", "x/a")],
            command="t",
        )


def test_undo_leaves_a_changed_file_and_an_occupied_original(tmp_path: Path) -> None:
    for n in "abc":
        put(tmp_path, f"real_images/{n}.jpg", n.encode())
    run = apply_moves(
        tmp_path,
        [Move(f"real_images/{n}.jpg", f"fake_images/{n}.jpg") for n in "abc"],
        command="t",
    )
    assert len(run.moved) == 3
    (tmp_path / "fake_images/a.jpg").write_bytes(b"edited since")
    put(tmp_path, "real_images/b.jpg", b"a new b")
    res = undo(tmp_path, run.run_id)
    assert [r.wanted for r in res.restored] == ["real_images/c.jpg"]
    why = {r.src: r.why for r in res.left}
    assert "changed since" in why["fake_images/a.jpg"]
    assert "occupied" in why["fake_images/b.jpg"]
    assert (tmp_path / "fake_images/a.jpg").read_bytes() == b"edited since"
    assert (tmp_path / "real_images/b.jpg").read_bytes() == b"a new b"
    assert (tmp_path / "fake_images/b.jpg").read_bytes() == b"b"


def test_undo_is_a_stack_and_names_runs(tmp_path: Path) -> None:
    put(tmp_path, "real_images/a.jpg", b"a")
    r1 = apply_moves(tmp_path, [Move("real_images/a.jpg", "fake_images/a.jpg")], command="t")
    r2 = apply_moves(tmp_path, [Move("fake_images/a.jpg", "quarantine/q/a.jpg")], command="t")
    assert undo(tmp_path).undone_run == r2.run_id
    assert (tmp_path / "fake_images/a.jpg").exists()
    assert undo(tmp_path).undone_run == r1.run_id
    assert (tmp_path / "real_images/a.jpg").exists()
    with pytest.raises(CleanerError, match="no applied run to undo"):
        undo(tmp_path)
    with pytest.raises(CleanerError, match="no run 'nope'"):
        undo(tmp_path, "nope")
    undo_runs = [r for r in list_runs(tmp_path) if r.kind == "undo"]
    with pytest.raises(CleanerError, match="itself an undo"):
        undo(tmp_path, undo_runs[0].run_id)


# ------------------------------------------------------------------ recovery of crash states


def _journal_with_intent(root: Path, src: str, dst: str, data: bytes) -> Path:
    import hashlib

    jd = root / ".cleaner" / "journal"
    jd.mkdir(parents=True, exist_ok=True)
    j = jd / "20260101T000000Z-crash.jsonl"
    recs = [
        {"op": "begin", "run": j.stem, "seq": 1, "kind": "apply", "command": "t"},
        {
            "op": "intent",
            "i": 0,
            "src": src,
            "dst": dst,
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    ]
    j.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"op": "do')  # torn last line
    return j


def test_recover_rolls_back_a_move_that_had_not_happened(tmp_path: Path) -> None:
    put(tmp_path, "real_images/a.jpg", b"a")
    _journal_with_intent(tmp_path, "real_images/a.jpg", "fake_images/a.jpg", b"a")
    rep = recover(tmp_path)
    assert (rep.completed, rep.rolled_back) == (0, 1)
    assert snapshot(tmp_path).keys() == {"real_images/a.jpg"}
    assert recover(tmp_path).runs == []  # finished: nothing left


def test_recover_completes_a_crash_between_link_and_unlink(tmp_path: Path) -> None:
    put(tmp_path, "real_images/a.jpg", b"a")
    (tmp_path / "fake_images").mkdir()
    os.link(tmp_path / "real_images/a.jpg", tmp_path / "fake_images/a.jpg")
    _journal_with_intent(tmp_path, "real_images/a.jpg", "fake_images/a.jpg", b"a")
    rep = recover(tmp_path)
    assert (rep.completed, rep.rolled_back) == (1, 0)
    assert snapshot(tmp_path).keys() == {"fake_images/a.jpg"}
    res = undo(tmp_path)  # the recovered run is undoable
    assert len(res.restored) == 1
    assert snapshot(tmp_path).keys() == {"real_images/a.jpg"}


def test_recover_accepts_a_finished_move(tmp_path: Path) -> None:
    put(tmp_path, "fake_images/a.jpg", b"a")
    _journal_with_intent(tmp_path, "real_images/a.jpg", "fake_images/a.jpg", b"a")
    assert recover(tmp_path).completed == 1


def test_recover_never_touches_another_file_at_the_destination(tmp_path: Path) -> None:
    put(tmp_path, "real_images/a.jpg", b"a")
    put(tmp_path, "fake_images/a.jpg", b"a")  # same bytes, another file
    _journal_with_intent(tmp_path, "real_images/a.jpg", "fake_images/a.jpg", b"a")
    assert recover(tmp_path).rolled_back == 1
    assert snapshot(tmp_path).keys() == {"real_images/a.jpg", "fake_images/a.jpg"}


def test_recover_reports_a_destination_with_other_content(tmp_path: Path) -> None:
    put(tmp_path, "fake_images/a.jpg", b"not a")
    _journal_with_intent(tmp_path, "real_images/a.jpg", "fake_images/a.jpg", b"a")
    rep = recover(tmp_path)
    assert rep.problems and "sha256 differs" in rep.problems[0]
    assert (tmp_path / "fake_images/a.jpg").read_bytes() == b"not a"


# ------------------------------------------------------------------ lock


def test_second_writer_gets_one_clear_line(tmp_path: Path) -> None:
    put(tmp_path, "real_images/a.jpg", b"a")
    code = (
        "import sys, time\n"
        "from cleaner.journal import write_lock\n"
        "with write_lock(sys.argv[1]):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(30)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match="another cleaner command is writing") as e:
            apply_moves(tmp_path, [Move("real_images/a.jpg", "fake_images/a.jpg")], command="t")
        assert "\n" not in str(e.value) and f"pid {holder.pid}" in str(e.value)
        assert (tmp_path / "real_images/a.jpg").exists()
    finally:
        holder.kill()
        holder.wait()
    # released by the holder's death: the lock is the kernel's, not a stale file
    run = apply_moves(tmp_path, [Move("real_images/a.jpg", "fake_images/a.jpg")], command="t")
    assert len(run.moved) == 1


def test_lock_is_reentrant_in_one_process(tmp_path: Path) -> None:
    put(tmp_path, "real_images/a.jpg", b"a")
    with write_lock(tmp_path), write_lock(tmp_path):
        apply_moves(tmp_path, [Move("real_images/a.jpg", "fake_images/a.jpg")], command="t")
    with write_lock(tmp_path):
        pass


# ------------------------------------------------------------------ properties

NAMES = st.sampled_from(["a.png", "b.png", "c.jpg", "a~1.png", "d", "é ü.png", ".hidden.jpg"])
FOLDERS = st.sampled_from(["real_images", "fake_images", "real_images/s", "fake_images/s/t"])
CONTENT = st.sampled_from([b"x", b"y", b"zz", b"", b"x"])  # duplicates and empty files too


@st.composite
def tree_and_moves(draw: st.DrawFn) -> tuple[dict[str, bytes], list[Move]]:
    files = draw(
        st.dictionaries(
            st.tuples(FOLDERS, NAMES).map(lambda t: f"{t[0]}/{t[1]}"), CONTENT, max_size=12
        )
    )
    srcs = draw(st.lists(st.sampled_from(sorted(files)), unique=True)) if files else []
    moves = [Move(s, draw(st.tuples(FOLDERS, NAMES).map(lambda t: f"{t[0]}/{t[1]}"))) for s in srcs]
    return files, moves


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    case=tree_and_moves(),
    link=st.booleans(),
    batch=st.integers(1, 600),
    undo_batch=st.integers(1, 600),
)
def test_property_no_loss_no_overwrite_and_exact_undo(
    case: tuple[dict[str, bytes], list[Move]],
    link: bool,
    batch: int,
    undo_batch: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same names in every class folder (swaps, chains, cycles), applied and undone at
    batch sizes drawn apart from 1 to 600: a name the apply freed in an earlier batch and
    filled again must not stop the undo's batch (issue #18: 48 of 560 swapped files left)."""
    files, moves = case
    monkeypatch.setenv("CLEANER_MOVE_METHOD", "link" if link else "atomic")
    monkeypatch.setenv("CLEANER_TEST_BATCH_SIZE", str(batch))
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for rel, data in files.items():
            put(root, rel, data)
        before = snapshot(root)
        run = apply_moves(root, moves, command="prop", progress=False)
        after = snapshot(root)
        # the multiset of contents is preserved
        assert contents_of(after) == contents_of(before)
        moved = {r.src: r for r in run.results if r.status == "moved"}
        # every move was carried out (sources exist, nothing escapes) ...
        assert set(moved) == {m.src for m in moves}
        for src, r in moved.items():
            assert r.dst is not None and after[r.dst] == before[src]
            # ... to the wanted name or a suffixed one in the wanted folder
            assert Path(r.dst).parent == Path(r.wanted).parent
        # no file that stayed was overwritten: it still holds its own bytes at its path
        for rel, sha in before.items():
            if rel not in moved:
                assert after[rel] == sha
        if moves:
            monkeypatch.setenv("CLEANER_TEST_BATCH_SIZE", str(undo_batch))
            res = undo(root)
            assert not res.left
            with pytest.raises(CleanerError, match="undone already"):
                undo(root)  # a run counts as undone only once all of it is back
        assert snapshot(root) == before


def test_journal_is_fsynced_before_moves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every move happens after an fsync of a journal that already holds its intent."""
    put(tmp_path, "real_images/a.jpg", b"a")
    put(tmp_path, "real_images/b.jpg", b"b")
    synced: list[str] = []
    real_sync = journal._Journal.sync
    real_move = journal._Mover.move

    def sync(self: journal._Journal) -> None:
        real_sync(self)
        synced.append(self.path.read_text())

    def move(self: journal._Mover, src: Path, dst: Path) -> None:
        assert synced and str(src.relative_to(tmp_path.resolve())) in synced[-1]
        real_move(self, src, dst)

    monkeypatch.setattr(journal._Journal, "sync", sync)
    monkeypatch.setattr(journal._Mover, "move", move)
    run = apply_moves(
        tmp_path,
        [
            Move("real_images/a.jpg", "fake_images/a.jpg"),
            Move("real_images/b.jpg", "fake_images/b.jpg"),
        ],
        command="t",
    )
    assert len(run.moved) == 2
    recs = [json.loads(line) for line in synced[-1].splitlines()]
    assert [r["op"] for r in recs] == ["begin", "intent", "intent", "done", "done", "end"]


def test_runs_are_listed_in_order(tmp_path: Path) -> None:
    put(tmp_path, "real_images/a.jpg", b"a")
    r1 = apply_moves(tmp_path, [Move("real_images/a.jpg", "fake_images/a.jpg")], command="one")
    time.sleep(0.01)
    r2 = apply_moves(tmp_path, [Move("fake_images/a.jpg", "real_images/a.jpg")], command="two")
    runs = list_runs(tmp_path)
    assert [r.run_id for r in runs] == [r1.run_id, r2.run_id]
    assert [r.command for r in runs] == ["one", "two"] and all(r.finished for r in runs)


def test_a_file_where_the_destination_folder_should_be_is_reported(tmp_path: Path) -> None:
    put(tmp_path, "real_images/x/a.jpg", b"a")
    put(tmp_path, "real_images/b.jpg", b"b")
    put(tmp_path, "fake_images/x", b"a file, not a folder")
    run = apply_moves(
        tmp_path,
        [
            Move("real_images/x/a.jpg", "fake_images/x/a.jpg"),
            Move("real_images/b.jpg", "fake_images/b.jpg"),
        ],
        command="t",
    )
    assert [r.status for r in run.results] == ["skipped", "moved"]
    assert "cannot be created" in run.results[0].why
    assert (tmp_path / "real_images/x/a.jpg").read_bytes() == b"a"
    assert recover(tmp_path).runs == []  # the journal is closed, nothing pending
