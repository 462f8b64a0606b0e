"""`cleaner train` at a million images: pixels are decoded batch by batch (never the whole split),
an image that stops decoding mid-run is skipped and counted, and a phase 1 head fitted on
projected features folds back into the model's Normalization + Dense layers exactly."""

from __future__ import annotations

import json
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cleaner.cli import app
from tests.train_helpers import make_dataset

runner = CliRunner()

BATCH = 4


def _train(root: Path, out: Path, *extra: str) -> dict[str, Any]:
    res = runner.invoke(
        app,
        ["train", "--root", str(root), "--out", str(out), "--backbone", "simple-cnn",
         "--weights", "none", "--image-size", "16", "--batch-size", str(BATCH), "--seed", "3",
         "--json", *extra],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return dict(json.loads(out.with_suffix(".metrics.json").read_text()))


def test_training_holds_a_batch_of_pixels_not_the_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every decoded image is watched until it is freed: at no time are more than two batches'
    worth alive, while the run decodes the split several times over (train epochs, val, test)."""
    from cleaner.models import inputs as INP
    from cleaner.models import train as T

    assert "arrays" not in T._Data.__dataclass_fields__
    lock = threading.Lock()
    alive, peak, decoded = [0], [0], [0]

    def freed() -> None:
        with lock:
            alive[0] -= 1

    def watched(load: Any) -> Any:
        def wrapper(path: str, size: int, crop: str = "center") -> np.ndarray:
            arr = load(path, size, crop)
            with lock:
                alive[0] += 1
                decoded[0] += 1
                peak[0] = max(peak[0], alive[0])
            weakref.finalize(arr, freed)
            return arr

        return wrapper

    monkeypatch.setattr(INP, "load_for_training", watched(INP.load_for_training))
    monkeypatch.setattr(INP, "load_for_eval", watched(INP.load_for_eval))
    root = make_dataset(tmp_path / "ds", 20, size=24)
    m = _train(root, tmp_path / "m.keras", "--epochs", "2")
    assert m["unreadable"] == {"count": 0, "paths": []}
    assert decoded[0] >= 40 + m["split"]["train"]["images"]  # the split, and more
    assert 0 < peak[0] <= 2 * BATCH, (peak[0], decoded[0])


def test_an_image_that_stops_decoding_mid_run_is_skipped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the scan and the split, one training and one test image are overwritten with
    garbage: the run finishes, leaves them out of their batches and of the test figures, and
    the metrics file names them."""
    from cleaner.models import train as T

    root = make_dataset(tmp_path / "ds", 12, size=24)
    broken: list[str] = []
    split = T._split

    def split_then_break(*args: Any, **kwargs: Any) -> Any:
        data = split(*args, **kwargs)
        for part in ("train", "test"):
            path = root / data.kept[part][0].path
            path.write_bytes(b"not an image any more")
            broken.append(str(path))
        return data

    monkeypatch.setattr(T, "_split", split_then_break)
    m = _train(root, tmp_path / "m.keras", "--epochs", "1")
    assert m["unreadable"] == {"count": 2, "paths": sorted(broken)}
    n_test = m["split"]["test"]["images"]
    assert m["test"]["images"] == n_test - 1
    assert sum(map(sum, m["confusion_matrix"])) == n_test - 1


@pytest.mark.parametrize("mode", ["pca", "full"])
def test_the_head_folds_into_the_models_layers(tmp_path: Path, mode: str) -> None:
    """Features in the embedding cache's shards; the phase 1 head fitted on them (full, or
    projected on 12 of 40 directions) and written into Normalization + Dense: the model's
    prob_fake of the raw validation features is the head's own."""
    import keras

    from cleaner.models import embeddings as E
    from cleaner.models import frozen_head as FH
    from cleaner.models.backbones import get_backbone
    from cleaner.models.fit import set_feature_norm
    from cleaner.models.projection import HeadFeatures

    rng = np.random.default_rng(0)
    n, d = 300, 40
    y = (rng.random(n) < 0.5).astype(np.float64)
    x = rng.normal(0, 1, (n, d)) * rng.uniform(0.01, 30, d) + rng.normal(0, 50, d)
    x[:, :3] += y[:, None] * x[:, :3].std(axis=0)
    x[:, 7] = 2.5  # a dead feature: its variance is floored
    x = x.astype(np.float32)
    spec = E.EmbeddingSpec(get_backbone("spectrum"), "none", 32, "center")
    directory = E.cache_root(tmp_path) / spec.key
    shas = [f"{i:064x}" for i in range(n)]
    for lo in (0, 128, 256):  # three shards
        E._write_shard(directory, spec, shas[lo : lo + 128], x[lo : lo + 128])
    items = [(f"img{i}.png", s) for i, s in enumerate(shas)]
    inputs = FH.head_inputs(
        tmp_path, items[:200], items[200:], spec, mode=HeadFeatures(mode), pca_dim=12
    )
    assert inputs.computed == 0 and len(inputs.train) == 200 and len(inputs.val) == 100
    assert (inputs.projection is not None) == (mode == "pca")
    norm = FH.standardisation(inputs)
    lr, kernel, bias = FH.fit_logreg(inputs, y[:200], None, norm, c=0.03)

    inp = keras.Input((d,))
    layer = keras.layers.Normalization()
    dense = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inp, dense(layer(inp)))
    set_feature_norm(layer, *norm)
    dense.set_weights([kernel[:, None].astype(np.float32), np.array([bias], np.float32)])
    p_model = np.asarray(model.predict(x[200:], verbose=0))[:, 0]
    p_head = lr.prob(*inputs.val_features())
    np.testing.assert_allclose(p_model, p_head, atol=2e-4)
    assert _auc(y[200:], p_head) > 0.8


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))
