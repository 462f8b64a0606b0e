"""The Ray engine gives the local engine's results, on a two-node Ray cluster on 127.0.0.1
(``ray.cluster_utils.Cluster``, one CPU per node) and on a Ray of its own (2 CPUs), and
survives workers killed in the middle of a run.

Ray's start-up is slow on 2 cores, so this module starts one cluster for all its tests and
stops it at the end; one test starts a Ray of its own in a ``cleaner`` subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cleaner.cli import app
from tests.models_helpers import colour_model, make_root

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

runner = CliRunner()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two Ray nodes on this machine, one CPU each; this process is the driver."""
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(autouse=True)
def _engine_choice_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--engine ray` through CliRunner sets this process's engine: undo it after each test, so
    no later test runs on Ray by accident."""
    import cleaner.engine

    monkeypatch.setattr(cleaner.engine, "_chosen", None)


DEMO_ORIGINALS = 180
"""`cleaner demo --n`: 207 files, 196 of them PNGs (the killed-worker test hashes 160); the
default 400 cost dedupe's verification, which runs on the driver whatever the engine, 3x the
time (its random pairs grow with the square of the files)."""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`cleaner demo`'s dataset: duplicates, near-duplicates, broken files, sub-folders."""
    d = tmp_path_factory.mktemp("demo") / "d"
    r = runner.invoke(app, ["demo", str(d), "--n", str(DEMO_ORIGINALS), "--json"])
    assert r.exit_code == 0, r.output
    made = json.loads(r.stdout.strip().splitlines()[-1])
    assert made["files"] > DEMO_ORIGINALS and made["duplicates"] > 0 and made["corrupt"] > 0
    return d


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=shutil.copy2)  # same bytes, same mtimes
    return dst


def _cli(*args: str) -> dict[str, Any]:
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def local(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo scanned and deduplicated on the local engine: what each Ray run
    must reproduce (one local run for the module's two equality tests, not one each)."""
    import cleaner.engine

    root = _copy(demo, tmp_path_factory.mktemp("local") / "d")
    with pytest.MonkeyPatch.context() as mp:  # `--engine local` sets this process's engine
        mp.setattr(cleaner.engine, "_chosen", None)
        s = _cli("scan", "--root", str(root), "--engine", "local")
        d = _cli("dedupe", "--root", str(root), "--engine", "local")
    assert s["files"] > DEMO_ORIGINALS and d["groups"] > 0  # the demo's duplicates were found
    return root


def _duplicates(root: Path) -> dict[str, Any]:
    d = json.loads((root / ".cleaner" / "duplicates.json").read_text())
    d.pop("created")
    d["stats"] = {k: v for k, v in d["stats"].items() if "second" not in k}
    return dict(d)


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _assert_same_state(a: Path, b: Path) -> None:
    """Manifest rows, hash caches and duplicates.json of two copies of a dataset are equal."""
    assert (a / ".cleaner/manifest.csv").read_text() == (b / ".cleaner/manifest.csv").read_text()
    ha, hb = (
        _npz(a / ".cleaner/cache/hashes-phash.npz"),
        _npz(b / ".cleaner/cache/hashes-phash.npz"),
    )
    assert ha.keys() == hb.keys()
    for k in ha:
        assert np.array_equal(ha[k], hb[k]), k
    assert _duplicates(a) == _duplicates(b)


def test_scan_and_dedupe_on_two_nodes_equal_the_local_engine(
    cluster: Any, demo: Path, local: Path, tmp_path: Path
) -> None:
    on_ray = _copy(demo, tmp_path / "ray")
    s = _cli("scan", "--root", str(on_ray), "--engine", "ray")
    d = _cli("dedupe", "--root", str(on_ray), "--engine", "ray")
    assert s["files"] > DEMO_ORIGINALS and d["groups"] > 0  # the demo's duplicates were found
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    _assert_same_state(local, on_ray)


def test_a_ray_of_its_own_equals_the_local_engine(demo: Path, local: Path, tmp_path: Path) -> None:
    """No address: `cleaner` starts a Ray on this machine (2 CPUs) for the run, in a process
    of its own, and stops it at exit; CLEANER_ENGINE chooses the engine."""
    on_ray = _copy(demo, tmp_path / "ray")
    env = {**os.environ, "CLEANER_ENGINE": "ray", "PYTHONPATH": os.getcwd()}
    env.pop("RAY_ADDRESS", None)
    env.pop("CLEANER_RAY_ADDRESS", None)
    both = (  # one process, so one Ray start-up: the CLI twice, as a script would
        "import sys; from typer.testing import CliRunner; from cleaner.cli import app\n"
        "for cmd in ('scan', 'dedupe'):\n"
        "    r = CliRunner().invoke(app, [cmd, '--root', sys.argv[1]])\n"
        "    assert r.exit_code == 0, r.output\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", both, str(on_ray)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    _assert_same_state(local, on_ray)


def test_embeddings_on_either_runtime_and_predictions_on_two_nodes_equal_the_local_engine(
    cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver's --runtime travels to the actors (each resolves it: an ``auto`` actor with
    a GPU would run Keras); on either runtime the actors' features are the local engine's, a
    broken file is reported, and `cleaner predict --engine ray` gives the local predictions.

    (One test, not two: each actor pool starts TensorFlow in a process per node, the slowest
    part of this module; the first runtime reads and writes ROOT's cache, the second none.)"""
    from cleaner.engine import using
    from cleaner.models import embeddings as E
    from cleaner.models import runtime as RT
    from cleaner.models.backbones import get_backbone

    root = make_root(tmp_path / "root", n_per_class=24)
    _cli("scan", "--root", str(root))
    items = [(str(p), f"{i:064x}") for i, p in enumerate(sorted(root.rglob("*.png")))]
    (root / "real_images" / "broken.png").write_bytes(b"not an image")
    items.append((str(root / "real_images" / "broken.png"), "f" * 64))
    # a Keras backbone (the numpy ones, e.g. spectrum, run on actors in the test of a killed
    # actor below)
    spec = E.EmbeddingSpec(get_backbone("simple-cnn"), "none", 32, "resize")
    asked: list[RT.Runtime] = []
    real_map = E.map_with_model

    def map_with_model(make: Any, *a: Any, **kw: Any) -> Any:
        asked.append(make.args[2])  # what the actors' embedder is given: the driver's choice
        return real_map(make, *a, **kw)

    monkeypatch.setattr(E, "map_with_model", map_with_model)
    for runtime, cache in ((RT.Runtime.FAST, root), (RT.Runtime.KERAS, None)):
        monkeypatch.setattr(RT, "_chosen", runtime)
        want = E.embed(None, items, spec, batch_size=8)
        with using("ray"):
            got = E.embed(cache, items, spec, batch_size=8)
        assert got.errors == want.errors and got.errors[-1]  # the broken file: reported
        assert got.computed == len(items) and got.cached == 0
        np.testing.assert_allclose(got.features, want.features, atol=1e-6, rtol=0)
    assert asked == [RT.Runtime.FAST, RT.Runtime.KERAS]
    monkeypatch.setattr(E, "map_with_model", real_map)
    monkeypatch.setattr(RT, "_chosen", None)  # predict below: the CLI's own choice

    model = colour_model(tmp_path / "colour.keras")
    outs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"pred-{engine}.json"
        _cli("predict", "--root", str(root), "--model", str(model), "--out", str(out),
             "--engine", engine)  # fmt: skip
        outs[engine] = {
            e["sha256"]: e["prob_fake"] for e in json.loads(out.read_text())["predictions"]
        }
    assert outs["ray"].keys() == outs["local"].keys() and len(outs["ray"]) == 48
    for sha, p in outs["local"].items():
        assert abs(outs["ray"][sha] - p) <= 1e-4


def _batch_seen(batch: Sequence[int]) -> list[tuple[int, int, int]]:
    """Each item with the first item and the length of the batch it came in."""
    return [(x, batch[0], len(batch)) for x in batch]


def test_a_ray_task_runs_several_batches_each_as_the_local_engine_cuts_them(cluster: Any) -> None:
    """Cheap stages get several batches per Ray task (a task's own cost is that of a batch of
    small files), and each batch is still the local engine's."""
    from cleaner.engine import Engine, EngineConfig, map_batches, ray_data

    items = list(range(1000))
    assert ray_data._task_blocks(334, 3) == 9  # 41 batches a task: 4 tasks per CPU at least
    assert ray_data._task_blocks(3125, 32) == 98  # 100,000 files: 1,024 records a task
    assert ray_data._task_blocks(5, 32) == 5
    want = list(map_batches(_batch_seen, items, batch_size=3, workers=1))
    got = list(map_batches(_batch_seen, items, batch_size=3, engine=EngineConfig(Engine.RAY)))
    assert got == want


# --- workers killed in the middle of a run ----------------------------------------------------


def _recorded_hash_batch(batch: Sequence[tuple[str, str]], log: str) -> list[Any]:
    """hashing's batch function, noting each sha256 it hashed (O_APPEND: one line each)."""
    from cleaner.hashing import hash_batch

    with open(log, "a") as f:
        f.write("".join(f"{sha}\n" for _, sha in batch))
    time.sleep(0.2)  # long enough for a worker to be killed while it holds a batch
    return hash_batch(batch, method="phash")


def _kill_one_worker(title: str, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first process whose title starts with ``title`` (Ray names its workers
    ``ray::<task>``), like the OOM killer would."""
    while not stop.is_set() and not killed:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith(title):
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
                return
        time.sleep(0.02)


@pytest.fixture
def deadline() -> Iterator[None]:
    """Fail, rather than hang the suite, if a run with a killed worker does not end in 3
    minutes (seen once in three runs while writing these tests: Ray Data waited on)."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError("the run with a killed worker did not finish in 180 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(180)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _killing(title: str) -> tuple[threading.Thread, list[int], threading.Event]:
    killed: list[int] = []
    stop = threading.Event()
    t = threading.Thread(target=_kill_one_worker, args=(title, killed, stop), daemon=True)
    t.start()
    return t, killed, stop


def test_a_worker_killed_while_hashing_costs_only_its_task(
    cluster: Any, demo: Path, tmp_path: Path, deadline: None
) -> None:
    import functools

    from cleaner.engine import Engine, EngineConfig, map_batches
    from cleaner.hashing import hash_batch

    rows = [(str(p), f"{i:064x}") for i, p in enumerate(sorted(demo.rglob("*.png")))][:160]
    assert len(rows) == 160
    want = [r for b in map_batches(hash_batch, rows, batch_size=8, workers=1) for r in b]
    log = tmp_path / "hashed.log"
    fn = functools.partial(_recorded_hash_batch, log=str(log))
    thread, killed, stop = _killing("ray::MapBatches(_Task)")
    try:
        got = [
            r
            for b in map_batches(fn, rows, batch_size=8, engine=EngineConfig(Engine.RAY))
            for r in b
        ]
    finally:
        stop.set()
        thread.join()
    assert killed, "no Ray worker was seen running a batch"
    assert got == want
    hashed = log.read_text().split()
    assert set(hashed) == {s for _, s in rows}  # nothing lost
    # nothing computed twice beyond the killed task's batches (20 batches of 8 on 2 CPUs: 2
    # batches a task, 4 tasks per CPU)
    assert len(hashed) - len(rows) <= 2 * 8


def test_an_actor_killed_while_embedding_and_a_driver_killed_resume(
    cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deadline: None
) -> None:
    """An actor dies mid-run (Ray replaces it and re-runs its batch), then the driver dies after
    two shards; a rerun computes only what the shards lack, and the features are the local
    engine's."""
    from cleaner.engine import using
    from cleaner.models import embeddings as E
    from cleaner.models.backbones import get_backbone

    root = make_root(tmp_path / "root", n_per_class=40)
    items = [(str(p), f"{i:064x}") for i, p in enumerate(sorted(root.rglob("*.png")))]
    spec = E.EmbeddingSpec(get_backbone("spectrum"), "none", 48, "center")
    want = E.embed(None, items, spec, batch_size=8)
    monkeypatch.setattr(E, "SHARD_IMAGES", 16)
    done = [0]

    def driver_dies_after_the_first_results(n: int) -> None:
        done[0] += n
        if done[0] > n:  # the first results (64 images: 4 shards) are written, then it dies
            raise KeyboardInterrupt

    thread, killed, stop = _killing("ray::MapWorker(MapBatches(_ModelActor))")
    try:
        with using("ray"), pytest.raises(KeyboardInterrupt):
            E.embed(root, items, spec, batch_size=8, progress=driver_dies_after_the_first_results)
    finally:
        stop.set()
        thread.join()
    assert killed, "no Ray actor was seen"
    shards = len(list((E.cache_root(root) / spec.key).glob("shard-*.npz")))
    with using("ray"):
        again = E.embed(root, items, spec, batch_size=8)
    assert 0 < again.cached == 16 * shards < len(items)
    assert again.computed == len(items) - again.cached
    np.testing.assert_allclose(again.features, want.features, atol=1e-5, rtol=0)


def _square_or_die(batch: Sequence[int]) -> list[int]:
    """A batch function whose worker dies on item 13, every time (a decoder segfault)."""
    if 13 in batch:
        os._exit(9)
    return [x * x for x in batch]


def test_an_item_that_kills_every_retry_is_isolated_as_on_the_local_engine(
    cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cleaner.engine import Engine, EngineConfig, map_batches, ray_data

    monkeypatch.setattr(ray_data, "RETRIES", 0)  # each retry costs a worker's restart

    out = [
        y
        for b in map_batches(
            _square_or_die,
            list(range(40)),
            batch_size=4,
            workers=2,
            on_crash=lambda x, e: -x,
            engine=EngineConfig(Engine.RAY),
        )
        for y in b
    ]
    assert out == [-x if x == 13 else x * x for x in range(40)]
