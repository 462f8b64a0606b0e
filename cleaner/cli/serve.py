"""`cleaner serve`: upload an image and see real or fake; work through the review queue."""

from __future__ import annotations

import ipaddress
import threading
from pathlib import Path
from typing import Annotated

import typer

from cleaner.cli._common import (
    DEFAULT_ROOT,
    RootOption,
    RuntimeOption,
    cli_errors,
    console,
    err_console,
    use_runtime,
)
from cleaner.errors import CleanerError
from cleaner.models.keras_file import check_model
from cleaner.web.budget import DEFAULT_BUDGET_MB, check_budget_mb


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _preload(predictor: object) -> None:
    """Load the model in a background thread: the pages answer at once, and the first upload
    does not wait for TensorFlow to start (tens of seconds on a small machine)."""
    load = getattr(predictor, "load", None)
    if load is None:
        return

    def run() -> None:
        try:
            load()
        except CleanerError as e:
            err_console.print(f"warning: {e}")

    threading.Thread(target=run, name="cleaner-model-preload", daemon=True).start()


@cli_errors
def serve(
    model: Annotated[
        Path, typer.Option("--model", "-m", help="The .keras model (cleaner train --out).")
    ],
    root: RootOption = DEFAULT_ROOT,
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port.")] = 5000,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to bind. The default serves this machine only; 0.0.0.0 exposes the "
            "app (which can move files in ROOT) to the network.",
        ),
    ] = "127.0.0.1",
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=0.01, help="Largest upload accepted, in MB.")
    ] = 20.0,
    upload_budget_mb: Annotated[
        float,
        typer.Option(
            "--upload-budget-mb",
            help="Memory, in MB, that uploads in flight may use together (their bodies and "
            "decoded pixels, all requests at once); more uploads wait their turn.",
        ),
    ] = DEFAULT_BUDGET_MB,
    runtime: RuntimeOption = None,
) -> None:
    """A small web app on http://HOST:PORT/: upload an image to get real or fake with both
    probabilities (the model loads in the background at start), and the review queue of ROOT's
    latest plan (`cleaner separate`'s review items and proposed moves) with accept and reject.

    An accepted move goes through the journal like any other (`cleaner undo` reverses it);
    decisions are recorded in ROOT/.cleaner/review/. The browser never names a path: buttons
    send a plan item's id and a CSRF token. Binds to 127.0.0.1 unless --host says otherwise.

    Examples:

        cleaner serve --model models/M.keras --root data

        cleaner serve --model models/M.keras --root data --port 8080 --max-upload-mb 5
    """
    from cleaner.web import create_app, run_server
    from cleaner.web.app import LOOPBACK_NAMES

    check_budget_mb(upload_budget_mb)
    use_runtime(runtime)
    check_model(model)
    if not root.is_dir():
        err_console.print(
            f"warning: ROOT {root} does not exist; the review queue stays empty (pass --root)"
        )
    if not _is_loopback(host):
        err_console.print(
            f"warning: binding to {host}: anyone who can reach this address can move files in "
            f"{root} (through the journal); prefer the default 127.0.0.1"
        )
    app = create_app(
        root,
        model_path=model,
        max_upload_mb=max_upload_mb,
        decode_budget_mb=upload_budget_mb,
        trusted_hosts=LOOPBACK_NAMES if _is_loopback(host) else None,
    )
    _preload(app.extensions["cleaner"]["predictor"])
    console.print(
        f"cleaner serve: http://{host}:{port}/  (ROOT {root}, model {model}; Ctrl-C stops)"
    )
    run_server(app, host, port)


def register(app: typer.Typer) -> None:
    app.command(
        "serve",
        short_help="A local web app: upload an image for real/fake; review ROOT's latest plan.",
    )(serve)
