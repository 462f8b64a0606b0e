"""What every command shares: the --root option, one-line errors, the console, JSON output."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, ParamSpec, Protocol, TypeVar

import typer
from rich.console import Console

from cleaner.engine import ADDRESS_ENV, ENGINE_ENV, Engine, configure, idle_address
from cleaner.errors import CleanerError
from cleaner.models.runtime import RUNTIME_ENV, Runtime
from cleaner.models.runtime import configure as configure_runtime

P = ParamSpec("P")
R = TypeVar("R")

console = Console(highlight=False)
"""Human output (tables, summaries) on stdout."""
err_console = Console(stderr=True, highlight=False)

RootOption = Annotated[
    Path,
    typer.Option(
        "--root", "-r", help="Dataset folder holding the class folders.", show_default=True
    ),
]
DEFAULT_ROOT = Path("data")

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the summary as one JSON object instead of tables.")
]

EngineOption = Annotated[
    Engine | None,
    typer.Option(
        "--engine",
        help=f"Where the per-file work runs: local (a process pool here) or ray (Ray Data on "
        f"the cluster at --ray-address, else a Ray on this machine). Default: ${ENGINE_ENV} "
        "or local.",
        show_default=False,
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help=f"With --engine ray: the cluster to use (ray://HEAD:10001, or auto for the one "
        f"`ray start` runs here). Default: ${ADDRESS_ENV}, else a Ray started for this run.",
        show_default=False,
    ),
]


RuntimeOption = Annotated[
    Runtime | None,
    typer.Option(
        "--runtime",
        help="How the frozen backbone runs: fast (TensorFlow Lite with XNNPACK, converted once "
        "per backbone), keras, or auto (fast on a machine without a GPU). Default: "
        f"${RUNTIME_ENV} or auto.",
        show_default=False,
    ),
]


def use_runtime(runtime: Runtime | None) -> None:
    """Apply ``--runtime`` (None: the environment's) for this command."""
    configure_runtime(runtime)


def use_engine(engine: Engine | None, ray_address: str | None) -> None:
    """Apply ``--engine``/``--ray-address`` (None: the environment's) for this command; one
    warning line when the environment names a Ray cluster the local engine will not use."""
    note = idle_address(configure(engine, ray_address))
    if note:
        print(f"warning: {note}", file=sys.stderr, flush=True)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` as one line on stderr; return the Exit(1) to raise."""
    line = " ".join(str(message).split())
    print(f"error: {line}", file=sys.stderr)
    return typer.Exit(code=1)


def _names_never_crash_output() -> None:
    """A file name that is not UTF-8 reaches Python as surrogate escapes; printing one to a
    strict UTF-8 stdout would raise. Escape it instead (``\\udcff``), as ``ls -b`` does."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", "") == "strict":
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`CleanerError` into one line on stderr and exit code 1 (the contract).

    An ``OSError`` that escaped the modules (a read-only or full disk, a folder where a file
    should be) gets the same treatment, naming the file: nothing a user can cause should end
    in a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        _names_never_crash_output()
        try:
            return fn(*args, **kwargs)
        except CleanerError as e:
            raise fail(str(e)) from None
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            raise fail(
                f"{where}{e.strerror or e}; check that ROOT and ROOT/.cleaner are writable "
                "folders and the disk has room, then rerun"
            ) from None

    return wrapper


class Result(Protocol):
    """What a command's work returns: ``summary()`` is its ``--json`` form (built beside the
    result, in the module that does the work, so the CLI never assembles JSON itself)."""

    def summary(self) -> dict[str, Any]: ...


def emit_json(result: Result | Mapping[str, Any], json_out: bool) -> bool:
    """The one ``--json`` printer: with ``json_out``, print the result's summary as one JSON
    object and return True (the command is done); else return False (print the tables)."""
    if not json_out:
        return False
    print_json(dict(result) if isinstance(result, Mapping) else result.summary())
    return True


def print_json(obj: Any) -> None:
    """One JSON object on stdout, for scripts."""
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
