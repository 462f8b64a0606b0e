"""``cleaner serve``: the Flask app (upload-and-predict, review queue). See :mod:`cleaner.web.app`.

Importing this package does not import TensorFlow: the model is loaded on the first upload."""

from cleaner.web.app import create_app, run_server

__all__ = ["create_app", "run_server"]
