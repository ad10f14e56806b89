"""``rf.datasets``: loaders for public data sets and the synthetic generator, in one namespace."""

from __future__ import annotations

from .loaders import (
    data_home_candidates,
    load_csv,
    load_lastfm,
    load_movielens,
    load_ncf_format,
    load_parquet,
    load_sasrec,
    movielens_titles,
)
from .synthetic import SyntheticTruth, synthetic

__all__ = [
    "data_home_candidates",
    "load_csv",
    "load_lastfm",
    "load_movielens",
    "load_ncf_format",
    "load_parquet",
    "load_sasrec",
    "movielens_titles",
    "synthetic",
    "SyntheticTruth",
]
