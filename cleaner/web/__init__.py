"""``cleaner serve``: the Flask app (upload-and-predict, review queue). See :mod:`cleaner.web.app`.

Importing this package does not import TensorFlow: the model is loaded on the first upload. Nor
Flask: :mod:`cleaner.web.app` is imported when ``create_app`` or ``run_server`` is first used,
so the CLI can read :mod:`cleaner.web.budget`'s defaults without slowing every command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cleaner.web.app import create_app, run_server

__all__ = ["create_app", "run_server"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cleaner.web import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
