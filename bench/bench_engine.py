"""The Ray engine against the local process pool on the same files, in one run: scan, hashing,
embedding (Lite0 and Lite2-gram), images/s per stage and ``ratio`` = Ray / local (goal >= 0.8).

The faces of ../shared/data/faces140k (1,100 real + 1,100 fake 256 px JPEG) are copied to a
temp folder (scan writes ROOT/.cleaner/). Each stage runs on the local engine (a process pool
of ``--workers``; the embedding in this process, as `cleaner predict` does) and on a Ray of
this process's own with ``--workers`` CPUs, alternating, ``--repeats`` times, best time kept
(the machine is shared). Ray's session is started before the timing (a cluster is started
once, not per command: ``ray_start_s`` says what it cost); the actor pool of an embedding
stage (one per CPU, each importing TensorFlow and building the backbone) is timed, as every
run pays it. The embedding runs on the first ``--images`` faces, without the cache.

``--nodes 2``: then the same stages on a two-node Ray cluster on 127.0.0.1
(``ray.cluster_utils.Cluster``, ``--workers`` / 2 CPUs per node), whose results must be
identical to the local engine's (manifest rows, hashes; embeddings within 1e-5).

    .venv/bin/python bench/bench_engine.py                       # make bench: small
    nice .venv/bin/python bench/bench_engine.py --images 400 --nodes 2
    nice .venv/bin/python bench/bench_engine.py --images 200 --marginal --files 200

``--marginal``: each embedding stage also on the first half of its images; the second half's
images/s on each engine (``marginal_*``) is what a long run gets once the fixed costs are paid.

``--generate N [N ...]``: scan and hashing only, on N generated small images per size (the
faces are 2,200 files, which the pool finishes in under a second, less than one Ray Data
execution's start-up; users run 100,000 and more): 64-128 px, JPEG and PNG, two class
folders, each image its own low-frequency pattern and noise (distinct bytes and hashes), written
once per size into a temp folder. Ray is started once for all sizes; its start
(``ray_start_s``) and its first Ray Data execution (``ray_first_execution_s``: seconds, whatever
the stage; a later one, ``ray_next_execution_s``, costs a fraction of a second) are timed apart,
before the stages, which a command with a Ray of its own pays once.

    nice -n 15 .venv/bin/python bench/bench_engine.py --generate 20000 100000
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cleaner.engine import Engine, default_workers, using

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces140k"
BACKBONES = ("efficientnet-lite0", "efficientnet-lite2-gram")


def _copy_faces(dst: Path, limit: int | None) -> Path:
    for cls in ("real", "fake"):
        (dst / cls).mkdir(parents=True)
        files = sorted((FACES / cls).glob("*.jpg"))
        for f in files[: limit // 2 if limit else None]:
            shutil.copy2(f, dst / cls / f.name)
    return dst


def _generate(dst: Path, n: int, seed: int = 0) -> Path:
    """``n`` small images under ``dst/real`` and ``dst/fake``, every one different: a random
    4x4 to 8x8 colour grid blown up (so perceptual hashes differ), plus noise; a quarter PNG."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for cls in ("real", "fake"):
        (dst / cls).mkdir(parents=True)
    for i in range(n):
        side = int(rng.integers(64, 129))
        g = int(rng.integers(4, 9))
        grid = rng.integers(0, 256, (g, g, 3), dtype=np.uint8)
        im = Image.fromarray(grid).resize((side, side), Image.Resampling.BILINEAR)
        px = np.asarray(im, dtype=np.int16) + rng.integers(-12, 13, (side, side, 3))
        im = Image.fromarray(np.clip(px, 0, 255).astype(np.uint8))
        cls = "real" if i % 2 else "fake"
        if i % 4 == 3:
            im.save(dst / cls / f"{i:07d}.png", compress_level=1)
        else:
            im.save(dst / cls / f"{i:07d}.jpg", quality=90)
    return dst


def _scan(root: Path, workers: int) -> list[tuple[str, ...]]:
    from cleaner.manifest import scan

    shutil.rmtree(root / ".cleaner", ignore_errors=True)  # a rescan would read nothing
    res = scan(root, workers=workers, progress=False)
    return [(r.path, r.sha256, str(r.width), str(r.height), r.status) for r in res.rows]


def _hash(items: list[tuple[str, str]], workers: int) -> list[Any]:
    from cleaner.hashing import hash_files

    run = hash_files(items, "phash", workers=workers, progress=False)
    return [run.table.hash, run.table.sha256]


def _embed(items: list[tuple[str, str]], name: str) -> np.ndarray:
    from cleaner.models.backbones import get_backbone
    from cleaner.models.embeddings import EmbeddingSpec, embed

    bb = get_backbone(name)
    spec = EmbeddingSpec(bb, bb.default_weights, bb.input_size, "center")
    return embed(None, items, spec).features


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return bool(a.shape == b.shape and np.allclose(a, b, atol=1e-5, rtol=0))
    if isinstance(a, list) and a and isinstance(a[0], np.ndarray):
        return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


Stage = tuple[int, Callable[[], Any], Callable[[], Any] | None]
"""(images, the call, the same call on half the images or None)."""


