"""`make clean-data` then `make retrain` end to end, as a user runs them (the acceptance run that
was tests/test_pipelines.py; minutes: every stage is a process importing TensorFlow).

Two voters (spectrum, EfficientNet-Lite0 at 32 px) on 63 generated images with 4 planted label
errors and 3 planted copies; retrain on EfficientNetB0 from scratch. Checks what the test
checked (moves through an applied plan fixing planted errors, copies quarantined, the model's
metrics and predictions, no stage rerun when nothing changed) and prints one JSON line with the
seconds of each make run. tests/test_pipelines.py keeps a fast chain (spectrum, simple-cnn).

    PYTHONPATH=$PWD .venv/bin/python bench/bench_pipelines.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tests.test_pipelines import FLIPPED, check_clean_data, check_retrain, make_inputs, make_target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", type=Path, help="work in this (new) folder and keep it")
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench-pipelines-"))
    tmp.mkdir(parents=True, exist_ok=True)
    root, test_dir = make_inputs(tmp)
    clean = {
        "ROOT": str(root), "BACKBONES": "spectrum efficientnet-lite0",
        "PREDICT_ARGS": "--image-size 32", "FOLDS": "3", "RULE": "mean",
        "TARGET_PRECISION": "0", "MIN_CONFIDENCE": "0.6",
    }  # fmt: skip
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    out = make_target("clean-data", **clean)
    seconds["clean-data"] = time.perf_counter() - t
    moves, right = check_clean_data(root, out, clean, flipped=FLIPPED, need_moves=True)
    retrain = {
        "ROOT": str(root), "BACKBONE": "efficientnetb0", "WEIGHTS": "none", "IMAGE_SIZE": "32",
        "EPOCHS": "1", "MODEL": str(tmp / "model" / "det.keras"), "TEST_DIR": str(test_dir),
        "PREDICTIONS": str(tmp / "predictions.json"), "TRAIN_ARGS": "--batch-size 16",
    }  # fmt: skip
    t = time.perf_counter()
    make_target("retrain", **retrain)
    seconds["retrain"] = time.perf_counter() - t
    check_retrain(root, tmp, retrain)
    print(json.dumps({"bench": "pipelines", "moves": moves, "right": right, "seconds": seconds}))


if __name__ == "__main__":
    main()
