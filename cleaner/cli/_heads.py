"""The frozen heads' options, shared by `predict` (out-of-fold heads) and `train` (phase 1):
one spelling of the choice between the exact heads and the projected ones."""

from __future__ import annotations

from typing import Annotated

import typer

from cleaner.models.projection import DIM, HeadFeatures

__all__ = ["DIM", "HeadFeatures", "HeadFeaturesOption", "PcaDimOption"]

HeadFeaturesOption = Annotated[
    HeadFeatures,
    typer.Option(
        "--head-features",
        help="Frozen heads train on the full features (exact) or on their top principal "
        "components streamed from the cache (pca: a million Lite2-gram images in under 8 GB); "
        "auto: full while they fit a third of this machine's memory.",
    ),
]
PcaDimOption = Annotated[
    int, typer.Option("--pca-dim", min=1, help="Principal components the pca heads keep.")
]