def _stages(
    root: Path, items: list[tuple[str, str]], n_embed: int, workers: int, backbones: list[str]
) -> dict[str, Stage]:
    stages: dict[str, Stage] = {
        "scan": (len(items), lambda: _scan(root, workers), None),
        "hash": (len(items), lambda: _hash(items, workers), None),
    }
    for name in backbones:
        sub, half = items[:n_embed], items[: n_embed // 2]
        stages[name] = (
            len(sub),
            lambda sub=sub, name=name: _embed(sub, name),
            lambda half=half, name=name: _embed(half, name),
        )
    return stages


def _compare(
    stages: dict[str, Stage], repeats: int, engine: Engine, marginal: bool = False
) -> dict[str, dict[str, Any]]:
    """Each stage on the local engine and on ``engine``, alternating; best times. ``marginal``:
    also on half the images, for the images/s of the second half alone (what a long run gets
    once the fixed costs, an actor's start-up above all, are paid)."""
    out: dict[str, dict[str, Any]] = {}
    for stage, (n, call, half) in stages.items():
        t_local: list[float] = []
        t_ray: list[float] = []
        same = True
        for _ in range(repeats if not stage.startswith("efficientnet") else 1):
            t, want = _timed(call)
            t_local.append(t)
            with using(engine):
                t, got = _timed(call)
            t_ray.append(t)
            same = same and _same(want, got)
        out[stage] = {
            "images": n,
            "local_ips": round(n / min(t_local), 1),
            "ray_ips": round(n / min(t_ray), 1),
            "ratio": round(min(t_local) / min(t_ray), 3),
            "identical": same,
        }
        if marginal and half is not None:
            h_local, _ = _timed(half)
            with using(engine):
                h_ray, _ = _timed(half)
            m_local, m_ray = min(t_local) - h_local, min(t_ray) - h_ray
            if min(m_local, m_ray) <= 0:  # the fixed costs' jitter exceeds half the work
                out[stage]["marginal"] = "not measurable: use more --images"
                continue
            out[stage]["marginal_local_ips"] = round((n - n // 2) / m_local, 1)
            out[stage]["marginal_ray_ips"] = round((n - n // 2) / m_ray, 1)
            out[stage]["marginal_ratio"] = round(m_local / m_ray, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=64, help="faces embedded per backbone")
    ap.add_argument("--files", type=int, default=0, help="faces scanned and hashed (0: all)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--nodes", type=int, default=0, help="2: also a two-node Ray cluster")
    ap.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    ap.add_argument("--marginal", action="store_true", help="also the second half's images/s")
    ap.add_argument(
        "--generate", type=int, nargs="*", default=[], metavar="N",
        help="scan and hashing only, on N generated small images (per N given)",
    )  # fmt: skip
    args = ap.parse_args()
    if args.generate:
        _generated(args.generate, args.workers, args.repeats)
        return
    if not FACES.is_dir():
        print(json.dumps({"bench": "engine", "skipped": f"{FACES} not found"}))
        return
    try:
        import ray
    except ImportError:
        print(json.dumps({"bench": "engine", "skipped": "ray is not installed (.[ray])"}))
        return
    from cleaner.engine.ray_data import ensure_session

    res: dict[str, Any] = {"bench": "engine", "workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="cleaner-bench-engine-") as tmp:
        root = _copy_faces(Path(tmp) / "faces", args.files or None)
        items = [(str(root / p), sha) for p, sha, *_ in _scan(root, args.workers)]
        stages = _stages(root, items, args.images, args.workers, args.backbones)
        t0 = time.perf_counter()
        ensure_session(None, args.workers)
        res["ray_start_s"] = round(time.perf_counter() - t0, 1)
        res["local_ray"] = _compare(stages, args.repeats, Engine.RAY, args.marginal)
        ray.shutdown()
        if args.nodes >= 2:
            from ray.cluster_utils import Cluster

            per_node = max(1, args.workers // args.nodes)
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": per_node})
            for _ in range(args.nodes - 1):
                cluster.add_node(num_cpus=per_node)
            ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
            cluster.wait_for_nodes()
            try:
                res[f"nodes_{args.nodes}"] = _compare(stages, 1, Engine.RAY)
            finally:
                ray.shutdown()
                cluster.shutdown()
    print(json.dumps(res))


def _generated(sizes: list[int], workers: int, repeats: int) -> None:
    """Scan and hashing at each size of generated files, local against a Ray started once."""
    import ray

    from cleaner.engine.ray_data import ensure_session
    from cleaner.engine.ray_data import map_batches as ray_map_batches

    res: dict[str, Any] = {"bench": "engine", "workers": workers}
    t0 = time.perf_counter()
    ensure_session(None, workers)
    res["ray_start_s"] = round(time.perf_counter() - t0, 1)
    # a session's first Ray Data execution costs seconds whatever it runs (Ray Data's start-up
    # in the driver and the workers), every later one a fraction of a second: timed apart
    t0 = time.perf_counter()
    list(ray_map_batches(sorted, list(range(64)), batch_size=32, progress=False))
    res["ray_first_execution_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    list(ray_map_batches(sorted, list(range(64)), batch_size=32, progress=False))
    res["ray_next_execution_s"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(res), flush=True)
    try:
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix="cleaner-bench-engine-") as tmp:
                t0 = time.perf_counter()
                root = _generate(Path(tmp) / "gen", n)
                made = round(time.perf_counter() - t0, 1)
                items = [(str(root / p), sha) for p, sha, *_ in _scan(root, workers)]
                stages = _stages(root, items, 0, workers, [])
                res[f"files_{n}"] = {"generate_s": made, **_compare(stages, repeats, Engine.RAY)}
                print(json.dumps({n: res[f"files_{n}"]}), flush=True)
    finally:
        ray.shutdown()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
