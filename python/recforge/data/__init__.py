"""The data layer: id maps, Interactions and the synthetic generator.

Pure NumPy/SciPy/pandas, vectorised over interactions. The public entry points are
``rf.IdMap``, ``rf.Interactions``, and the modules ``rf.datasets`` (loaders, ``synthetic``),
``rf.split`` (train/test splits) and ``rf.transforms`` (confidence weighting).
"""

from __future__ import annotations

import importlib
import warnings

from .features import Features
from .idmap import IdMap
from .interactions import DUPLICATE_RULES, Interactions

__all__ = ["DUPLICATE_RULES", "Features", "IdMap", "Interactions"]

# Where the modules of recforge.data lived until 0.1 (deprecated, removed in the next release).
_MOVED = {"datasets": "datasets", "loaders": "datasets", "splits": "split", "transforms": "transforms"}


def __getattr__(name: str):
    if name in _MOVED:
        new = f"recforge.{_MOVED[name]}"
        warnings.warn(f"recforge.data.{name} is deprecated, use {new}", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)
    raise AttributeError(f"module 'recforge.data' has no attribute {name!r}")
