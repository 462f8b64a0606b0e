"""`cleaner predict` and `cleaner predict-dir`: probabilities from a model or a backbone."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cleaner.choices import HeadKind
from cleaner.cli._common import (
    DEFAULT_ROOT,
    EngineOption,
    JsonOption,
    RayAddressOption,
    RootOption,
    RuntimeOption,
    cli_errors,
    console,
    emit_json,
    err_console,
    use_engine,
    use_runtime,
)
from cleaner.cli._heads import DIM, HeadFeatures, HeadFeaturesOption, PcaDimOption
from cleaner.dataset import Workspace, check_input, check_output
from cleaner.models import quiet_tensorflow
from cleaner.models.calibrate import LABELS_FIX
from cleaner.models.inputs import CropPolicy
from cleaner.models.keras_file import check_model

ModelOption = Annotated[
    Path | None,
    typer.Option("--model", "-m", help="A saved classifier (.keras) taking 0..255 RGB."),
]
ImageSizeOption = Annotated[
    int | None,
    typer.Option("--image-size", min=8, help="Input side in px (default: the model's/backbone's)."),
]
BatchOption = Annotated[int, typer.Option("--batch-size", min=1, help="Images per batch.")]
CropOption = Annotated[
    CropPolicy | None,
    typer.Option(
        "--crop",
        help="center (native-resolution central crop) or resize (whole image); default: the "
        "backbone's (center for all but simple-cnn) or the model's metrics.json.",
    ),
]


@contextmanager
def _progress(total_hint: str, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar on stderr when it is a terminal (the count is the images done)."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(desc=total_hint, unit="img", leave=False) as bar:

        def update(n: int) -> None:
            bar.update(n)

        yield update


def _note_missing_groups(root: Path) -> None:
    """One stderr line after an out-of-fold run that had no duplicate groups to keep in one
    fold (printed after the run, so a failing run still ends in its one error line)."""
    from cleaner.state.duplicates import path as duplicates_path

    if not duplicates_path(root).is_file():
        print(
            f"note: no duplicate groups to respect ({duplicates_path(root)} is absent): near "
            f"copies may fall in different folds; run `cleaner dedupe --root {root}` first",
            file=sys.stderr,
        )


@cli_errors
def predict(
    out: Annotated[Path, typer.Option("--out", "-o", help="Predictions file to write (JSON).")],
    root: RootOption = DEFAULT_ROOT,
    model: ModelOption = None,
    backbone: Annotated[
        str | None,
        typer.Option("--backbone", "-b", help="No model: out-of-fold heads on this backbone."),
    ] = None,
    folds: Annotated[
        int | None, typer.Option("--folds", "-k", min=2, help="K for --backbone (default 5).")
    ] = None,
    finetune: Annotated[
        bool, typer.Option("--finetune", help="Each fold fine-tunes the backbone's top (slow).")
    ] = False,
    weights: Annotated[
        str | None,
        typer.Option("--weights", help="imagenet, none or a weights file (default: backbone's)."),
    ] = None,
    image_size: ImageSizeOption = None,
    batch_size: BatchOption = 32,
    crop: CropOption = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="--finetune epochs per fold.")] = 3,
    head: Annotated[
        HeadKind, typer.Option("--head", help="Frozen-feature head (logreg-cv: slower).")
    ] = HeadKind.LOGREG,
    mirror: Annotated[
        bool,
        typer.Option(
            "--mirror",
            help="Frozen heads also train on the mirror images' features (2x the embedding "
            "work; what it was measured worth: bench/README.md, Predict).",
        ),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune/--no-prune",
            help="Each fold's head leaves out the training images an inner cross-validation "
            "over the other folds doubts (cleanlab); --no-prune: 1/5 of the head time.",
        ),
    ] = True,
    seed: Annotated[int, typer.Option("--seed", help="Fold assignment seed.")] = 0,
    repeats: Annotated[
        int,
        typer.Option(
            "--repeats",
            min=1,
            help="Frozen heads: average N fold assignments (seeds SEED to SEED+N-1) by their "
            "mean logit: N times the head time, steadier probabilities (each entry's folds).",
        ),
    ] = 1,
    head_features: HeadFeaturesOption = HeadFeatures.AUTO,
    pca_dim: PcaDimOption = DIM,
    planted: Annotated[
        bool,
        typer.Option(
            "--planted/--no-planted",
            help="Frozen heads: fit them once more with 10% of each folder's labels swapped in "
            "memory; `separate` checks its estimate of the move precision on those known "
            "swaps (2x the head time, no backbone run). --no-planted: separate's check "
            "refuses every threshold for this file.",
        ),
    ] = True,
    runtime: RuntimeOption = None,
    engine: EngineOption = None,
    ray_address: RayAddressOption = None,
    json_out: JsonOption = False,
) -> None:
    """Write prob_fake for every ok image of ROOT into a cleaner.predictions.v1 file.

    With --model: a trained classifier predicts every image (in-sample: out_of_fold false).
    With --backbone: honest out-of-fold probabilities for relabeling: K folds over the current
    labels (near duplicates of duplicates.json kept in one fold), a logistic-regression head
    per fold on frozen features cached under ROOT/.cleaner/cache (a second run reuses them), each
    image predicted by the head that never saw it; with --finetune each fold fine-tunes the top
    of the backbone instead (slower). The frozen heads prune: each leaves out the training
    images that an inner cross-validation over the other folds flags as label issues
    (cleanlab's find_label_issues), so a wrong label pulls the heads less and the held-out
    fold's labels are never used.
    On GAN faces the texture backbones efficientnet-lite{0,1,2}-gram are strong voters, their
    -gram-quad forms (four quadrant rows per image, 4x the memory) stronger, Lite2 the
    strongest, and several of them through separate --rule mean or unanimous the most precise
    consensus (bench/README.md, Separate); more folds and --repeats make the heads stronger
    still, at the price of head time. Images that fail to decode are reported and skipped (exit 0).

    Examples:

        cleaner predict --root data --model models/detector.keras --out preds/detector.json

        cleaner predict --root data --backbone efficientnet-lite0 --folds 5 --out preds/lite0.json

        cleaner predict --root data --backbone spectrum --out preds/spectrum.json

        cleaner predict --root /shared/faces --backbone efficientnet-lite2-gram \
            --engine ray --ray-address auto --out preds/lite2-gram.json   # on a Ray cluster

        cleaner predict --root data --backbone efficientnet-lite2-gram --out preds/lite2-gram.json

        cleaner predict --root data --backbone efficientnet-lite0-gram --no-prune \
            --out preds/lite0-gram-quick.json

        cleaner predict --root data --backbone efficientnet-lite2-gram-quad --folds 10 \
            --repeats 2 --out preds/lite2-quad.json

        cleaner predict --root data --backbone efficientnet-lite0 --finetune --epochs 4 \
            --image-size 160 --out preds/lite0-ft.json

        cleaner predict --root big --backbone efficientnet-lite2-gram --head-features pca \
            --pca-dim 1024 --out preds/lite2-gram.json
    """
    use_engine(engine, ray_address)
    use_runtime(runtime)
    from cleaner.models.config import predict_config

    ws = Workspace.open(root, require_classes=False)
    cfg = predict_config(
        out, model=model, backbone=backbone, folds=folds, finetune=finetune, weights=weights,
        repeats=repeats, image_size=image_size, crop=crop, batch_size=batch_size,
        epochs=epochs, head=head, mirror=mirror, prune=prune, seed=seed,
        head_features=head_features.value, pca_dim=pca_dim, planted=planted,
    )  # fmt: skip
    cfg.check(ws)  # before TensorFlow loads: a refused --out is answered at once
    quiet_tensorflow()
    from cleaner.models import predict as stage

    with _progress("predict", json_out) as bar:
        s = stage.predict(ws, cfg, progress=bar, log=None if json_out else err_console.print)
    if backbone is not None:
        _note_missing_groups(root)
    if emit_json(s, json_out):
        return
    table = Table(title=f"cleaner predict -> {s.out}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("model", str(s.model.get("name")))
    table.add_row("images (ok in manifest)", str(s.images))
    table.add_row("predicted", str(s.predicted))
    table.add_row("failed to decode", str(len(s.failed)))
    reps = int(s.model.get("repeats", 1))
    folds_text = f"yes ({s.folds} folds" + (f" x {reps} assignments)" if reps > 1 else ")")
    table.add_row("out of fold", folds_text if s.out_of_fold else "no (in-sample)")
    if s.out_of_fold:
        table.add_row("backbone runs / cache hits", f"{s.computed} / {s.cached}")
        if s.model.get("mirror_augment"):
            table.add_row("heads trained on mirror images too", "yes")
        hf = s.model.get("head_features")
        if isinstance(hf, dict):
            table.add_row(
                "heads on principal components",
                f"{hf['dim']} ({hf['explained_variance']:.1%} of the variance)",
            )
        if s.model.get("pruned"):
            table.add_row("pruned per fold (label issues)", " ".join(map(str, s.model["pruned"])))
        pl = s.model.get("planted")
        if isinstance(pl, dict):
            table.add_row(
                "planted run (separate's check)", f"{pl['swapped']} swapped, {pl['seconds']:g} s"
            )
    if s.auc is not None:
        table.add_row("AUC vs folder labels", f"{s.auc:.3f}")
    if s.accuracy is not None:
        table.add_row("accuracy vs folder labels", f"{s.accuracy:.3f}")
    table.add_row("seconds", f"{s.seconds:.1f}")
    console.print(table)
    for path, reason in s.failed[:20]:
        console.print(f"  skipped {path}: {reason}")
    if len(s.failed) > 20:
        console.print(f"  ... and {len(s.failed) - 20} more (see --json)")


@cli_errors
def predict_dir(
    directory: Annotated[
        Path, typer.Argument(help="Folder of unlabelled images (1.png, 2.png...).")
    ],
    model: Annotated[Path, typer.Option("--model", "-m", help="A saved classifier (.keras).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="predictions.json to write.")] = Path(
        "predictions.json"
    ),
    image_size: ImageSizeOption = None,
    batch_size: BatchOption = 32,
    crop: CropOption = None,
    calibrate: Annotated[
        Path | None,
        typer.Option(
            "--calibrate",
            metavar="LABELS.json",
            help='Labels of some images of DIR ([{"image": "1.png", "label": "fake"}, ...]; a '
            "few dozen): a threshold fitted on them (Platt scaling) replaces 0.5 for every "
            "prediction; prob_fake is unchanged.",
        ),
    ] = None,
    engine: EngineOption = None,
    ray_address: RayAddressOption = None,
    runtime: RuntimeOption = None,
    json_out: JsonOption = False,
) -> None:
    """Label every image of DIR real or fake with a saved model, into predictions.json.

    The file is a JSON list in the numeric order of the file names (2.png before 10.png):
    [{"index": 2, "image": "2.png", "prediction": "fake", "prob_fake": 0.93}, ...]. A file that
    is not a usable image is reported and left out (exit 0). Not recursive; hidden files skipped.

    On images of another source than the training data the ranking (prob_fake) holds better
    than the 0.5 threshold: --calibrate LABELS.json, with a few dozen labelled images of DIR,
    sets the threshold there (Platt scaling: where a logistic fit of their labels on the
    model's logit crosses 0.5) and says how many it used.

    Examples:

        cleaner predict-dir test_images --model models/detector.keras --out predictions.json

        CLEANER_ENGINE=ray cleaner predict-dir test_images -m models/detector.keras \
            --out predictions.json   # on a Ray of its own (or CLEANER_RAY_ADDRESS's cluster)

        cleaner predict-dir test_images -m models/detector.keras --json | jq .skipped

        cleaner predict-dir test_images -m models/detector.keras --calibrate labels50.json
    """
    use_engine(engine, ray_address)
    use_runtime(runtime)
    check_output(out)  # before TensorFlow loads, as the files it reads:
    check_model(model)
    if calibrate is not None:
        check_input(calibrate, "--calibrate", LABELS_FIX)
    quiet_tensorflow()
    from cleaner.models import predict as stage

    with _progress("predict-dir", json_out) as bar:
        s = stage.predict_dir(
            directory,
            model,
            out,
            image_size=image_size,
            crop=crop,
            batch_size=batch_size,
            calibrate=calibrate,
            progress=bar,
        )
    if emit_json(s, json_out):
        return
    cal = s.calibration
    if cal is not None:
        console.print(
            f"threshold {cal.threshold:.4f} (instead of 0.5; {cal.rule}) set from {cal.used} "
            "labelled images "
            f"({cal.real} real, {cal.fake} fake): accuracy on them {cal.accuracy:.3f} "
            f"(in-sample) against {cal.accuracy_at_half:.3f} at 0.5"
            + (f"; {cal.ignored} labels named no predicted image" if cal.ignored else "")
        )
    console.print(
        f"{s.predicted} of {s.files} files labelled ({s.fake} fake, {s.real} real) in "
        f"{s.seconds:.1f}s -> {s.out}"
    )
    for name, reason in s.skipped:
        console.print(f"  skipped {name}: {reason}")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
    app.command("predict-dir")(predict_dir)
