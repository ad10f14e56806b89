"""The data layer: id maps, Interactions, loaders, synthetic data, splits, confidence weighting.

Pure NumPy/SciPy/pandas, vectorised over interactions. Public entry points are re-exported
by the top-level package: ``rf.IdMap``, ``rf.Interactions``, ``rf.datasets``, ``rf.split``,
``rf.transforms``.
"""

from __future__ import annotations

from . import datasets, splits, transforms
from .idmap import IdMap
from .interactions import DUPLICATE_RULES, Interactions

__all__ = ["DUPLICATE_RULES", "IdMap", "Interactions", "datasets", "splits", "transforms"]
