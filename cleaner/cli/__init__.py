"""The ``cleaner`` Typer app: one module per command under ``cleaner/cli/``, each only parsing
arguments, calling one function of a stage module and printing. No logic, no TensorFlow import
here: commands that need a model import ``cleaner.models`` inside their function.
"""

from __future__ import annotations

import typer

from cleaner.cli import (
    audit,
    dedupe,
    demo,
    evaluate,
    predict,
    report,
    scan,
    separate,
    serve,
    train,
    undo,
)

app = typer.Typer(
    name="cleaner",
    help=(
        "Clean a real/fake image dataset: scan, predict, relabel by consensus, dedupe, retrain.\n\n"
        "Every command that moves files is a dry run unless --apply is given; every move is "
        "journaled and `cleaner undo` reverses it. Nothing is ever deleted."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

scan.register(app)
demo.register(app)
separate.register(app)
undo.register(app)
dedupe.register(app)
predict.register(app)
train.register(app)
report.register(app)
serve.register(app)
evaluate.register(app)
audit.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
