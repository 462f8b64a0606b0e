"""Where a model's metrics live: train writes them, predict and serve read them, one rule."""

from pathlib import Path

from cleaner.state.metrics import path as metrics_path


def test_metrics_path_keeps_dotted_model_names() -> None:
    assert metrics_path(Path("m/detector.keras")) == Path("m/detector.metrics.json")
    assert metrics_path(Path("m/a.b.keras")) == Path("m/a.b.metrics.json")
