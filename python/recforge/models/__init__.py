"""Recommender models: all share the ``Recommender`` interface (fit / recommend / score / save)."""

from .base import FactorModel, NotFittedError, Recommender, load
from .mlp import MLPScorer
from .popular import MostPopular

__all__ = ["FactorModel", "MLPScorer", "MostPopular", "NotFittedError", "Recommender", "load"]
