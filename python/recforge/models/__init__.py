"""Recommender models: all share the ``Recommender`` interface (fit / recommend / score / save)."""

from .base import FactorModel, NotFittedError, Recommender, load
from .popular import MostPopular

__all__ = ["FactorModel", "MostPopular", "NotFittedError", "Recommender", "load"]
