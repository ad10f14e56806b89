"""recforge: recommender-systems engine with C++/CUDA kernels.

>>> import recforge as rf
>>> model = rf.MostPopular().fit(train_csr)
>>> ids, scores = model.recommend([0, 1, 2], k=10)
"""

from __future__ import annotations

import logging

from . import datasets, evaluation, split, transforms
from ._backend import cupy_available
from ._config import get_config, set_config
from ._core import __version__
from .data import IdMap, Interactions
from .models import ALS, BPR, SGDMF, FactorModel, MLPScorer, MostPopular, NotFittedError, Recommender, load
from .topk import topk

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    # recforge.distributed needs the optional Dask extra: imported on first use, so that
    # `import recforge` never needs Dask and `rf.distributed` without it names the extra.
    if name == "distributed":
        import importlib

        return importlib.import_module(".distributed", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    "ALS",
    "BPR",
    "cupy_available",
    "datasets",
    "evaluation",
    "IdMap",
    "Interactions",
    "FactorModel",
    "get_config",
    "load",
    "MLPScorer",
    "MostPopular",
    "NotFittedError",
    "Recommender",
    "set_config",
    "SGDMF",
    "split",
    "topk",
    "transforms",
]
