"""Everything that needs TensorFlow/Keras. Imported only by commands that use a model."""

from pathlib import Path


def metrics_path(model: Path) -> Path:
    """``M.metrics.json`` beside ``M.keras``: where ``cleaner train`` writes a model's test
    metrics and crop policy, and where ``predict`` and ``serve`` read them (``a.b.keras`` ->
    ``a.b.metrics.json``)."""
    return model.with_name(model.stem + ".metrics.json")
