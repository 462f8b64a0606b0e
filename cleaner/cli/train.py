"""`cleaner train`: train a real/fake classifier on ROOT (grouped split, two-phase transfer)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperCommand

from cleaner.choices import Augment
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
    use_engine,
    use_runtime,
)
from cleaner.cli._heads import DIM, HeadFeatures, HeadFeaturesOption, PcaDimOption
from cleaner.dataset import Workspace
from cleaner.models import quiet_tensorflow
from cleaner.models.inputs import CropPolicy


@cli_errors
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (M.keras).")],
    root: RootOption = DEFAULT_ROOT,
    backbone: Annotated[
        str, typer.Option("--backbone", "-b", help="Backbone (see cleaner predict --help).")
    ] = "efficientnetb0",
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights", help="imagenet, none (train from scratch) or a weights file PATH."
        ),
    ] = None,
    epochs: Annotated[
        int, typer.Option("--epochs", help="Fine-tuning epochs (from-scratch epochs with none).")
    ] = 10,
    head: Annotated[
        str,
        typer.Option(
            "--head",
            help="Phase 1 head on frozen features: logreg (exact logistic regression, as the "
            "out-of-fold heads) or dense (trained by Adam for --head-epochs).",
        ),
    ] = "logreg",
    head_epochs: Annotated[
        int,
        typer.Option("--head-epochs", help="Epochs of the dense head; 0 skips phase 1."),
    ] = 20,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="Input side S (default: the backbone's).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and the training.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    fine_tune_layers: Annotated[
        int | None,
        typer.Option("--fine-tune-layers", help="Backbone layers unfrozen in phase 2."),
    ] = None,
    fine_tune_lr: Annotated[float, typer.Option("--fine-tune-lr")] = 1e-4,
    patience: Annotated[int, typer.Option("--patience", help="EarlyStopping patience.")] = 3,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="auto (mixed_float16 on a GPU, float32 on a CPU), float32, mixed_bfloat16 or "
            "mixed_float16.",
        ),
    ] = "auto",
    augment: Annotated[
        Augment,
        typer.Option(
            "--augment",
            help="none; crops (fine-tuning's random crops, flips, rotations, brightness); "
            "robust (those on blurred, JPEG re-encoded, rescaled images; a head on frozen "
            "features also trains on --robust-views such views of each image, cached); auto "
            "(robust views for a head on frozen features, crops for fine-tuning). A bare "
            "--augment means robust.",
        ),
    ] = Augment.AUTO,
    no_augment: Annotated[
        bool, typer.Option("--no-augment", help="Same as --augment none.")
    ] = False,
    robust_views: Annotated[
        int,
        typer.Option(
            "--robust-views",
            min=0,
            help="--augment robust with a head on frozen features: robust views per training "
            "image (K), embedded once and cached.",
        ),
    ] = 2,
    robust_p: Annotated[
        float | None,
        typer.Option(
            "--robust-p",
            min=0.0,
            max=1.0,
            hidden=True,
            help="Probability of the blur and of the JPEG step of a robust view (default 0.5).",
        ),
    ] = None,
    launder: Annotated[
        bool,
        typer.Option(
            "--launder",
            help="Also score the model on its test split re-encoded as images travel (JPEG "
            "90/75/50, 0.5x, blur, PNG saved as JPEG, a chain): M.metrics.json's launder.",
        ),
    ] = False,
    by_source: Annotated[
        bool,
        typer.Option(
            "--by-source",
            help="Also report, per source (sub-folders of the class folders, else the files' "
            "format and size), the AUC of a head on frozen features that never saw it: "
            "M.metrics.json's by_source.",
        ),
    ] = False,
    crop: Annotated[
        CropPolicy | None,
        typer.Option(
            "--crop",
            help="center (native-resolution crops) or resize (whole image); default: "
            "the backbone's.",
        ),
    ] = None,
    resplit: Annotated[
        bool, typer.Option("--resplit", help="Draw a new split instead of reusing split.csv.")
    ] = False,
    max_train: Annotated[
        int | None, typer.Option("--max-train", hidden=True, help="Cap training images.")
    ] = None,
    head_features: HeadFeaturesOption = HeadFeatures.AUTO,
    pca_dim: PcaDimOption = DIM,
    runtime: RuntimeOption = None,
    engine: EngineOption = None,
    ray_address: RayAddressOption = None,
    json_out: JsonOption = False,
) -> None:
    """Train a real/fake classifier on ROOT; writes M.keras, M.metrics.json and PNG plots.

    The split (60/20/20, stratified, near-duplicate groups kept together) is saved in
    ROOT/.cleaner/split.csv and reused. Phase 1 fits a head on frozen (cached) features (a
    logistic regression, solved exactly, by default); phase 2 unfreezes the top layers
    (BatchNormalization stays frozen) at a lower learning rate. With --weights none the whole
    network trains from scratch. The model takes RGB 0..255 and outputs prob_fake (1 = fake).

    Examples:

        cleaner train --root data --out models/detector.keras

        cleaner train --out m.keras --backbone efficientnet-lite0 --epochs 6 --image-size 160

        cleaner train --root data/demo --out m.keras --weights none --image-size 64 --epochs 5

        cleaner train --out m.keras --backbone efficientnet-lite2-gram --epochs 0   # GAN faces

    When ROOT's last `cleaner audit` found a shortcut (the folders told apart by file format,
    size, compression, metadata or names), a warning on stderr says so before training.
    """
    use_engine(engine, ray_address)
    use_runtime(runtime)
    from cleaner.audit import shortcut_warning
    from cleaner.models import augment as AUG
    from cleaner.models.augment import DEFAULT, Robust
    from cleaner.models.config import TrainConfig
    from cleaner.state.metrics import check_outputs

    ws = Workspace.open(root)
    warning = shortcut_warning(ws)
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    # the output flags before the others, whatever else is wrong, and before TensorFlow loads
    check_outputs(out, ws)
    cfg = TrainConfig(
        out=out,
        backbone=backbone,
        weights=weights,
        epochs=epochs,
        head=head,
        head_epochs=head_epochs,
        image_size=image_size,
        seed=seed,
        batch_size=batch_size,
        fine_tune_layers=fine_tune_layers,
        fine_tune_lr=fine_tune_lr,
        patience=patience,
        precision=precision,
        augment=AUG.from_flags(augment, no_augment),
        robust=DEFAULT if robust_p is None else Robust(robust_p, robust_p, DEFAULT.rescale_p),
        head_views=robust_views,
        launder=launder,
        by_source=by_source,
        resplit=resplit,
        crop=crop,
        max_train=max_train,
        head_features=head_features.value,
        pca_dim=pca_dim,
    )
    for line in cfg.warnings:
        print(f"warning: {line}", file=sys.stderr, flush=True)
    quiet_tensorflow()
    from cleaner.models.train import train as run_train

    result = run_train(ws, cfg, report=lambda line: print(line, file=sys.stderr, flush=True))
    m = result.metrics
    if emit_json(result, json_out):
        return
    t = Table(title=f"test split ({m['split']['test']['images']} images never trained on)")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        v = m[k]
        t.add_row(k, "n/a" if v is None else f"{v:.4f}")
    cm = m["confusion_matrix"]
    t.add_row("confusion (real->real, real->fake)", f"{cm[0][0]}, {cm[0][1]}")
    t.add_row("confusion (fake->real, fake->fake)", f"{cm[1][0]}, {cm[1][1]}")
    t.add_row("epochs", ", ".join(f"{k} {v}" for k, v in m["epochs"].items()) or "0")
    t.add_row("augmentation", m["augmentation"]["mode"])
    t.add_row("time", f"{m['time']['total_seconds']:.0f}s")
    t.add_row("backbone / weights / size", f"{m['backbone']} / {m['weights']} / {m['image_size']}")
    console.print(t)
    if "launder" in m:
        _print_launder(m["launder"])
    if "by_source" in m:
        _print_by_source(m["by_source"])
    console.print(f"wrote {result.model_path}, {result.metrics_path}")
    console.print("plots: " + ", ".join(str(p) for p in result.plots))


def _print_launder(rec: dict[str, Any]) -> None:
    t = Table(title="test split laundered (re-encoded as images travel)")
    for col in ("condition", "accuracy", "roc_auc", "AUC lost"):
        t.add_column(col, justify="left" if col == "condition" else "right")
    clean = rec["clean"]
    t.add_row("as is", f"{clean['accuracy']:.4f}", _num(clean["roc_auc"]), "")
    for name, row in rec["conditions"].items():
        t.add_row(name, f"{row['accuracy']:.4f}", _num(row["roc_auc"]), _num(row["auc_drop"]))
    console.print(t)
    if rec["worst"] is not None:
        console.print(
            f"worst condition: {rec['worst']['condition']} (AUC {rec['worst']['roc_auc']:.4f})"
        )


def _print_by_source(rec: dict[str, Any]) -> None:
    if "sources" not in rec:
        console.print(f"by source: {rec.get('skipped')}")
        return
    t = Table(title=f"leave one source out (sources from {rec['sources_from']})")
    for col in ("source", "left out", "test images", "roc_auc", "seen roc_auc", ""):
        t.add_column(col, justify="left" if col == "source" else "right")
    for r in rec["sources"]:
        if "skipped" in r:
            t.add_row(r["source"], "", str(r["test_images"]), "", "", r["skipped"])
            continue
        flag = "FAILS" if r["fails"] else ""
        t.add_row(r["source"], str(r["train_left_out"]), str(r["test_images"]),
                  _num(r["roc_auc"]), _num(r["seen_roc_auc"]), flag)  # fmt: skip
    console.print(t)
    if rec["failed"]:
        console.print(f"the model fails on: {', '.join(rec['failed'])} (AUC < {rec['fail_below']})")


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


class _TrainCommand(TyperCommand):
    """``--augment`` took no value before it took a mode: a bare one (last, or followed by
    another option) still parses, as ``--augment robust``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own click Context
        fixed = list(args)
        for i, a in enumerate(fixed):
            if a == "--augment" and (i + 1 == len(fixed) or fixed[i + 1].startswith("-")):
                fixed[i] = f"--augment={Augment.ROBUST.value}"
        return super().parse_args(ctx, fixed)


def register(app: typer.Typer) -> None:
    app.command("train", cls=_TrainCommand)(train)
