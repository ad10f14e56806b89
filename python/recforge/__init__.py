"""recforge: recommender-systems engine with C++/CUDA kernels.

Fit a model on interactions with your own ids, then recommend in those ids:

>>> import pandas as pd
>>> import recforge as rf
>>> df = pd.DataFrame({"user": ["ann", "ann", "bob", "bob", "cy"], "item": ["x", "y", "x", "z", "y"]})
>>> inter = rf.Interactions.from_pandas(df)
>>> model = rf.MostPopular().fit(inter)
>>> ids, scores = model.recommend([0, 1], k=2)  # (2, 2) item indices, best first; seen items left out
>>> inter.item_ids.to_external(ids, missing=None)  # -1 padding (no item left) -> None
array([['z', None],
       ['y', None]], dtype=object)
>>> model.recommend_external(["cy"], k=2)[["user", "item"]]
  user item
0   cy    x
1   cy    z

The submodules (``datasets``, ``split``, ``transforms``, ``evaluation``, ``rerank``) and the models load on
first use, so ``import recforge`` stays fast.
"""

from __future__ import annotations

import importlib
import logging

from . import _backend  # noqa: F401  (the compiled core and its BLAS, before any kernel runs)
from ._config import get_config, set_config
from ._core import __version__
from .topk import topk  # eager: importing the submodule recforge.topk would shadow a lazy function of that name

logging.getLogger(__name__).addHandler(logging.NullHandler())

# name -> the module it lives in; imported on first access (PEP 562).
_SUBMODULES = ("datasets", "distributed", "evaluation", "model_selection", "online", "rerank", "split", "transforms")
_LAZY = {
    **{name: f".{name}" for name in _SUBMODULES},  # distributed needs the optional Dask extra
    "Features": ".data", "IdMap": ".data", "Interactions": ".data", "cupy_available": "._backend",
    "gpu_available": "._backend",
    **{name: ".models" for name in ("ALS", "BPR", "EASE", "SGDMF", "FactorModel", "HybridMF", "ItemKNN", "MLPScorer",
                                    "MostPopular", "NotFittedError", "Recommender", "load")},
}  # fmt: skip

__all__ = ["__version__", "get_config", "set_config", "topk", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'recforge' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name], __name__)
    value = module if name in _SUBMODULES else getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
