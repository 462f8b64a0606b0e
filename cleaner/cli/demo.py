"""`cleaner demo DIR`: build the small seeded dataset with known label errors and duplicates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cleaner.cli._common import JsonOption, cli_errors, console, emit_json
from cleaner.demo import Bias


@cli_errors
def demo(
    out_dir: Annotated[
        Path, typer.Argument(help="Folder to create (must be absent or empty).", show_default=False)
    ],
    seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed.")] = 0,
    n: Annotated[int, typer.Option("--n", help="Original images, half real, half fake.")] = 400,
    noise: Annotated[
        float, typer.Option("--noise", help="Fraction of each class put in the wrong folder.")
    ] = 0.10,
    exact: Annotated[int, typer.Option("--exact", help="Exact (byte-copy) duplicates.")] = 10,
    near: Annotated[
        int, typer.Option("--near", help="Near duplicates (resized and/or recompressed).")
    ] = 12,
    corrupt: Annotated[int, typer.Option("--corrupt", help="Broken files.")] = 5,
    min_size: Annotated[int, typer.Option("--min-size", help="Smallest image side (px).")] = 64,
    max_size: Annotated[int, typer.Option("--max-size", help="Largest image side (px).")] = 96,
    bias: Annotated[
        Bias,
        typer.Option(
            "--bias",
            help="Plant one shortcut for `cleaner audit` to find: format (real JPEG, fake PNG), "
            "size (fixed-size fakes, 4:3 reals), names (IMG_ vs ComfyUI_), exif (camera EXIF "
            "on reals).",
        ),
    ] = Bias.NONE,
    json_out: JsonOption = False,
) -> None:
    """Build a small real/fake dataset with planted problems, and DIR/ground_truth.json.

    "fake" images are rendered at half resolution and upsampled like a generator's decoder
    (resize-convolution or transposed convolution); "real" ones carry natural 1/f texture and
    sensor noise; both draw from one scene distribution. Planted: --noise of each class in the
    wrong folder, exact and near duplicates within and across classes, a few corrupt files.
    The same seed and options give a byte-identical tree. Takes a few seconds.

    Examples:

        cleaner demo data/demo

        cleaner demo /tmp/demo --seed 3 --n 200 --noise 0.2

        cleaner demo data/demo && cleaner scan --root data/demo

        cleaner demo /tmp/biased --bias format && cleaner audit --root /tmp/biased
    """
    from cleaner.demo import DemoParams, build_demo

    params = DemoParams(
        n=n,
        noise=noise,
        exact=exact,
        near=near,
        corrupt=corrupt,
        min_size=min_size,
        max_size=max_size,
        bias=bias,
    )
    result = build_demo(out_dir, params, seed=seed)
    if emit_json(result, json_out):
        return
    table = Table(title=f"cleaner demo: {out_dir} (seed {seed})")
    table.add_column("planted")
    table.add_column("files", justify="right")
    for key in ("files", "originals", "label_errors", "duplicates", "corrupt"):
        table.add_row(key.replace("_", " "), str(result.counts[key]))
    console.print(table)
    console.print(f"ground truth: {result.ground_truth}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
