"""Everything that needs TensorFlow/Keras. Imported only by commands that use a model."""

import os
import sys
import tempfile

TF_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "TF-TRT Warning: Could not find TensorRT",
)
"""Lines TensorFlow's import writes on stderr whatever TF_CPP_MIN_LOG_LEVEL says (absl logs
before it is initialised ignore the level: abseil-cpp #1718): informational only."""


def quiet_tensorflow() -> None:
    """Import TensorFlow once with stderr captured at the file-descriptor level, and pass every
    captured line on except :data:`TF_NOISE`: the commands that need a model then print their
    own output only, and a real import error still reaches the user."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip() and not any(noise in line for noise in TF_NOISE):
                    print(line, file=sys.stderr)
