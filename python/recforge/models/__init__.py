"""Recommender models: all share the ``Recommender`` interface (fit / recommend / score / save)."""

from .als import ALS
from .base import FactorModel, NotFittedError, Recommender, load
from .popular import MostPopular

__all__ = ["ALS", "FactorModel", "MostPopular", "NotFittedError", "Recommender", "load"]
