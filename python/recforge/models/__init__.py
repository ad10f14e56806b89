"""Recommender models: all share the ``Recommender`` interface (fit / recommend / score / save)."""

from ._explain import Explanation
from .als import ALS
from .base import FactorModel, NotFittedError, Recommender, load
from .ease import EASE
from .hybrid import HybridMF
from .knn import ItemKNN
from .mlp import MLPScorer
from .popular import MostPopular
from .sgd import BPR, SGDMF

__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "Explanation",
    "FactorModel",
    "HybridMF",
    "ItemKNN",
    "MLPScorer",
    "MostPopular",
    "NotFittedError",
    "Recommender",
    "SGDMF",
    "load",
]
