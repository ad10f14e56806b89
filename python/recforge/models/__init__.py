"""Recommender models: all share the ``Recommender`` interface (fit / recommend / score / save)."""

from .base import FactorModel, NotFittedError, Recommender, load
from .popular import MostPopular
from .sgd import BPR, SGDMF

__all__ = ["BPR", "FactorModel", "MostPopular", "NotFittedError", "Recommender", "SGDMF", "load"]
