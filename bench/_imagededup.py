"""Load imagededup's hashing module without its torch-only parts (benchmarks only).

imagededup is NOT a dependency of cleaner. Install it beside the benchmarks, without its heavy
dependencies (torch, torchvision), e.g. ``.venv/bin/pip install --no-deps --target /tmp/idd
imagededup`` and set ``IMAGEDEDUP_PATH=/tmp/idd`` (or install it into the venv with
``--no-deps``). Its ``methods`` and ``utils`` packages import torch in their ``__init__``; we
register empty packages in their place so only ``methods.hashing`` and what it needs load.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any


def load() -> Any | None:
    """The ``imagededup.methods.hashing`` module, or None when imagededup is not installed."""
    extra = os.environ.get("IMAGEDEDUP_PATH", "/tmp/idd")
    if extra and Path(extra).is_dir() and extra not in sys.path:
        sys.path.append(extra)
    spec = importlib.util.find_spec("imagededup")
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(next(iter(spec.submodule_search_locations)))
    for sub in ("utils", "methods"):
        name = f"imagededup.{sub}"
        if name not in sys.modules:
            m = types.ModuleType(name)
            m.__path__ = [str(pkg / sub)]
            sys.modules[name] = m
    try:
        return importlib.import_module("imagededup.methods.hashing")
    except ImportError:
        return None
